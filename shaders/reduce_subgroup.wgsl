// Workgroup sum with subgroup operations: the reduction for adapters with SUBGROUP.
//
// Appended by the host to a kernel file (layer_norm_row_per_workgroup.wgsl,
// layer_norm_row_block.wgsl or layer_norm_split_row.wgsl, after
// layer_norm_common.wgsl), which declares
// `override WG: u32` (a multiple of the adapter's largest subgroup size, so every
// subgroup is full).
//
// Scheme: `subgroupAdd` sums each subgroup in registers (no barrier); the first
// lane of each subgroup writes that sum to its slot in `partials`; after one
// barrier every lane adds the slots itself (WG / subgroup size of them: 8 on a
// 256-lane workgroup of 32-wide subgroups), and a last barrier lets the next call
// reuse `partials`. The subgroup size is read from the hardware, never assumed.
// The order of additions is fixed, so results are bit-for-bit repeatable.

struct LaneIds {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

// Sized by the workgroup that runs (WG, an override).
var<workgroup> partials: array<f32, WG>;

fn workgroup_sum(v: f32, ids: LaneIds) -> f32 {
    let subgroup_total = subgroupAdd(v);
    if (ids.lane == 0u) {
        partials[ids.subgroup] = subgroup_total;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < ids.subgroups; i = i + 1u) {
        total = total + partials[i];
    }
    workgroupBarrier();
    return total;
}

// The same for a vec4 (four sums at once: a fused reduction).
var<workgroup> partials4: array<vec4<f32>, WG>;

fn workgroup_sum4(v: vec4<f32>, ids: LaneIds) -> vec4<f32> {
    let subgroup_total = subgroupAdd(v);
    if (ids.lane == 0u) {
        partials4[ids.subgroup] = subgroup_total;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    for (var i = 0u; i < ids.subgroups; i = i + 1u) {
        total = total + partials4[i];
    }
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
