// Backward of LayerNorm and RMSNorm. The host puts a storage prelude first
// (storage_f32.wgsl or storage_f16.wgsl, which defines `elem`) and a reduction
// file last (reduce_subgroup.wgsl or reduce_workgroup.wgsl, which provides
// `LaneIds` and `workgroup_sum`).
//
// With x̂ = (x - mean) * rstd (mean = 0 for RMSNorm) and g = dy * gamma:
//
//   LayerNorm   dx = rstd * (g - mean(g) - x̂ * mean(g * x̂))
//   RMSNorm     dx = rstd * (g - x̂ * mean(g * x̂))
//   both        dgamma = Σ_rows dy * x̂,   dbeta = Σ_rows dy   (LayerNorm)
//
// mean and rstd are the forward's saved statistics (the host recomputes them
// with a statistics-only forward when the caller has none). A saved f32 mean
// is off by up to half an ulp of the mean: on a row of 10000 + N(0, 1) that
// shifts every x̂ by ~5e-4. Since mean(x̂) = 0 exactly, LayerNorm re-centres:
// with x̃ = (x - mean) * rstd as computed, x̂ = x̃ - mean(x̃), which removes any
// constant error in the saved mean. The dx kernels store mean(x̃) per row in
// `row_centre` for the dgamma stage.
//
// Rows of very large values: x - mean can overflow, and a row whose standard
// deviation is past 2^100 has an rstd near or below f32's smallest normal,
// which GPUs that flush denormals read as 0. Each row has a scale: 1, or
// BACK_SCALE = 2^-120 where its saved rstd is below 2^-100 (or 0). Sums are
// taken over u = x * scale - mean * scale (exact: powers of two), with Σu²
// alongside, and x̃ = u * r, where r is rstd itself at scale 1 and, at
// BACK_SCALE, recomputed from the row, 1 / sqrt(Σu² / dim), in the scaled
// units (epsilon is far below a variance past 2^200). dx = r * (...) * scale.
//
// dx needs sums over its row (Σg, Σg·x̃, Σx̃), then a second walk over the row:
//
//   dx_four_rows_per_lane  one lane takes four consecutive rows, one in each
//                          component of a vec4 (no barrier, gamma read once
//                          for four rows: the choice where lanes are CPU
//                          threads), and also writes the four rows' column
//                          sums of dy·x̂ and dy as one dgamma/dbeta part;
//   dx_row_per_workgroup   WG lanes per row, partial sums met in `workgroup_sum`;
//   dx_split_sums, dx_split_combine, dx_split_apply
//                          for few long rows: each row cut into SPLITS
//                          pieces, a workgroup each; the pieces' sums, then
//                          one lane per row adds them in piece order, then
//                          each piece writes its dx.
//
// dgamma and dbeta are column sums over all rows, made deterministic in two
// stages and without atomics. Stage 1 writes one partial sum per (part of
// consecutive rows, column) into `param_partial_sums`: the four-rows kernel
// as it goes (a part is its four rows), the others through `param_partials`
// (one lane per column and part of `rows_per_part` rows, in row order).
// Stage 2, `param_sums`, has one lane per column add its parts in part order.
// The same plan gives the same additions in the same order: bit-identical
// results from run to run.

override WG: u32 = 64u;
// Lanes of dx_split_combine (one row each).
override COMBINE_WG: u32 = 64u;
override RMS: bool = false;
override HAS_GAMMA: bool = false;
override WRITE_DGAMMA: bool = false;
override WRITE_DBETA: bool = false;
// Pieces per row of the split-row entries.
override SPLITS: u32 = 1u;

struct Params {
    rows: u32,           // rows in this dispatch (param_sums: all rows)
    dim: u32,            // values per row
    x_base: u32,         // element index of row 0 in `x`
    dy_base: u32,        // element index of row 0 in `dy`
    dx_base: u32,        // element index of row 0 in `dx`
    gamma_base: u32,     // element index of gamma[0] in `gamma`
    mean_base: u32,      // element index of row 0 in `mean_in`
    rstd_base: u32,      // element index of row 0 in `rstd_in`
    dgamma_base: u32,    // element index of dgamma[0] in `dgamma`
    dbeta_base: u32,     // element index of dbeta[0] in `dbeta`
    part_base: u32,      // first part of this dispatch's rows, in `param_partial_sums`
    parts: u32,          // parts in all (the dbeta partials follow the dgamma ones)
    rows_per_part: u32,
    col_base: u32,       // the dgamma/dbeta stages: first column of this block
    block_cols: u32,     // the dgamma/dbeta stages: columns in the block (the
                         // partial sums of a block are [part][column of the block])
}

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read> dy: array<elem>;
@group(0) @binding(2) var<storage, read> gamma: array<elem>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<elem>;
// [part][column] sums of dy * x̂, then [parts + part][column] sums of dy.
@group(0) @binding(6) var<storage, read_write> param_partial_sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgamma: array<elem>;
@group(0) @binding(8) var<storage, read_write> dbeta: array<elem>;
@group(0) @binding(9) var<uniform> params: Params;
// (mean(x̃), r) of each row of the dispatch (written by the dx kernels for
// the dgamma stage; mean(x̃) is 0 for RMSNorm).
@group(0) @binding(10) var<storage, read_write> row_centre: array<vec2<f32>>;
// (Σg, Σg·u, Σu, Σu²) of each piece of each row: [row * SPLITS + piece].
@group(0) @binding(11) var<storage, read_write> piece_sums: array<vec4<f32>>;
// (Σg, Σg·u, Σu, Σu²) of each row, from its pieces.
@group(0) @binding(12) var<storage, read_write> row_sums: array<vec4<f32>>;

const BACK_SCALE: f32 = 0x1p-120f;

// The row's scale from its saved rstd (see the top of this file). A NaN rstd
// keeps scale 1, and the row comes out NaN.
fn row_scale(rstd: f32) -> f32 {
    return select(1.0, BACK_SCALE, rstd < 0x1p-100f);
}

// r (x̃ = u * r) from the saved rstd, the row's scale and its Σu².
fn row_r(rstd: f32, scale: f32, sum_uu: f32) -> f32 {
    if (scale == 1.0) {
        return rstd;
    }
    return inverseSqrt(sum_uu / f32(params.dim));
}

// The row's means of (g, g·x̃, x̃) from its sums of (g, g·u, u) and r.
fn row_means(sums: vec4<f32>, r: f32) -> vec3<f32> {
    return vec3<f32>(sums.x, sums.y * r, sums.z * r) / f32(params.dim);
}

fn row_mean(row: u32) -> f32 {
    if (RMS) {
        return 0.0;
    }
    return mean_in[params.mean_base + row];
}

// g = dy * gamma at column `col`.
fn grad_out(dy_value: f32, col: u32) -> f32 {
    if (HAS_GAMMA) {
        return dy_value * f32(gamma[params.gamma_base + col]);
    }
    return dy_value;
}

// One lane's share of (Σg, Σg·u, Σu, Σu²) over the row's columns first,
// first + stride, ... below end.
fn lane_sums(row: u32, first: u32, end: u32, stride: u32, mean: f32, scale: f32) -> vec4<f32> {
    let dim = params.dim;
    let x_row = params.x_base + row * dim;
    let dy_row = params.dy_base + row * dim;
    let smean = mean * scale;
    var sums = vec4<f32>(0.0);
    for (var c = first; c < end; c += stride) {
        let g = grad_out(f32(dy[dy_row + c]), c);
        let u = f32(x[x_row + c]) * scale - smean;
        sums += vec4<f32>(g, g * u, u, u * u);
    }
    return sums;
}

// Writes dx over the same columns from the row's means (of g, g·x̃, x̃), and
// mean(x̃) to `row_centre` when `writes_centre` (one lane per row).
fn write_dx(row: u32, first: u32, end: u32, stride: u32, mean: f32, scale: f32, r: f32, means: vec3<f32>, writes_centre: bool) {
    let dim = params.dim;
    let x_row = params.x_base + row * dim;
    let dy_row = params.dy_base + row * dim;
    let dx_row = params.dx_base + row * dim;
    // LayerNorm: x̂ = x̃ - mean(x̃), so mean(g·x̂) = mean(g·x̃) - mean(x̃)·mean(g).
    let centre = select(means.z, 0.0, RMS);
    let mean_g = select(means.x, 0.0, RMS);
    let mean_gx = means.y - centre * means.x;
    if (WRITE_DGAMMA && writes_centre) {
        row_centre[row] = vec2<f32>(centre, r);
    }
    let smean = mean * scale;
    for (var c = first; c < end; c += stride) {
        let g = grad_out(f32(dy[dy_row + c]), c);
        let xhat = (f32(x[x_row + c]) * scale - smean) * r - centre;
        dx[dx_row + c] = elem(r * (g - mean_g - xhat * mean_gx) * scale);
    }
}

fn load4(t_base: u32, rows: vec4<u32>, col: u32, which: u32) -> vec4<f32> {
    let dim = params.dim;
    let at = vec4<u32>(t_base) + rows * dim + vec4<u32>(col);
    if (which == 0u) {
        return vec4<f32>(f32(x[at.x]), f32(x[at.y]), f32(x[at.z]), f32(x[at.w]));
    }
    return vec4<f32>(f32(dy[at.x]), f32(dy[at.y]), f32(dy[at.z]), f32(dy[at.w]));
}

@compute @workgroup_size(WG)
fn dx_four_rows_per_lane(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Part `part` of the dgamma/dbeta sums is rows 4·part .. 4·part + 3.
    let part = (wid.y * groups.x + wid.x) * WG + lid;
    let first = part * 4u;
    if (first >= params.rows) {
        return;
    }
    let count = min(params.rows - first, 4u);
    // Rows past the end repeat the last row; they are not written, and
    // `valid` keeps them out of the column sums.
    let rows = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(first + count - 1u));
    let valid = vec4<f32>(vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(count));
    let dim = params.dim;
    var mean = vec4<f32>(0.0);
    if (!RMS) {
        mean = vec4<f32>(mean_in[params.mean_base + rows.x], mean_in[params.mean_base + rows.y],
                         mean_in[params.mean_base + rows.z], mean_in[params.mean_base + rows.w]);
    }
    let rstd = vec4<f32>(rstd_in[params.rstd_base + rows.x], rstd_in[params.rstd_base + rows.y],
                         rstd_in[params.rstd_base + rows.z], rstd_in[params.rstd_base + rows.w]);
    let scale = vec4<f32>(row_scale(rstd.x), row_scale(rstd.y), row_scale(rstd.z), row_scale(rstd.w));
    let smean = mean * scale;

    // 1. The rows' sums of g, g·u, u and u² (u = x * scale - mean * scale).
    var sum_g = vec4<f32>(0.0);
    var sum_gx = vec4<f32>(0.0);
    var sum_x = vec4<f32>(0.0);
    var sum_uu = vec4<f32>(0.0);
    for (var c = 0u; c < dim; c += 1u) {
        var g = load4(params.dy_base, rows, c, 1u);
        if (HAS_GAMMA) {
            g *= f32(gamma[params.gamma_base + c]);
        }
        let u = load4(params.x_base, rows, c, 0u) * scale - smean;
        sum_g += g;
        sum_gx += g * u;
        sum_x += u;
        sum_uu += u * u;
    }
    let n = f32(dim);
    let r = select(rstd, inverseSqrt(sum_uu / n), scale != vec4<f32>(1.0));
    sum_gx *= r;
    sum_x *= r;
    // LayerNorm re-centres x̂ (see the top of this file); RMSNorm does not.
    let centre = select(sum_x / n, vec4<f32>(0.0), RMS);
    let mean_g = select(sum_g / n, vec4<f32>(0.0), RMS);
    let mean_gx = sum_gx / n - centre * (sum_g / n);

    // 2. dx, and this part's column sums of dy·x̂ and dy.
    let dx_rows = vec4<u32>(params.dx_base) + rows * dim;
    let slot = params.part_base + part;
    for (var c = 0u; c < dim; c += 1u) {
        let d = load4(params.dy_base, rows, c, 1u);
        var g = d;
        if (HAS_GAMMA) {
            g *= f32(gamma[params.gamma_base + c]);
        }
        let xhat = (load4(params.x_base, rows, c, 0u) * scale - smean) * r - centre;
        let out = r * (g - mean_g - xhat * mean_gx) * scale;
        // Unrolled: llvmpipe caps the loop iterations of an invocation.
        dx[dx_rows.x + c] = elem(out.x);
        if (count > 1u) {
            dx[dx_rows.y + c] = elem(out.y);
        }
        if (count > 2u) {
            dx[dx_rows.z + c] = elem(out.z);
        }
        if (count > 3u) {
            dx[dx_rows.w + c] = elem(out.w);
        }
        if (WRITE_DGAMMA) {
            param_partial_sums[slot * dim + c] = dot(d * xhat, valid);
        }
        if (WRITE_DBETA) {
            param_partial_sums[(params.parts + slot) * dim + c] = dot(d, valid);
        }
    }
}

@compute @workgroup_size(WG)
fn dx_row_per_workgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let row = wid.y * groups.x + wid.x;
    if (row >= params.rows) {
        return; // whole workgroup: `row` is uniform
    }
    let mean = row_mean(row);
    let rstd = rstd_in[params.rstd_base + row];
    let scale = row_scale(rstd);
    let dim = params.dim;
    let sums = workgroup_sum4(lane_sums(row, ids.lid, dim, WG, mean, scale), ids);
    let r = row_r(rstd, scale, sums.w);
    write_dx(row, ids.lid, dim, WG, mean, scale, r, row_means(sums, r), ids.lid == 0u);
}

// The columns of piece `piece` of a row: begin .. end.
fn piece_columns(piece: u32) -> vec2<u32> {
    let len = (params.dim + SPLITS - 1u) / SPLITS;
    let begin = min(piece * len, params.dim);
    return vec2<u32>(begin, min(begin + len, params.dim));
}

@compute @workgroup_size(WG)
fn dx_split_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let index = wid.y * groups.x + wid.x;
    let row = index / SPLITS;
    if (row >= params.rows) {
        return; // whole workgroup
    }
    let cols = piece_columns(index % SPLITS);
    let mean = row_mean(row);
    let scale = row_scale(rstd_in[params.rstd_base + row]);
    let sums = workgroup_sum4(lane_sums(row, cols.x + ids.lid, cols.y, WG, mean, scale), ids);
    if (ids.lid == 0u) {
        piece_sums[index] = sums;
    }
}

// One lane per row: the row's sums from its pieces, in piece order, and
// (mean(x̃), r) for the dgamma stage.
@compute @workgroup_size(COMBINE_WG)
fn dx_split_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wid.y * groups.x + wid.x) * COMBINE_WG + lid;
    if (row >= params.rows) {
        return;
    }
    var sums = vec4<f32>(0.0);
    for (var s = 0u; s < SPLITS; s += 1u) {
        sums += piece_sums[row * SPLITS + s];
    }
    row_sums[row] = sums;
    if (WRITE_DGAMMA) {
        let rstd = rstd_in[params.rstd_base + row];
        let r = row_r(rstd, row_scale(rstd), sums.w);
        row_centre[row] = vec2<f32>(select(sums.z * r / f32(params.dim), 0.0, RMS), r);
    }
}

@compute @workgroup_size(WG)
fn dx_split_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let index = wid.y * groups.x + wid.x;
    let row = index / SPLITS;
    if (row >= params.rows) {
        return;
    }
    let cols = piece_columns(index % SPLITS);
    let mean = row_mean(row);
    let rstd = rstd_in[params.rstd_base + row];
    let scale = row_scale(rstd);
    let sums = row_sums[row];
    let r = row_r(rstd, scale, sums.w);
    write_dx(row, cols.x + lid, cols.y, WG, mean, scale, r, row_means(sums, r), false);
}

// Stage 1 of dgamma/dbeta: workgroup (column block, part); lane = one column
// of this dispatch's block of columns (block_cols from col_base: all of them
// unless their partial sums would not fit one binding).
@compute @workgroup_size(WG)
fn param_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let dim = params.dim;
    let block_cols = params.block_cols;
    let column_blocks = (block_cols + WG - 1u) / WG;
    let index = wid.y * groups.x + wid.x;
    let part = index / column_blocks;
    let bcol = (index % column_blocks) * WG + lid;
    let col = params.col_base + bcol;
    let first = part * params.rows_per_part;
    if (bcol >= block_cols || first >= params.rows) {
        return;
    }
    let end = min(first + params.rows_per_part, params.rows);
    var dgamma_sum = 0.0;
    var dbeta_sum = 0.0;
    for (var row = first; row < end; row += 1u) {
        let d = f32(dy[params.dy_base + row * dim + col]);
        let scale = row_scale(rstd_in[params.rstd_base + row]);
        let rc = row_centre[row];
        let xhat = (f32(x[params.x_base + row * dim + col]) * scale - row_mean(row) * scale) * rc.y - rc.x;
        dgamma_sum += d * xhat;
        dbeta_sum += d;
    }
    let slot = params.part_base + part;
    if (WRITE_DGAMMA) {
        param_partial_sums[slot * block_cols + bcol] = dgamma_sum;
    }
    if (WRITE_DBETA) {
        param_partial_sums[(params.parts + slot) * block_cols + bcol] = dbeta_sum;
    }
}

// Stage 2: one lane per column of the block adds the column's parts in order.
@compute @workgroup_size(WG)
fn param_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let block_cols = params.block_cols;
    let bcol = (wid.y * groups.x + wid.x) * WG + lid;
    if (bcol >= block_cols) {
        return;
    }
    let col = params.col_base + bcol;
    var dgamma_sum = 0.0;
    var dbeta_sum = 0.0;
    for (var p = 0u; p < params.parts; p += 1u) {
        if (WRITE_DGAMMA) {
            dgamma_sum += param_partial_sums[p * block_cols + bcol];
        }
        if (WRITE_DBETA) {
            dbeta_sum += param_partial_sums[(params.parts + p) * block_cols + bcol];
        }
    }
    if (WRITE_DGAMMA) {
        dgamma[params.dgamma_base + col] = elem(dgamma_sum);
    }
    if (WRITE_DBETA) {
        dbeta[params.dbeta_base + col] = elem(dbeta_sum);
    }
}

// ---------------------------------------------------------------------------
// dx_rows_cached, for GPUs: one workgroup per part of `rows_per_part`
// consecutive rows (the host picks parts so that the grid fills the GPU).
// Each lane holds its vec4 columns (lid, lid + WG, ...; at most CACHE4_B) of
// gamma in registers for the whole part, and per row reads x and dy once as
// vec4s into registers, takes one fused workgroup sum of (Σg, Σg·x̃, Σx̃),
// writes dx as vec4s, and adds dy·x̂ and dy to its columns' dgamma/dbeta sums.
// At the end it writes those sums as the part's partials (the layout
// `param_partials` writes), which `param_sums` adds in part order: one read
// of x and dy in all, deterministic. Needs every row vec4-aligned in x, dy
// and dx, and rows up to WG x CACHE4_B x 4 values (the host checks both).

const CACHE4_B: u32 = 8u;

@group(0) @binding(13) var<storage, read> x4: array<vec4<elem>>;
@group(0) @binding(14) var<storage, read> dy4: array<vec4<elem>>;
@group(0) @binding(15) var<storage, read_write> dx4: array<vec4<elem>>;

// gamma at columns 4 c4 .. 4 c4 + 3 (1 without gamma).
fn gamma_quad(c4: u32) -> vec4<f32> {
    if (HAS_GAMMA) {
        let g = params.gamma_base + 4u * c4;
        return vec4<f32>(f32(gamma[g]), f32(gamma[g + 1u]), f32(gamma[g + 2u]), f32(gamma[g + 3u]));
    }
    return vec4<f32>(1.0);
}

fn quad_sum(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

@compute @workgroup_size(WG)
fn dx_rows_cached(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    ids: LaneIds,
) {
    let part = wid.y * groups.x + wid.x;
    let first = part * params.rows_per_part;
    if (first >= params.rows) {
        return; // whole workgroup: `part` is uniform
    }
    let last = min(first + params.rows_per_part, params.rows);
    let lid = ids.lid;
    let dim = params.dim;
    let dim4 = dim / 4u;
    var g4: array<vec4<f32>, CACHE4_B>;
    var dg: array<vec4<f32>, CACHE4_B>;
    var db: array<vec4<f32>, CACHE4_B>;
    var xr: array<vec4<f32>, CACHE4_B>;
    var dyr: array<vec4<f32>, CACHE4_B>;
    for (var k = 0u; k < CACHE4_B; k += 1u) {
        let c = lid + k * WG;
        if (c < dim4) {
            g4[k] = gamma_quad(c);
        }
        dg[k] = vec4<f32>(0.0);
        db[k] = vec4<f32>(0.0);
    }
    for (var row = first; row < last; row += 1u) {
        let mean = row_mean(row);
        let rstd = rstd_in[params.rstd_base + row];
        let scale = row_scale(rstd);
        let smean = vec4<f32>(mean * scale);
        let x_row4 = (params.x_base + row * dim) / 4u;
        let dy_row4 = (params.dy_base + row * dim) / 4u;
        var s = vec4<f32>(0.0);
        for (var k = 0u; k < CACHE4_B; k += 1u) {
            let c = lid + k * WG;
            if (c < dim4) {
                let u = vec4<f32>(x4[x_row4 + c]) * scale - smean;
                let dv = vec4<f32>(dy4[dy_row4 + c]);
                xr[k] = u;
                dyr[k] = dv;
                let g = dv * g4[k];
                s += vec4<f32>(quad_sum(g), dot(g, u), quad_sum(u), dot(u, u));
            }
        }
        // The row's means of (g, g·x̃, x̃), as write_dx takes them.
        let sums = workgroup_sum4(s, ids);
        let r = row_r(rstd, scale, sums.w);
        let means = row_means(sums, r);
        let centre = select(means.z, 0.0, RMS);
        let mean_g = select(means.x, 0.0, RMS);
        let mean_gx = means.y - centre * means.x;
        let dx_row4 = (params.dx_base + row * dim) / 4u;
        for (var k = 0u; k < CACHE4_B; k += 1u) {
            let c = lid + k * WG;
            if (c < dim4) {
                let xhat = xr[k] * r - vec4<f32>(centre);
                let g = dyr[k] * g4[k];
                dx4[dx_row4 + c] = vec4<elem>(r * (g - vec4<f32>(mean_g) - xhat * mean_gx) * scale);
                dg[k] += dyr[k] * xhat;
                db[k] += dyr[k];
            }
        }
    }
    let slot = params.part_base + part;
    for (var k = 0u; k < CACHE4_B; k += 1u) {
        let c = lid + k * WG;
        if (c < dim4) {
            let col = 4u * c;
            for (var j = 0u; j < 4u; j += 1u) {
                if (WRITE_DGAMMA) {
                    param_partial_sums[slot * dim + col + j] = dg[k][j];
                }
                if (WRITE_DBETA) {
                    param_partial_sums[(params.parts + slot) * dim + col + j] = db[k][j];
                }
            }
        }
    }
}
