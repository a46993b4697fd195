//! One timed piece of GPU work, as the profiler hands it back.

use serde::Serialize;

/// Where a duration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    /// Timestamp queries written by the GPU at the start and end of a pass
    /// (or around a dispatch): the GPU's own clock, in ns via the queue's
    /// timestamp period.
    GpuTimestamps,
    /// The adapter has no `TIMESTAMP_QUERY` (or it was turned off): the CPU's
    /// wall clock from submit to the moment a poll saw the submission done.
    /// It covers a whole submission, queueing and driver overhead included.
    CpuWallClock,
}

impl TimingSource {
    /// `gpu_timestamps` or `cpu_wall_clock`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimingSource::GpuTimestamps => "gpu_timestamps",
            TimingSource::CpuWallClock => "cpu_wall_clock",
        }
    }
}

/// What a record times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A whole compute pass (timestamps written at its beginning and end).
    Pass,
    /// One dispatch inside a pass (needs `TIMESTAMP_QUERY_INSIDE_PASSES`).
    Dispatch,
    /// A whole submission, timed on the CPU (the fallback).
    Submission,
}

/// One timed pass, dispatch or submission.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TickRecord {
    /// The label given when the work was encoded, e.g.
    /// `layer_norm_forward 8x512x768 (64 lanes, subgroup)`.
    pub label: String,
    /// The enclosing scopes, outermost first (empty outside any scope).
    pub scope: Vec<String>,
    /// What is timed.
    pub kind: RecordKind,
    /// Where the duration came from.
    pub source: TimingSource,
    /// The caller's step counter when the work was encoded ([`crate::Ticks::set_step`]).
    pub step: u64,
    /// The caller's epoch when the work was encoded ([`crate::Ticks::set_epoch`]).
    pub epoch: u64,
    /// Start, in ns since the profiler's origin (its first GPU timestamp, or
    /// its creation for CPU records).
    pub start_ns: f64,
    /// Duration in ns. Zero or negative values are kept as measured: a
    /// timestamp pair may come back equal or reordered on some drivers.
    pub duration_ns: f64,
    /// Free-form facts about the work (tensor shape, kernel variant, …),
    /// carried into the trace's `args`.
    pub args: Vec<(String, String)>,
}
