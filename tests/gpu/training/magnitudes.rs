//! Rows of very large values: every forward and backward kernel, both norms,
//! the fused residual and f16 storage, against the f64 reference. Squares of
//! deviations overflow f32 past about 1.8e19 and the mean of ±3.4e38 does too;
//! the kernels take such rows again at a power-of-two scale (see
//! `shaders/layer_norm_common.wgsl` and `shaders/norm_backward.wgsl`).
//!
//! Tolerances: the forward and backward ones of `super` (y relative to the
//! output's scale); mean within 1e-6 of the row's largest magnitude, rstd
//! within 1e-5 relative or f32's smallest normal (1.2e-38) absolute, since
//! an rstd of a row whose deviation is near 3e38 is a denormal that GPUs may
//! flush to 0; dx likewise gets f32's smallest normal as an absolute floor.

use wgpu_norm::{DType, GpuTensor, Kernel, LayerNorm, RmsNorm, reference, synthetic};

use crate::common::{ctx, gl_serial, kernels, takes};

use super::*;

/// Rows at every magnitude in one tensor (so the eight-row kernels see
/// scaled and unscaled rows side by side): N(0, 1) times 1, 1e18, 1e20,
/// 1e30, 1e38 and 1e38 on an offset of 2e38 (clamped to f32's largest
/// finite value), a constant row of 3e38, one of -3.4e38 and 3.4e38
/// alternating, and one ordinary row.
fn hostile_rows(seed: u64, dim: usize) -> (Vec<f32>, usize) {
    let z = synthetic::normal(seed, 9 * dim, 0.0, 1.0);
    let mut x = Vec::with_capacity(9 * dim);
    let clamp = |v: f64| v.clamp(-(f32::MAX as f64), f32::MAX as f64) as f32;
    for (row, zs) in z.chunks_exact(dim).enumerate() {
        for (c, &v) in zs.iter().enumerate() {
            let v = v as f64;
            x.push(match row {
                0 => clamp(v),
                1 => clamp(v * 1e18),
                2 => clamp(v * 1e20),
                3 => clamp(v * 1e30),
                4 => clamp(v * 1e38),
                5 => clamp(2e38 + v * 1e37),
                6 => 3e38,
                7 => {
                    if c % 2 == 0 {
                        -f32::MAX
                    } else {
                        f32::MAX
                    }
                }
                _ => clamp(v * 3.0 + 1.0),
            });
        }
    }
    (x, 9)
}

const DIMS: [usize; 4] = [1, 7, 33, 1024];

/// mean and rstd against the reference (LayerNorm's outputs).
fn check_stats(
    what: &str,
    x: &[f32],
    dim: usize,
    mean: &[f32],
    rstd: &[f32],
    want: &reference::LayerNormReference,
) {
    for (row, xs) in x.chunks_exact(dim).enumerate() {
        let big = xs.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let (m, r) = (mean[row] as f64, rstd[row] as f64);
        let (wm, wr) = (want.mean[row], want.rstd[row]);
        assert!(
            (m - wm).abs() <= 1e-6 * big,
            "{what}: row {row}: mean {m:e}, want {wm:e}"
        );
        assert!(
            (r - wr).abs() <= 1e-5 * wr.abs() || (r - wr).abs() <= f32::MIN_POSITIVE as f64,
            "{what}: row {row}: rstd {r:e}, want {wr:e}"
        );
    }
}

#[test]
fn every_forward_kernel_takes_values_up_to_f32_max() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let mut dims = DIMS.to_vec();
        if matches!(kernel, Kernel::SplitRow(_)) {
            dims.push(20_000); // several pieces a row
        }
        for (i, &dim) in dims.iter().enumerate() {
            if !takes(ctx, LayerNorm::new().with_kernel(kernel), dim) {
                continue;
            }
            let (x, rows) = hostile_rows(700 + i as u64, dim);
            let g = synthetic::normal(800 + i as u64, dim, 1.0, 0.5);
            let b = synthetic::normal(900 + i as u64, dim, 0.0, 0.5);
            let shape = [rows, dim];
            for op in [Op::layer(), Op::rms()] {
                let op = op.with_kernel(kernel);
                let inp = Inputs {
                    shape: &shape,
                    x: &x,
                    gamma: Some(&g),
                    beta: (!op.is_rms()).then_some(&b[..]),
                    residual: None,
                };
                check_forward("magnitudes", ctx, op, &inp, DType::F32);
            }
            // mean and rstd as written out.
            let ln = LayerNorm::new().with_kernel(kernel);
            let xg = GpuTensor::from_slice(ctx, &x, &shape).unwrap();
            let out = ln.forward_with_stats(ctx, &xg, None, None).unwrap();
            let (mean, rstd) = (out.mean.read(ctx).unwrap(), out.rstd.read(ctx).unwrap());
            let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let want = reference::layer_norm_f64(&xs, dim, None, None, ln.epsilon as f64);
            check_stats(
                &format!("{kernel:?} dim {dim}"),
                &x,
                dim,
                &mean,
                &rstd,
                &want,
            );
            let rn = RmsNorm::new().with_kernel(kernel);
            let (_, rstd) = rn.forward_with_rstd(ctx, &xg, None).unwrap();
            let rstd = rstd.read(ctx).unwrap();
            let want = reference::rms_norm_f64(&xs, dim, None, rn.epsilon as f64);
            for (row, (&r, &w)) in rstd.iter().zip(&want.rstd).enumerate() {
                let (r, w) = (r as f64, w);
                assert!(
                    (r - w).abs() <= 1e-5 * w || (r - w).abs() <= f32::MIN_POSITIVE as f64,
                    "{kernel:?} dim {dim} RMSNorm row {row}: rstd {r:e}, want {w:e}"
                );
            }
        }
    }
}

#[test]
fn fused_residual_takes_large_values() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        for (i, &dim) in [7usize, 256].iter().enumerate() {
            if !takes(ctx, LayerNorm::new().with_kernel(kernel), dim) {
                continue;
            }
            // x + residual stays finite: both at half the magnitudes.
            let (x, rows) = hostile_rows(1700 + i as u64, dim);
            let x: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
            let r: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
            let g = synthetic::normal(1800 + i as u64, dim, 1.0, 0.5);
            let shape = [rows, dim];
            for op in [Op::layer(), Op::rms()] {
                let op = op.with_kernel(kernel);
                let inp = Inputs {
                    shape: &shape,
                    x: &x,
                    gamma: Some(&g),
                    beta: None,
                    residual: Some((&r, None)),
                };
                // SwiftShader has 10 storage buffers a stage; the fused
                // kernels need 11 (refused with a typed error there).
                if ctx.limits().max_storage_buffers_per_shader_stage < 11 {
                    continue;
                }
                check_forward("magnitudes fused", ctx, op, &inp, DType::F32);
            }
        }
    }
}

#[test]
fn every_backward_kernel_takes_values_up_to_f32_max() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in backward_kernels(ctx) {
        let mut dims = DIMS.to_vec();
        if matches!(kernel, wgpu_norm::BackwardKernel::SplitRow(_)) {
            dims.push(20_000);
        }
        for (i, &dim) in dims.iter().enumerate() {
            let (x, rows) = hostile_rows(2700 + i as u64, dim);
            let dy = synthetic::normal(2800 + i as u64, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(2900 + i as u64, dim, 1.0, 0.5);
            for op in [Op::layer(), Op::rms()] {
                let op = op.with_backward_kernel(kernel);
                for saved in [true, false] {
                    // dx of a row whose deviation nears 3e38 is a denormal.
                    let floor = f32::MIN_POSITIVE as f64;
                    let shape = [rows, dim];
                    check_backward_floored(
                        "magnitudes",
                        ctx,
                        op,
                        &shape,
                        &x,
                        &dy,
                        Some(&g),
                        saved,
                        DType::F32,
                        floor,
                    );
                }
            }
        }
    }
}

#[test]
fn f16_storage_at_its_largest_values() {
    let _serial = gl_serial();
    let ctx = ctx();
    if !ctx.capabilities().shader_f16 {
        // The refusal where f16 is missing is tested in f16.rs.
        assert!(GpuTensor::zeros_as(ctx, &[4], DType::F16).is_err());
        return;
    }
    for (i, &dim) in [7usize, 256].iter().enumerate() {
        let z = synthetic::normal(3700 + i as u64, 3 * dim, 0.0, 1.0);
        // ±65504 (f16's largest), then 6e4 · N(0, 1) clamped, then ordinary.
        let x: Vec<f32> = z
            .iter()
            .enumerate()
            .map(|(k, &v)| match k / dim {
                0 => {
                    if k % 2 == 0 {
                        65504.0
                    } else {
                        -65504.0
                    }
                }
                1 => (v * 6e4).clamp(-65504.0, 65504.0),
                _ => v,
            })
            .collect();
        let g = synthetic::normal(3800, dim, 1.0, 0.5);
        let dy = synthetic::normal(3900, 3 * dim, 0.0, 1.0);
        for op in [Op::layer(), Op::rms()] {
            let inp = Inputs {
                shape: &[3, dim],
                x: &x,
                gamma: Some(&g),
                beta: None,
                residual: None,
            };
            check_forward("magnitudes f16", ctx, op, &inp, DType::F16);
            check_backward(
                "magnitudes f16",
                ctx,
                op,
                &[3, dim],
                &x,
                &dy,
                Some(&g),
                true,
                DType::F16,
            );
        }
    }
}
