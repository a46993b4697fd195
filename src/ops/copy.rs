//! Copies that the benchmarks measure every op against: the copy kernels of
//! `shaders/copy.wgsl` (the floor: the fastest of them on the adapter) and
//! the driver's own `copy_buffer_to_buffer`, reported beside them.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::{ModuleKey, copy_constants};
use crate::ops::record::{Dispatch, DispatchDesc, Recording, bind, binding_desc};
use crate::ops::validate::check_dtype;
use crate::plan::{self, BindingWindow, COPY_LANES, CopyKernel};
use crate::shape::DType;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// Checks a copy of `src` into `dst`: the same length, f32, other buffers,
/// both from offset 0, and dst's buffer holding whole vec4s past the last
/// value (tensors this crate allocates do). Returns the bytes to copy.
fn check_copy(src: &GpuTensor, dst: &GpuTensor) -> Result<u64> {
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
    for (what, t) in [("copy source", src), ("copy destination", dst)] {
        check_dtype(what, t, DType::F32)?;
        if t.offset() != 0 {
            return Err(Error::MisalignedOffset {
                what,
                offset: t.offset(),
                alignment: t.buffer().size().max(1),
            });
        }
    }
    let vec4_bytes = src.size_bytes().next_multiple_of(16);
    if dst.buffer().size() < vec4_bytes {
        return Err(Error::BufferTooSmall {
            what: "copy destination",
            offset: 0,
            end: vec4_bytes,
            buffer_size: dst.buffer().size(),
        });
    }
    Ok(src.size_bytes())
}

/// Encodes a copy of `src` into `dst` with the default kernel
/// (`grid-stride/1024`); see [`encode_copy_with`].
pub fn encode_copy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    dst: &GpuTensor,
    ticks: Option<&mut Ticks>,
) -> Result<()> {
    let kernel = CopyKernel::GridStride {
        groups: 1024,
        unroll: 1,
    };
    encode_copy_with(ctx, encoder, kernel, src, dst, ticks)
}

/// Encodes a copy of `src` into `dst` (same length, f32, whole buffers from
/// offset 0, of any size the device can allocate) with `kernel`, as one
/// compute pass — a dispatch per storage binding's worth of values, none
/// over 65,535 workgroups per dimension — timed by `ticks` when given and
/// labelled `copy <n> f32 (<kernel>)`.
///
/// ```
/// use wgpu_norm::{Context, CopyKernel, GpuTensor, encode_copy_with};
/// let ctx = Context::new()?;
/// let src = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0, 5.0], &[5])?;
/// let dst = GpuTensor::zeros(&ctx, &[5])?;
/// let mut encoder = ctx.device().create_command_encoder(&Default::default());
/// encode_copy_with(&ctx, &mut encoder, CopyKernel::PerVec4, &src, &dst, None)?;
/// ctx.submit_and_wait(encoder)?;
/// assert_eq!(dst.read(&ctx)?, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
pub fn encode_copy_with(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: CopyKernel,
    src: &GpuTensor,
    dst: &GpuTensor,
    ticks: Option<&mut Ticks>,
) -> Result<()> {
    let bytes = check_copy(src, dst)?;
    let limits = ctx.limits();
    // A chunk is whole vec4s that start at an aligned offset, within one binding.
    let step = (limits.min_storage_buffer_offset_alignment as u64).max(16);
    let chunk_bytes = plan::max_binding(limits) / step * step;
    if chunk_bytes == 0 {
        return Err(Error::LimitTooLow {
            what: "a copy",
            limit: "max_storage_buffer_binding_size",
            needed: step,
            actual: limits.max_storage_buffer_binding_size,
        });
    }
    let pipeline = ctx.pipelines().copy(ctx, kernel)?;
    let n = src.len();
    let label = format!("copy {n} f32 ({})", kernel.name());
    let recording = ctx.scoped("encoding a copy", || {
        let layout = pipeline.get_bind_group_layout(0);
        let mut dispatches = Vec::new();
        let mut uniforms = Vec::new();
        let mut start = 0u64;
        while start < bytes {
            let len = chunk_bytes.min(bytes - start);
            let values = (len / 4) as u32;
            let vec4s = len / 16;
            let workgroups = kernel.workgroups(vec4s.max(1));
            let words = [values, (workgroups * COPY_LANES as u64) as u32, 0, 0];
            let params = ctx
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("copy params"),
                    contents: bytemuck::cast_slice(&words),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let window = |size| BindingWindow {
                offset: start,
                size,
                base: 0,
            };
            let src4 = match vec4s {
                0 => ctx.pipelines().dummy(0).as_entire_binding(),
                v => bind(src.buffer(), window(v * 16)),
            };
            let entries = [
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src4,
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: bind(src.buffer(), window(len.next_multiple_of(4))),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bind(dst.buffer(), window(len.next_multiple_of(16))),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: params.as_entire_binding(),
                },
            ];
            let group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("copy"),
                layout: &layout,
                entries: &entries,
            });
            let read_only = wgpu::BufferBindingType::Storage { read_only: true };
            let types = [
                read_only,
                read_only,
                wgpu::BufferBindingType::Storage { read_only: false },
                wgpu::BufferBindingType::Uniform,
            ];
            let bindings = entries
                .iter()
                .zip(types)
                .filter_map(|(e, ty)| binding_desc(e, ty))
                .collect();
            dispatches.push(Dispatch {
                pipeline: pipeline.clone(),
                group,
                workgroups,
                name: format!("{label} bytes {start}.."),
                rows: format!("{}..{}", start / 4, start / 4 + values as u64),
                desc: DispatchDesc {
                    module: ModuleKey::Copy,
                    entry: "copy",
                    constants: copy_constants(kernel),
                    bindings,
                },
            });
            uniforms.push((params, bytemuck::cast_slice(&words).to_vec()));
            start += len;
        }
        Recording {
            label: label.clone(),
            args: vec![("values", n.to_string())],
            dispatches,
            uniforms,
        }
    })?;
    recording.record(encoder, ticks);
    ctx.tap(&std::sync::Arc::new(recording));
    Ok(())
}

/// Encodes the driver's own copy of `src` into `dst` (`copy_buffer_to_buffer`;
/// the same checks as [`encode_copy_with`]). It runs outside any compute
/// pass, so ticks cannot time it: the bench times it on the CPU's clock.
pub fn encode_driver_copy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    src: &GpuTensor,
    dst: &GpuTensor,
) -> Result<()> {
    let bytes = check_copy(src, dst)?.next_multiple_of(4);
    for (what, t) in [("copy source", src), ("copy destination", dst)] {
        let needed = if what == "copy source" {
            wgpu::BufferUsages::COPY_SRC
        } else {
            wgpu::BufferUsages::COPY_DST
        };
        if !t.buffer().usage().contains(needed) {
            return Err(Error::MissingUsage {
                what,
                needed,
                actual: t.buffer().usage(),
            });
        }
    }
    ctx.scoped("encoding a driver copy", || {
        encoder.copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, bytes)
    })
}
