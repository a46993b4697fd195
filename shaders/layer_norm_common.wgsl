// Shared by every forward kernel of the normalisation family (LayerNorm,
// RMSNorm, each optionally fused with a residual add): its specialisation
// constants, its uniform block, and the Welford/Chan helpers. The host joins,
// in order: a storage prelude (storage_f32.wgsl or storage_f16.wgsl, which
// defines `elem`), this file, a view of x (layer_norm_x.wgsl: x and x4;
// layer_norm_x_scalar.wgsl: x alone; layer_norm_x_vec4.wgsl: x4 alone), a
// view of the outputs (layer_norm_out.wgsl: y, gamma, beta as values;
// layer_norm_out_vec4.wgsl: as vec4s where every row is vec4-aligned), a
// view of the statistics (layer_norm_stats.wgsl: mean and rstd outputs;
// layer_norm_stats_packed.wgsl: one packed scratch, for the fused residual),
// an input file (layer_norm_input.wgsl, or layer_norm_input_residual.wgsl for
// the fused residual add: `load_x`, `load_x4` and `store_sum`), then the
// kernel's files (see src/plan/specs.rs).
//
// Each buffer has one binding per dispatch where it is written (browsers'
// WebGPU refuses overlapping writable bindings), and no pipeline binds more
// than 8 storage buffers (WebGPU's default limit): the views are chosen per
// pipeline for that.
//
// Memory layout: a row is `dim` consecutive `elem`s starting at element
// `x_base + row * dim` of the `x` binding (which starts 256-byte aligned, so
// `x_base` absorbs the tensor's offset). Every value is loaded through
// `load_x` / `load_x4`, which in the fused pipelines also add the residual
// (and its bias): the kernels then normalise s = x + residual + bias without
// knowing it.

// Lanes per workgroup: a power of two; chosen by the host's plan.
override WG: u32 = 64u;
// Lanes of the one-lane-per-row helpers (split_combine, unpack_stats).
override COMBINE_WG: u32 = 64u;
// Which optional inputs and outputs this pipeline has.
override HAS_GAMMA: bool = false;
override HAS_BETA: bool = false;
override WRITE_MEAN: bool = false;
override WRITE_RSTD: bool = false;
// RMSNorm: no centring; rstd = 1 / sqrt(mean(x^2) + epsilon).
override RMS: bool = false;
// Write y; false for a statistics-only pass (the backward's recomputation).
override WRITE_Y: bool = true;
// Every row starts on a vec4 boundary of x and y, and gamma and beta do too
// (dim % 4 == 0 and vec4-aligned tensors): gamma and beta are bound as vec4s
// (layer_norm_params_vec4.wgsl) and the row-per-lane kernel reads whole rows
// as vec4s.
override VEC4_ROWS: bool = false;

struct Params {
    rows: u32,        // rows in this dispatch
    dim: u32,         // values per row
    x_base: u32,      // element index of row 0 in `x` (the binding starts 256-byte aligned)
    y_base: u32,      // element index of row 0 in `y`
    mean_base: u32,   // element index of row 0 in `mean_out`
    rstd_base: u32,   // element index of row 0 in `rstd_out`
    gamma_base: u32,  // element index of gamma[0] in `gamma`
    beta_base: u32,   // element index of beta[0] in `beta`
    epsilon: f32,
    residual_base: u32, // element index of row 0 in `residual` (fused only)
    residual_bias_base: u32, // element index of bias[0] in `residual_bias` (fused only)
    sum_base: u32,    // element index of row 0 in `sum_out` (fused only)
}

@group(0) @binding(8) var<uniform> params: Params;
// (0-5 are x, y, gamma and beta in their views; 6, 7 and 14 the statistics'
// view; 9 and 10 the pieces' scratch; 11-13 the residual's.)

// A quiet NaN made from its bits, and finiteness tested on the bits: GLSL
// and other compilers may assume floats are never NaN and drop `x != x`, or
// turn a clamp into `max`, which may return 0 for a NaN.
// Loaded from a variable, not folded as a constant: WGSL makes a constant
// expression that yields NaN an error (Tint refuses `bitcast<f32>(const)`).
const NAN_BITS: u32 = 0x7fc00000u;
var<private> nan_bits: u32 = NAN_BITS;

fn nan() -> f32 {
    return bitcast<f32>(nan_bits);
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn finite4(x: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(x) & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
}

// Rows of very large values: squares of deviations overflow f32 past about
// 1.8e19, and the mean of values of opposite signs near 3.4e38 does too.
// Every kernel first takes a row's moments as they come (exact whenever they
// stay finite), and only if they overflowed on finite input takes them again
// with every loaded value scaled by RESCALE = 2^-96: a power of two, so the
// scaled values are exact, and small enough that n * (2 * 3.4e38 * 2^-96)^2
// stays finite for any row length the plan allows, while the variance of a
// row that overflowed (at least 2^128 / dim) stays a normal f32 when scaled.
// Inside a kernel `x_scale` is the scale of what `load_x` returns; the
// statistics written out are always those of the unscaled row.
const RESCALE: f32 = 0x1p-96f;
var<private> x_scale: f32 = 1.0;

// Whether moments (pivot, shifted mean, M2 over `n` values of x - pivot) taken
// at scale 1 overflowed on a finite pivot: then the row is taken again at
// RESCALE (a row that holds NaN or Inf also lands here, and comes out NaN).
fn overflowed(pivot: f32, shifted_mean: f32, m2: f32, n: f32) -> bool {
    if (x_scale != 1.0 || !finite(pivot)) {
        return false;
    }
    let ms = m2 / n;
    let mean = pivot + shifted_mean;
    return !finite(ms) || !finite(shifted_mean) || !finite(mean) || (RMS && !finite(ms + mean * mean));
}

// rstd of the scaled row (what the kernels multiply scaled deviations by)
// from the moments (mean, M2 over `n` values) of x * scale - pivot:
// 1 / sqrt(var + epsilon * scale^2) for LayerNorm; for RMSNorm the mean
// square is var + mean^2 (both non-negative: no cancellation). The row's own
// rstd is this times `scale`. A row holding NaN or Inf has a non-finite mean
// or M2, and its rstd is NaN (as ONNX and PyTorch give it), not the
// 1/sqrt(epsilon) of a clamped NaN or the 0 of an infinite M2.
fn scaled_rstd(pivot: f32, shifted_mean: f32, m2: f32, n: f32, scale: f32) -> f32 {
    var ms = m2 / n;
    if (!finite(ms) || !finite(shifted_mean) || !finite(pivot)) {
        return nan();
    }
    if (ms < 0.0) {
        ms = 0.0;
    }
    if (RMS) {
        let mean = pivot + shifted_mean;
        ms += mean * mean;
    }
    let t = ms + params.epsilon * scale * scale;
    if (t == 0.0) {
        // A constant row at RESCALE, where epsilon * scale^2 underflows.
        return inverseSqrt(params.epsilon) / scale;
    }
    return inverseSqrt(t);
}

fn row_rstd(pivot: f32, shifted_mean: f32, m2: f32, n: f32) -> f32 {
    return scaled_rstd(pivot, shifted_mean, m2, n, x_scale);
}

// The row's mean and rstd as written out, from the scaled ones.
fn unscaled_mean(pivot: f32, shifted_mean: f32, scale: f32) -> f32 {
    return (pivot + shifted_mean) / scale;
}

fn unscaled_rstd(rstd: f32, scale: f32) -> f32 {
    return rstd * scale;
}

// What normalisation subtracts from a value: pivot + shifted mean, applied as
// two terms for precision; nothing for RMSNorm.
fn centre(pivot: f32, shifted_mean: f32) -> vec2<f32> {
    return select(vec2<f32>(pivot, shifted_mean), vec2<f32>(0.0), RMS);
}

// Chan's merge of two Welford states (count, mean, M2).
fn chan_merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if (b.x == 0.0) {
        return a;
    }
    let delta = b.y - a.y;
    let wb = b.x / n;
    return vec3<f32>(n, a.y + delta * wb, a.z + b.z + delta * delta * a.x * wb);
}

// Moments of one vec4 as a block: (4, its mean, its M2).
fn block_moments(v: vec4<f32>) -> vec3<f32> {
    let m = (v.x + v.y + v.z + v.w) * 0.25;
    let d = v - vec4<f32>(m);
    return vec3<f32>(4.0, m, dot(d, d));
}

// gamma[col] * v + beta[col] (either left out where the pipeline has none).
fn affine(v: f32, col: u32) -> f32 {
    var out = v;
    if (HAS_GAMMA) {
        out = out * gamma_at(col);
    }
    if (HAS_BETA) {
        out = out + beta_at(col);
    }
    return out;
}

// The same for the four columns col .. col + 3.
fn affine4(v: vec4<f32>, col: u32) -> vec4<f32> {
    var out = v;
    if (HAS_GAMMA) {
        out = out * gamma4_at(col);
    }
    if (HAS_BETA) {
        out = out + beta4_at(col);
    }
    return out;
}

// Writes y (and s when asked) for the four values `v` starting at row-relative
// column `col` (a vec4 of the body): (v - pivot - shifted_mean) * rstd, then
// gamma and beta, stored through the output view (one vec4 where VEC4_ROWS).
fn normalize4(v: vec4<f32>, y_row: u32, col: u32, pivot: f32, shifted_mean: f32, rstd: f32) {
    store_sum(v.x, y_row, col);
    store_sum(v.y, y_row, col + 1u);
    store_sum(v.z, y_row, col + 2u);
    store_sum(v.w, y_row, col + 3u);
    store_y4(y_row + col, affine4((v - vec4<f32>(pivot) - vec4<f32>(shifted_mean)) * rstd, col));
}

// Writes y (and s when asked) for the single value `v` at row-relative column `col`.
fn normalize1(v: f32, y_row: u32, col: u32, pivot: f32, shifted_mean: f32, rstd: f32) {
    store_sum(v, y_row, col);
    store_y(y_row + col, affine((v - pivot - shifted_mean) * rstd, col));
}

// How a row of `dim` values starting at element `x_row` of `x` splits into a
// scalar head (up to the next 16-byte boundary), a body of whole vec4s read
// through `x4`, and a scalar tail: vec4 loads for any dim and any alignment.
struct RowSplit {
    x_row: u32,       // element index of the row's first value in `x`
    head: u32,        // values before the first 16-byte boundary (0-3)
    body4: u32,       // whole vec4s after the head
    first4: u32,      // `x4` index of the body's first vec4
    tail_start: u32,  // row-relative column of the first tail value
}

fn row_split(x_row: u32, dim: u32) -> RowSplit {
    var r: RowSplit;
    r.x_row = x_row;
    r.head = min((4u - x_row % 4u) % 4u, dim);
    r.body4 = (dim - r.head) / 4u;
    r.first4 = (x_row + r.head) / 4u;
    r.tail_start = r.head + r.body4 * 4u;
    return r;
}

// Welford moments (count, mean, M2) of one lane's share of x - pivot: body
// vec4s begin4 + lane, begin4 + lane + stride, ... below end4 (each merged as a
// block), plus one head value and one tail value per lane where `with_ends`.
fn lane_moments(r: RowSplit, begin4: u32, end4: u32, with_ends: vec2<bool>, pivot: f32, lane: u32, stride: u32) -> vec3<f32> {
    var acc = vec3<f32>(0.0);
    for (var i = begin4 + lane; i < end4; i += stride) {
        acc = chan_merge(acc, block_moments(load_x4(r.first4 + i) - vec4<f32>(pivot)));
    }
    if (with_ends.x && lane < r.head) {
        acc = chan_merge(acc, vec3<f32>(1.0, load_x(r.x_row + lane) - pivot, 0.0));
    }
    if (with_ends.y && lane < params.dim - r.tail_start) {
        acc = chan_merge(acc, vec3<f32>(1.0, load_x(r.x_row + r.tail_start + lane) - pivot, 0.0));
    }
    return acc;
}

// Writes y (and s) for the same share of the row as `lane_moments` visits;
// nothing in a statistics-only pipeline.
fn normalize_lane(r: RowSplit, y_row: u32, begin4: u32, end4: u32, with_ends: vec2<bool>, pivot: f32, shifted_mean: f32, rstd: f32, lane: u32, stride: u32) {
    if (!WRITE_Y) {
        return;
    }
    for (var i = begin4 + lane; i < end4; i += stride) {
        normalize4(load_x4(r.first4 + i), y_row, r.head + 4u * i, pivot, shifted_mean, rstd);
    }
    if (with_ends.x && lane < r.head) {
        normalize1(load_x(r.x_row + lane), y_row, lane, pivot, shifted_mean, rstd);
    }
    if (with_ends.y && lane < params.dim - r.tail_start) {
        let col = r.tail_start + lane;
        normalize1(load_x(r.x_row + col), y_row, col, pivot, shifted_mean, rstd);
    }
}
