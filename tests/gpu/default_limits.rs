//! Every op and every kernel on a device created with WebGPU's default
//! limits (`wgpu::Limits::default()`: 8 storage buffers per stage, 16 KiB of
//! workgroup memory, 256 invocations per workgroup, 128 MiB bindings), with
//! the adapter's optional features: what a browser gives without asking.
//! Dims 36 (vec4-aligned rows: the vec4 views) and 37 (the scalar views),
//! 9 rows, every optional tensor present, against the f64 reference.

use std::sync::LazyLock;

use wgpu_norm::{
    BackwardKernel, Context, ContextOptions, DType, GpuTensor, Kernel, LayerNorm, LayerNormGradIo,
    LayerNormIo, NormOp, ResidualAdd, RmsNorm, RmsNormIo, reference, synthetic,
};

use crate::common::{ctx, gl_serial, kernels};

/// A device of the shared context's adapter with WebGPU's default limits.
fn webgpu_ctx() -> &'static Context {
    static CTX: LazyLock<Context> = LazyLock::new(|| {
        let options = ContextOptions {
            backends: Some(ctx().adapter_info().backend.into()),
            adapter_name: Some(ctx().adapter_info().name.clone()),
            limits: Some(wgpu::Limits::default()),
            ..Default::default()
        };
        pollster::block_on(Context::with_options(options)).unwrap()
    });
    &CTX
}

fn upload(ctx: &Context, data: &[f32], shape: &[usize]) -> GpuTensor {
    GpuTensor::from_slice(ctx, data, shape).unwrap()
}

/// Asserts `got` within `tol` of `want`, naming the case.
fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let err = reference::max_abs_error(got, want);
    assert!(err <= tol, "{what}: max error {err:.3e} > {tol:.3e}");
}

#[test]
fn every_forward_kernel_with_every_output_fits_default_limits() {
    let _serial = gl_serial();
    let ctx = webgpu_ctx();
    assert_eq!(ctx.limits().max_storage_buffers_per_shader_stage, 8);
    let rows = 9;
    for cols in [36usize, 37] {
        let shape = [rows, cols];
        let x = synthetic::normal(1, rows * cols, 3.0, 2.0);
        let r = synthetic::normal(2, rows * cols, 0.0, 1.0);
        let gamma = synthetic::normal(3, cols, 1.0, 0.2);
        let beta = synthetic::normal(4, cols, 0.0, 0.2);
        let bias = synthetic::normal(5, cols, 0.0, 0.5);
        let (xg, rg) = (upload(ctx, &x, &shape), upload(ctx, &r, &shape));
        let (gg, bg, biasg) = (
            upload(ctx, &gamma, &[cols]),
            upload(ctx, &beta, &[cols]),
            upload(ctx, &bias, &[cols]),
        );
        for kernel in kernels(ctx) {
            let case = format!("{kernel:?} cols {cols}");
            let op = LayerNorm::new().with_kernel(kernel);
            if op.plan(ctx, &shape).is_err() {
                continue;
            }
            // Plain, with mean and rstd.
            let y = GpuTensor::zeros(ctx, &shape).unwrap();
            let mean = GpuTensor::zeros(ctx, &[rows, 1]).unwrap();
            let rstd = GpuTensor::zeros(ctx, &[rows, 1]).unwrap();
            let io = LayerNormIo {
                gamma: Some(&gg),
                beta: Some(&bg),
                mean: Some(&mean),
                rstd: Some(&rstd),
                ..LayerNormIo::new(&xg, &y)
            };
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            op.encode(ctx, &mut encoder, &io).unwrap();
            ctx.submit_and_wait(encoder).unwrap();
            let want = reference::layer_norm(&x, cols, Some(&gamma), Some(&beta), 1e-5);
            close(&format!("{case} y"), &y.read(ctx).unwrap(), &want.y, 2e-5);
            close(
                &format!("{case} mean"),
                &mean.read(ctx).unwrap(),
                &want.mean,
                1e-5,
            );
            close(
                &format!("{case} rstd"),
                &rstd.read(ctx).unwrap(),
                &want.rstd,
                1e-5,
            );

            // Fused residual with every optional tensor: 7 storage buffers
            // of the caller's plus the packed statistics.
            let (y, sum) = (
                GpuTensor::zeros(ctx, &shape).unwrap(),
                GpuTensor::zeros(ctx, &shape).unwrap(),
            );
            let io = LayerNormIo {
                gamma: Some(&gg),
                beta: Some(&bg),
                mean: Some(&mean),
                rstd: Some(&rstd),
                residual: Some(ResidualAdd {
                    residual: &rg,
                    bias: Some(&biasg),
                    sum: Some(&sum),
                }),
                ..LayerNormIo::new(&xg, &y)
            };
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            op.encode(ctx, &mut encoder, &io).unwrap();
            ctx.submit_and_wait(encoder).unwrap();
            let s = reference::residual_sum(&x, &r, Some(&bias), cols);
            let want = reference::layer_norm_f64(&s, cols, Some(&gamma), Some(&beta), 1e-5);
            close(
                &format!("{case} residual sum"),
                &sum.read(ctx).unwrap(),
                &s,
                1e-5,
            );
            close(
                &format!("{case} residual y"),
                &y.read(ctx).unwrap(),
                &want.y,
                2e-5,
            );
            close(
                &format!("{case} residual mean"),
                &mean.read(ctx).unwrap(),
                &want.mean,
                1e-5,
            );
            close(
                &format!("{case} residual rstd"),
                &rstd.read(ctx).unwrap(),
                &want.rstd,
                1e-5,
            );

            // RMSNorm fused, with its rstd only.
            let rms = RmsNorm::new().with_kernel(kernel);
            let rstd_only = GpuTensor::zeros(ctx, &[rows, 1]).unwrap();
            let io = RmsNormIo {
                gamma: Some(&gg),
                rstd: Some(&rstd_only),
                residual: Some(ResidualAdd {
                    residual: &rg,
                    bias: None,
                    sum: None,
                }),
                ..RmsNormIo::new(&xg, &y)
            };
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            rms.encode(ctx, &mut encoder, &io).unwrap();
            ctx.submit_and_wait(encoder).unwrap();
            let s = reference::residual_sum(&x, &r, None, cols);
            let want = reference::rms_norm_f64(&s, cols, Some(&gamma), 1e-5);
            close(
                &format!("{case} rms residual y"),
                &y.read(ctx).unwrap(),
                &want.y,
                2e-5,
            );
            close(
                &format!("{case} rms residual rstd"),
                &rstd_only.read(ctx).unwrap(),
                &want.rstd,
                1e-5,
            );
        }
    }
}

#[test]
fn every_backward_kernel_fits_default_limits() {
    let _serial = gl_serial();
    let ctx = webgpu_ctx();
    let rows = 9;
    for cols in [36usize, 37] {
        let shape = [rows, cols];
        let x = synthetic::normal(6, rows * cols, 1.0, 2.0);
        let dy = synthetic::normal(7, rows * cols, 0.0, 1.0);
        let gamma = synthetic::normal(8, cols, 1.0, 0.2);
        let (xg, dyg, gg) = (
            upload(ctx, &x, &shape),
            upload(ctx, &dy, &shape),
            upload(ctx, &gamma, &[cols]),
        );
        for kernel in BackwardKernel::ALL {
            if kernel.needs_subgroups() && ctx.capabilities().subgroups.is_none() {
                continue;
            }
            for rms in [false, true] {
                let case = format!("{kernel:?} rms {rms} cols {cols}");
                let want = reference::norm_backward(&x, &dy, cols, Some(&gamma), 1e-5, rms);
                let (tol_dx, tol_dg, _) =
                    reference::norm_backward_tolerance(&dy, &want, Some(&gamma));
                let (dx, dgamma, dbeta) = (
                    GpuTensor::zeros(ctx, &shape).unwrap(),
                    GpuTensor::zeros(ctx, &[cols]).unwrap(),
                    GpuTensor::zeros(ctx, &[cols]).unwrap(),
                );
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                if rms {
                    let io = wgpu_norm::RmsNormGradIo {
                        x: &xg,
                        dy: &dyg,
                        gamma: Some(&gg),
                        rstd: None,
                        dx: &dx,
                        dgamma: Some(&dgamma),
                    };
                    RmsNorm::new()
                        .with_backward_kernel(kernel)
                        .encode_backward(ctx, &mut encoder, &io)
                        .unwrap();
                } else {
                    let io = LayerNormGradIo {
                        x: &xg,
                        dy: &dyg,
                        gamma: Some(&gg),
                        mean: None,
                        rstd: None,
                        dx: &dx,
                        dgamma: Some(&dgamma),
                        dbeta: Some(&dbeta),
                    };
                    LayerNorm::new()
                        .with_backward_kernel(kernel)
                        .encode_backward(ctx, &mut encoder, &io)
                        .unwrap();
                }
                ctx.submit_and_wait(encoder).unwrap();
                close(
                    &format!("{case} dx"),
                    &dx.read(ctx).unwrap(),
                    &want.dx,
                    tol_dx,
                );
                close(
                    &format!("{case} dgamma"),
                    &dgamma.read(ctx).unwrap(),
                    &want.dgamma,
                    tol_dg,
                );
                if !rms {
                    close(
                        &format!("{case} dbeta"),
                        &dbeta.read(ctx).unwrap(),
                        &want.dbeta,
                        tol_dg,
                    );
                }
            }
        }
    }
}

#[test]
fn f16_storage_fits_default_limits_where_the_adapter_has_it() {
    let _serial = gl_serial();
    let ctx = webgpu_ctx();
    let (rows, cols) = (5, 40);
    let x = synthetic::normal(9, rows * cols, 0.0, 1.0);
    let r = synthetic::normal(10, rows * cols, 0.0, 1.0);
    let xg = GpuTensor::from_slice_as(ctx, &x, &[rows, cols], DType::F16);
    if !ctx.capabilities().shader_f16 {
        // The refusal is the expectation without SHADER_F16 (llvmpipe GL).
        assert!(matches!(
            xg,
            Err(wgpu_norm::Error::MissingFeature {
                feature: "SHADER_F16",
                ..
            })
        ));
        return;
    }
    let xg = xg.unwrap();
    let rg = GpuTensor::from_slice_as(ctx, &r, &[rows, cols], DType::F16).unwrap();
    let out = LayerNorm::new()
        .forward_residual(ctx, &xg, &rg, None, None, None)
        .unwrap();
    let round =
        |v: &[f32]| -> Vec<f32> { v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect() };
    let s = reference::residual_sum(&round(&x), &round(&r), None, cols);
    let want = reference::layer_norm_f64(&s, cols, None, None, 1e-5);
    // f16 output: half an f16 ulp of values up to ~4, plus the sum's rounding.
    close("f16 residual y", &out.y.read(ctx).unwrap(), &want.y, 4e-3);
    let _ = Kernel::ALL;
}
