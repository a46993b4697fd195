// A plain copy of `n` f32 values: the floor every op is measured against (it
// reads each value once and writes it once, as a perfect normalisation would).
// The variants (src/plan/specs.rs, CopyKernel) differ in how many lanes walk
// the array, how many vec4s a lane copies per trip, and whether 8-lane teams
// copy contiguous stretches; the bench takes the fastest on each adapter.
//
// Lanes walk the array in a grid stride of vec4s: lane i copies vec4s i,
// i + lanes, i + 2 lanes, … (UNROLL of them per trip). With as many lanes as
// vec4s that is one vec4 per invocation. The last n % 4 values are copied one
// by one by the first lanes, into components of dst's last vec4: dst has this
// one (vec4) binding, since browsers' WebGPU refuses two writable bindings of
// the same bytes.

override WG: u32 = 256u;
override UNROLL: u32 = 1u;
// Each 8 adjacent lanes copy one contiguous stretch, a vec4 each per trip
// (lavapipe runs a workgroup 8 lanes at a time, each to its end: the 8 then
// stream memory in order, where a grid stride has them leap).
override STRETCH: bool = false;

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
    if (STRETCH) {
        let teams = stride / 8u;
        let len = (n4 + teams - 1u) / teams;
        let start = (lane / 8u) * len;
        let end = min(start + len, n4);
        for (var i = start + lane % 8u; i < end; i += 8u) {
            dst4[i] = src4[i];
        }
    }
    for (var i = lane; i < n4 && !STRETCH; i += stride * UNROLL) {
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
