// View of y, gamma and beta as arrays of vec4s, for pipelines whose rows are
// all vec4-aligned (VEC4_ROWS: dim % 4 == 0, and y_base, gamma_base and
// beta_base are multiples of 4). Four columns cost one access instead of
// four: on Mesa's llvmpipe an access is a loop over the lanes, and a vec4
// shares one trip of that loop between its four values. `col` is a
// row-relative column; `store_y4`, `gamma4_at` and `beta4_at` take a multiple
// of 4.

@group(0) @binding(3) var<storage, read_write> y4: array<vec4<elem>>;
@group(0) @binding(4) var<storage, read> gamma4: array<vec4<elem>>;
@group(0) @binding(5) var<storage, read> beta4: array<vec4<elem>>;

// One value. Where VEC4_ROWS no row has a scalar head or tail column, so the
// kernels' one-value helpers that call these are not reached; they are here
// so that those helpers compile.
fn store_y(i: u32, v: f32) {
    y4[i / 4u][i % 4u] = elem(v);
}

fn store_y4(i: u32, v: vec4<f32>) {
    y4[i / 4u] = vec4<elem>(v);
}

fn gamma_at(col: u32) -> f32 {
    let g = params.gamma_base + col;
    return f32(gamma4[g / 4u][g % 4u]);
}

fn beta_at(col: u32) -> f32 {
    let b = params.beta_base + col;
    return f32(beta4[b / 4u][b % 4u]);
}

fn gamma4_at(col: u32) -> vec4<f32> {
    return vec4<f32>(gamma4[(params.gamma_base + col) / 4u]);
}

fn beta4_at(col: u32) -> vec4<f32> {
    return vec4<f32>(beta4[(params.beta_base + col) / 4u]);
}
