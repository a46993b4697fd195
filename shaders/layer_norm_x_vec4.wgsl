// View of x where every row is vec4-aligned (VEC4_ROWS: dim % 4 == 0 and
// x_base % 4 == 0): `x4` alone. Rows have no scalar head or tail there, so
// `x_at` serves only the row's first value (the pivot).

@group(0) @binding(1) var<storage, read> x4: array<vec4<elem>>;

fn x_at(i: u32) -> f32 {
    return f32(x4[i / 4u][i % 4u]);
}

fn x4_at(j: u32) -> vec4<f32> {
    return vec4<f32>(x4[j]);
}
