// The row-block kernel with subgroups: one dispatch. The plan makes the
// workgroup exactly one subgroup (the adapter's single subgroup size), so
// `subgroupAdd` sums over all the lanes and the shader has no barrier.

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let first = block_first(wid, groups);
    if (first >= params.rows) {
        return; // whole workgroup: `first` is uniform
    }
    let rows = eight_rows(first);
    let m = share_moments(rows, lane);

    // 2. Combine the lanes.
    let n = f32(params.dim);
    let shifted_lo = subgroupAdd(m.mean_lo * m.n) / n;
    let shifted_hi = subgroupAdd(m.mean_hi * m.n) / n;
    let dev_lo = m.mean_lo - shifted_lo;
    let dev_hi = m.mean_hi - shifted_hi;
    let m2_lo = subgroupAdd(m.m2_lo + dev_lo * dev_lo * m.n);
    let m2_hi = subgroupAdd(m.m2_hi + dev_hi * dev_hi * m.n);
    let s = row_stats_of(rows, shifted_lo, shifted_hi, m2_lo, m2_hi, lane == 0u);
    if (WRITE_Y) {
        normalize_share(rows, s, lane);
    }
}
