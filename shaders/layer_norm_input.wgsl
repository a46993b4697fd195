// Input of the plain forward pipelines: the kernels normalise x itself.
// (layer_norm_input_residual.wgsl is the fused alternative; the host puts
// one of the two after layer_norm_common.wgsl.)

// The value at element `i` of `x`, as f32, times `x_scale`.
fn load_x(i: u32) -> f32 {
    return x_at(i) * x_scale;
}

// Four values from vec4 `j` of `x4` (elements 4j .. 4j+3 of `x`), times `x_scale`.
fn load_x4(j: u32) -> vec4<f32> {
    return x4_at(j) * x_scale;
}

// No sum to write.
fn store_sum(v: f32, y_row: u32, col: u32) {}
