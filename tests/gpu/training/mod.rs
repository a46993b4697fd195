//! The training family against the f64 reference: RMSNorm, the fused
//! residual add, both backwards (against analytic gradients and finite
//! differences, and bit-identical from run to run), and f16 storage.
//!
//! Tolerances (each check prints its measured error as `[max-error]`):
//! - f32 forwards: `4e-6 · (max|gamma| · (1 + max|x̂|) + max|beta|)`, as the
//!   layer-norm forward (`reference::layer_norm_tolerance`);
//! - the fused residual forward: the same, plus one f32 ulp of max|s|·rstd·max|gamma|
//!   (s = x + residual + bias is rounded to f32 before it is normalised);
//! - the sum output of the fused residual: 2 ulps of |x| + |residual| + |bias|;
//! - f32 gradients: `reference::norm_backward_tolerance`;
//! - f16 storage: the f32 tolerances with 1e-3 in place of 4e-6 / 1e-5
//!   (f16 rounds to 2^-11 ≈ 4.9e-4 relative: about two half-ulps of the
//!   output's scale), against the reference computed from the f16-rounded inputs.

use wgpu_norm::{BackwardKernel, Context, DType, GpuTensor, Kernel, LayerNorm, RmsNorm, reference};

use crate::common::backend;

/// Which normalisation a check runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Op {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Op {
    fn layer() -> Self {
        Op::Layer(LayerNorm::new())
    }
    fn rms() -> Self {
        Op::Rms(RmsNorm::new())
    }
    fn with_kernel(self, k: Kernel) -> Self {
        match self {
            Op::Layer(op) => Op::Layer(op.with_kernel(k)),
            Op::Rms(op) => Op::Rms(op.with_kernel(k)),
        }
    }
    fn with_backward_kernel(self, k: BackwardKernel) -> Self {
        match self {
            Op::Layer(op) => Op::Layer(op.with_backward_kernel(k)),
            Op::Rms(op) => Op::Rms(op.with_backward_kernel(k)),
        }
    }
    fn is_rms(self) -> bool {
        matches!(self, Op::Rms(_))
    }
    fn epsilon(self) -> f64 {
        match self {
            Op::Layer(op) => op.epsilon as f64,
            Op::Rms(op) => op.epsilon as f64,
        }
    }
}

/// f16-rounded copies, as the GPU sees f16 inputs.
pub(super) fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
}

pub(super) fn max_abs(v: &[f32]) -> f64 {
    v.iter()
        .filter(|a| a.is_finite())
        .fold(0.0f64, |m, &a| m.max((a as f64).abs()))
}

/// Inputs of one forward check.
pub(super) struct Inputs<'a> {
    shape: &'a [usize],
    x: &'a [f32],
    gamma: Option<&'a [f32]>,
    beta: Option<&'a [f32]>,
    residual: Option<(&'a [f32], Option<&'a [f32]>)>,
}

/// Runs a forward (with the residual when given, writing the sum) and
/// asserts y (and the sum) against the f64 reference. Returns y's error.
pub(super) fn check_forward(
    class: &str,
    ctx: &Context,
    op: Op,
    inp: &Inputs<'_>,
    dtype: DType,
) -> f64 {
    let shape = inp.shape;
    let cols = *shape.last().unwrap();
    let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice_as(ctx, v, s, dtype).unwrap();
    let x = up(inp.x, shape);
    let gamma = inp.gamma.map(|g| up(g, &[cols]));
    let beta = inp.beta.map(|b| up(b, &[cols]));
    let (y, sum) = match (op, inp.residual) {
        (Op::Layer(ln), None) => (ln.forward(ctx, &x, gamma.as_ref(), beta.as_ref()), None),
        (Op::Rms(rn), None) => (rn.forward(ctx, &x, gamma.as_ref()), None),
        (op, Some((r, bias))) => {
            let r = up(r, shape);
            let bias = bias.map(|b| up(b, &[cols]));
            let out = match op {
                Op::Layer(ln) => {
                    ln.forward_residual(ctx, &x, &r, bias.as_ref(), gamma.as_ref(), beta.as_ref())
                }
                Op::Rms(rn) => rn.forward_residual(ctx, &x, &r, bias.as_ref(), gamma.as_ref()),
            }
            .unwrap_or_else(|e| panic!("{class}: {e}"));
            (Ok(out.y), Some(out.sum))
        }
    };
    let y = y.unwrap_or_else(|e| panic!("{class}: {e}"));
    assert_eq!(y.dtype(), dtype);
    let got = y.read(ctx).unwrap();

    // The reference sees what the GPU sees: f16-rounded inputs for f16.
    let rounded = |v: &[f32]| match dtype {
        DType::F32 => v.to_vec(),
        DType::F16 => round_f16(v),
    };
    let (xr, gr, br) = (
        rounded(inp.x),
        inp.gamma.map(rounded),
        inp.beta.map(rounded),
    );
    let s: Vec<f64> = match inp.residual {
        Some((r, bias)) => {
            reference::residual_sum(&xr, &rounded(r), bias.map(rounded).as_deref(), cols)
        }
        None => xr.iter().map(|&v| v as f64).collect(),
    };
    let (mut want, means, rstds) = if op.is_rms() {
        let r = reference::rms_norm_f64(&s, cols, gr.as_deref(), op.epsilon());
        let means = vec![0.0; r.rstd.len()];
        (r.y, means, r.rstd)
    } else {
        let r = reference::layer_norm_f64(&s, cols, gr.as_deref(), br.as_deref(), op.epsilon());
        (r.y, r.mean, r.rstd)
    };
    // A row holding NaN or ±Inf comes out all NaN (the library's rule for
    // every op; RMSNorm's formula would give 0 beside an Inf).
    for (row, out) in s.chunks_exact(cols).zip(want.chunks_exact_mut(cols)) {
        if row.iter().any(|v| !v.is_finite()) {
            out.fill(f64::NAN);
        }
    }
    let xhat_max = s
        .chunks_exact(cols)
        .zip(means.iter().zip(&rstds))
        .flat_map(|(row, (&m, &r))| row.iter().map(move |&v| ((v - m) * r).abs()))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let scale =
        gr.as_deref().map_or(1.0, max_abs) * (1.0 + xhat_max) + br.as_deref().map_or(0.0, max_abs);
    let factor = match dtype {
        DType::F32 => 4e-6,
        DType::F16 => 1e-3,
    };
    // The fused kernels round s = x + residual (+ bias) to f32 before
    // normalising: an input error of half an ulp of |s|, which the norm
    // scales by rstd·gamma (large on nearly constant rows).
    let rounding = match inp.residual {
        Some(_) => {
            let worst = s
                .chunks_exact(cols)
                .zip(&rstds)
                .map(|(row, &r)| r * row.iter().fold(0.0f64, |m, v| m.max(v.abs())))
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            f32::EPSILON as f64 * worst * gr.as_deref().map_or(1.0, max_abs)
        }
        None => 0.0,
    };
    let tol = factor * scale + rounding;
    let err = reference::max_abs_error(&got, &want);
    eprintln!(
        "[max-error] {} {class} {dtype} {shape:?} {op:?}: y {err:.3e} (tolerance {tol:.3e})",
        backend(ctx)
    );
    assert!(
        err <= tol,
        "{class} {dtype} {shape:?} {op:?}: max |y - ref| {err:.3e} > {tol:.3e}"
    );
    if let Some(sum) = sum {
        let got = sum.read(ctx).unwrap();
        let inputs_abs: Vec<f64> = match inp.residual {
            Some((r, bias)) => reference::residual_sum(
                &xr.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                &rounded(r).iter().map(|v| v.abs()).collect::<Vec<_>>(),
                bias.map(|b| rounded(b).iter().map(|v| v.abs()).collect::<Vec<_>>())
                    .as_deref(),
                cols,
            ),
            None => unreachable!(),
        };
        let ulp = match dtype {
            DType::F32 => f32::EPSILON as f64,
            DType::F16 => 2f64.powi(-10),
        };
        for (i, ((&g, &w), &a)) in got.iter().zip(&s).zip(&inputs_abs).enumerate() {
            let tol = 2.0 * ulp * a;
            assert!(
                (g as f64 - w).abs() <= tol || (g.is_nan() && w.is_nan()),
                "{class}: sum[{i}] = {g}, want {w} (tolerance {tol:.3e})"
            );
        }
    }
    err
}

/// Runs a backward (`saved`: pass the forward's statistics, else let the
/// op recompute them) and asserts dx, dgamma and dbeta against the f64
/// reference. Returns dx's error.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_backward(
    class: &str,
    ctx: &Context,
    op: Op,
    shape: &[usize],
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved: bool,
    dtype: DType,
) -> f64 {
    check_backward_floored(class, ctx, op, shape, x, dy, gamma, saved, dtype, 0.0)
}

/// [`check_backward`] with `dx_floor` as the least tolerance of dx (f32's
/// smallest normal where dx may be a denormal that GPUs flush).
#[allow(clippy::too_many_arguments)]
pub(super) fn check_backward_floored(
    class: &str,
    ctx: &Context,
    op: Op,
    shape: &[usize],
    x: &[f32],
    dy: &[f32],
    gamma: Option<&[f32]>,
    saved: bool,
    dtype: DType,
    dx_floor: f64,
) -> f64 {
    let cols = *shape.last().unwrap();
    let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice_as(ctx, v, s, dtype).unwrap();
    let (xg, dyg) = (up(x, shape), up(dy, shape));
    let gg = gamma.map(|g| up(g, &[cols]));
    let (dx, dgamma, dbeta) = match op {
        Op::Layer(ln) => {
            let stats = saved.then(|| ln.forward_with_stats(ctx, &xg, gg.as_ref(), None).unwrap());
            let grads = ln
                .backward(
                    ctx,
                    &xg,
                    &dyg,
                    gg.as_ref(),
                    stats.as_ref().map(|s| (&s.mean, &s.rstd)),
                )
                .unwrap_or_else(|e| panic!("{class}: {e}"));
            (grads.dx, grads.dgamma, Some(grads.dbeta))
        }
        Op::Rms(rn) => {
            let rstd = saved.then(|| rn.forward_with_rstd(ctx, &xg, gg.as_ref()).unwrap().1);
            let grads = rn
                .backward(ctx, &xg, &dyg, gg.as_ref(), rstd.as_ref())
                .unwrap_or_else(|e| panic!("{class}: {e}"));
            (grads.dx, grads.dgamma, None)
        }
    };
    let rounded = |v: &[f32]| match dtype {
        DType::F32 => v.to_vec(),
        DType::F16 => round_f16(v),
    };
    let (xr, dyr, gr) = (rounded(x), rounded(dy), gamma.map(rounded));
    let want = reference::norm_backward(&xr, &dyr, cols, gr.as_deref(), op.epsilon(), op.is_rms());
    let (mut tol_dx, mut tol_dg, mut tol_db) =
        reference::norm_backward_tolerance(&dyr, &want, gr.as_deref());
    if dtype == DType::F16 {
        (tol_dx, tol_dg, tol_db) = (tol_dx * 250.0, tol_dg * 100.0, tol_db * 100.0);
    }
    let tol_dx = tol_dx.max(dx_floor);
    let err_dx = reference::max_abs_error(&dx.read(ctx).unwrap(), &want.dx);
    let err_dg = reference::max_abs_error(&dgamma.read(ctx).unwrap(), &want.dgamma);
    let err_db = match &dbeta {
        Some(db) => reference::max_abs_error(&db.read(ctx).unwrap(), &want.dbeta),
        None => 0.0,
    };
    eprintln!(
        "[max-error] {} backward {class} {dtype} {shape:?} {op:?} saved={saved}: dx {err_dx:.3e} (tol {tol_dx:.3e}), dgamma {err_dg:.3e} (tol {tol_dg:.3e}), dbeta {err_db:.3e} (tol {tol_db:.3e})",
        backend(ctx)
    );
    assert!(
        err_dx <= tol_dx,
        "{class} {shape:?} {op:?}: dx error {err_dx:.3e} > {tol_dx:.3e}"
    );
    assert!(
        err_dg <= tol_dg,
        "{class} {shape:?} {op:?}: dgamma error {err_dg:.3e} > {tol_dg:.3e}"
    );
    assert!(
        err_db <= tol_db,
        "{class} {shape:?} {op:?}: dbeta error {err_db:.3e} > {tol_db:.3e}"
    );
    err_dx
}

/// Every dx kernel this adapter can run.
pub(super) fn backward_kernels(ctx: &Context) -> Vec<BackwardKernel> {
    BackwardKernel::ALL
        .into_iter()
        .filter(|k| !k.needs_subgroups() || ctx.capabilities().subgroups.is_some())
        .collect()
}

/// The loss L = Σ y·w of a forward of `x` with `gamma`, for every row of a
/// batch of perturbed copies, in f64 from the GPU's f32 y.
pub(super) fn losses(
    ctx: &Context,
    op: Op,
    rows_of_x: &[Vec<f32>],
    gamma: &[f32],
    w: &[f32],
) -> Vec<f64> {
    let dim = gamma.len();
    let flat: Vec<f32> = rows_of_x.concat();
    let n = flat.len() / dim;
    let x = GpuTensor::from_slice(ctx, &flat, &[n, dim]).unwrap();
    let g = GpuTensor::from_slice(ctx, gamma, &[dim]).unwrap();
    let y = match op {
        Op::Layer(ln) => ln.forward(ctx, &x, Some(&g), None),
        Op::Rms(rn) => rn.forward(ctx, &x, Some(&g)),
    }
    .unwrap()
    .read(ctx)
    .unwrap();
    // Each perturbed copy is `w.len() / dim` rows.
    let per = w.len();
    y.chunks_exact(per)
        .map(|c| c.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum())
        .collect()
}

mod backward;
mod errors;
mod f16;
mod forward;
mod gradients;
mod magnitudes;
mod ticks;
