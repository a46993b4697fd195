//! [`Ticks`]: the profiler. It hands out timestamp writes for compute passes
//! (and dispatches), resolves them into pooled buffers, and turns them into
//! [`TickRecord`]s once the GPU is done — without ever waiting for it, unless
//! more frames are in flight than allowed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ticks::pool::{PoolStats, QueryChunk, QueryPool};
use crate::ticks::record::{RecordKind, TickRecord, TimingSource};

/// How a [`Ticks`] profiler behaves.
#[derive(Clone, Debug)]
pub struct TicksSettings {
    /// Time with the CPU wall clock even where the adapter has timestamps
    /// (the fallback, forced).
    pub force_cpu_timing: bool,
    /// Also time single dispatches inside passes, where the adapter has
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`.
    pub time_dispatches: bool,
    /// Frames submitted but not yet read back before `end_frame` waits for
    /// the oldest one. Keeps the pool bounded when the CPU runs ahead.
    pub max_frames_in_flight: usize,
    /// Records kept; beyond this the oldest are dropped (and counted).
    pub max_retained_records: usize,
}

impl Default for TicksSettings {
    fn default() -> Self {
        TicksSettings {
            force_cpu_timing: false,
            time_dispatches: false,
            max_frames_in_flight: 8,
            max_retained_records: 1_000_000,
        }
    }
}

/// A record whose timestamps are not back yet.
struct PendingRecord {
    label: String,
    scope: Vec<String>,
    kind: RecordKind,
    step: u64,
    epoch: u64,
    args: Vec<(String, String)>,
    /// Index of the chunk in the frame and of the begin query in it (end = begin + 1).
    chunk: usize,
    query: u32,
}

/// A frame timed on the CPU: its submit time, the completion time the
/// queue's callback sets, and the passes it holds.
struct CpuFrame {
    submitted: Instant,
    done: Arc<Mutex<Option<Instant>>>,
    passes: Vec<PendingRecord>,
}

/// A submitted frame waiting for its results.
struct PendingFrame {
    chunks: Vec<QueryChunk>,
    records: Vec<PendingRecord>,
    /// Set when timing with the CPU (the fallback).
    cpu: Option<CpuFrame>,
}

/// A token for a dispatch timed inside a pass; give it back to [`Ticks::end_dispatch`].
#[derive(Debug)]
#[must_use = "pass it to Ticks::end_dispatch after the dispatch"]
pub struct DispatchToken {
    chunk: usize,
    query: u32,
}

/// GPU timestamp profiler ("ticks") for compute passes.
///
/// Per frame (usually one submission): open passes with
/// [`Ticks::begin_compute_pass`] (or [`Ticks::pass_timestamp_writes`] for a
/// pass you build yourself), then [`Ticks::submit`] the encoder — or
/// [`Ticks::resolve`], submit yourself, and [`Ticks::end_frame`]. Finished
/// frames turn into [`TickRecord`]s on [`Ticks::collect`], which never blocks.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, LayerNorm, LayerNormIo, NormOp, Ticks, TicksSettings};
/// let ctx = Context::new()?;
/// let mut ticks = Ticks::new(&ctx, TicksSettings::default());
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
/// let y = GpuTensor::zeros(&ctx, &[2, 2])?;
/// for step in 0..3 {
///     ticks.set_step(step);
///     let mut encoder = ctx.device().create_command_encoder(&Default::default());
///     let io = LayerNormIo { x: &x, y: &y, gamma: None, beta: None, mean: None, rstd: None, residual: None };
///     LayerNorm::new().encode_ticked(&ctx, &mut encoder, &io, &mut ticks)?;
///     ticks.submit(encoder)?;
/// }
/// ticks.flush()?; // wait for the last frames (end of the run)
/// assert_eq!(ticks.records().len(), 3);
/// println!("{}", ticks.report().table());
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
pub struct Ticks {
    ctx: Context,
    settings: TicksSettings,
    gpu: bool,
    dispatches: bool,
    pool: QueryPool,
    /// Chunks and records of the frame being encoded.
    chunks: Vec<QueryChunk>,
    records: Vec<PendingRecord>,
    pending: VecDeque<PendingFrame>,
    done: VecDeque<TickRecord>,
    dropped: u64,
    scope: Vec<String>,
    step: u64,
    epoch: u64,
    created: Instant,
    /// Raw GPU timestamp that maps to 0 ns (the first one seen).
    origin: Option<u64>,
    /// When the current frame was resolved: the CPU fallback's "submit" time.
    resolved_at: Option<Instant>,
}

impl Ticks {
    /// A profiler for work on `ctx`. It times with GPU timestamps where the
    /// device has `TIMESTAMP_QUERY`, else with the CPU wall clock.
    pub fn new(ctx: &Context, settings: TicksSettings) -> Self {
        let caps = ctx.capabilities();
        let gpu = caps.timestamps && !settings.force_cpu_timing;
        Ticks {
            ctx: ctx.clone(),
            gpu,
            dispatches: gpu && settings.time_dispatches && caps.timestamps_inside_passes,
            settings,
            pool: QueryPool::default(),
            chunks: Vec::new(),
            records: Vec::new(),
            pending: VecDeque::new(),
            done: VecDeque::new(),
            dropped: 0,
            scope: Vec::new(),
            step: 0,
            epoch: 0,
            created: Instant::now(),
            origin: None,
            resolved_at: None,
        }
    }

    /// Where this profiler's durations come from.
    pub fn timing_source(&self) -> TimingSource {
        if self.gpu {
            TimingSource::GpuTimestamps
        } else {
            TimingSource::CpuWallClock
        }
    }

    /// Whether single dispatches are timed too.
    pub fn times_dispatches(&self) -> bool {
        self.dispatches
    }

    /// The context this profiler records on.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Sets the step stamped on every record from now on (a training loop's
    /// iteration counter).
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    /// Sets the epoch stamped on every record from now on.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The current step.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Opens a named scope: records made until the returned guard is
    /// dropped carry `name` (after the names of the scopes around it).
    /// Scopes nest, and close on drop even on an early return or `?`.
    ///
    /// ```
    /// # let ctx = wgpu_norm::Context::new()?;
    /// use wgpu_norm::{Ticks, TicksSettings};
    /// let mut ticks = Ticks::new(&ctx, TicksSettings::default());
    /// {
    ///     let mut step = ticks.scope("step");
    ///     let forward = step.scope("forward");
    ///     assert_eq!(forward.scope_path(), ["step", "forward"]);
    /// }
    /// assert!(ticks.scope_path().is_empty());
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn scope(&mut self, name: impl Into<String>) -> TickScope<'_> {
        self.scope.push(name.into());
        TickScope { ticks: self }
    }

    /// The names of the open scopes, outermost first.
    pub fn scope_path(&self) -> &[String] {
        &self.scope
    }

    /// Two fresh queries in the frame's chunks: (chunk index, first query).
    fn take_pair(&mut self) -> (usize, u32) {
        if let Some(last) = self.chunks.last_mut()
            && let Some(q) = last.take_pair()
        {
            return (self.chunks.len() - 1, q);
        }
        let mut chunk = self.pool.get(self.ctx.device());
        let q = chunk.take_pair().expect("a fresh chunk has room");
        self.chunks.push(chunk);
        (self.chunks.len() - 1, q)
    }

    fn pending_record(
        &self,
        label: &str,
        kind: RecordKind,
        args: &[(&str, String)],
        chunk: usize,
        query: u32,
    ) -> PendingRecord {
        PendingRecord {
            label: label.to_string(),
            scope: self.scope.clone(),
            kind,
            step: self.step,
            epoch: self.epoch,
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            chunk,
            query,
        }
    }

    /// Timestamp writes for a compute pass you begin yourself, labelled
    /// `label` with `args` for the trace. `None` when timing with the CPU (the
    /// pass is still recorded, as part of its submission).
    pub fn pass_timestamp_writes(
        &mut self,
        label: &str,
        args: &[(&str, String)],
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        if !self.gpu {
            let record = self.pending_record(label, RecordKind::Pass, args, 0, 0);
            self.records.push(record);
            return None;
        }
        let (chunk, query) = self.take_pair();
        let record = self.pending_record(label, RecordKind::Pass, args, chunk, query);
        self.records.push(record);
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.chunks[chunk].set,
            beginning_of_pass_write_index: Some(query),
            end_of_pass_write_index: Some(query + 1),
        })
    }

    /// Begins a compute pass in `encoder` with timestamps at its beginning and end.
    pub fn begin_compute_pass<'e>(
        &mut self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: &str,
        args: &[(&str, String)],
    ) -> wgpu::ComputePass<'e> {
        let timestamp_writes = self.pass_timestamp_writes(label, args);
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes,
        })
    }

    /// Writes a timestamp before a dispatch in `pass`, when single dispatches
    /// are timed (`TicksSettings::time_dispatches` on an adapter with
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`); `None` otherwise.
    pub fn begin_dispatch(
        &mut self,
        pass: &mut wgpu::ComputePass<'_>,
        label: &str,
        args: &[(&str, String)],
    ) -> Option<DispatchToken> {
        if !self.dispatches {
            return None;
        }
        let (chunk, query) = self.take_pair();
        let record = self.pending_record(label, RecordKind::Dispatch, args, chunk, query);
        self.records.push(record);
        pass.write_timestamp(&self.chunks[chunk].set, query);
        Some(DispatchToken { chunk, query })
    }

    /// Writes the timestamp after the dispatch begun with `token`.
    pub fn end_dispatch(&mut self, pass: &mut wgpu::ComputePass<'_>, token: Option<DispatchToken>) {
        if let Some(t) = token {
            pass.write_timestamp(&self.chunks[t.chunk].set, t.query + 1);
        }
    }

    /// Encodes the resolve of this frame's timestamps into `encoder`. Call it
    /// once the frame's passes are encoded, before submitting.
    ///
    /// Without GPU timestamps, the time of this call is the frame's submit
    /// time (its wall-clock duration runs from here to completion), so call
    /// it right before submitting.
    pub fn resolve(&mut self, encoder: &mut wgpu::CommandEncoder) {
        for chunk in &mut self.chunks {
            chunk.resolve(encoder);
        }
        self.resolved_at = Some(Instant::now());
    }

    /// Resolves, finishes and submits `encoder`, then ends the frame.
    pub fn submit(&mut self, mut encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        self.resolve(&mut encoder);
        let ctx = self.ctx.clone();
        let index = ctx.scoped("submitting a ticked frame", || {
            ctx.queue().submit([encoder.finish()])
        })?;
        self.end_frame()?;
        Ok(index)
    }

    /// Ends the frame just submitted: its results are requested and will be
    /// returned by a later [`Ticks::collect`]. Waits for the oldest frame only
    /// when more than `max_frames_in_flight` are pending.
    pub fn end_frame(&mut self) -> Result<()> {
        if let Some(c) = self.chunks.iter().find(|c| !c.sealed && c.used > 0) {
            return Err(Error::Validation {
                during: "ending a ticks frame",
                message: format!(
                    "{} timestamp queries were never resolved: call Ticks::resolve before submitting (or use Ticks::submit)",
                    c.used
                ),
            });
        }
        let records = std::mem::take(&mut self.records);
        let chunks = std::mem::take(&mut self.chunks);
        if self.gpu {
            self.resolved_at = None;
        }
        let frame = if self.gpu {
            for c in &chunks {
                c.request_map();
            }
            PendingFrame {
                chunks,
                records,
                cpu: None,
            }
        } else {
            let done = Arc::new(Mutex::new(None));
            let slot = done.clone();
            self.ctx.queue().on_submitted_work_done(move || {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            });
            PendingFrame {
                chunks,
                records: Vec::new(),
                cpu: Some(CpuFrame {
                    submitted: self.resolved_at.take().unwrap_or_else(Instant::now),
                    done,
                    passes: records,
                }),
            }
        };
        self.pending.push_back(frame);
        self.collect()?;
        while self.pending.len() > self.settings.max_frames_in_flight {
            self.ctx.wait()?;
            self.collect()?;
        }
        Ok(())
    }

    /// Turns every finished frame into records, without waiting. Returns how
    /// many records were added.
    pub fn collect(&mut self) -> Result<usize> {
        self.ctx.device().poll(wgpu::PollType::Poll)?;
        let mut added = 0;
        while let Some(frame) = self.pending.front() {
            let ready = match &frame.cpu {
                Some(cpu) => cpu.done.lock().unwrap_or_else(|p| p.into_inner()).is_some(),
                None => frame.chunks.iter().all(|c| c.try_ready()),
            };
            if !ready {
                break;
            }
            let frame = self.pending.pop_front().expect("front exists");
            added += self.finish_frame(frame)?;
        }
        Ok(added)
    }

    /// Waits for every submitted frame and collects it (end of a run).
    pub fn flush(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.ctx.wait()?;
            self.collect()?;
        }
        Ok(())
    }

    fn finish_frame(&mut self, frame: PendingFrame) -> Result<usize> {
        let mut out = Vec::new();
        if let Some(CpuFrame {
            submitted,
            done,
            passes: records,
        }) = frame.cpu
        {
            let done = done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .expect("ready frames have a completion time");
            if !records.is_empty() {
                let label = records
                    .iter()
                    .map(|r| r.label.as_str())
                    .collect::<Vec<_>>()
                    .join(" + ");
                let first = &records[0];
                let mut args = first.args.clone();
                args.push(("passes_in_submission".into(), records.len().to_string()));
                out.push(TickRecord {
                    label,
                    scope: first.scope.clone(),
                    kind: RecordKind::Submission,
                    source: TimingSource::CpuWallClock,
                    step: first.step,
                    epoch: first.epoch,
                    start_ns: submitted.duration_since(self.created).as_nanos() as f64,
                    duration_ns: done.duration_since(submitted).as_nanos() as f64,
                    args,
                });
            }
        } else {
            let mut raw = Vec::with_capacity(frame.chunks.len());
            for c in &frame.chunks {
                match c.try_read() {
                    Some(Ok(v)) => raw.push(v),
                    _ => {
                        for c in frame.chunks {
                            self.pool.put(c);
                        }
                        return Err(Error::Validation {
                            during: "reading timestamps back",
                            message: "mapping a timestamp readback buffer failed".into(),
                        });
                    }
                }
            }
            // The period is read now, not cached: it can change on some platforms.
            let period = self.ctx.queue().get_timestamp_period() as f64;
            for r in frame.records {
                let begin = raw[r.chunk][r.query as usize];
                let end = raw[r.chunk][r.query as usize + 1];
                let origin = *self.origin.get_or_insert(begin);
                out.push(TickRecord {
                    label: r.label,
                    scope: r.scope,
                    kind: r.kind,
                    source: TimingSource::GpuTimestamps,
                    step: r.step,
                    epoch: r.epoch,
                    start_ns: ticks_to_ns(origin, begin, period),
                    duration_ns: ticks_to_ns(begin, end, period),
                    args: r.args,
                });
            }
            for c in frame.chunks {
                self.pool.put(c);
            }
        }
        let n = out.len();
        for r in out {
            if self.done.len() >= self.settings.max_retained_records {
                self.done.pop_front();
                self.dropped += 1;
            }
            self.done.push_back(r);
        }
        Ok(n)
    }

    /// The records collected so far, oldest first.
    pub fn records(&self) -> Vec<TickRecord> {
        self.done.iter().cloned().collect()
    }

    /// How many records are kept.
    pub fn record_count(&self) -> usize {
        self.done.len()
    }

    /// Takes the records collected so far, leaving none.
    pub fn drain(&mut self) -> Vec<TickRecord> {
        self.done.drain(..).collect()
    }

    /// Records dropped because more than `max_retained_records` were kept.
    pub fn dropped_records(&self) -> u64 {
        self.dropped
    }

    /// How many query sets exist, wait in the pool, and how many frames are in flight.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            query_sets_created: self.pool.created(),
            query_sets_free: self.pool.free_count(),
            frames_in_flight: self.pending.len(),
        }
    }

    /// Statistics per label over the records kept.
    pub fn report(&self) -> crate::ticks::Report {
        crate::ticks::Report::new(self.done.iter())
    }

    /// A Chrome trace-event JSON document of the records kept, naming the adapter.
    pub fn chrome_trace(&self) -> String {
        crate::ticks::chrome::trace_json(self.done.iter(), self.ctx.adapter_info())
    }
}

/// Nanoseconds from raw timestamp `from` to `to`, `period` ns per tick.
///
/// `wrapping_sub` survives a counter that wrapped between the two; reading
/// the difference as i64 makes an end stamped before its begin come out as a
/// small negative duration rather than a huge positive one, so it is
/// reported, not hidden.
pub(crate) fn ticks_to_ns(from: u64, to: u64, period: f64) -> f64 {
    to.wrapping_sub(from) as i64 as f64 * period
}

/// An open scope of a [`Ticks`] ([`Ticks::scope`]): it dereferences to the
/// profiler and closes its scope when dropped.
#[must_use = "the scope closes when this guard is dropped"]
pub struct TickScope<'t> {
    ticks: &'t mut Ticks,
}

impl std::ops::Deref for TickScope<'_> {
    type Target = Ticks;

    fn deref(&self) -> &Ticks {
        self.ticks
    }
}

impl std::ops::DerefMut for TickScope<'_> {
    fn deref_mut(&mut self) -> &mut Ticks {
        self.ticks
    }
}

impl Drop for TickScope<'_> {
    fn drop(&mut self) {
        self.ticks.scope.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::ticks_to_ns;

    #[test]
    fn tick_deltas_wrap_and_keep_their_sign() {
        assert_eq!(ticks_to_ns(100, 350, 1.0), 250.0);
        assert_eq!(ticks_to_ns(100, 350, 2.5), 625.0);
        assert_eq!(ticks_to_ns(7, 7, 1.0), 0.0);
        assert_eq!(
            ticks_to_ns(350, 100, 1.0),
            -250.0,
            "a reordered pair is negative"
        );
        assert_eq!(
            ticks_to_ns(u64::MAX - 9, 10, 1.0),
            20.0,
            "a wrapped counter"
        );
    }
}
