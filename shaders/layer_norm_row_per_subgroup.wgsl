// Layer normalisation, forward: one subgroup normalises one row; a workgroup
// takes ROWS_PER_WG consecutive rows (WG / the adapter's smallest subgroup size).
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// The host prepends layer_norm_common.wgsl (bindings, Params, helpers). Needs
// the SUBGROUP feature (only built on adapters that have it).
//
// Why: rows of up to a few thousand values are too short to keep a whole
// workgroup busy, and a workgroup's barriers cost more than the row. A subgroup
// reduces in registers (subgroupAdd), with no barrier and no workgroup memory.
// The subgroup size is read from the hardware: if it is larger than the
// smallest size the plan assumed, fewer subgroups exist and each takes several
// of the workgroup's rows in turn.
//
// Scheme, per row (as in layer_norm_row_per_workgroup.wgsl, with the subgroup
// in the workgroup's place):
//   1. Each lane keeps Welford moments of its share of x - pivot (the pivot is the
//      row's first element), merging one vec4 block at a time with Chan's formula;
//      the scalar head (up to a 16-byte boundary) and tail go one value at a time.
//   2. Two subgroupAdds combine the lanes exactly:
//        shifted_mean = sum(n_i * mean_i) / dim
//        M2           = sum(M2_i + n_i * (mean_i - shifted_mean)^2)
//   3. Each lane re-reads its share and writes y (vec4 loads and stores).
//
// Loops: a lane runs about 2 * dim / (4 * subgroup size) iterations per row, times
// the rows its subgroup takes; the plan keeps that far below llvmpipe's cap.

override ROWS_PER_WG: u32 = 8u;

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let first_row = (wid.y * groups.x + wid.x) * ROWS_PER_WG;
    let end_row = min(first_row + ROWS_PER_WG, params.rows);
    let dim = params.dim;
    for (var row = first_row + subgroup; row < end_row; row += subgroups) {
        let r = row_split(params.x_base + row * dim, dim);
        let y_row = params.y_base + row * dim;
        let ends = vec2<bool>(true, true);
        let n_row = f32(dim);

        // 1. This lane's moments of x - pivot, 2. combined over the subgroup;
        //    taken again at RESCALE where they overflowed.
        x_scale = 1.0;
        var pivot = load_x(r.x_row);
        var acc = lane_moments(r, 0u, r.body4, ends, pivot, lane, lanes);
        var shifted_mean = subgroupAdd(acc.x * acc.y) / n_row;
        var lane_dev = acc.y - shifted_mean;
        var m2 = subgroupAdd(acc.z + acc.x * lane_dev * lane_dev);
        if (overflowed(pivot, shifted_mean, m2, n_row)) {
            x_scale = RESCALE;
            pivot = load_x(r.x_row);
            acc = lane_moments(r, 0u, r.body4, ends, pivot, lane, lanes);
            shifted_mean = subgroupAdd(acc.x * acc.y) / n_row;
            lane_dev = acc.y - shifted_mean;
            m2 = subgroupAdd(acc.z + acc.x * lane_dev * lane_dev);
        }
        let rstd = row_rstd(pivot, shifted_mean, m2, n_row);
        if (lane == 0u) {
            if (WRITE_MEAN) {
                store_mean(row, unscaled_mean(pivot, shifted_mean, x_scale));
            }
            if (WRITE_RSTD) {
                store_rstd(row, unscaled_rstd(rstd, x_scale));
            }
        }

        // 3. Normalise.
        let c = centre(pivot, shifted_mean);
        normalize_lane(r, y_row, 0u, r.body4, ends, c.x, c.y, rstd, lane, lanes);
    }
}
