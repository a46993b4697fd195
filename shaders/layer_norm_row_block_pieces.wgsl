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
    let rows = eight_rows(first);
    let m = share_moments(rows, lane);
    for (var r = 0u; r < rows.count; r += 1u) {
        let k = r % 4u;
        let mean = select(m.mean_hi[k], m.mean_lo[k], r < 4u);
        let m2 = select(m.m2_hi[k], m.m2_lo[k], r < 4u);
        piece_moments[(first + r) * SPLITS + lane] = vec4<f32>(m.n, mean, m2, 0.0);
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
    let rows = eight_rows(first);
    // (pivot, shifted mean, rstd) of each row; rows past the end repeat the last.
    let last = first + rows.count - 1u;
    let a = row_stats[first];
    let b = row_stats[min(first + 1u, last)];
    let c = row_stats[min(first + 2u, last)];
    let d = row_stats[min(first + 3u, last)];
    let e = row_stats[min(first + 4u, last)];
    let f = row_stats[min(first + 5u, last)];
    let g = row_stats[min(first + 6u, last)];
    let h = row_stats[min(first + 7u, last)];
    let s = RowStats(
        vec4<f32>(a.y, b.y, c.y, d.y),
        vec4<f32>(e.y, f.y, g.y, h.y),
        vec4<f32>(a.z, b.z, c.z, d.z),
        vec4<f32>(e.z, f.z, g.z, h.z),
    );
    normalize_share(rows, s, lane);
}
