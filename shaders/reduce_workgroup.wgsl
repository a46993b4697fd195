// Workgroup sum in workgroup memory: the reduction for adapters without subgroups.
//
// Appended by the host to a kernel file (layer_norm_row_per_workgroup.wgsl,
// layer_norm_row_block.wgsl or layer_norm_split_row.wgsl, after
// layer_norm_common.wgsl), which declares
// `override WG: u32` (a power of two, at most `MAX_WG`).
//
// Scheme: every lane writes its value to `partials`, then a tree halves the
// number of live slots each step (lane i adds slot i + stride into slot i), with a
// barrier between steps: log2(WG) steps, log2(WG) + 2 barriers. The result is read
// by every lane from slot 0, and a last barrier lets the next call reuse `partials`.
// The order of additions is fixed, so results are bit-for-bit repeatable.

struct LaneIds {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> partials: array<f32, MAX_WG>;

fn workgroup_sum(v: f32, ids: LaneIds) -> f32 {
    partials[ids.lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (ids.lid < stride) {
            partials[ids.lid] = partials[ids.lid] + partials[ids.lid + stride];
        }
        workgroupBarrier();
    }
    let total = partials[0];
    workgroupBarrier();
    return total;
}

// The sum of the vec4 `v` over the workgroup (at most 256 lanes: `partials`
// holds four values a lane), for every lane: each lane writes its four
// values, and after one barrier adds all the lanes' in lane order (the
// row-block kernel runs 8 lanes: fewer barriers than a tree, same order for
// every lane); a last barrier lets the next call reuse `partials`.
fn block_sum4(v: vec4<f32>, ids: LaneIds) -> vec4<f32> {
    let slot = 4u * ids.lid;
    partials[slot] = v.x;
    partials[slot + 1u] = v.y;
    partials[slot + 2u] = v.z;
    partials[slot + 3u] = v.w;
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    for (var i = 0u; i < 4u * WG; i += 4u) {
        total += vec4<f32>(partials[i], partials[i + 1u], partials[i + 2u], partials[i + 3u]);
    }
    workgroupBarrier();
    return total;
}
