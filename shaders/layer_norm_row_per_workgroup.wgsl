// Layer normalisation, forward: one workgroup normalises one row (medium and long rows).
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// The host prepends layer_norm_common.wgsl (bindings, Params, helpers) and
// appends one of the reduction files:
//   reduce_subgroup.wgsl  - subgroupAdd, then one slot per subgroup (adapters with SUBGROUP)
//   reduce_workgroup.wgsl - a tree in workgroup memory (everywhere else)
// Each defines `struct LaneIds` (the entry point's lane builtins; `.lid` is the
// lane's index in the workgroup) and `fn workgroup_sum(v, ids) -> f32`, which
// every lane of the workgroup calls together and which returns the sum of `v`
// over the workgroup to every lane.
//
// Scheme, per row:
//   1. Every lane keeps Welford moments (count, mean, M2) of its share of the row,
//      of values shifted by the row's first element (the pivot). The pivot makes a
//      constant row exactly constant (mean exact, M2 = 0, so y = beta) and keeps
//      full precision when the row sits on a large offset (10000 + N(0,1)):
//      x - pivot is exact there and the small shifted mean carries the digits.
//      A lane merges each vec4 it loads as one (4, mean4, M2_4) block with Chan's
//      formula, so there is one division per four values.
//   2. Two workgroup sums combine the lanes exactly (the parallel-variance formula):
//        shifted_mean = sum(n_i * mean_i) / dim
//        M2           = sum(M2_i + n_i * (mean_i - shifted_mean)^2)
//      Every term of the second sum is >= 0: no E[x^2] - E[x]^2 cancellation.
//   3. Every lane re-reads its share and writes y. x is read twice, y written once.
// A row whose moments overflow (values past ~1e19) is taken again at RESCALE
// (see layer_norm_common.wgsl): x is read three times for it.
//
// The row is split into a scalar head (up to the next 16-byte boundary), a vec4
// body read through `x4`, and a scalar tail (`row_split` in layer_norm_common.wgsl):
// vec4 loads for any dim and any alignment.
//
// Rows: the grid is 2-D (x up to 65,535 workgroups) and flattened here, so any row
// count works without a per-workgroup row loop. No lane loops more than
// 2 * ceil(dim / (4 * WG)) times plus the reduction: Mesa's llvmpipe silently stops
// an invocation's loops after 65,535 iterations, and the host picks WG so that a
// row never gets near that.

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let row = wid.y * groups.x + wid.x;
    if (row >= params.rows) {
        return; // whole workgroup: `row` is uniform
    }
    let lid = ids.lid;
    let dim = params.dim;
    let r = row_split(params.x_base + row * dim, dim);
    let y_row = params.y_base + row * dim;
    let ends = vec2<bool>(true, true);
    let n_row = f32(dim);

    // 1. This lane's moments of x - pivot, 2. combined over the lanes; taken
    //    again at RESCALE where they overflowed (decided for the workgroup).
    var pivot = load_x(r.x_row);
    var acc = lane_moments(r, 0u, r.body4, ends, pivot, lid, WG);
    var shifted_mean = workgroup_sum(acc.x * acc.y, ids) / n_row;
    var lane_dev = acc.y - shifted_mean;
    var m2 = workgroup_sum(acc.z + acc.x * lane_dev * lane_dev, ids);
    if (workgroup_decision(overflowed(pivot, shifted_mean, m2, n_row), ids)) {
        x_scale = RESCALE;
        pivot = load_x(r.x_row);
        acc = lane_moments(r, 0u, r.body4, ends, pivot, lid, WG);
        shifted_mean = workgroup_sum(acc.x * acc.y, ids) / n_row;
        lane_dev = acc.y - shifted_mean;
        m2 = workgroup_sum(acc.z + acc.x * lane_dev * lane_dev, ids);
    }
    let rstd = row_rstd(pivot, shifted_mean, m2, n_row);

    if (lid == 0u) {
        if (WRITE_MEAN) {
            store_mean(row, unscaled_mean(pivot, shifted_mean, x_scale));
        }
        if (WRITE_RSTD) {
            store_rstd(row, unscaled_rstd(rstd, x_scale));
        }
    }

    // 3. Normalise: (x - pivot - shifted_mean) * rstd, then gamma and beta.
    let c = centre(pivot, shifted_mean);
    normalize_lane(r, y_row, 0u, r.body4, ends, c.x, c.y, rstd, lid, WG);
}
