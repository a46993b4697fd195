//! Every kind of bad input gets a typed error naming the values; wgpu's own
//! errors are captured and returned, never panics.

use wgpu_norm::NormOp;
use wgpu_norm::{Context, ContextOptions, Error, GpuTensor, LayerNorm, LayerNormIo};

use crate::common::ctx;

fn storage_buffer(ctx: &Context, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage,
        mapped_at_creation: false,
    })
}

#[test]
fn empty_shapes_and_length_mismatches() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let e = GpuTensor::zeros(ctx, &[4, 0, 3]).unwrap_err();
    assert!(
        matches!(&e, Error::EmptyShape { shape } if shape == &[4, 0, 3]),
        "{e}"
    );
    assert!(e.to_string().contains("[4, 0, 3]"));
    let e = GpuTensor::from_slice(ctx, &[], &[]).unwrap_err();
    assert!(matches!(e, Error::EmptyShape { .. }), "{e}");
    let e = GpuTensor::from_slice(ctx, &[1.0; 5], &[2, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                expected: 6,
                actual: 5,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains('6') && e.to_string().contains('5'));
    let t = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let e = t.write(ctx, &[0.0; 7]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                expected: 6,
                actual: 7,
                ..
            }
        ),
        "{e}"
    );
    let e = t.reshape(&[4, 2]).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { .. }), "{e}");
}

#[test]
fn bad_shapes_axis_and_epsilon() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let x = GpuTensor::zeros(ctx, &[2, 3, 4]).unwrap();
    let op = LayerNorm::new();
    for axis in [3isize, -4, 100] {
        let e = op.with_axis(axis).forward(ctx, &x, None, None).unwrap_err();
        assert!(
            matches!(e, Error::AxisOutOfRange { axis: a, rank: 3 } if a == axis),
            "{e}"
        );
    }
    for eps in [f32::NAN, f32::INFINITY, -1e-5] {
        let e = op
            .with_epsilon(eps)
            .forward(ctx, &x, None, None)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidEpsilon(_)), "{e}");
        assert!(e.to_string().contains(&eps.to_string()), "{e}");
    }
    let wrong_gamma = GpuTensor::zeros(ctx, &[3]).unwrap();
    let e = op.forward(ctx, &x, Some(&wrong_gamma), None).unwrap_err();
    assert!(
        matches!(&e, Error::ShapeMismatch { what: "gamma", expected, actual } if expected == &[4] && actual == &[3]),
        "{e}"
    );
    let e = op.forward(ctx, &x, None, Some(&wrong_gamma)).unwrap_err();
    assert!(
        matches!(e, Error::ShapeMismatch { what: "beta", .. }),
        "{e}"
    );
    // y of the wrong shape, and stats of the wrong length.
    let y = GpuTensor::zeros(ctx, &[2, 12]).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let io = LayerNormIo {
        x: &x,
        y: &y,
        gamma: None,
        beta: None,
        mean: None,
        rstd: None,
        residual: None,
    };
    let e = op.encode(ctx, &mut enc, &io).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { what: "y", .. }), "{e}");
    let y = GpuTensor::zeros(ctx, &[2, 3, 4]).unwrap();
    let stats = GpuTensor::zeros(ctx, &[5]).unwrap();
    let io = LayerNormIo {
        x: &x,
        y: &y,
        gamma: None,
        beta: None,
        mean: Some(&stats),
        rstd: None,
        residual: None,
    };
    let e = op.encode(ctx, &mut enc, &io).unwrap_err();
    assert!(
        matches!(&e, Error::ShapeMismatch { what: "mean", expected, .. } if expected == &[2, 3, 1]),
        "{e}"
    );
}

#[test]
fn caller_buffers_that_cannot_hold_the_tensor() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let buf = storage_buffer(ctx, 64, wgpu::BufferUsages::STORAGE);
    let e = GpuTensor::from_buffer(buf.clone(), 8, &[4, 4]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BufferTooSmall {
                offset: 8,
                end: 72,
                buffer_size: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = GpuTensor::from_buffer(buf.clone(), 2, &[2]).unwrap_err();
    assert!(
        matches!(e, Error::MisalignedOffset { offset: 2, .. }),
        "{e}"
    );
    let uniform = storage_buffer(ctx, 64, wgpu::BufferUsages::UNIFORM);
    let e = GpuTensor::from_buffer(uniform, 0, &[4]).unwrap_err();
    assert!(matches!(e, Error::MissingUsage { .. }), "{e}");
    // STORAGE without COPY_SRC: usable by kernels, but not readable back.
    let t = GpuTensor::from_buffer(buf, 0, &[4]).unwrap();
    let e = t.read(ctx).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MissingUsage {
                needed: wgpu::BufferUsages::COPY_SRC,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn outputs_may_not_share_a_buffer_with_inputs() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let buf = storage_buffer(ctx, 1024, wgpu_norm::TENSOR_USAGES);
    let x = GpuTensor::from_buffer(buf.clone(), 0, &[4, 8]).unwrap();
    let y = GpuTensor::from_buffer(buf.clone(), 512, &[4, 8]).unwrap();
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let io = LayerNormIo {
        x: &x,
        y: &y,
        gamma: None,
        beta: None,
        mean: None,
        rstd: None,
        residual: None,
    };
    let e = LayerNorm::new().encode(ctx, &mut enc, &io).unwrap_err();
    assert!(matches!(e, Error::AliasedBuffers { a: "y", b: "x" }), "{e}");
    // Two outputs overlapping in one buffer would race.
    let x = GpuTensor::zeros(ctx, &[4, 8]).unwrap();
    let mean = GpuTensor::from_buffer(buf.clone(), 0, &[4]).unwrap();
    let rstd = GpuTensor::from_buffer(buf.clone(), 8, &[4]).unwrap();
    let y = GpuTensor::from_buffer(buf, 256, &[4, 8]).unwrap();
    let io = LayerNormIo {
        x: &x,
        y: &y,
        gamma: None,
        beta: None,
        mean: Some(&mean),
        rstd: Some(&rstd),
        residual: None,
    };
    let e = LayerNorm::new().encode(ctx, &mut enc, &io).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AliasedBuffers {
                a: "mean",
                b: "rstd"
            }
        ),
        "{e}"
    );
}

#[test]
fn outputs_closer_than_the_binding_alignment_are_refused_and_farther_ones_run() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
    let x_data: Vec<f32> = (0..32).map(|i| (i % 7) as f32).collect();
    let x = GpuTensor::from_slice(ctx, &x_data, &[4, 8]).unwrap();
    let y = GpuTensor::zeros(ctx, &[4, 8]).unwrap();
    // mean and rstd side by side: they do not overlap, but a binding starts
    // at the aligned offset before its tensor, so rstd's binding would
    // cover mean's bytes (browsers' WebGPU refuses that).
    let buf = storage_buffer(ctx, 4 * align, wgpu_norm::TENSOR_USAGES);
    let mean = GpuTensor::from_buffer(buf.clone(), 0, &[4]).unwrap();
    let rstd = GpuTensor::from_buffer(buf.clone(), 16, &[4]).unwrap();
    let io = LayerNormIo {
        mean: Some(&mean),
        rstd: Some(&rstd),
        ..LayerNormIo::new(&x, &y)
    };
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let e = LayerNorm::new().encode(ctx, &mut enc, &io).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AliasedBuffers {
                a: "mean",
                b: "rstd"
            }
        ),
        "{e}"
    );
    // One alignment apart: accepted, and right.
    let rstd = GpuTensor::from_buffer(buf, align, &[4]).unwrap();
    let io = LayerNormIo {
        mean: Some(&mean),
        rstd: Some(&rstd),
        ..LayerNormIo::new(&x, &y)
    };
    LayerNorm::new().encode(ctx, &mut enc, &io).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let want = wgpu_norm::reference::layer_norm(&x_data, 8, None, None, 1e-5);
    let err = wgpu_norm::reference::max_abs_error(&mean.read(ctx).unwrap(), &want.mean);
    assert!(err < 1e-6, "mean error {err}");
    let err = wgpu_norm::reference::max_abs_error(&rstd.read(ctx).unwrap(), &want.rstd);
    assert!(err < 1e-4, "rstd error {err}");
}

#[test]
fn every_copy_kernel_moves_every_value_also_over_one_binding() {
    let _serial = crate::common::gl_serial();
    // A device whose storage bindings hold 64 KiB: 70,003 values (273 KiB)
    // take five dispatches, the last with a tail of 3 values.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = 64 << 10;
    let small = pollster::block_on(wgpu_norm::Context::with_options(
        wgpu_norm::ContextOptions {
            limits: Some(limits),
            ..Default::default()
        },
    ))
    .unwrap();
    for ctx in [ctx(), &small] {
        for n in [1usize, 3, 4, 1027, 4099, 70_003] {
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
            let src = GpuTensor::from_slice(ctx, &data, &[n]).unwrap();
            for kernel in wgpu_norm::CopyKernel::ALL {
                let dst = GpuTensor::zeros(ctx, &[n]).unwrap();
                let mut enc = ctx.device().create_command_encoder(&Default::default());
                wgpu_norm::encode_copy_with(ctx, &mut enc, kernel, &src, &dst, None).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                assert_eq!(dst.read(ctx).unwrap(), data, "{} n = {n}", kernel.name());
            }
            let dst = GpuTensor::zeros(ctx, &[n]).unwrap();
            let mut enc = ctx.device().create_command_encoder(&Default::default());
            wgpu_norm::encode_driver_copy(ctx, &mut enc, &src, &dst).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            assert_eq!(dst.read(ctx).unwrap(), data, "driver copy n = {n}");
        }
    }
    // The bench's floor is the fastest of them, tuned once per size class.
    let k = wgpu_norm::fastest_copy(&small, 280_000).unwrap();
    assert_eq!(small.tuned().copy(280_000), Some(k));
    assert_eq!(
        wgpu_norm::fastest_copy(&small, 300_000).unwrap(),
        k,
        "same class: no retune"
    );
}

#[test]
fn tensors_beyond_device_limits() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let max = ctx.limits().max_buffer_size;
    let rows = (max / 4 / 1024 + 1) as usize;
    let e = GpuTensor::zeros(ctx, &[rows, 1024]).unwrap_err();
    assert!(
        matches!(e, Error::TensorTooLarge { max: m, .. } if m == max),
        "{e}"
    );

    // A row longer than one storage binding cannot be chunked by rows.
    let mut limits = ctx.limits().clone();
    limits.max_storage_buffer_binding_size = 64 << 10;
    let small = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let x = GpuTensor::zeros(&small, &[2, 20_000]).unwrap();
    let e = LayerNorm::new()
        .forward(&small, &x, None, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::RowTooLarge {
                dim: 20_000,
                row_bytes: 80_000,
                max_binding: 65_536
            }
        ),
        "{e}"
    );
}

#[test]
fn wgpu_validation_errors_are_returned_not_panicked() {
    let _serial = crate::common::gl_serial();
    // A destroyed buffer passes our checks (size, usage) but wgpu rejects it:
    // the error scope must catch that and hand it back as an Err.
    let ctx = ctx();
    let buf = storage_buffer(ctx, 256, wgpu_norm::TENSOR_USAGES);
    let x = GpuTensor::from_buffer(buf.clone(), 0, &[4, 8]).unwrap();
    buf.destroy();
    let e = LayerNorm::new().forward(ctx, &x, None, None).unwrap_err();
    assert!(matches!(e, Error::Validation { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("destroyed"), "{e}");
    // The context still works afterwards.
    let ok = GpuTensor::from_slice(ctx, &[1.0, 3.0], &[1, 2]).unwrap();
    let y = LayerNorm::new()
        .with_epsilon(0.0)
        .forward(ctx, &ok, None, None)
        .unwrap()
        .read(ctx)
        .unwrap();
    assert_eq!(y, vec![-1.0, 1.0]);
}

#[test]
fn a_lost_device_is_an_error() {
    let _serial = crate::common::gl_serial();
    let lost = pollster::block_on(Context::with_options(ContextOptions::default())).unwrap();
    let x = GpuTensor::from_slice(&lost, &[1.0, 2.0], &[1, 2]).unwrap();
    lost.device().destroy();
    let _ = lost.device().poll(wgpu::PollType::Poll);
    let e = LayerNorm::new().forward(&lost, &x, None, None).unwrap_err();
    assert!(
        matches!(e, Error::DeviceLost(_) | Error::Validation { .. }),
        "{e}"
    );
    assert!(
        lost.check_lost().is_err(),
        "the context remembers the loss: {e}"
    );
}
