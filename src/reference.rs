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
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    layer_norm_f64(&x, cols, gamma, beta, epsilon)
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

/// Result of [`rms_norm`]: y and the per-row rstd, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct RmsNormReference {
    /// Normalised values, same layout as the input.
    pub y: Vec<f64>,
    /// Per-row 1/sqrt(mean(x²) + epsilon).
    pub rstd: Vec<f64>,
}

/// RMS normalisation (ONNX RMSNormalization-23) of `x` viewed as rows of
/// `cols` values, in f64: `y = x / sqrt(mean(x²) + epsilon) · gamma`.
///
/// # Panics
/// As [`layer_norm`].
///
/// ```
/// let r = wgpu_norm::reference::rms_norm(&[3.0, 4.0], 2, None, 0.0);
/// assert!((r.y[1] - 4.0 / 12.5f64.sqrt()).abs() < 1e-15);
/// ```
pub fn rms_norm(x: &[f32], cols: usize, gamma: Option<&[f32]>, epsilon: f64) -> RmsNormReference {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    rms_norm_f64(&x, cols, gamma, epsilon)
}

/// [`rms_norm`] of f64 values (e.g. a residual sum from [`residual_sum`]).
pub fn rms_norm_f64(
    x: &[f64],
    cols: usize,
    gamma: Option<&[f32]>,
    epsilon: f64,
) -> RmsNormReference {
    check_rows(x.len(), cols, &[gamma]);
    let mut out = RmsNormReference {
        y: Vec::with_capacity(x.len()),
        rstd: Vec::with_capacity(x.len() / cols),
    };
    for row in x.chunks_exact(cols) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
        let rstd = 1.0 / (ms + epsilon).sqrt();
        out.rstd.push(rstd);
        for (c, &v) in row.iter().enumerate() {
            out.y.push(v * rstd * gamma.map_or(1.0, |g| g[c] as f64));
        }
    }
    out
}

/// [`layer_norm`] of f64 values (e.g. a residual sum from [`residual_sum`]).
pub fn layer_norm_f64(
    x: &[f64],
    cols: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    epsilon: f64,
) -> LayerNormReference {
    check_rows(x.len(), cols, &[gamma, beta]);
    let mut out = LayerNormReference {
        y: Vec::with_capacity(x.len()),
        mean: Vec::with_capacity(x.len() / cols),
        rstd: Vec::with_capacity(x.len() / cols),
    };
    for row in x.chunks_exact(cols) {
        let n = cols as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + epsilon).sqrt();
        out.mean.push(mean);
        out.rstd.push(rstd);
        for (c, &v) in row.iter().enumerate() {
            let g = gamma.map_or(1.0, |g| g[c] as f64);
            let b = beta.map_or(0.0, |b| b[c] as f64);
            out.y.push((v - mean) * rstd * g + b);
        }
    }
    out
}

/// `x + residual (+ bias)` in f64, the bias repeating every `cols` values:
/// the input the fused residual kernels normalise.
pub fn residual_sum(x: &[f32], residual: &[f32], bias: Option<&[f32]>, cols: usize) -> Vec<f64> {
    assert_eq!(x.len(), residual.len(), "residual must be shaped like x");
    check_rows(x.len(), cols, &[bias]);
    x.iter()
        .zip(residual)
        .enumerate()
        .map(|(i, (&a, &r))| a as f64 + r as f64 + bias.map_or(0.0, |b| b[i % cols] as f64))
        .collect()
}

fn check_rows(len: usize, cols: usize, params: &[Option<&[f32]>]) {
    assert!(
        cols > 0 && len % cols == 0,
        "x of {len} values is not rows of {cols}"
    );
    for p in params.iter().flatten() {
        assert_eq!(p.len(), cols, "per-column parameters must hold cols values");
    }
}

/// Gradients of a normalisation, in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct NormGrads {
    /// With respect to x.
    pub dx: Vec<f64>,
    /// With respect to gamma.
    pub dgamma: Vec<f64>,
    /// With respect to beta (zeros for RMSNorm, which has none).
    pub dbeta: Vec<f64>,
    /// x̂ of every value: (x − mean)·rstd, or x·rstd for RMSNorm.
    pub xhat: Vec<f64>,
    /// Per-row rstd.
    pub rstd: Vec<f64>,
}

/// The analytic gradients of [`layer_norm`] (`rms = false`) or [`rms_norm`]
/// (`rms = true`) for the upstream gradient `dy`, with x̂ as in the forward
/// and g = dy·gamma:
///
/// - LayerNorm: `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`, dgamma = Σ_rows dy·x̂, dbeta = Σ_rows dy;
/// - RMSNorm: `dx = rstd·(g − x̂·mean(g·x̂))`, dgamma = Σ_rows dy·x̂.
///
/// ```
/// use wgpu_norm::reference::norm_backward;
/// let g = norm_backward(&[1.0, 3.0], &[1.0, 1.0], 2, None, 0.0, false);
/// assert_eq!((g.dx[0], g.dbeta[1]), (0.0, 1.0)); // a shift of y has no x gradient
/// ```
pub fn norm_backward(
    x: &[f32],
    dy: &[f32],
    cols: usize,
    gamma: Option<&[f32]>,
    epsilon: f64,
    rms: bool,
) -> NormGrads {
    assert_eq!(x.len(), dy.len(), "dy must be shaped like x");
    check_rows(x.len(), cols, &[gamma]);
    let n = cols as f64;
    let mut out = NormGrads {
        dx: Vec::with_capacity(x.len()),
        dgamma: vec![0.0; cols],
        dbeta: vec![0.0; cols],
        xhat: Vec::with_capacity(x.len()),
        rstd: Vec::with_capacity(x.len() / cols),
    };
    for (row, drow) in x.chunks_exact(cols).zip(dy.chunks_exact(cols)) {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (mean, rstd) = if rms {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / n;
            (0.0, 1.0 / (ms + epsilon).sqrt())
        } else {
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            (mean, 1.0 / (var + epsilon).sqrt())
        };
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..cols)
            .map(|c| drow[c] as f64 * gamma.map_or(1.0, |g| g[c] as f64))
            .collect();
        let mean_g = if rms { 0.0 } else { g.iter().sum::<f64>() / n };
        let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n;
        for c in 0..cols {
            out.dx.push(rstd * (g[c] - mean_g - xhat[c] * mean_gx));
            out.dgamma[c] += drow[c] as f64 * xhat[c];
            if !rms {
                out.dbeta[c] += drow[c] as f64;
            }
        }
        out.rstd.push(rstd);
        out.xhat.extend(xhat);
    }
    out
}

/// Stated tolerances of f32 kernels' gradients against [`norm_backward`]:
/// `(dx, dgamma, dbeta)`.
///
/// - dx: `4e-6 · max_row rstd · (max|g| + |mean(g)| + max|x̂| · |mean(g·x̂)|)`:
///   the largest of the three terms of dx in any row (rstd·g, rstd·mean(g) and
///   rstd·x̂·mean(g·x̂)), and 4e-6 is ~34 f32 ulps of it (the forward's margin).
/// - dgamma: `1e-5 · max_col Σ_rows |dy|·(1 + |x̂|)`; dbeta: `1e-5 · max_col
///   Σ_rows |dy|`: f32 sums over up to 2^21 terms in two stages (runs of at
///   least 64 rows, then the parts), whose rounding grows with the number of
///   terms added one after another.
///
/// Non-finite values are skipped.
pub fn norm_backward_tolerance(
    dy: &[f32],
    grads: &NormGrads,
    gamma: Option<&[f32]>,
) -> (f64, f64, f64) {
    let cols = grads.dgamma.len();
    let n = cols as f64;
    let mut dx_scale = 0.0f64;
    for ((drow, xrow), &rstd) in dy
        .chunks_exact(cols)
        .zip(grads.xhat.chunks_exact(cols))
        .zip(&grads.rstd)
    {
        let g: Vec<f64> = (0..cols)
            .map(|c| drow[c] as f64 * gamma.map_or(1.0, |g| g[c] as f64))
            .collect();
        let (mut g_max, mut x_max, mut g_sum, mut gx_sum) = (0.0f64, 0.0f64, 0.0, 0.0);
        for (&gv, &xv) in g.iter().zip(xrow) {
            if gv.is_finite() && xv.is_finite() {
                g_max = g_max.max(gv.abs());
                x_max = x_max.max(xv.abs());
                g_sum += gv;
                gx_sum += gv * xv;
            }
        }
        let row = rstd * (g_max + (g_sum / n).abs() + x_max * (gx_sum / n).abs());
        if row.is_finite() {
            dx_scale = dx_scale.max(row);
        }
    }
    let mut col_gamma = vec![0.0f64; cols];
    let mut col_beta = vec![0.0f64; cols];
    for (i, (&d, &xh)) in dy.iter().zip(&grads.xhat).enumerate() {
        let (d, xh) = ((d as f64).abs(), xh.abs());
        if d.is_finite() && xh.is_finite() {
            col_gamma[i % cols] += d * (1.0 + xh);
            col_beta[i % cols] += d;
        }
    }
    let max = |v: &[f64]| v.iter().fold(0.0f64, |m, &a| m.max(a));
    (
        4e-6 * dx_scale,
        1e-5 * max(&col_gamma),
        1e-5 * max(&col_beta),
    )
}

// ---------------------------------------------------------------------------
// The rest of the normalisation family (issue 12), ONNX semantics, in f64:
// the oracles its kernels will be checked against.

/// Result of [`group_norm_f64`]: y (the input's layout), and per (n, group)
/// the mean and 1/sqrt(var + epsilon), `[n][group]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNormReference {
    /// Normalised values (after scale, bias and the optional SiLU).
    pub y: Vec<f64>,
    /// Per (n, group) mean.
    pub mean: Vec<f64>,
    /// Per (n, group) 1/sqrt(biased var + epsilon).
    pub rstd: Vec<f64>,
}

/// Element index of (n, channel, s) in `[N, C, S]`, or `[N, S, C]` where
/// `channels_last`.
fn nchw_index(
    n: usize,
    ch: usize,
    s: usize,
    c: usize,
    spatial: usize,
    channels_last: bool,
) -> usize {
    match channels_last {
        false => (n * c + ch) * spatial + s,
        true => (n * spatial + s) * c + ch,
    }
}

/// GroupNormalization-21 of `x` shaped `[n, c, spatial…]` (`[n, spatial…, c]`
/// where `channels_last`), `spatial` the product of the spatial dims:
/// statistics per (n, group) over the group's c / groups channels × spatial
/// values (biased variance), then `scale[ch]` and `bias[ch]` per channel,
/// then `y · sigmoid(y)` where `silu`.
///
/// # Panics
/// If `groups` does not divide `c`, or the lengths disagree (test-oracle bugs).
///
/// ```
/// use wgpu_norm::reference::group_norm_f64;
/// // One sample, 2 channels of 2 values, one group: the 4 values normalised together.
/// let r = group_norm_f64(&[1.0, 3.0, 5.0, 7.0], 1, 2, 2, 1, None, None, 0.0, false, false);
/// assert_eq!(r.mean, vec![4.0]);
/// assert!((r.y[0] + 3.0 / 5f64.sqrt()).abs() < 1e-12);
/// // Two groups (InstanceNorm here): each channel alone.
/// let r = group_norm_f64(&[1.0, 3.0, 5.0, 7.0], 1, 2, 2, 2, None, Some(&[0.5, -0.5]), 0.0, false, false);
/// assert_eq!(r.y, vec![-0.5, 1.5, -1.5, 0.5]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn group_norm_f64(
    x: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    groups: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
    silu: bool,
    channels_last: bool,
) -> GroupNormReference {
    assert!(
        groups > 0 && c % groups == 0,
        "{groups} groups do not divide {c} channels"
    );
    assert_eq!(x.len(), n * c * spatial, "x is not [n, c, spatial]");
    let per = c / groups;
    let count = (per * spatial) as f64;
    let mut y = vec![0.0; x.len()];
    let (mut means, mut rstds) = (
        Vec::with_capacity(n * groups),
        Vec::with_capacity(n * groups),
    );
    for ni in 0..n {
        for g in 0..groups {
            let at =
                |ch: usize, s: usize| nchw_index(ni, g * per + ch, s, c, spatial, channels_last);
            let values = || (0..per).flat_map(move |ch| (0..spatial).map(move |s| (ch, s)));
            let mean = values().map(|(ch, s)| x[at(ch, s)]).sum::<f64>() / count;
            let var = values()
                .map(|(ch, s)| (x[at(ch, s)] - mean).powi(2))
                .sum::<f64>()
                / count;
            let rstd = 1.0 / (var + epsilon).sqrt();
            for (ch, s) in values() {
                let channel = g * per + ch;
                let mut v = (x[at(ch, s)] - mean) * rstd;
                v = v * scale.map_or(1.0, |w| w[channel] as f64)
                    + bias.map_or(0.0, |b| b[channel] as f64);
                if silu {
                    v /= 1.0 + (-v).exp();
                }
                y[at(ch, s)] = v;
            }
            means.push(mean);
            rstds.push(rstd);
        }
    }
    GroupNormReference {
        y,
        mean: means,
        rstd: rstds,
    }
}

/// InstanceNormalization-6: [`group_norm_f64`] with one group per channel,
/// channels first, no activation.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm_f64(
    x: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
) -> GroupNormReference {
    group_norm_f64(x, n, c, spatial, c, scale, bias, epsilon, false, false)
}

/// BatchNormalization-15 in inference: per channel
/// `(x − input_mean) / sqrt(input_var + epsilon) · scale + bias`, `x` shaped
/// `[n, c, spatial…]`.
///
/// ```
/// use wgpu_norm::reference::batch_norm_inference_f64;
/// let y = batch_norm_inference_f64(&[1.0, 2.0, 10.0, 20.0], 1, 2, 2, &[1.0, 10.0], &[4.0, 100.0], None, None, 0.0);
/// assert_eq!(y, vec![0.0, 0.5, 0.0, 1.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_inference_f64(
    x: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    input_mean: &[f64],
    input_var: &[f64],
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
) -> Vec<f64> {
    assert_eq!(x.len(), n * c * spatial, "x is not [n, c, spatial]");
    (0..x.len())
        .map(|i| {
            let ch = (i / spatial) % c;
            (x[i] - input_mean[ch]) / (input_var[ch] + epsilon).sqrt()
                * scale.map_or(1.0, |w| w[ch] as f64)
                + bias.map_or(0.0, |b| b[ch] as f64)
        })
        .collect()
}

/// Result of [`batch_norm_training_f64`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormTrainingReference {
    /// x normalised with the batch's statistics, then scale and bias.
    pub y: Vec<f64>,
    /// Per channel mean over n × spatial.
    pub batch_mean: Vec<f64>,
    /// Per channel biased variance over n × spatial.
    pub batch_var: Vec<f64>,
    /// `input_mean · momentum + batch_mean · (1 − momentum)`.
    pub running_mean: Vec<f64>,
    /// `input_var · momentum + v · (1 − momentum)`, v the biased batch
    /// variance (ONNX) or the unbiased one (PyTorch's running estimate).
    pub running_var: Vec<f64>,
}

/// BatchNormalization-15 with `training_mode`: statistics per channel over
/// the batch (n × spatial values; biased variance normalises y), and the
/// running statistics. `unbiased_running` takes the running variance from
/// the unbiased batch variance, as PyTorch does; ONNX's reference uses the
/// biased one.
///
/// ```
/// use wgpu_norm::reference::batch_norm_training_f64;
/// let r = batch_norm_training_f64(&[1.0, 3.0, 0.0, 0.0], 2, 1, 2, None, None, 0.0, 0.9, &[0.0], &[1.0], false);
/// assert_eq!((r.batch_mean[0], r.batch_var[0]), (1.0, 1.5));
/// assert!((r.running_mean[0] - 0.1).abs() < 1e-12 && (r.running_var[0] - 1.05).abs() < 1e-12);
/// let r = batch_norm_training_f64(&[1.0, 3.0, 0.0, 0.0], 2, 1, 2, None, None, 0.0, 0.9, &[0.0], &[1.0], true);
/// assert!((r.running_var[0] - 1.1).abs() < 1e-12); // 0.9 + 0.1 · 2 (unbiased: 6 / 3)
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_training_f64(
    x: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
    momentum: f64,
    input_mean: &[f64],
    input_var: &[f64],
    unbiased_running: bool,
) -> BatchNormTrainingReference {
    assert_eq!(x.len(), n * c * spatial, "x is not [n, c, spatial]");
    let count = (n * spatial) as f64;
    let channel = |ch: usize| {
        (0..n).flat_map(move |ni| (0..spatial).map(move |s| (ni * c + ch) * spatial + s))
    };
    let batch_mean: Vec<f64> = (0..c)
        .map(|ch| channel(ch).map(|i| x[i]).sum::<f64>() / count)
        .collect();
    let sq: Vec<f64> = (0..c)
        .map(|ch| {
            channel(ch)
                .map(|i| (x[i] - batch_mean[ch]).powi(2))
                .sum::<f64>()
        })
        .collect();
    let batch_var: Vec<f64> = sq.iter().map(|s| s / count).collect();
    let y = batch_norm_inference_f64(
        x,
        n,
        c,
        spatial,
        &batch_mean,
        &batch_var,
        scale,
        bias,
        epsilon,
    );
    let running_mean = (0..c)
        .map(|ch| input_mean[ch] * momentum + batch_mean[ch] * (1.0 - momentum))
        .collect();
    let running_var = (0..c)
        .map(|ch| {
            let v = match unbiased_running {
                true => sq[ch] / (count - 1.0).max(1.0),
                false => batch_var[ch],
            };
            input_var[ch] * momentum + v * (1.0 - momentum)
        })
        .collect();
    BatchNormTrainingReference {
        y,
        batch_mean,
        batch_var,
        running_mean,
        running_var,
    }
}

/// LpNormalization-1: `x / ‖x‖_p` along `axis` of `shape`, p ∈ {1, 2}. A
/// zero vector gives 0, not NaN (ONNX's test vectors; PyTorch's
/// `F.normalize` clamps the norm at 1e-12, with the same effect on exact
/// zeros).
///
/// ```
/// use wgpu_norm::reference::lp_norm_f64;
/// assert_eq!(lp_norm_f64(&[3.0, 4.0, 0.0, 0.0], &[2, 2], 1, 2), vec![0.6, 0.8, 0.0, 0.0]);
/// assert_eq!(lp_norm_f64(&[3.0, 4.0, 1.0, -4.0], &[2, 2], 0, 1), vec![0.75, 0.5, 0.25, -0.5]);
/// ```
pub fn lp_norm_f64(x: &[f64], shape: &[usize], axis: usize, p: u32) -> Vec<f64> {
    assert!(p == 1 || p == 2, "p must be 1 or 2");
    assert_eq!(
        x.len(),
        shape.iter().product::<usize>(),
        "x does not hold shape"
    );
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer = x.len() / (len * inner).max(1);
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let norm = match p {
                1 => (0..len).map(|k| x[at(k)].abs()).sum::<f64>(),
                _ => (0..len).map(|k| x[at(k)].powi(2)).sum::<f64>().sqrt(),
            };
            for k in 0..len {
                y[at(k)] = if norm == 0.0 { 0.0 } else { x[at(k)] / norm };
            }
        }
    }
    y
}

/// Gradients of a channel normalisation (GroupNorm, InstanceNorm,
/// BatchNorm), in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelNormGrads {
    /// Gradient with respect to x (x's layout).
    pub dx: Vec<f64>,
    /// Gradient with respect to the per-channel scale.
    pub dscale: Vec<f64>,
    /// Gradient with respect to the per-channel bias.
    pub dbias: Vec<f64>,
}

/// The backward of normalising each of `sets` (element indices) on its own
/// statistics (or, where `stats` is given, on those constants: (mean, var)
/// per set), with a per-channel affine (`channel_of` each element) and SiLU.
#[allow(clippy::too_many_arguments)]
fn set_norm_backward(
    x: &[f64],
    dy: &[f64],
    sets: &[Vec<usize>],
    channel_of: impl Fn(usize) -> usize,
    channels: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
    silu: bool,
    stats: Option<(&[f64], &[f64])>,
) -> ChannelNormGrads {
    let mut out = ChannelNormGrads {
        dx: vec![0.0; x.len()],
        dscale: vec![0.0; channels],
        dbias: vec![0.0; channels],
    };
    let gamma = |ch: usize| scale.map_or(1.0, |w| w[ch] as f64);
    let beta = |ch: usize| bias.map_or(0.0, |b| b[ch] as f64);
    for (si, set) in sets.iter().enumerate() {
        let m = set.len() as f64;
        let (mean, var) = match stats {
            Some((means, vars)) => (means[si], vars[si]),
            None => {
                let mean = set.iter().map(|&i| x[i]).sum::<f64>() / m;
                let var = set.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / m;
                (mean, var)
            }
        };
        let rstd = 1.0 / (var + epsilon).sqrt();
        let xh = |i: usize| (x[i] - mean) * rstd;
        let dz = |i: usize| {
            let z = xh(i) * gamma(channel_of(i)) + beta(channel_of(i));
            let s = 1.0 / (1.0 + (-z).exp());
            match silu {
                true => dy[i] * s * (1.0 + z * (1.0 - s)),
                false => dy[i],
            }
        };
        let (mut mg, mut mgx) = (0.0, 0.0);
        for &i in set {
            let (ch, d) = (channel_of(i), dz(i));
            out.dscale[ch] += d * xh(i);
            out.dbias[ch] += d;
            mg += d * gamma(ch);
            mgx += d * gamma(ch) * xh(i);
        }
        if stats.is_some() {
            (mg, mgx) = (0.0, 0.0);
        }
        for &i in set {
            let g = dz(i) * gamma(channel_of(i));
            out.dx[i] = rstd * (g - mg / m - xh(i) * mgx / m);
        }
    }
    out
}

/// The backward of [`group_norm_f64`] (InstanceNorm: `groups == c`): dx,
/// and dscale and dbias per channel, for the upstream gradient `dy`.
///
/// ```
/// use wgpu_norm::reference::group_norm_backward_f64;
/// // A constant upstream gradient through a normalisation gives dx = 0.
/// let g = group_norm_backward_f64(&[1.0, 2.0, 4.0, 8.0], &[1.0; 4], 1, 2, 2, 1, None, None, 0.0, false, false);
/// assert!(g.dx.iter().all(|d| d.abs() < 1e-12));
/// assert_eq!(g.dbias, vec![2.0, 2.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward_f64(
    x: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    groups: usize,
    scale: Option<&[f32]>,
    bias: Option<&[f32]>,
    epsilon: f64,
    silu: bool,
    channels_last: bool,
) -> ChannelNormGrads {
    let per = c / groups;
    let sets: Vec<Vec<usize>> = (0..n * groups)
        .map(|s| {
            let (ni, g) = (s / groups, s % groups);
            (0..per)
                .flat_map(|ch| {
                    (0..spatial)
                        .map(move |sp| nchw_index(ni, g * per + ch, sp, c, spatial, channels_last))
                })
                .collect()
        })
        .collect();
    let channel_of = |i: usize| match channels_last {
        true => i % c,
        false => (i / spatial) % c,
    };
    set_norm_backward(
        x, dy, &sets, channel_of, c, scale, bias, epsilon, silu, None,
    )
}

/// The backward of BatchNormalization-15 on `[n, c, spatial…]`: in training
/// mode through the batch statistics, in inference with `input_mean` and
/// `input_var` as constants.
///
/// ```
/// use wgpu_norm::reference::batch_norm_backward_f64;
/// // Inference: dx = dy · scale / sqrt(var + eps).
/// let g = batch_norm_backward_f64(&[1.0, 2.0], &[1.0, 1.0], 2, 1, 1, Some(&[2.0]), 0.0, Some((&[0.0], &[4.0])));
/// assert_eq!(g.dx, vec![1.0, 1.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_f64(
    x: &[f64],
    dy: &[f64],
    n: usize,
    c: usize,
    spatial: usize,
    scale: Option<&[f32]>,
    epsilon: f64,
    inference_stats: Option<(&[f64], &[f64])>,
) -> ChannelNormGrads {
    let sets: Vec<Vec<usize>> = (0..c)
        .map(|ch| {
            (0..n)
                .flat_map(|ni| (0..spatial).map(move |sp| (ni * c + ch) * spatial + sp))
                .collect()
        })
        .collect();
    set_norm_backward(
        x,
        dy,
        &sets,
        |i| (i / spatial) % c,
        c,
        scale,
        None,
        epsilon,
        false,
        inference_stats,
    )
}

/// The backward of [`lp_norm_f64`]: `dx = (dy − t · Σ dy·y) / ‖x‖_p`, t = y
/// for p = 2 and sign(x) for p = 1; 0 for a zero vector.
///
/// ```
/// use wgpu_norm::reference::lp_norm_backward_f64;
/// // Along x itself the normalisation is flat: dx = 0.
/// let dx = lp_norm_backward_f64(&[3.0, 4.0], &[3.0, 4.0], &[2], 0, 2);
/// assert!(dx.iter().all(|d| d.abs() < 1e-12));
/// ```
pub fn lp_norm_backward_f64(
    x: &[f64],
    dy: &[f64],
    shape: &[usize],
    axis: usize,
    p: u32,
) -> Vec<f64> {
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer = x.len() / (len * inner).max(1);
    let y = lp_norm_f64(x, shape, axis, p);
    let mut dx = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let norm = match p {
                1 => (0..len).map(|k| x[at(k)].abs()).sum::<f64>(),
                _ => (0..len).map(|k| x[at(k)].powi(2)).sum::<f64>().sqrt(),
            };
            if norm == 0.0 {
                continue;
            }
            let dot: f64 = (0..len).map(|k| dy[at(k)] * y[at(k)]).sum();
            for k in 0..len {
                let t = match p {
                    1 => x[at(k)].signum() * (x[at(k)] != 0.0) as u8 as f64,
                    _ => y[at(k)],
                };
                dx[at(k)] = (dy[at(k)] - t * dot) / norm;
            }
        }
    }
    dx
}

#[cfg(test)]
mod family_tests {
    use super::*;

    /// Central differences of a scalar loss Σ dy·f(x) in f64.
    fn numeric(x: &[f64], dy: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                let h = 1e-6;
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += h;
                b[i] -= h;
                let (fa, fb) = (f(&a), f(&b));
                (0..x.len()).map(|j| dy[j] * (fa[j] - fb[j])).sum::<f64>() / (2.0 * h)
            })
            .collect()
    }

    fn close(a: &[f64], b: &[f64]) {
        for (i, (u, v)) in a.iter().zip(b).enumerate() {
            assert!((u - v).abs() < 1e-5 * (1.0 + v.abs()), "{i}: {u} vs {v}");
        }
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        crate::synthetic::normal(seed, n, 0.5, 1.0)
            .into_iter()
            .map(f64::from)
            .collect()
    }

    #[test]
    fn backward_oracles_match_central_differences() {
        let (n, c, s) = (2, 4, 3);
        let x = data(n * c * s, 1);
        let dy = data(n * c * s, 2);
        let scale = [1.5f32, -0.5, 0.7, 2.0];
        let bias = [0.1f32, 0.2, -0.3, 0.4];
        for (groups, silu, last) in [(2, false, false), (1, true, true), (4, true, false)] {
            let g = group_norm_backward_f64(
                &x,
                &dy,
                n,
                c,
                s,
                groups,
                Some(&scale),
                Some(&bias),
                1e-3,
                silu,
                last,
            );
            let f = |x: &[f64]| {
                group_norm_f64(
                    x,
                    n,
                    c,
                    s,
                    groups,
                    Some(&scale),
                    Some(&bias),
                    1e-3,
                    silu,
                    last,
                )
                .y
            };
            close(&g.dx, &numeric(&x, &dy, f));
        }
        for inference in [false, true] {
            let (m, v) = ([0.1, -0.2, 0.3, 0.0], [1.0, 2.0, 0.5, 3.0]);
            let stats = inference.then_some((&m[..], &v[..]));
            let g = batch_norm_backward_f64(&x, &dy, n, c, s, Some(&scale), 1e-3, stats);
            let f = |x: &[f64]| match inference {
                true => batch_norm_inference_f64(x, n, c, s, &m, &v, Some(&scale), None, 1e-3),
                false => {
                    batch_norm_training_f64(
                        x,
                        n,
                        c,
                        s,
                        Some(&scale),
                        None,
                        1e-3,
                        0.9,
                        &m,
                        &v,
                        false,
                    )
                    .y
                }
            };
            close(&g.dx, &numeric(&x, &dy, f));
        }
        for (p, axis) in [(1, 1), (2, 0), (2, 2)] {
            let shape = [n, c, s];
            let dx = lp_norm_backward_f64(&x, &dy, &shape, axis, p);
            close(&dx, &numeric(&x, &dy, |x| lp_norm_f64(x, &shape, axis, p)));
        }
    }
}
