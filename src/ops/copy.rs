//! A plain copy kernel (`shaders/copy.wgsl`): the memory floor that the
//! normalisation kernels are measured against in the benchmarks.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::record::bind;
use crate::ops::validate::check_dtype;
use crate::plan::BindingWindow;
use crate::shape::DType;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// Lanes per workgroup of the copy.
const COPY_WG: u32 = 256;
/// Workgroups of the grid-stride loop (the stride is COPY_WG × this, in vec4s).
const COPY_GROUPS: u32 = 1 << 20;

/// Encodes a copy of `src` into `dst` (same length, f32, whole buffers from
/// offset 0, at most one storage binding) as one compute pass, timed by
/// `ticks` when given, labelled `copy <n> f32`. dst's buffer must hold whole
/// vec4s past the last value (tensors this crate allocates do).
pub fn encode_copy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    dst: &GpuTensor,
    ticks: Option<&mut Ticks>,
) -> Result<()> {
    if src.len() != dst.len() {
        return Err(Error::ShapeMismatch {
            what: "copy destination",
            expected: src.shape().to_vec(),
            actual: dst.shape().to_vec(),
        });
    }
    if src.buffer() == dst.buffer() {
        return Err(Error::AliasedBuffers {
            a: "copy destination",
            b: "copy source",
        });
    }
    let max = ctx.limits().max_storage_buffer_binding_size;
    let vec4_bytes = src.size_bytes().next_multiple_of(16);
    for (what, t) in [("copy source", src), ("copy destination", dst)] {
        check_dtype(what, t, DType::F32)?;
        if t.offset() != 0 || vec4_bytes > max {
            return Err(Error::TensorTooLarge {
                what,
                bytes: t.offset() + vec4_bytes,
                max,
            });
        }
    }
    if dst.buffer().size() < vec4_bytes {
        return Err(Error::BufferTooSmall {
            what: "copy destination",
            offset: 0,
            end: vec4_bytes,
            buffer_size: dst.buffer().size(),
        });
    }
    let pipeline = ctx.pipelines().copy(ctx)?;
    let n = src.len() as u32;
    let groups = COPY_GROUPS.min((n / 4).div_ceil(COPY_WG)).max(1);
    ctx.scoped("encoding copy", || {
        let params = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("copy params"),
                contents: bytemuck::cast_slice(&[n, groups * COPY_WG, 0, 0]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let window = |size| BindingWindow {
            offset: 0,
            size,
            base: 0,
        };
        let whole4 = src.size_bytes() / 16 * 16;
        let src4 = match whole4 {
            0 => ctx.pipelines().dummy(0).as_entire_binding(),
            size => bind(src.buffer(), window(size)),
        };
        let bind_group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("copy"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src4,
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: bind(src.buffer(), window(src.size_bytes())),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bind(dst.buffer(), window(vec4_bytes)),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        let label = format!("copy {n} f32");
        let mut pass = match ticks {
            Some(t) => t.begin_compute_pass(encoder, &label, &[("values", n.to_string())]),
            None => encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&label),
                timestamp_writes: None,
            }),
        };
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    })
}
