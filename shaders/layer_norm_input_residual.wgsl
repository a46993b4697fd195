// Input of the fused pipelines (the pre-LN transformer block): the kernels
// normalise s = x + residual (+ residual_bias, one value per column), and
// write s to `sum_out` when asked. The residual is read as scalars (its
// 16-byte phase may differ from x's); s is computed in f32.

// Add a bias with the residual.
override HAS_RESIDUAL_BIAS: bool = false;
// Write s (the pre-norm sum) to `sum_out`.
override WRITE_SUM: bool = false;

@group(0) @binding(11) var<storage, read> residual: array<elem>;
@group(0) @binding(12) var<storage, read> residual_bias: array<elem>;
@group(0) @binding(13) var<storage, read_write> sum_out: array<elem>;

// The value the kernels normalise at element `i` of `x`: x + residual, plus
// the bias of the value's column when the pipeline has one; times `x_scale`.
fn load_x(i: u32) -> f32 {
    let k = i - params.x_base;
    var v = x_at(i) + f32(residual[params.residual_base + k]);
    if (HAS_RESIDUAL_BIAS) {
        v += f32(residual_bias[params.residual_bias_base + k % params.dim]);
    }
    return v * x_scale;
}

// Four values from vec4 `j` of `x4` (elements 4j .. 4j+3 of `x`, never across
// a row's end). The residual is read as scalars: its 16-byte phase may differ.
fn load_x4(j: u32) -> vec4<f32> {
    let k = 4u * j - params.x_base;
    let r = params.residual_base + k;
    var v = x4_at(j);
    v += vec4<f32>(f32(residual[r]), f32(residual[r + 1u]), f32(residual[r + 2u]), f32(residual[r + 3u]));
    if (HAS_RESIDUAL_BIAS) {
        let b = params.residual_bias_base + k % params.dim;
        v += vec4<f32>(f32(residual_bias[b]), f32(residual_bias[b + 1u]), f32(residual_bias[b + 2u]), f32(residual_bias[b + 3u]));
    }
    return v * x_scale;
}

// Writes s = the loaded value `v` (unscaled again) at row-relative column
// `col` of the row whose y starts at element `y_row` (s has y's row layout
// from its own base).
fn store_sum(v: f32, y_row: u32, col: u32) {
    if (WRITE_SUM) {
        sum_out[params.sum_base + y_row - params.y_base + col] = elem(v / x_scale);
    }
}
