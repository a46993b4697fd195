// Rows cut into pieces whose moments are combined in a dispatch of their
// own: shared by the split-row kernel (a piece is a run of a row, one
// workgroup each) and the row-block kernel without subgroups (a piece is one
// lane's share of a row). The host puts this file after the kernel's helpers.
//
//   (pieces)       every piece writes its (count, shifted mean, M2) to
//                  `piece_moments` (moments of x - pivot, the row's first value)
//   split_combine  one lane per row: merges the row's SPLITS pieces with
//                  Chan's formula, writes (pivot, shifted mean, rstd) to
//                  `row_stats`, and the mean and rstd outputs
//   (apply)        every piece reads its row's `row_stats` and normalises

// Pieces per row.
override SPLITS: u32 = 8u;

// (count, shifted mean, M2) of each piece, row-major: [row * SPLITS + piece].
@group(0) @binding(9) var<storage, read_write> piece_moments: array<vec4<f32>>;
// (pivot, shifted mean, rstd) of each row.
@group(0) @binding(10) var<storage, read_write> row_stats: array<vec4<f32>>;

@compute @workgroup_size(COMBINE_WG)
fn split_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wid.y * groups.x + wid.x) * COMBINE_WG + lid;
    if (row >= params.rows) {
        return;
    }
    var acc = vec3<f32>(0.0);
    for (var s = 0u; s < SPLITS; s += 1u) {
        acc = chan_merge(acc, piece_moments[row * SPLITS + s].xyz);
    }
    let pivot = load_x(params.x_base + row * params.dim);
    let rstd = row_rstd(pivot, acc.y, acc.z, f32(params.dim));
    let c = centre(pivot, acc.y);
    row_stats[row] = vec4<f32>(c.x, c.y, rstd, 0.0);
    if (WRITE_MEAN) {
        store_mean(row, pivot + acc.y);
    }
    if (WRITE_RSTD) {
        store_rstd(row, rstd);
    }
}
