//! Query sets and their resolve and readback buffers, recycled between frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Timestamps per query set. Even, so a pass's begin/end pair never straddles two sets.
pub(crate) const QUERIES_PER_SET: u32 = 64;

/// A query set with the buffers its values travel through:
/// query set → (resolve) → `resolve` buffer → (copy) → `readback` → (map) → CPU.
pub(crate) struct QueryChunk {
    pub(crate) set: wgpu::QuerySet,
    /// QUERY_RESOLVE | COPY_SRC: where `resolve_query_set` writes the raw ticks.
    resolve: wgpu::Buffer,
    /// MAP_READ | COPY_DST: what the CPU maps. Separate from `resolve` because
    /// wgpu allows MAP_READ only together with COPY_DST.
    readback: wgpu::Buffer,
    /// Queries handed out so far.
    pub(crate) used: u32,
    /// Set once its queries are resolved in an encoder; no more are handed out.
    pub(crate) sealed: bool,
    /// 0: not mapped yet, 1: mapped, 2: the mapping failed.
    map_state: Arc<AtomicU8>,
}

impl QueryChunk {
    fn new(device: &wgpu::Device) -> Self {
        let bytes = QUERIES_PER_SET as u64 * wgpu::QUERY_SIZE as u64;
        QueryChunk {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgpu-norm ticks"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES_PER_SET,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-norm ticks resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-norm ticks readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            used: 0,
            sealed: false,
            map_state: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Two consecutive query indices, if this set has room and is not sealed.
    pub(crate) fn take_pair(&mut self) -> Option<u32> {
        (!self.sealed && self.used + 2 <= QUERIES_PER_SET).then(|| {
            self.used += 2;
            self.used - 2
        })
    }

    /// Encodes the resolve of the used queries and the copy to the readback buffer.
    pub(crate) fn resolve(&mut self, encoder: &mut wgpu::CommandEncoder) {
        if self.used > 0 && !self.sealed {
            encoder.resolve_query_set(&self.set, 0..self.used, &self.resolve, 0);
            let bytes = self.used as u64 * wgpu::QUERY_SIZE as u64;
            encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, bytes);
        }
        self.sealed = true;
    }

    /// Asks for the readback buffer to be mapped once the submission is done.
    pub(crate) fn request_map(&self) {
        let state = self.map_state.clone();
        let bytes = self.used as u64 * wgpu::QUERY_SIZE as u64;
        self.readback
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                state.store(if r.is_ok() { 1 } else { 2 }, Ordering::Release)
            });
    }

    /// Whether the mapping requested by `request_map` has completed (or failed).
    pub(crate) fn try_ready(&self) -> bool {
        self.map_state.load(Ordering::Acquire) != 0
    }

    /// `Some(Ok(raw ticks))` once mapped, `Some(Err)` if mapping failed, `None` while pending.
    pub(crate) fn try_read(&self) -> Option<Result<Vec<u64>, ()>> {
        match self.map_state.load(Ordering::Acquire) {
            0 => None,
            1 => {
                let bytes = self.used as u64 * wgpu::QUERY_SIZE as u64;
                let values = match self.readback.slice(..bytes).get_mapped_range() {
                    Ok(view) => Ok(bytemuck::cast_slice::<u8, u64>(&view).to_vec()),
                    Err(_) => Err(()),
                };
                self.readback.unmap();
                Some(values)
            }
            _ => Some(Err(())),
        }
    }

    fn reset(&mut self) {
        self.used = 0;
        self.sealed = false;
        self.map_state.store(0, Ordering::Release);
    }
}

/// Counts of the pool's GPU objects, to show that nothing grows without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Query sets created since the profiler began (each with its two buffers).
    pub query_sets_created: usize,
    /// Query sets waiting in the pool for reuse.
    pub query_sets_free: usize,
    /// Frames submitted whose results have not been read yet.
    pub frames_in_flight: usize,
}

/// Free query chunks, reused frame after frame.
#[derive(Default)]
pub(crate) struct QueryPool {
    free: Vec<QueryChunk>,
    created: usize,
}

impl QueryPool {
    pub(crate) fn get(&mut self, device: &wgpu::Device) -> QueryChunk {
        self.free.pop().unwrap_or_else(|| {
            self.created += 1;
            QueryChunk::new(device)
        })
    }

    pub(crate) fn put(&mut self, mut chunk: QueryChunk) {
        chunk.reset();
        self.free.push(chunk);
    }

    pub(crate) fn created(&self) -> usize {
        self.created
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }
}
