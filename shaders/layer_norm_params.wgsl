// gamma and beta as arrays of values: the view that takes any dim and any
// alignment. (layer_norm_params_vec4.wgsl is the vec4 view; the host puts
// one of the two after layer_norm_common.wgsl.) `col` is a row-relative
// column; params.gamma_base and params.beta_base place column 0.

@group(0) @binding(4) var<storage, read> gamma: array<elem>;
@group(0) @binding(5) var<storage, read> beta: array<elem>;

fn gamma_at(col: u32) -> f32 {
    return f32(gamma[params.gamma_base + col]);
}

fn beta_at(col: u32) -> f32 {
    return f32(beta[params.beta_base + col]);
}

// Columns col .. col + 3, read one by one (they may straddle a vec4).
fn gamma4_at(col: u32) -> vec4<f32> {
    let g = params.gamma_base + col;
    return vec4<f32>(f32(gamma[g]), f32(gamma[g + 1u]), f32(gamma[g + 2u]), f32(gamma[g + 3u]));
}

fn beta4_at(col: u32) -> vec4<f32> {
    let b = params.beta_base + col;
    return vec4<f32>(f32(beta[b]), f32(beta[b + 1u]), f32(beta[b + 2u]), f32(beta[b + 3u]));
}
