// View of x for the fused residual pipelines of any alignment: `x` alone, so
// that with the residual's three bindings they stay within 8 storage buffers
// (WebGPU's default). Their residual is read value by value anyway.

@group(0) @binding(0) var<storage, read> x: array<elem>;

fn x_at(i: u32) -> f32 {
    return f32(x[i]);
}

// Elements 4j .. 4j+3, read one by one.
fn x4_at(j: u32) -> vec4<f32> {
    let i = 4u * j;
    return vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
}
