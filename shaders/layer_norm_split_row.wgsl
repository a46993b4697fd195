// Layer normalisation, forward, for long rows and few of them: each row is
// split into SPLITS pieces, each piece a workgroup, so that even a single row
// keeps the whole device busy. Three entry points, dispatched in this order
// (each dispatch sees the previous one's writes):
//
//   split_stats    one workgroup per (row, piece): Welford moments of the piece's
//                  x - pivot (the pivot is the row's first value, as in every
//                  kernel here), combined across the workgroup's lanes exactly,
//                  written to `piece_moments` as (count, mean, M2).
//   split_combine  one lane per row: merges the row's SPLITS pieces with
//                  Chan's formula, writes (pivot, shifted mean, rstd) to
//                  `row_stats`, and the mean and rstd outputs.
//   split_apply    one workgroup per (row, piece): normalises the piece.
//
// x is read twice and y written once, as in the one-workgroup-per-row kernel.
// The host prepends layer_norm_common.wgsl (and the gamma/beta view and input
// file), then layer_norm_pieces.wgsl (`SPLITS`, the scratch bindings and
// split_combine), and appends a reduction file (reduce_subgroup.wgsl or
// reduce_workgroup.wgsl), which provides `LaneIds` and `workgroup_sum`.
//
// Pieces: the row's vec4 body (after the scalar head that reaches a 16-byte
// boundary) is cut into SPLITS runs of `piece4` vec4s; the head goes with the
// first piece and the tail with the last.

struct Piece {
    row: u32,
    piece: u32,
    r: RowSplit,
    begin4: u32,          // the piece's body vec4s: begin4 .. end4
    end4: u32,
    ends: vec2<bool>,     // whether it takes the row's head and tail
}

fn piece_of(wid: vec3<u32>, groups: vec3<u32>) -> Piece {
    let index = wid.y * groups.x + wid.x;
    var p: Piece;
    p.row = index / SPLITS;
    p.piece = index % SPLITS;
    p.r = row_split(params.x_base + p.row * params.dim, params.dim);
    let piece4 = (p.r.body4 + SPLITS - 1u) / SPLITS;
    p.begin4 = min(p.piece * piece4, p.r.body4);
    p.end4 = min(p.begin4 + piece4, p.r.body4);
    p.ends = vec2<bool>(p.piece == 0u, p.piece == SPLITS - 1u);
    return p;
}

@compute @workgroup_size(WG)
fn split_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let p = piece_of(wid, groups);
    if (p.row >= params.rows) {
        return; // whole workgroup
    }
    let lid = ids.lid;
    var m = piece_moments_of(p, ids);
    // Again at RESCALE where the piece's moments overflowed (decided for the
    // workgroup); split_combine brings the pieces to one scale.
    if (workgroup_decision(m.x > 0.0 && overflowed(m.w, m.y, m.z, m.x), ids)) {
        x_scale = RESCALE;
        m = piece_moments_of(p, ids);
    }
    if (lid == 0u) {
        piece_moments[p.row * SPLITS + p.piece] = vec4<f32>(m.x, m.y, m.z, x_scale);
    }
}

// The piece's (count, mean, M2) of x - pivot, combined exactly across lanes
// (as in the one-workgroup-per-row kernel), and the pivot.
fn piece_moments_of(p: Piece, ids: LaneIds) -> vec4<f32> {
    let pivot = load_x(p.r.x_row);
    let acc = lane_moments(p.r, p.begin4, p.end4, p.ends, pivot, ids.lid, WG);
    let n = workgroup_sum(acc.x, ids);
    let mean = select(0.0, workgroup_sum(acc.x * acc.y, ids) / n, n > 0.0);
    let dev = acc.y - mean;
    let m2 = workgroup_sum(acc.z + acc.x * dev * dev, ids);
    return vec4<f32>(n, mean, m2, pivot);
}

@compute @workgroup_size(WG)
fn split_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = piece_of(wid, groups);
    if (p.row >= params.rows) {
        return;
    }
    let stats = row_stats[p.row];
    x_scale = stats.w;
    let pivot = stats.x;
    let shifted_mean = stats.y;
    let rstd = stats.z;
    let y_row = params.y_base + p.row * params.dim;
    normalize_lane(p.r, y_row, p.begin4, p.end4, p.ends, pivot, shifted_mean, rstd, lid, WG);
}
