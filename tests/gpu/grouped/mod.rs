//! The grouped normalisations (GroupNorm, InstanceNorm, BatchNorm, LpNorm),
//! forward and backward, against the f64 oracles of `wgpu_norm::reference`,
//! one file per op.
//!
//! Tolerances, on every output: `|got − want| ≤ tol · scale`, where scale is
//! the largest |want| of that output (at least 1), and tol is [`F32_TOL`]
//! for f32 storage and [`F16_TOL`] for f16 (the output's rounding to f16,
//! 2^-11, with a margin); 4 · tol for gradients. dx's scale is at least
//! max(rstd) · max|dy| · max|scale|, the size of the terms that cancel in
//! `rstd · (g − mean(g) − x̂ · mean(g x̂))` (a set of one value, whose dx is
//! exactly 0, has rstd = 1/sqrt(ε) ≈ 316), and at least [`DX_FLOOR`]. Each
//! check prints its error as `[max-error]`.

mod batch_norm;
mod cli;
mod group_norm;
mod hostile;
mod instance_norm;
mod lp_norm;

use wgpu_norm::{Context, DType, GpuTensor, synthetic};

/// f32 storage: about 17 f32 ulps of the output's scale. Sets of up to
/// 65,536 values, merged in f32 (measured errors are printed by each test).
pub const F32_TOL: f64 = 2e-6;
/// f16 storage: outputs are rounded to f16 (2^-11 relative).
pub const F16_TOL: f64 = 2e-3;

/// dx of sets whose std is near 1e38 is near 1e-38 · dy, where f32 (and
/// adapters that flush denormals) has no digits left: below this scale dx
/// is checked to an absolute `tol · DX_FLOOR`.
pub const DX_FLOOR: f64 = 1e-30;

pub fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => F32_TOL,
        DType::F16 => F16_TOL,
    }
}

/// Values `offset + std · N(0, 1)`, rounded to `dtype` (so the oracle sees
/// exactly what the GPU does).
pub fn data(seed: u64, n: usize, offset: f32, std: f32, dtype: DType) -> Vec<f32> {
    let v = synthetic::normal(seed, n, offset, std);
    match dtype {
        DType::F32 => v,
        DType::F16 => v
            .into_iter()
            .map(|x| half::f16::from_f32(x).to_f32())
            .collect(),
    }
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn upload(ctx: &Context, v: &[f32], shape: &[usize], dtype: DType) -> GpuTensor {
    GpuTensor::from_slice_as(ctx, v, shape, dtype).unwrap()
}

pub fn zeros(ctx: &Context, shape: &[usize], dtype: DType) -> GpuTensor {
    GpuTensor::zeros_as(ctx, shape, dtype).unwrap()
}

/// Asserts `got` matches `want` within `tol` of want's scale (NaN where
/// want is NaN), naming `what`; returns the error relative to the scale.
pub fn assert_close<G: Copy + Into<f64>>(what: &str, got: &[G], want: &[f64], tol: f64) -> f64 {
    assert_close_to(what, got, want, tol, 1.0)
}

/// [`assert_close`] with the scale at least `floor`.
pub fn assert_close_to<G: Copy + Into<f64>>(
    what: &str,
    got: &[G],
    want: &[f64],
    tol: f64,
    floor: f64,
) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(floor, |m, w| m.max(w.abs()));
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g: f64 = g.into();
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let e = (g - w).abs() / scale;
        assert!(
            e <= tol,
            "{what}[{i}]: got {g}, want {w} (error {e:.3e} of scale {scale:.3e} > {tol:.1e})"
        );
        if e > worst.0 {
            worst = (e, i);
        }
    }
    eprintln!("[max-error] {what}: {:.3e} (tolerance {tol:.1e})", worst.0);
    worst.0
}

/// The largest |v| of the finite values (1 where there are none).
pub fn max_abs(v: &[f32]) -> f64 {
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |m, &x| m.max(x.abs() as f64))
}
