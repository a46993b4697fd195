//! f64 CPU reference of every op: the oracle for the tests and the CLI.
//!
//! Plain two-pass formulas in f64 (mean first, then Σ(x − mean)²), written
//! for clarity, not speed.

/// Result of [`layer_norm`]: y, and the per-row mean and rstd, all in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormReference {
    /// Normalised values, same layout as the input.
    pub y: Vec<f64>,
    /// Per-row mean.
    pub mean: Vec<f64>,
    /// Per-row 1/sqrt(var + epsilon).
    pub rstd: Vec<f64>,
}

/// Layer normalisation of `x` viewed as rows of `cols` values
/// (PyTorch `F.layer_norm`, ONNX LayerNormalization-17), computed in f64.
///
/// # Panics
/// If `cols` is 0, `x.len()` is not a multiple of `cols`, or gamma / beta do
/// not hold `cols` values: the reference is a test oracle, and these are bugs
/// in the caller.
///
/// ```
/// let r = wgpu_norm::reference::layer_norm(&[1.0, 3.0], 2, None, None, 0.0);
/// assert_eq!((r.y[0], r.y[1], r.mean[0]), (-1.0, 1.0, 2.0));
/// ```
pub fn layer_norm(
    x: &[f32],
    cols: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    epsilon: f64,
) -> LayerNormReference {
    assert!(
        cols > 0 && x.len() % cols == 0,
        "x of {} values is not rows of {cols}",
        x.len()
    );
    for p in [gamma, beta].into_iter().flatten() {
        assert_eq!(p.len(), cols, "gamma/beta must hold cols values");
    }
    let rows = x.len() / cols;
    let mut out = LayerNormReference {
        y: Vec::with_capacity(x.len()),
        mean: Vec::with_capacity(rows),
        rstd: Vec::with_capacity(rows),
    };
    for row in x.chunks_exact(cols) {
        let n = cols as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + epsilon).sqrt();
        out.mean.push(mean);
        out.rstd.push(rstd);
        for (c, &v) in row.iter().enumerate() {
            let g = gamma.map_or(1.0, |g| g[c] as f64);
            let b = beta.map_or(0.0, |b| b[c] as f64);
            out.y.push((v as f64 - mean) * rstd * g + b);
        }
    }
    out
}

/// Largest |got − want| over two equally long slices. A NaN matches a NaN and
/// an infinity the same infinity (error 0); any other disagreement about
/// non-finite values counts as an infinite error.
///
/// ```
/// use wgpu_norm::reference::max_abs_error;
/// assert_eq!(max_abs_error(&[1.0, f32::NAN], &[1.5, f64::NAN]), 0.5);
/// assert_eq!(max_abs_error(&[1.0], &[f64::NAN]), f64::INFINITY);
/// ```
pub fn max_abs_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "compared slices differ in length");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| {
            let g = g as f64;
            if g.is_nan() && w.is_nan() || (g.is_infinite() && g == w) {
                0.0
            } else if g.is_finite() && w.is_finite() {
                (g - w).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// The stated tolerance for a layer-norm output of f32 kernels against this
/// reference: `4e-6 · (max|gamma| · (1 + max|x̂|) + max|beta|)`, where
/// x̂ = (x − mean)·rstd. That is about 34 f32 ulps of the output's own scale:
/// room for f32 rounding in sums over up to 2^21 values and for the GPU's
/// approximate `inverseSqrt` (the software adapters stay under 3e-6 of it
/// on every tested shape), while a cancelling variance or a wrong reduction
/// errs by 1e-3 or more. Non-finite
/// values in `x` are skipped when finding max|x̂| (their rows are NaN).
pub fn layer_norm_tolerance(
    x: &[f32],
    reference: &LayerNormReference,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> f64 {
    let cols = x.len() / reference.mean.len().max(1);
    let xhat_max = x
        .chunks_exact(cols.max(1))
        .zip(reference.mean.iter().zip(&reference.rstd))
        .flat_map(|(row, (&m, &r))| row.iter().map(move |&v| ((v as f64 - m) * r).abs()))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let max_abs = |v: Option<&[f32]>, default: f64| {
        v.map_or(default, |v| {
            v.iter().fold(0.0f64, |m, &a| m.max((a as f64).abs()))
        })
    };
    4e-6 * (max_abs(gamma, 1.0) * (1.0 + xhat_max) + max_abs(beta, 0.0))
}
