// Layer normalisation, forward: one workgroup normalises a block of eight
// whole rows (ROWS_PER_BLOCK), its lanes sharing the columns (medium and
// long rows, on CPU adapters).
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// This file holds the lanes' two walks; the entry points are in one of two
// files that the host appends, by how the lanes' moments are combined:
//   layer_norm_row_block_subgroup.wgsl - subgroupAdd, one dispatch: the plan
//                                        makes the workgroup one subgroup
//   layer_norm_row_block_pieces.wgsl   - without subgroups: every lane writes
//                                        its moments as a piece of its rows,
//                                        split_combine merges them, and a
//                                        third dispatch normalises
// Neither has a barrier. The host prepends layer_norm_common.wgsl (bindings,
// Params, helpers), a gamma/beta view, an input file and
// layer_norm_eight_rows.wgsl (and layer_norm_pieces.wgsl for the second).
//
// Why: the row-per-lane kernel gives each lane eight rows, so the lanes of a
// SIMD group walk 64 rows at once: at 4,096 values a row that is 1 MiB of x
// between the two passes, and there it measured 2.1-2.4 times a copy on
// lavapipe against this kernel's 1.8-1.9. Here the lanes of a workgroup walk
// the same eight rows side by side:
// lane k takes quads (four columns) k, k + WG, k + 2 WG, ... of each row.
// gamma and beta are still read once for the eight rows, and on llvmpipe a
// workgroup of 8 lanes is one SIMD group. No barrier: one anywhere in a
// shader makes llvmpipe run it as coroutines, which costs even where the
// barrier is never reached (with workgroup-memory sums and barriers this
// kernel measured 0.1-0.2 times a copy slower than with subgroupAdd).
//
// Scheme, per row (the eight rows in step):
//   1. Every lane keeps Welford moments (count, mean, M2) of its share of
//      x - pivot (the row's first value), a quad at a time; lanes 0-2 also take
//      one of the last dim % 4 columns.
//   2. The lanes' moments are combined exactly (the parallel-variance formula,
//      or Chan's merge, which is the same):
//        shifted_mean = sum(n_i * mean_i) / dim
//        M2           = sum(M2_i + n_i * (mean_i - shifted_mean)^2)
//      Every term of the second sum is >= 0: no E[x^2] - E[x]^2 cancellation.
//   3. Every lane re-reads its share and writes y. x is read twice, y written once.
//
// Rows: the grid is 2-D (x up to 65,535 workgroups) and flattened. Loops:
// a lane runs about dim / (2 * WG) iterations; the plan keeps that far below
// llvmpipe's cap of 65,535 per invocation (dim at most 131,072 at 8 lanes).

// The first row of this workgroup's block.
fn block_first(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return (wid.y * groups.x + wid.x) * ROWS_PER_BLOCK;
}

// 1. Lane `lane`'s moments of its share of the eight rows: quads lane,
//    lane + WG, ... and, for lanes 0-2, one of the last dim % 4 columns (WG >= 4).
fn share_moments(rows: EightRows, lane: u32) -> Moments {
    var m = Moments(0.0, vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    let quads = params.dim / 4u;
    for (var q = lane; q < quads; q += WG) {
        m = add_quad(m, rows, q);
    }
    let tail = 4u * quads + lane;
    if (tail < params.dim) {
        m = add_column(m, rows, tail);
    }
    return m;
}

// 3. Normalises lane `lane`'s share (the same columns as `share_moments`).
fn normalize_share(rows: EightRows, s: RowStats, lane: u32) {
    let quads = params.dim / 4u;
    for (var q = lane; q < quads; q += WG) {
        normalize_quads(rows, s, q);
    }
    let tail = 4u * quads + lane;
    if (tail < params.dim) {
        normalize_column(rows, s, tail);
    }
}
