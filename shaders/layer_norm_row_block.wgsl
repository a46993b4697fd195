// Layer normalisation, forward: one workgroup normalises a block of eight
// whole rows (ROWS_PER_BLOCK), its lanes sharing the columns (medium and
// long rows, on CPU adapters).
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// The host prepends layer_norm_common.wgsl (bindings, Params, helpers), a
// gamma/beta view, an input file and layer_norm_eight_rows.wgsl, and appends
// a reduction file, which defines `struct LaneIds` and
// `fn block_sum4(v, ids) -> vec4<f32>` (the sum of `v` over the workgroup):
//   reduce_subgroup.wgsl  - subgroupAdd alone: the plan makes the workgroup
//                           one subgroup, so the kernel has no barrier at all
//   reduce_workgroup.wgsl - workgroup memory and two barriers
//
// Why: the row-per-lane kernel gives each lane eight rows, so the lanes of a
// SIMD group walk 64 rows at once: at 4,096 values a row that is 1 MiB of x
// between the two passes, and there it measured 2.1-2.4 times a copy on
// lavapipe against this kernel's 1.8-1.9. Here the lanes of a workgroup walk
// the same eight rows side by side:
// lane k takes quads (four columns) k, k + WG, k + 2 WG, ... of each row.
// gamma and beta are still read once for the eight rows, and on llvmpipe a
// workgroup of 8 lanes is one SIMD group: with subgroups it needs no barrier
// (a barrier anywhere in a shader makes llvmpipe run it as coroutines, which
// costs even where the barrier is never reached).
//
// Scheme, per row (the eight rows in step):
//   1. Every lane keeps Welford moments (count, mean, M2) of its share of
//      x - pivot (the row's first value), a quad at a time; lanes 0-2 also take
//      one of the last dim % 4 columns.
//   2. Two sums over the lanes combine them exactly (the parallel-variance formula):
//        shifted_mean = sum(n_i * mean_i) / dim
//        M2           = sum(M2_i + n_i * (mean_i - shifted_mean)^2)
//      Every term of the second sum is >= 0: no E[x^2] - E[x]^2 cancellation.
//   3. Every lane re-reads its share and writes y. x is read twice, y written once.
//
// Rows: the grid is 2-D (x up to 65,535 workgroups) and flattened here. Loops:
// a lane runs about dim / (2 * WG) iterations; the plan keeps that far below
// llvmpipe's cap of 65,535 per invocation (dim at most 131,072 at 8 lanes).

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let first = (wid.y * groups.x + wid.x) * ROWS_PER_BLOCK;
    if (first >= params.rows) {
        return; // whole workgroup: `first` is uniform
    }
    let lane = ids.lid;
    let rows = eight_rows(first);
    let quads = params.dim / 4u;
    let tail = 4u * quads + lane; // WG >= 4, so the lanes cover dim % 4 <= 3 columns

    // 1. This lane's moments.
    var m = Moments(0.0, vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var q = lane; q < quads; q += WG) {
        m = add_quad(m, rows, q);
    }
    if (tail < params.dim) {
        m = add_column(m, rows, tail);
    }

    // 2. Combine the lanes.
    let n = f32(params.dim);
    let shifted_lo = block_sum4(m.mean_lo * m.n, ids) / n;
    let shifted_hi = block_sum4(m.mean_hi * m.n, ids) / n;
    let dev_lo = m.mean_lo - shifted_lo;
    let dev_hi = m.mean_hi - shifted_hi;
    let m2_lo = block_sum4(m.m2_lo + dev_lo * dev_lo * m.n, ids);
    let m2_hi = block_sum4(m.m2_hi + dev_hi * dev_hi * m.n, ids);
    let s = row_stats(rows, shifted_lo, shifted_hi, m2_lo, m2_hi, lane == 0u);
    if (!WRITE_Y) {
        return;
    }

    // 3. Normalise this lane's share.
    for (var q = lane; q < quads; q += WG) {
        normalize_quads(rows, s, q);
    }
    if (tail < params.dim) {
        normalize_column(rows, s, tail);
    }
}
