// View of x for the plain pipelines of any alignment: `x` for single values
// and `x4` (the same bytes, read-only: browsers allow read-only bindings to
// overlap) for the whole vec4s of a row's body.

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<elem>>;

fn x_at(i: u32) -> f32 {
    return f32(x[i]);
}

// Elements 4j .. 4j+3.
fn x4_at(j: u32) -> vec4<f32> {
    return vec4<f32>(x4[j]);
}
