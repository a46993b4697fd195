// View of y, gamma and beta as arrays of values: the view that takes any dim
// and any alignment (layer_norm_out_vec4.wgsl is the vec4 view). y has this
// one binding: a second, vec4, binding of the same bytes would be two
// writable views of one buffer, which browsers' WebGPU refuses. `col` is a
// row-relative column; params.gamma_base and params.beta_base place column 0.

@group(0) @binding(2) var<storage, read_write> y: array<elem>;
@group(0) @binding(4) var<storage, read> gamma: array<elem>;
@group(0) @binding(5) var<storage, read> beta: array<elem>;

fn store_y(i: u32, v: f32) {
    y[i] = elem(v);
}

// Elements i .. i+3 (any i).
fn store_y4(i: u32, v: vec4<f32>) {
    y[i] = elem(v.x);
    y[i + 1u] = elem(v.y);
    y[i + 2u] = elem(v.z);
    y[i + 3u] = elem(v.w);
}

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
