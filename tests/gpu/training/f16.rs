//! f16 storage: every op where the adapter has SHADER_F16, a clear refusal elsewhere.

use wgpu_norm::NormOp;
use wgpu_norm::{
    Context, ContextOptions, DType, Error, GpuTensor, LayerNorm, RmsNorm, reference, synthetic,
};

use crate::common::{backend, ctx, gl_serial, kernels};

use super::*;

#[test]
fn f16_storage_where_offered_and_a_clear_refusal_elsewhere() {
    let _serial = gl_serial();
    let ctx = ctx();
    if !ctx.capabilities().shader_f16 {
        // llvmpipe GL: every f16 entry point names the missing feature.
        let e = GpuTensor::from_slice_as(ctx, &[1.0], &[1], DType::F16).unwrap_err();
        assert!(
            matches!(
                e,
                Error::MissingFeature {
                    feature: "SHADER_F16",
                    ..
                }
            ) && e.to_string().contains("f16"),
            "{e}"
        );
        eprintln!("[f16] {}: refused: {e}", backend(ctx));
        return;
    }
    for kernel in kernels(ctx) {
        for op in [Op::layer(), Op::rms()] {
            // 64 and 2048: whole vec4s, so the vec4 paths (VEC4_ROWS) run
            // on f16 too, with blocks of 1 and 3 rows left at the end.
            let shapes = [
                (3usize, 1usize),
                (3, 7),
                (2, 1027),
                (5, 4099),
                (9, 64),
                (11, 2048),
            ];
            for (rows, dim) in shapes {
                if dim > kernel.max_dim() {
                    continue;
                }
                let x = synthetic::normal(101, rows * dim, 0.5, 2.0);
                let r = synthetic::normal(102, rows * dim, 0.0, 1.0);
                let g = synthetic::normal(103, dim, 1.0, 0.5);
                let b = synthetic::normal(104, dim, 0.0, 0.5);
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: Some(&g),
                    beta: Some(&b),
                    residual: None,
                };
                let inp = if op.is_rms() {
                    Inputs { beta: None, ..inp }
                } else {
                    inp
                };
                check_forward("f16", ctx, op.with_kernel(kernel), &inp, DType::F16);
                let inp = Inputs {
                    residual: Some((&r, Some(&b))),
                    ..inp
                };
                check_forward(
                    "f16 residual",
                    ctx,
                    op.with_kernel(kernel),
                    &inp,
                    DType::F16,
                );
            }
        }
    }
    for op in [Op::layer(), Op::rms()] {
        for (rows, dim) in [(3usize, 7usize), (70_000, 3), (2, 1027), (1, 5000)] {
            let x = synthetic::normal(105, rows * dim, 0.5, 2.0);
            let dy = synthetic::normal(106, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(107, dim, 1.0, 0.5);
            check_backward(
                "f16",
                ctx,
                op,
                &[rows, dim],
                &x,
                &dy,
                Some(&g),
                rows == 2,
                DType::F16,
            );
        }
    }
}

#[test]
fn f16_refused_on_a_device_without_shader_f16() {
    // The refusal is tested on every adapter: a device made without the feature.
    let small = pollster::block_on(Context::with_options(ContextOptions {
        disabled_features: wgpu::Features::SHADER_F16,
        ..Default::default()
    }))
    .unwrap();
    let e = GpuTensor::zeros_as(&small, &[4], DType::F16).unwrap_err();
    assert!(
        e.to_string().contains("f16") && e.to_string().contains("SHADER_F16"),
        "{e}"
    );
    let x = GpuTensor::zeros(&small, &[4]).unwrap();
    assert!(RmsNorm::new().forward(&small, &x, None).is_ok());
}

#[test]
fn f16_caller_buffer_at_a_two_byte_offset() {
    let _serial = gl_serial();
    let ctx = ctx();
    if !ctx.capabilities().shader_f16 {
        return assert!(GpuTensor::zeros_as(ctx, &[1], DType::F16).is_err());
    }
    let (rows, dim) = (3usize, 5usize);
    let usage = wgpu_norm::TENSOR_USAGES;
    let buffer = |size| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let x = GpuTensor::from_buffer_as(buffer(64), 2, &[rows, dim], DType::F16).unwrap();
    let y = GpuTensor::from_buffer_as(buffer(64), 6, &[rows, dim], DType::F16).unwrap();
    let values = synthetic::normal(111, rows * dim, 1.0, 1.0);
    x.write(ctx, &values).unwrap();
    assert_eq!(
        x.read(ctx).unwrap(),
        round_f16(&values),
        "f16 round trip at offset 2"
    );
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    LayerNorm::new()
        .encode(ctx, &mut encoder, &wgpu_norm::LayerNormIo::new(&x, &y))
        .unwrap();
    ctx.queue().submit([encoder.finish()]);
    let got = y.read(ctx).unwrap();
    let want = reference::layer_norm(&round_f16(&values), dim, None, None, 1e-5);
    let err = reference::max_abs_error(&got, &want.y);
    assert!(err < 3e-3, "f16 layer norm at odd offsets: error {err:.3e}");
    // Odd phases must not disturb the neighbouring halves.
    assert_eq!(x.read(ctx).unwrap(), round_f16(&values));
}
