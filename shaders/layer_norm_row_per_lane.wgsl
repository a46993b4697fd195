// Layer normalisation, forward: one invocation (lane) normalises a block of
// eight whole rows (ROWS_PER_BLOCK); a workgroup of WG lanes takes 8 * WG
// consecutive rows. No barrier, no cross-lane reduction.
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// The host prepends layer_norm_common.wgsl (bindings, Params, helpers), a
// gamma/beta view, an input file and layer_norm_eight_rows.wgsl (the eight
// rows' loads, moments and stores, shared with the row-block kernel).
//
// Why: on adapters that run shaders on a CPU (Mesa's llvmpipe behind lavapipe
// and GL), a barrier costs a coroutine switch per lane group, and every
// buffer load or store is a loop over the lanes, one trip per lane, in which
// a vec4 moves four values for the price of about one. Time follows the
// number of those trips per value. This kernel has no barrier, reads gamma
// and beta once for eight rows, and where it can reads and writes whole
// vec4s. On a real GPU the lanes' strided rows would not coalesce; the plan
// does not pick this kernel there.
//
// Per four values of a row, where VEC4_ROWS (dim % 4 == 0, vec4-aligned
// tensors): x read twice and y written once as one vec4 each, gamma and beta
// an eighth of a vec4 each: 3.25 trips, against a copy's 2. Elsewhere the
// same loads go value by value (any dim, any alignment).
//
// Scheme, per row (the eight rows in step):
//   1. Welford moments of x - pivot (the row's first value: a constant row
//      gives exactly beta, and a row on a large offset keeps its precision),
//      merged a quad (four columns) at a time with Chan's formula, then the
//      last dim % 4 columns one by one.
//   2. rstd = 1 / sqrt(M2 / dim + epsilon).
//   3. Each value is re-read, normalised and written.
// Rows past the end of the tensor repeat the last row's work and are not written.
//
// Loops: a lane runs about dim / 2 + 40 iterations; the plan keeps dim at
// most 16,384, far below llvmpipe's cap of 65,535 iterations per invocation.

fn row_moments(rows: EightRows) -> Moments {
    let quads = params.dim / 4u;
    var m = Moments(0.0, vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var q = 0u; q < quads; q += 1u) {
        m = add_quad(m, rows, q);
    }
    for (var col = 4u * quads; col < params.dim; col += 1u) {
        m = add_column(m, rows, col);
    }
    return m;
}

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first = ((wid.y * groups.x + wid.x) * WG + lid) * ROWS_PER_BLOCK;
    if (first >= params.rows) {
        return;
    }
    var rows = eight_rows(first);

    // 1. Moments of the whole rows (again at RESCALE for rows where they
    //    overflowed: see layer_norm_common.wgsl).
    var m = row_moments(rows);
    rows = rescaled(rows, m.n, m.mean_lo, m.mean_hi, m.m2_lo, m.m2_hi);
    if (any_scaled(rows)) {
        m = row_moments(rows); // rows at scale 1 come out the same
    }
    let quads = params.dim / 4u;

    // 2. rstd (and mean and rstd written where asked).
    let s = row_stats_of(rows, m.mean_lo, m.mean_hi, m.m2_lo, m.m2_hi, true);
    if (!WRITE_Y) {
        return;
    }

    // 3. Normalise.
    for (var q = 0u; q < quads; q += 1u) {
        normalize_quads(rows, s, q);
    }
    for (var col = 4u * quads; col < params.dim; col += 1u) {
        normalize_column(rows, s, col);
    }
}
