// A plain copy of `n` f32 values: the memory floor every layer-norm kernel is
// measured against (it reads each value once and writes it once, like a
// perfect layer norm would).
//
// Grid-stride loop over vec4s: a fixed number of invocations walks the array,
// which on Mesa's llvmpipe is faster than one vec4 per invocation. The last
// n % 4 values are copied one by one by the first lanes, into components of
// dst's last vec4: dst has this one (vec4) binding, since browsers' WebGPU
// refuses two writable bindings of the same bytes.

override WG: u32 = 256u;

struct Params {
    n: u32,        // values to copy
    lanes: u32,    // invocations in the grid (the stride, in vec4s)
}

@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = params.n / 4u;
    for (var i = gid.x; i < n4; i += params.lanes) {
        dst4[i] = src4[i];
    }
    let tail = params.n % 4u;
    if (gid.x < tail) {
        dst4[n4][gid.x] = src[n4 * 4u + gid.x];
    }
}
