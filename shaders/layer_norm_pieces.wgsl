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

// (count, shifted mean, M2, scale) of each piece, row-major: [row * SPLITS +
// piece]: moments of x * scale - pivot * scale.
@group(0) @binding(9) var<storage, read_write> piece_moments: array<vec4<f32>>;
// (pivot, shifted mean, rstd, scale) of each row (pivot and shifted mean
// scaled, rstd that of the scaled row; the pivot is 0 for RMSNorm).
@group(0) @binding(10) var<storage, read_write> row_stats: array<vec4<f32>>;

// m2 * RESCALE^2 (= 2^-192) for a finite m2 >= 0, on the bits: compilers
// fold RESCALE * RESCALE, and ldexp(m2, -192), into a multiply by 0.
fn times_rescale_squared(m2: f32) -> f32 {
    let bits = bitcast<u32>(m2);
    if (((bits >> 23u) & 0xffu) <= 192u) {
        return 0.0; // m2 < 2^65: under 2^-63 of the row's M2, which overflowed
    }
    return bitcast<f32>(bits - (192u << 23u));
}

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
    // Pieces come at scale 1 or RESCALE (those that overflowed on their own);
    // the row is at RESCALE if any piece is, or if merging the pieces at
    // scale 1 overflows. A piece at scale 1 is brought to RESCALE exactly
    // (powers of two), but for an M2 below 2^65, which becomes 0: under 2^-63
    // of the row's M2, which overflowed.
    let pivot = load_x(params.x_base + row * params.dim);
    let n = f32(params.dim);
    var acc = vec3<f32>(0.0);
    var scale = 1.0;
    for (var s = 0u; s < SPLITS; s += 1u) {
        let p = piece_moments[row * SPLITS + s];
        acc = chan_merge(acc, p.xyz);
        scale = min(scale, p.w);
    }
    if (scale != 1.0 || overflowed(pivot, acc.y, acc.z, n)) {
        scale = RESCALE;
        acc = vec3<f32>(0.0);
        for (var s = 0u; s < SPLITS; s += 1u) {
            var p = piece_moments[row * SPLITS + s];
            if (p.w == 1.0) {
                p = vec4<f32>(p.x, p.y * RESCALE, times_rescale_squared(p.z), RESCALE);
            }
            acc = chan_merge(acc, p.xyz);
        }
    }
    let spivot = pivot * scale;
    let rstd = scaled_rstd(spivot, acc.y, acc.z, n, scale);
    let c = centre(spivot, acc.y);
    row_stats[row] = vec4<f32>(c.x, c.y, rstd, scale);
    if (WRITE_MEAN) {
        store_mean(row, unscaled_mean(spivot, acc.y, scale));
    }
    if (WRITE_RSTD) {
        store_rstd(row, unscaled_rstd(rstd, scale));
    }
}
