//! The encoding steps every op shares: uniform slots, binding windows, bind
//! groups, and the compute pass and dispatches (timed by ticks when given).

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::kernels::Entry;
use crate::ops::forward::Norm;
use crate::ops::layer_norm::shape_string;
use crate::plan::{self, BindingWindow, RowChunk};
use crate::tensor::{DType, GpuTensor};
use crate::ticks::Ticks;

/// One uniform buffer holding a params block per dispatch (chunk), each at
/// an offset the device accepts for a uniform binding.
pub(crate) struct Uniforms {
    buffer: wgpu::Buffer,
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
        Uniforms { buffer, slot, size }
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

/// A bind group of `entry`'s bindings, taking binding `b` from `resources[b]`.
pub(crate) fn bind_group(
    ctx: &Context,
    entry: Entry,
    residual: bool,
    layout: &wgpu::BindGroupLayout,
    resources: &[wgpu::BindingResource<'_>],
) -> wgpu::BindGroup {
    let entries: Vec<_> = entry
        .bindings(residual)
        .iter()
        .map(|&b| wgpu::BindGroupEntry {
            binding: b,
            resource: resources[b as usize].clone(),
        })
        .collect();
    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry.name()),
        layout,
        entries: &entries,
    })
}

/// A pass label: `layer_norm_forward 8x512x768 (row-per-lane, 64 lanes)`,
/// `rms_norm_backward 4x33x65 f16 (…)`.
pub(crate) fn pass_label(
    norm: Norm,
    kind: &str,
    shape: &[usize],
    dtype: DType,
    plan: &str,
) -> String {
    let op = match norm {
        Norm::Layer => "layer_norm",
        Norm::Rms => "rms_norm",
    };
    let dtype = match dtype {
        DType::F32 => String::new(),
        d => format!(" {d}"),
    };
    format!("{op}_{kind} {}{dtype} ({plan})", shape_string(shape))
}

/// Begins the op's compute pass, with timestamp writes when `ticks` is given.
pub(crate) fn begin_pass<'e>(
    encoder: &'e mut wgpu::CommandEncoder,
    ticks: Option<&mut Ticks>,
    label: &str,
    args: &[(&str, String)],
) -> wgpu::ComputePass<'e> {
    match ticks {
        Some(t) => t.begin_compute_pass(encoder, label, args),
        None => encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        }),
    }
}

/// Dispatches `workgroups` workgroups (as a 2-D grid) with the pipeline and
/// bind group already set, timed as `name` when `ticks` times dispatches.
pub(crate) fn dispatch(
    pass: &mut wgpu::ComputePass<'_>,
    mut ticks: Option<&mut Ticks>,
    name: &str,
    workgroups: u64,
    rows: String,
) {
    let (gx, gy) = plan::grid(workgroups);
    let token = ticks
        .as_deref_mut()
        .and_then(|t| t.begin_dispatch(pass, name, &[("rows", rows)]));
    pass.dispatch_workgroups(gx, gy, 1);
    if let Some(t) = ticks {
        t.end_dispatch(pass, token);
    }
}
