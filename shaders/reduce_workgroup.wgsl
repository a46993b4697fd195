// Workgroup sum in workgroup memory: the reduction for adapters without subgroups.
//
// Appended by the host to a kernel file (layer_norm_row_per_workgroup.wgsl,
// layer_norm_row_block.wgsl or layer_norm_split_row.wgsl, after
// layer_norm_common.wgsl), which declares
// `override WG: u32` (a power of two).
//
// Scheme: every lane writes its value to `partials`, then a tree halves the
// number of live slots each step (lane i adds slot i + stride into slot i), with a
// barrier between steps: log2(WG) steps, log2(WG) + 2 barriers. The result is read
// by every lane from slot 0, and a last barrier lets the next call reuse `partials`.
// The order of additions is fixed, so results are bit-for-bit repeatable.

struct LaneIds {
    @builtin(local_invocation_index) lid: u32,
}

// Sized by the workgroup that runs (WG, an override).
var<workgroup> partials: array<f32, WG>;

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

// The same for a vec4 (four sums in one tree: a fused reduction).
var<workgroup> partials4: array<vec4<f32>, WG>;

fn workgroup_sum4(v: vec4<f32>, ids: LaneIds) -> vec4<f32> {
    partials4[ids.lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (ids.lid < stride) {
            partials4[ids.lid] = partials4[ids.lid] + partials4[ids.lid + stride];
        }
        workgroupBarrier();
    }
    let total = partials4[0];
    workgroupBarrier();
    return total;
}

// A decision every lane takes together: lane 0's `v`, read back through
// workgroupUniformLoad so that compilers that check uniformity (Tint) know
// that a branch on it, with barriers inside, is taken by the whole workgroup.
var<workgroup> decision: u32;

fn workgroup_decision(v: bool, ids: LaneIds) -> bool {
    if (ids.lid == 0u) {
        decision = select(0u, 1u, v);
    }
    let d = workgroupUniformLoad(&decision);
    workgroupBarrier(); // before the next decision overwrites it
    return d == 1u;
}
