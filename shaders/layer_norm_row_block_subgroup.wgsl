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
    var rows = eight_rows(first);
    var c = combined(rows, share_moments(rows, lane));
    // Again at RESCALE for rows whose moments overflowed (see
    // layer_norm_common.wgsl); subgroup-uniform.
    rows = rescaled(rows, f32(params.dim), c.shifted_lo, c.shifted_hi, c.m2_lo, c.m2_hi);
    if (any_scaled(rows)) {
        c = combined(rows, share_moments(rows, lane));
    }
    let s = row_stats_of(rows, c.shifted_lo, c.shifted_hi, c.m2_lo, c.m2_hi, lane == 0u);
    if (WRITE_Y) {
        normalize_share(rows, s, lane);
    }
}

struct Combined {
    shifted_lo: vec4<f32>,
    shifted_hi: vec4<f32>,
    m2_lo: vec4<f32>,
    m2_hi: vec4<f32>,
}

// 2. The lanes' moments combined over the subgroup.
fn combined(rows: EightRows, m: Moments) -> Combined {
    let n = f32(params.dim);
    let shifted_lo = subgroupAdd(m.mean_lo * m.n) / n;
    let shifted_hi = subgroupAdd(m.mean_hi * m.n) / n;
    let dev_lo = m.mean_lo - shifted_lo;
    let dev_hi = m.mean_hi - shifted_hi;
    let m2_lo = subgroupAdd(m.m2_lo + dev_lo * dev_lo * m.n);
    let m2_hi = subgroupAdd(m.m2_hi + dev_hi * dev_hi * m.n);
    return Combined(shifted_lo, shifted_hi, m2_lo, m2_hi);
}
