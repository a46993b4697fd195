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

use wgpu_norm::NormOp;
use wgpu_norm::{
    BackwardKernel, Context, ContextOptions, DType, Error, GpuTensor, Kernel, LayerNorm,
    LayerNormGradIo, RecordKind, RmsNorm, RmsNormGradIo, Ticks, TicksSettings, reference,
    synthetic,
};

use crate::common::{backend, ctx, gl_serial, kernels};

/// Which normalisation a check runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
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
fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter()
        .filter(|a| a.is_finite())
        .fold(0.0f64, |m, &a| m.max((a as f64).abs()))
}

/// Inputs of one forward check.
struct Inputs<'a> {
    shape: &'a [usize],
    x: &'a [f32],
    gamma: Option<&'a [f32]>,
    beta: Option<&'a [f32]>,
    residual: Option<(&'a [f32], Option<&'a [f32]>)>,
}

/// Runs a forward (with the residual when given, writing the sum) and
/// asserts y (and the sum) against the f64 reference. Returns y's error.
fn check_forward(class: &str, ctx: &Context, op: Op, inp: &Inputs<'_>, dtype: DType) -> f64 {
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

#[test]
fn rms_norm_every_kernel_and_dim() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        for (i, &dim) in [1usize, 2, 3, 5, 7, 33, 64, 257, 1025, 2048, 4097]
            .iter()
            .enumerate()
        {
            if dim > kernel.max_dim() {
                continue;
            }
            for rows in [1usize, 3, 13] {
                let seed = 1000 + (i * 10 + rows) as u64;
                let x = synthetic::normal(seed, rows * dim, 0.5, 2.0);
                let g = synthetic::normal(seed + 1, dim, 1.0, 0.5);
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: (rows == 1).then_some(&g[..]),
                    beta: None,
                    residual: None,
                };
                check_forward("rms", ctx, Op::rms().with_kernel(kernel), &inp, DType::F32);
            }
        }
    }
}

#[test]
fn fused_residual_every_kernel_both_norms() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        for op in [Op::layer(), Op::rms()] {
            // 64 and 2048 are whole vec4s: the vec4 paths (VEC4_ROWS), with
            // 11 rows for a block of 3 at the end.
            for (i, &dim) in [1usize, 3, 33, 257, 1025, 4097, 64, 2048]
                .iter()
                .enumerate()
            {
                if dim > kernel.max_dim() {
                    continue;
                }
                let rows = if dim % 4 == 0 { 11 } else { 3 };
                let seed = 2000 + i as u64;
                let x = synthetic::normal(seed, rows * dim, 0.0, 1.0);
                let r = synthetic::normal(seed + 1, rows * dim, 1.0, 2.0);
                let bias = synthetic::normal(seed + 2, dim, 0.0, 0.5);
                let g = synthetic::normal(seed + 3, dim, 1.0, 0.5);
                let b = synthetic::normal(seed + 4, dim, 0.0, 0.5);
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: Some(&g),
                    beta: (!op.is_rms()).then_some(&b[..]),
                    residual: Some((&r, (i % 2 == 0).then_some(&bias[..]))),
                };
                check_forward("residual", ctx, op.with_kernel(kernel), &inp, DType::F32);
            }
        }
    }
}

#[test]
fn forward_family_shape_classes() {
    // More than 65,535 rows, a huge row, a large offset, constant rows, and
    // NaN/Inf confined to their rows: RMSNorm, and the fused residual of both.
    let _serial = gl_serial();
    let ctx = ctx();
    for op in [Op::layer(), Op::rms()] {
        for (class, rows, dim) in [
            ("70000 rows", 70_000usize, 3usize),
            ("huge row", 1, (1 << 21) + 3),
        ] {
            let x = synthetic::normal(31, rows * dim, 0.5, 1.0);
            let r = synthetic::normal(32, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(33, dim, 1.0, 0.5);
            let residual = Some((&r[..], Some(&g[..])));
            for residual in [None, residual] {
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: Some(&g),
                    beta: None,
                    residual,
                };
                check_forward(class, ctx, op, &inp, DType::F32);
            }
        }
        // 10000 + N(0, 1): accurate like centred data (RMSNorm's mean square
        // is dominated by the offset; its rows are nearly constant).
        let (rows, dim) = (4usize, 1027usize);
        let x: Vec<f32> = synthetic::normal(41, rows * dim, 0.0, 1.0)
            .iter()
            .map(|v| v + 10_000.0)
            .collect();
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: None,
            beta: None,
            residual: None,
        };
        check_forward("offset 10000", ctx, op, &inp, DType::F32);
        // Constant rows, and NaN / Inf rows among finite ones.
        let mut x = synthetic::normal(42, rows * dim, 0.0, 1.0);
        x[..dim].fill(3.5);
        x[dim + 5] = f32::NAN;
        x[2 * dim + 9] = f32::INFINITY;
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: None,
            beta: None,
            residual: None,
        };
        check_forward("constant/NaN/Inf rows", ctx, op, &inp, DType::F32);
    }
}

/// Runs a backward (`saved`: pass the forward's statistics, else let the
/// op recompute them) and asserts dx, dgamma and dbeta against the f64
/// reference. Returns dx's error.
#[allow(clippy::too_many_arguments)]
fn check_backward(
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
fn backward_kernels(ctx: &Context) -> Vec<BackwardKernel> {
    BackwardKernel::ALL
        .into_iter()
        .filter(|k| !k.needs_subgroups() || ctx.capabilities().subgroups.is_some())
        .collect()
}

#[test]
fn backward_every_kernel_and_dim_matches_analytic_gradients() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in backward_kernels(ctx) {
        for op in [Op::layer(), Op::rms()] {
            let op = op.with_backward_kernel(kernel);
            for (i, &dim) in [1usize, 2, 3, 5, 7, 33, 255, 256, 1025, 4097, 16_384]
                .iter()
                .enumerate()
            {
                let rows = 3;
                let seed = 3000 + i as u64;
                let x = synthetic::normal(seed, rows * dim, 0.5, 2.0);
                let dy = synthetic::normal(seed + 1, rows * dim, 0.0, 1.0);
                let g = synthetic::normal(seed + 2, dim, 1.0, 0.5);
                let gamma = (i % 2 == 0).then_some(&g[..]);
                check_backward(
                    "dims",
                    ctx,
                    op,
                    &[rows, dim],
                    &x,
                    &dy,
                    gamma,
                    i % 3 == 0,
                    DType::F32,
                );
            }
            // Rows of several pieces for the split-row kernels (8,192 values a piece).
            if matches!(kernel, BackwardKernel::SplitRow(_)) {
                for dim in [20_000usize, 65_537] {
                    let x = synthetic::normal(dim as u64, 2 * dim, 0.5, 2.0);
                    let dy = synthetic::normal(dim as u64 + 1, 2 * dim, 0.3, 1.0);
                    let shape = [2, dim];
                    check_backward("pieces", ctx, op, &shape, &x, &dy, None, false, DType::F32);
                }
            }
        }
    }
}

#[test]
fn backward_shape_classes() {
    let _serial = gl_serial();
    let ctx = ctx();
    for op in [Op::layer(), Op::rms()] {
        // More than 65,535 rows (dgamma over 70,000 rows in two stages).
        for dim in [3usize, 33] {
            let rows = 70_000;
            let x = synthetic::normal(51, rows * dim, 0.0, 1.0);
            let dy = synthetic::normal(52, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(53, dim, 1.0, 0.5);
            check_backward(
                "70000 rows",
                ctx,
                op,
                &[rows, dim],
                &x,
                &dy,
                Some(&g),
                true,
                DType::F32,
            );
        }
        // A huge row.
        let dim = (1 << 21) + 3;
        let x = synthetic::normal(54, dim, 0.0, 1.0);
        let dy = synthetic::normal(55, dim, 0.0, 1.0);
        check_backward(
            "huge row",
            ctx,
            op,
            &[1, dim],
            &x,
            &dy,
            None,
            false,
            DType::F32,
        );
        // 10000 + N(0, 1), with saved and with recomputed statistics.
        let (rows, dim) = (4usize, 1027usize);
        let x: Vec<f32> = synthetic::normal(56, rows * dim, 0.0, 1.0)
            .iter()
            .map(|v| v + 10_000.0)
            .collect();
        // dy with a mean of 1: a saved mean that is off shifts dx by about
        // that error times mean(g), which the re-centring removes.
        let dy = synthetic::normal(57, rows * dim, 1.0, 1.0);
        for saved in [true, false] {
            check_backward(
                "offset 10000",
                ctx,
                op,
                &[rows, dim],
                &x,
                &dy,
                None,
                saved,
                DType::F32,
            );
        }
        // Constant rows.
        let mut x = synthetic::normal(58, rows * dim, 0.0, 1.0);
        x[..2 * dim].fill(-2.25);
        check_backward(
            "constant rows",
            ctx,
            op,
            &[rows, dim],
            &x,
            &dy,
            None,
            false,
            DType::F32,
        );
    }
}

#[test]
fn backward_nan_stays_in_its_row() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (4usize, 37usize);
    let mut x = synthetic::normal(61, rows * dim, 0.0, 1.0);
    x[dim + 3] = f32::NAN;
    x[2 * dim + 7] = f32::INFINITY;
    let dy = synthetic::normal(62, rows * dim, 0.0, 1.0);
    let xg = GpuTensor::from_slice(ctx, &x, &[rows, dim]).unwrap();
    let dyg = GpuTensor::from_slice(ctx, &dy, &[rows, dim]).unwrap();
    let want = reference::norm_backward(&x, &dy, dim, None, 1e-5, false);
    let dx = LayerNorm::new()
        .backward(ctx, &xg, &dyg, None, None)
        .unwrap()
        .dx
        .read(ctx)
        .unwrap();
    for r in [0, 3] {
        let row = r * dim..(r + 1) * dim;
        let err = reference::max_abs_error(&dx[row.clone()], &want.dx[row]);
        assert!(err < 1e-4, "finite row {r}: dx error {err:.3e}");
    }
    for r in [1, 2] {
        assert!(
            dx[r * dim..(r + 1) * dim].iter().all(|v| !v.is_finite()),
            "row {r} holds a NaN/Inf: its dx must not be finite"
        );
    }
}

/// The loss L = Σ y·w of a forward of `x` with `gamma`, for every row of a
/// batch of perturbed copies, in f64 from the GPU's f32 y.
fn losses(ctx: &Context, op: Op, rows_of_x: &[Vec<f32>], gamma: &[f32], w: &[f32]) -> Vec<f64> {
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

#[test]
fn backward_matches_finite_differences() {
    // Central differences of L = Σ y·w with h = 1e-2 on N(0, 1) data: the
    // f32 forward's rounding gives the quotient an error of about
    // dim · 1e-7 / 2h ≈ 1e-5 and the truncation O(h²) ≈ 1e-4, so the GPU's
    // gradients must agree within 2e-3 · (1 + |gradient|).
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (2usize, 7usize);
    let h = 1e-2f32;
    for op in [Op::layer(), Op::rms()] {
        let x = synthetic::normal(71, rows * dim, 0.3, 1.0);
        let g = synthetic::normal(72, dim, 1.0, 0.3);
        let w = synthetic::normal(73, rows * dim, 0.0, 1.0);
        let (dx, dgamma) = {
            let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice(ctx, v, s).unwrap();
            let (xg, wg, gg) = (up(&x, &[rows, dim]), up(&w, &[rows, dim]), up(&g, &[dim]));
            match op {
                Op::Layer(ln) => {
                    let gr = ln.backward(ctx, &xg, &wg, Some(&gg), None).unwrap();
                    (gr.dx.read(ctx).unwrap(), gr.dgamma.read(ctx).unwrap())
                }
                Op::Rms(rn) => {
                    let gr = rn.backward(ctx, &xg, &wg, Some(&gg), None).unwrap();
                    (gr.dx.read(ctx).unwrap(), gr.dgamma.read(ctx).unwrap())
                }
            }
        };
        // All ±h copies of x in one forward.
        let copies: Vec<Vec<f32>> = (0..rows * dim)
            .flat_map(|i| {
                [h, -h].map(|d| {
                    let mut c = x.clone();
                    c[i] += d;
                    c
                })
            })
            .collect();
        let l = losses(ctx, op, &copies, &g, &w);
        for i in 0..rows * dim {
            let fd = (l[2 * i] - l[2 * i + 1]) / (2.0 * h as f64);
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!(
                (dx[i] as f64 - fd).abs() <= tol,
                "{op:?} dx[{i}] = {} but the finite difference is {fd}",
                dx[i]
            );
        }
        for c in 0..dim {
            let mut lp = [0.0; 2];
            for (k, d) in [h, -h].into_iter().enumerate() {
                let mut gp = g.clone();
                gp[c] += d;
                lp[k] = losses(ctx, op, std::slice::from_ref(&x), &gp, &w)[0];
            }
            let fd = (lp[0] - lp[1]) / (2.0 * h as f64);
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!(
                (dgamma[c] as f64 - fd).abs() <= tol,
                "{op:?} dgamma[{c}] = {} but the finite difference is {fd}",
                dgamma[c]
            );
        }
        eprintln!(
            "[finite-differences] {} {op:?}: dx and dgamma within 2e-3·(1+|g|)",
            backend(ctx)
        );
    }
}

#[test]
fn backward_is_bit_identical_from_run_to_run() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (3000usize, 515usize);
    let x = synthetic::normal(81, rows * dim, 0.0, 1.0);
    let dy = synthetic::normal(82, rows * dim, 0.0, 1.0);
    let g = synthetic::normal(83, dim, 1.0, 0.3);
    let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice(ctx, v, s).unwrap();
    let (xg, dyg, gg) = (up(&x, &[rows, dim]), up(&dy, &[rows, dim]), up(&g, &[dim]));
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let run = |op: Op| -> Vec<Vec<u32>> {
        match op {
            Op::Layer(ln) => {
                let gr = ln.backward(ctx, &xg, &dyg, Some(&gg), None).unwrap();
                [gr.dx, gr.dgamma, gr.dbeta]
                    .iter()
                    .map(|t| bits(t.read(ctx).unwrap()))
                    .collect()
            }
            Op::Rms(rn) => {
                let gr = rn.backward(ctx, &xg, &dyg, Some(&gg), None).unwrap();
                [gr.dx, gr.dgamma]
                    .iter()
                    .map(|t| bits(t.read(ctx).unwrap()))
                    .collect()
            }
        }
    };
    for op in [Op::layer(), Op::rms()] {
        let first = run(op);
        for attempt in 1..4 {
            assert!(
                first == run(op),
                "{op:?}: run {attempt} differs from run 0 in some bit"
            );
        }
        eprintln!(
            "[determinism] {} {op:?}: 4 runs bit-identical",
            backend(ctx)
        );
    }
}

#[test]
fn backward_over_the_binding_limit_is_chunked() {
    // A device limited to 256 KiB bindings: 300 x 515 f32 (618 KB) needs
    // three chunks for x, dy and dx, and the dgamma parts span them.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = 256 << 10;
    let small = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let (rows, dim) = (300usize, 515usize);
    let x = synthetic::normal(91, rows * dim, 1.0, 1.0);
    let dy = synthetic::normal(92, rows * dim, 0.0, 1.0);
    let g = synthetic::normal(93, dim, 1.0, 0.3);
    let r = synthetic::normal(94, rows * dim, 0.0, 1.0);
    for op in [Op::layer(), Op::rms()] {
        check_backward(
            "over the binding limit",
            &small,
            op,
            &[rows, dim],
            &x,
            &dy,
            Some(&g),
            false,
            DType::F32,
        );
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: Some(&g),
            beta: None,
            residual: None,
        };
        check_forward("over the binding limit", &small, op, &inp, DType::F32);
        let inp = Inputs {
            residual: Some((&r, Some(&g))),
            ..inp
        };
        check_forward("over the binding limit", &small, op, &inp, DType::F32);
    }
}

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

#[test]
fn training_family_errors_name_the_values() {
    let _serial = gl_serial();
    let ctx = ctx();
    let x = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let dy = GpuTensor::zeros(ctx, &[2, 4]).unwrap();
    let e = LayerNorm::new()
        .backward(ctx, &x, &dy, None, None)
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { what: "dy", .. }), "{e}");
    // Only one of the saved statistics.
    let dy = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let dx = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let mean = GpuTensor::zeros(ctx, &[2, 1]).unwrap();
    let io = LayerNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        mean: Some(&mean),
        rstd: None,
        dx: &dx,
        dgamma: None,
        dbeta: None,
    };
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let e = LayerNorm::new()
        .encode_backward(ctx, &mut encoder, &io)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IncompleteStats {
                given: "mean",
                missing: "rstd"
            }
        ),
        "{e}"
    );
    // dx in dy's buffer.
    let io = RmsNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        rstd: None,
        dx: &dy,
        dgamma: None,
    };
    let e = RmsNorm::new()
        .encode_backward(ctx, &mut encoder, &io)
        .unwrap_err();
    assert!(
        matches!(e, Error::AliasedBuffers { a: "dx", b: "dy" }),
        "{e}"
    );
    // A residual of another shape.
    let r = GpuTensor::zeros(ctx, &[3, 2]).unwrap();
    let e = RmsNorm::new()
        .forward_residual(ctx, &x, &r, None, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                what: "residual",
                ..
            }
        ),
        "{e}"
    );
    // Mixed element types.
    if ctx.capabilities().shader_f16 {
        let g = GpuTensor::zeros(ctx, &[3]).unwrap();
        let xh = GpuTensor::zeros_as(ctx, &[2, 3], DType::F16).unwrap();
        let e = LayerNorm::new()
            .forward(ctx, &xh, Some(&g), None)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DTypeMismatch {
                    what: "gamma",
                    expected: DType::F16,
                    actual: DType::F32
                }
            ),
            "{e}"
        );
    }
    // A forced dx kernel that cannot take the row.
    let long = GpuTensor::zeros(ctx, &[1, 20_000]).unwrap();
    let e = LayerNorm::new()
        .with_backward_kernel(BackwardKernel::RowPerLane)
        .backward(ctx, &long, &long.clone(), None, None)
        .unwrap_err();
    assert!(matches!(e, Error::KernelUnsuitable { .. }), "{e}");
}

#[test]
fn backward_passes_are_ticked_and_labelled() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (64usize, 96usize);
    let up = |seed| {
        GpuTensor::from_slice(
            ctx,
            &synthetic::normal(seed, rows * dim, 0.0, 1.0),
            &[rows, dim],
        )
        .unwrap()
    };
    let (x, dy) = (up(121), up(122));
    let dx = GpuTensor::zeros(ctx, &[rows, dim]).unwrap();
    let dgamma = GpuTensor::zeros(ctx, &[dim]).unwrap();
    let mut ticks = Ticks::new(ctx, TicksSettings::default());
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let io = LayerNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        mean: None,
        rstd: None,
        dx: &dx,
        dgamma: Some(&dgamma),
        dbeta: None,
    };
    LayerNorm::new()
        .encode_backward_ticked(ctx, &mut encoder, &io, &mut ticks)
        .unwrap();
    let io = RmsNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        rstd: None,
        dx: &dx,
        dgamma: Some(&dgamma),
    };
    RmsNorm::new()
        .encode_backward_ticked(ctx, &mut encoder, &io, &mut ticks)
        .unwrap();
    ticks.submit(encoder).unwrap();
    ticks.flush().unwrap();
    let passes: Vec<_> = ticks
        .records()
        .iter()
        .filter(|r| r.kind == RecordKind::Pass)
        .map(|r| r.label.clone())
        .collect();
    if ctx.capabilities().timestamps {
        let prefixes = [
            "layer_norm_stats 64x96 (",
            "layer_norm_backward 64x96 (",
            "rms_norm_stats 64x96 (",
            "rms_norm_backward 64x96 (",
        ];
        assert_eq!(passes.len(), 4, "{passes:?}");
        for (label, prefix) in passes.iter().zip(prefixes) {
            assert!(
                label.starts_with(prefix),
                "{label} should start with {prefix}"
            );
        }
    }
    // The gradients are right too (the ticked path is the same encoder).
    let want = reference::norm_backward(
        &x.read(ctx).unwrap(),
        &dy.read(ctx).unwrap(),
        dim,
        None,
        1e-5,
        true,
    );
    let err = reference::max_abs_error(&dx.read(ctx).unwrap(), &want.dx);
    assert!(err < 1e-4, "ticked RMSNorm backward: dx error {err:.3e}");
}
