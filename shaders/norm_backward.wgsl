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
// dx needs two sums per row, Σg and Σg·x̂: `dx_row_per_lane` gives a row to one
// lane (no barrier: the choice where lanes are CPU threads), while
// `dx_row_per_workgroup` spreads a row over WG lanes whose partial sums meet
// in `workgroup_sum`. Each then re-reads the row to write dx.
//
// dgamma and dbeta are column sums over all rows, made deterministic in two
// stages and without atomics: `param_partials` has one lane per (column, part
// of ROWS_PER_PART consecutive rows) sum its part in row order into
// `param_partial_sums`; `param_sums` has one lane per column add its parts in part order.
// The same plan gives the same additions in the same order: bit-identical
// results from run to run.

override WG: u32 = 64u;
const MAX_WG: u32 = 1024u;
override RMS: bool = false;
override HAS_GAMMA: bool = false;
override WRITE_DGAMMA: bool = false;
override WRITE_DBETA: bool = false;

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
// mean(x̃) of each row of the dispatch (LayerNorm; written by the dx kernels).
@group(0) @binding(10) var<storage, read_write> row_centre: array<f32>;

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

// One lane's share of (Σg, Σg·x̃, Σx̃) over the row's columns lane,
// lane + stride, ...
fn lane_sums(row: u32, lane: u32, stride: u32, mean: f32, rstd: f32) -> vec3<f32> {
    let dim = params.dim;
    let x_row = params.x_base + row * dim;
    let dy_row = params.dy_base + row * dim;
    var sums = vec3<f32>(0.0);
    for (var c = lane; c < dim; c += stride) {
        let g = grad_out(f32(dy[dy_row + c]), c);
        let xt = (f32(x[x_row + c]) - mean) * rstd;
        sums += vec3<f32>(g, g * xt, xt);
    }
    return sums;
}

// Writes dx over the same columns from the row's means (of g, g·x̃, x̃), and
// mean(x̃) to `row_centre` (one lane).
fn write_dx(row: u32, lane: u32, stride: u32, mean: f32, rstd: f32, means: vec3<f32>) {
    let dim = params.dim;
    let x_row = params.x_base + row * dim;
    let dy_row = params.dy_base + row * dim;
    let dx_row = params.dx_base + row * dim;
    // LayerNorm: x̂ = x̃ - mean(x̃), so mean(g·x̂) = mean(g·x̃) - mean(x̃)·mean(g).
    let centre = select(means.z, 0.0, RMS);
    let mean_g = select(means.x, 0.0, RMS);
    let mean_gx = means.y - centre * means.x;
    if (WRITE_DGAMMA && lane == 0u) {
        row_centre[row] = centre;
    }
    for (var c = lane; c < dim; c += stride) {
        let g = grad_out(f32(dy[dy_row + c]), c);
        let xhat = (f32(x[x_row + c]) - mean) * rstd - centre;
        dx[dx_row + c] = elem(rstd * (g - mean_g - xhat * mean_gx));
    }
}

@compute @workgroup_size(WG)
fn dx_row_per_lane(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wid.y * groups.x + wid.x) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let mean = row_mean(row);
    let rstd = rstd_in[params.rstd_base + row];
    let sums = lane_sums(row, 0u, 1u, mean, rstd);
    write_dx(row, 0u, 1u, mean, rstd, sums / f32(params.dim));
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
    let sums = lane_sums(row, ids.lid, WG, mean, rstd);
    let n = f32(params.dim);
    let means = vec3<f32>(
        workgroup_sum(sums.x, ids),
        workgroup_sum(sums.y, ids),
        workgroup_sum(sums.z, ids),
    ) / n;
    write_dx(row, ids.lid, WG, mean, rstd, means);
}

// Stage 1 of dgamma/dbeta: workgroup (column block, part); lane = one column.
@compute @workgroup_size(WG)
fn param_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let dim = params.dim;
    let column_blocks = (dim + WG - 1u) / WG;
    let index = wid.y * groups.x + wid.x;
    let part = index / column_blocks;
    let col = (index % column_blocks) * WG + lid;
    let first = part * params.rows_per_part;
    if (col >= dim || first >= params.rows) {
        return;
    }
    let end = min(first + params.rows_per_part, params.rows);
    var dgamma_sum = 0.0;
    var dbeta_sum = 0.0;
    for (var row = first; row < end; row += 1u) {
        let d = f32(dy[params.dy_base + row * dim + col]);
        let xt = (f32(x[params.x_base + row * dim + col]) - row_mean(row)) * rstd_in[params.rstd_base + row];
        let xhat = xt - row_centre[row];
        dgamma_sum += d * xhat;
        dbeta_sum += d;
    }
    let slot = params.part_base + part;
    if (WRITE_DGAMMA) {
        param_partial_sums[slot * dim + col] = dgamma_sum;
    }
    if (WRITE_DBETA) {
        param_partial_sums[(params.parts + slot) * dim + col] = dbeta_sum;
    }
}

// Stage 2: one lane per column adds the column's parts in order.
@compute @workgroup_size(WG)
fn param_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let dim = params.dim;
    let col = (wid.y * groups.x + wid.x) * WG + lid;
    if (col >= dim) {
        return;
    }
    var dgamma_sum = 0.0;
    var dbeta_sum = 0.0;
    for (var p = 0u; p < params.parts; p += 1u) {
        if (WRITE_DGAMMA) {
            dgamma_sum += param_partial_sums[p * dim + col];
        }
        if (WRITE_DBETA) {
            dbeta_sum += param_partial_sums[(params.parts + p) * dim + col];
        }
    }
    if (WRITE_DGAMMA) {
        dgamma[params.dgamma_base + col] = elem(dgamma_sum);
    }
    if (WRITE_DBETA) {
        dbeta[params.dbeta_base + col] = elem(dbeta_sum);
    }
}
