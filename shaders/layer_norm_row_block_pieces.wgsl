// The row-block kernel without subgroups: three dispatches, no barrier.
// Every lane's share of a row is a piece (SPLITS = WG pieces a row) in the
// scheme of layer_norm_pieces.wgsl:
//
//   row_block_moments  one workgroup per block: each lane writes its moments
//                      of each of the eight rows to `piece_moments`
//   split_combine      one lane per row merges its WG pieces into `row_stats`
//                      (and the mean and rstd outputs)
//   row_block_apply    one workgroup per block: each lane normalises its share
//
// Combining through a buffer costs a dispatch and a few loads a lane; workgroup
// memory would cost barriers, which on llvmpipe cost more (see
// layer_norm_row_block.wgsl).

@compute @workgroup_size(WG)
fn row_block_moments(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let first = block_first(wid, groups);
    if (first >= params.rows) {
        return;
    }
    var rows = eight_rows(first);
    var m = share_moments(rows, lane);
    // This lane's share again at RESCALE for rows where it overflowed (see
    // layer_norm_common.wgsl); split_combine brings the pieces to one scale.
    if (m.n > 0.0) {
        rows = rescaled(rows, m.n, m.mean_lo, m.mean_hi, m.m2_lo, m.m2_hi);
        if (any_scaled(rows)) {
            m = share_moments(rows, lane);
        }
    }
    for (var r = 0u; r < rows.count; r += 1u) {
        let k = r % 4u;
        let mean = select(m.mean_hi[k], m.mean_lo[k], r < 4u);
        let m2 = select(m.m2_hi[k], m.m2_lo[k], r < 4u);
        let scale = select(rows.scale_hi[k], rows.scale_lo[k], r < 4u);
        piece_moments[(first + r) * SPLITS + lane] = vec4<f32>(m.n, mean, m2, scale);
    }
}

@compute @workgroup_size(WG)
fn row_block_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let first = block_first(wid, groups);
    if (first >= params.rows) {
        return;
    }
    var rows = eight_rows(first);
    // (pivot, shifted mean, rstd, scale) of each row; rows past the end repeat the last.
    let last = first + rows.count - 1u;
    let a = row_stats[first];
    let b = row_stats[min(first + 1u, last)];
    let c = row_stats[min(first + 2u, last)];
    let d = row_stats[min(first + 3u, last)];
    let e = row_stats[min(first + 4u, last)];
    let f = row_stats[min(first + 5u, last)];
    let g = row_stats[min(first + 6u, last)];
    let h = row_stats[min(first + 7u, last)];
    rows = with_scales(rows, vec4<f32>(a.w, b.w, c.w, d.w), vec4<f32>(e.w, f.w, g.w, h.w));
    let s = RowStats(
        vec4<f32>(a.y, b.y, c.y, d.y),
        vec4<f32>(e.y, f.y, g.y, h.y),
        vec4<f32>(a.z, b.z, c.z, d.z),
        vec4<f32>(e.z, f.z, g.z, h.z),
    );
    normalize_share(rows, s, lane);
}
