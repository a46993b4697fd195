//! The last phase every op shares: a [`Recording`] (pipelines, bind groups
//! and workgroup counts, built once and cached) recorded into the caller's
//! encoder as one compute pass, timed by ticks when given. Also the pieces
//! the build phase uses: uniform slots and binding windows.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::Result;
use crate::kernels::cache::ModuleKey;
use crate::plan::Entry;
use crate::plan::{self, BindingWindow, RowChunk};
use crate::shape::DType;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// One dispatch of a recording.
pub(crate) struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) group: wgpu::BindGroup,
    pub(crate) workgroups: u64,
    /// `<label> chunk 0 split_stats`: the dispatch's name where ticks time dispatches.
    pub(crate) name: String,
    /// `0..4096`: the rows it covers.
    pub(crate) rows: String,
    /// What it runs and binds, as plain data (for `export`).
    pub(crate) desc: DispatchDesc,
}

/// A dispatch as plain data: the module, entry point and override constants
/// of its pipeline, and the buffer windows it binds.
#[derive(Clone)]
pub(crate) struct DispatchDesc {
    pub(crate) module: ModuleKey,
    /// The entry point's name.
    pub(crate) entry: &'static str,
    pub(crate) constants: Vec<(&'static str, f64)>,
    pub(crate) bindings: Vec<BindingDesc>,
}

/// One binding of a dispatch.
#[derive(Clone)]
pub(crate) struct BindingDesc {
    pub(crate) binding: u32,
    pub(crate) ty: wgpu::BufferBindingType,
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// A bind group entry as plain data, bound as `ty` (`None` for non-buffers).
pub(crate) fn binding_desc(
    e: &wgpu::BindGroupEntry<'_>,
    ty: wgpu::BufferBindingType,
) -> Option<BindingDesc> {
    match &e.resource {
        wgpu::BindingResource::Buffer(b) => Some(BindingDesc {
            binding: e.binding,
            ty,
            buffer: b.buffer.clone(),
            offset: b.offset,
            size: b.size.map_or(b.buffer.size() - b.offset, |s| s.get()),
        }),
        _ => None,
    }
}

/// The bind group of `entry` over `entries`, and its bindings as plain data.
pub(crate) fn bind_group(
    ctx: &Context,
    entry: Entry,
    layout: &wgpu::BindGroupLayout,
    entries: &[wgpu::BindGroupEntry<'_>],
) -> (wgpu::BindGroup, Vec<BindingDesc>) {
    let descs = entries
        .iter()
        .filter_map(|e| binding_desc(e, crate::kernels::bindings::binding_type(entry, e.binding)))
        .collect();
    let group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry.name()),
        layout,
        entries,
    });
    (group, descs)
}

/// Everything one call of an op records: a compute pass of dispatches, with
/// the buffers they need kept alive.
pub(crate) struct Recording {
    /// The pass label: `layer_norm_forward 8x512x768 (row-per-lane, 32 lanes)`.
    pub(crate) label: String,
    /// Shape, dtype, kernel, chunks… for the trace.
    pub(crate) args: Vec<(&'static str, String)>,
    pub(crate) dispatches: Vec<Dispatch>,
    /// The contents of its uniform buffers (for `export`).
    pub(crate) uniforms: Vec<(wgpu::Buffer, Vec<u8>)>,
}

impl Recording {
    /// Records the pass into `encoder`.
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder, mut ticks: Option<&mut Ticks>) {
        let mut pass = match ticks.as_deref_mut() {
            Some(t) => t.begin_compute_pass(encoder, &self.label, &self.args),
            None => encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&self.label),
                timestamp_writes: None,
            }),
        };
        for d in &self.dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.group, &[]);
            let (gx, gy) = plan::grid(d.workgroups);
            let token = ticks
                .as_deref_mut()
                .and_then(|t| t.begin_dispatch(&mut pass, &d.name, &[("rows", d.rows.clone())]));
            pass.dispatch_workgroups(gx, gy, 1);
            if let Some(t) = ticks.as_deref_mut() {
                t.end_dispatch(&mut pass, token);
            }
        }
    }
}

/// A tensor as a bind-cache key sees it: its buffer and offset.
pub(crate) type TensorId = Option<(wgpu::Buffer, u64)>;

/// What a call's tensors are to the bind cache, from one list: each one's
/// buffer and offset (for the key) and the liveness tokens of those present.
pub(crate) fn cache_identity<const N: usize>(
    tensors: [Option<&GpuTensor>; N],
) -> ([TensorId; N], Vec<&std::sync::Arc<()>>) {
    let key = tensors.map(|t| t.map(|t| (t.buffer().clone(), t.offset())));
    let tokens = tensors.into_iter().flatten().map(|t| t.life()).collect();
    (key, tokens)
}

/// One uniform buffer holding a params block per dispatch (chunk), each at
/// an offset the device accepts for a uniform binding.
pub(crate) struct Uniforms {
    pub(crate) buffer: wgpu::Buffer,
    /// What `buffer` holds.
    pub(crate) bytes: Vec<u8>,
    slot: u64,
    size: u64,
}

impl Uniforms {
    /// Uploads `params`, one slot each.
    pub(crate) fn new<P: bytemuck::Pod>(ctx: &Context, label: &str, params: &[P]) -> Self {
        let size = std::mem::size_of::<P>() as u64;
        let slot = size.next_multiple_of(ctx.limits().min_uniform_buffer_offset_alignment as u64);
        let mut bytes = vec![0u8; (slot * params.len() as u64) as usize];
        for (i, p) in params.iter().enumerate() {
            let at = i * slot as usize;
            bytes[at..at + size as usize].copy_from_slice(bytemuck::bytes_of(p));
        }
        let buffer = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        Uniforms {
            buffer,
            bytes,
            slot,
            size,
        }
    }

    /// The binding of block `i`.
    pub(crate) fn binding(&self, i: usize) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: i as u64 * self.slot,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// A storage scratch buffer of `vec4s` 16-byte elements (at least one).
pub(crate) fn scratch(ctx: &Context, label: &str, vec4s: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: vec4s.max(1) * 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// The window of `t`'s rows of `chunk`, `per_row` values a row.
pub(crate) fn row_window(
    t: &GpuTensor,
    chunk: &RowChunk,
    per_row: u64,
    align: u64,
) -> BindingWindow {
    plan::binding_window_of(
        t.offset() + chunk.first_row * per_row * t.dtype().size_bytes(),
        chunk.rows * per_row,
        t.dtype(),
        align,
    )
}

/// The window of a per-column tensor (`cols` values), bound whole.
pub(crate) fn column_window(t: &GpuTensor, cols: usize, align: u64) -> BindingWindow {
    plan::binding_window_of(t.offset(), cols as u64, t.dtype(), align)
}

/// A storage binding of `w` in `buffer`.
pub(crate) fn bind(buffer: &wgpu::Buffer, w: BindingWindow) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: w.offset,
        size: std::num::NonZeroU64::new(w.size),
    })
}

/// The vec4 view of a window of `dtype` values: whole vec4s only (16 bytes
/// of f32, 8 of f16), or `None` where the window holds no whole vec4.
pub(crate) fn bind_vec4(
    buffer: &wgpu::Buffer,
    w: BindingWindow,
    dtype: DType,
) -> Option<wgpu::BindingResource<'_>> {
    let vec4 = 4 * dtype.size_bytes();
    (w.size >= vec4).then(|| {
        bind(
            buffer,
            BindingWindow {
                size: w.size / vec4 * vec4,
                ..w
            },
        )
    })
}

/// A pass label: `layer_norm_forward 8x512x768 (row-per-lane, 64 lanes)`,
/// `rms_norm_backward 4x33x65 f16 (…)`.
pub(crate) fn pass_label(
    op: &str,
    kind: &str,
    shape: &[usize],
    dtype: DType,
    plan: &str,
) -> String {
    let dtype = match dtype {
        DType::F32 => String::new(),
        d => format!(" {d}"),
    };
    format!(
        "{op}_{kind} {}{dtype} ({plan})",
        crate::shape::shape_string(shape)
    )
}

/// Encodes with `encode`, submits and waits, with every wgpu error captured.
pub(crate) fn run(
    ctx: &Context,
    what: &'static str,
    encode: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<()> {
    let mut encoder = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
    encode(&mut encoder)?;
    ctx.submit_and_wait(encoder)
}

/// `t`'s window `w`, or `dummy` where the tensor is absent.
pub(crate) fn bind_or<'a>(
    t: Option<(&'a GpuTensor, BindingWindow)>,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    match t {
        Some((t, w)) => bind(t.buffer(), w),
        None => dummy.as_entire_binding(),
    }
}

/// The vec4 view of `t`'s window `w`, or `dummy` where the tensor is absent
/// or its window holds no whole vec4.
pub(crate) fn bind_vec4_or<'a>(
    t: Option<(&'a GpuTensor, BindingWindow)>,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    t.and_then(|(t, w)| bind_vec4(t.buffer(), w, t.dtype()))
        .unwrap_or_else(|| dummy.as_entire_binding())
}

/// A per-column tensor with its window.
pub(crate) fn columns(
    t: Option<&GpuTensor>,
    cols: usize,
    align: u64,
) -> Option<(&GpuTensor, BindingWindow)> {
    t.map(|t| (t, column_window(t, cols, align)))
}
