// A plain copy of `n` f32 values: the floor every op is measured against (it
// reads each value once and writes it once, as a perfect normalisation would).
// The variants (src/plan/specs.rs, CopyKernel) differ in how many lanes walk
// the array and how many vec4s a lane copies per trip; the bench takes the
// fastest on each adapter.
//
// Lanes walk the array in a grid stride of vec4s: lane i copies vec4s i,
// i + lanes, i + 2 lanes, … (UNROLL of them per trip). With as many lanes as
// vec4s that is one vec4 per invocation. The last n % 4 values are copied one
// by one by the first lanes, into components of dst's last vec4: dst has this
// one (vec4) binding, since browsers' WebGPU refuses two writable bindings of
// the same bytes.

override WG: u32 = 256u;
override UNROLL: u32 = 1u;

struct Params {
    n: u32,        // values to copy in this dispatch
    lanes: u32,    // invocations in the grid (the stride, in vec4s)
}

@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = (wid.y * groups.x + wid.x) * WG + lid;
    let n4 = params.n / 4u;
    let stride = params.lanes;
    for (var i = lane; i < n4; i += stride * UNROLL) {
        dst4[i] = src4[i];
        if (UNROLL >= 2u && i + stride < n4) {
            dst4[i + stride] = src4[i + stride];
        }
        if (UNROLL >= 4u) {
            if (i + 2u * stride < n4) {
                dst4[i + 2u * stride] = src4[i + 2u * stride];
            }
            if (i + 3u * stride < n4) {
                dst4[i + 3u * stride] = src4[i + 3u * stride];
            }
        }
    }
    let tail = params.n % 4u;
    if (lane < tail) {
        dst4[n4][lane] = src[n4 * 4u + lane];
    }
}
