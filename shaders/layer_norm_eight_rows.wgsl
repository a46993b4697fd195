// Eight rows in step: what the row-per-lane and row-block kernels share.
//
// A lane works on the same columns of eight consecutive rows at once. Rows
// 0-3 of the block are the components of the `_lo` vectors, rows 4-7 those
// of `_hi`, so the arithmetic of one step is a few vec4 operations for all
// eight rows, and gamma and beta are read once for the eight. Columns are
// taken four at a time ("quads": columns 4q .. 4q + 3): as one vec4 load where
// VEC4_ROWS (every row vec4-aligned), else value by value; the last dim % 4
// columns one at a time.
//
// Moments are Welford's (count, mean, M2) of x - pivot (the row's first
// value, as in every kernel here): each quad of a row is merged as a block
// (4, block mean, block M2) with Chan's formula, each lone column with
// Welford's update. The eight rows share the count, so one division serves
// them all.
//
// Rows whose moments overflow (see layer_norm_common.wgsl) are taken again
// with their values scaled by RESCALE: each row has its own scale (1 or
// RESCALE), applied to every value loaded here.

const ROWS_PER_BLOCK: u32 = 8u;

// The eight rows first .. first + 7 of a block. Rows past the tensor's end
// repeat its last row (their work is done but not written).
struct EightRows {
    first: u32,
    count: u32,          // rows of the block inside the tensor, 1-8
    x_lo: vec4<u32>,     // element index in `x` of each row's first value
    x_hi: vec4<u32>,
    y_lo: vec4<u32>,     // element index in `y` of each row's first value
    y_hi: vec4<u32>,
    pivot_lo: vec4<f32>,  // each row's first value
    pivot_hi: vec4<f32>,
    scale_lo: vec4<f32>,  // each row's scale (1 or RESCALE)
    scale_hi: vec4<f32>,
    spivot_lo: vec4<f32>, // pivot * scale
    spivot_hi: vec4<f32>,
}

fn eight_rows(first: u32) -> EightRows {
    var r: EightRows;
    r.first = first;
    r.count = min(params.rows - first, ROWS_PER_BLOCK);
    let last = vec4<u32>(first + r.count - 1u);
    let lo = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), last);
    let hi = min(vec4<u32>(first) + vec4<u32>(4u, 5u, 6u, 7u), last);
    r.x_lo = vec4<u32>(params.x_base) + lo * params.dim;
    r.x_hi = vec4<u32>(params.x_base) + hi * params.dim;
    r.y_lo = vec4<u32>(params.y_base) + lo * params.dim;
    r.y_hi = vec4<u32>(params.y_base) + hi * params.dim;
    r.pivot_lo = vec4<f32>(load_x(r.x_lo.x), load_x(r.x_lo.y), load_x(r.x_lo.z), load_x(r.x_lo.w));
    r.pivot_hi = vec4<f32>(load_x(r.x_hi.x), load_x(r.x_hi.y), load_x(r.x_hi.z), load_x(r.x_hi.w));
    return with_scales(r, vec4<f32>(1.0), vec4<f32>(1.0));
}

fn with_scales(rows: EightRows, lo: vec4<f32>, hi: vec4<f32>) -> EightRows {
    var r = rows;
    r.scale_lo = lo;
    r.scale_hi = hi;
    r.spivot_lo = r.pivot_lo * lo;
    r.spivot_hi = r.pivot_hi * hi;
    return r;
}

// Which of the eight rows' moments (shifted means and M2s over `n` values,
// taken at scale 1) overflowed on a finite pivot; those rows get RESCALE.
fn rescaled(rows: EightRows, n: f32, shifted_lo: vec4<f32>, shifted_hi: vec4<f32>, m2_lo: vec4<f32>, m2_hi: vec4<f32>) -> EightRows {
    let lo = overflowed4(rows.pivot_lo, shifted_lo, m2_lo / n) & (rows.scale_lo == vec4<f32>(1.0));
    let hi = overflowed4(rows.pivot_hi, shifted_hi, m2_hi / n) & (rows.scale_hi == vec4<f32>(1.0));
    return with_scales(rows, select(rows.scale_lo, vec4<f32>(RESCALE), lo), select(rows.scale_hi, vec4<f32>(RESCALE), hi));
}

fn overflowed4(pivot: vec4<f32>, shifted: vec4<f32>, ms: vec4<f32>) -> vec4<bool> {
    let mean = pivot + shifted;
    var ok = finite4(ms) & finite4(shifted) & finite4(mean);
    if (RMS) {
        ok = ok & finite4(ms + mean * mean);
    }
    return finite4(pivot) & !ok;
}

fn any_scaled(rows: EightRows) -> bool {
    return any(rows.scale_lo != vec4<f32>(1.0)) || any(rows.scale_hi != vec4<f32>(1.0));
}

// Columns 4q .. 4q + 3 of the row whose first value is element `x_row` of `x`.
fn quad(x_row: u32, q: u32) -> vec4<f32> {
    if (VEC4_ROWS) {
        return load_x4(x_row / 4u + q);
    }
    let i = x_row + 4u * q;
    return vec4<f32>(load_x(i), load_x(i + 1u), load_x(i + 2u), load_x(i + 3u));
}

// One value of each of four rows, at row-relative column `col`.
fn column4(x_rows: vec4<u32>, col: u32) -> vec4<f32> {
    return vec4<f32>(load_x(x_rows.x + col), load_x(x_rows.y + col), load_x(x_rows.z + col), load_x(x_rows.w + col));
}

// A lane's running moments of its share of the eight rows.
struct Moments {
    n: f32,              // values of each row seen (the same for the eight)
    mean_lo: vec4<f32>,  // mean of x - pivot
    mean_hi: vec4<f32>,
    m2_lo: vec4<f32>,    // sum of squared deviations from that mean
    m2_hi: vec4<f32>,
}

// Block means and M2s of four rows' quads `a` .. `d`, one row per component.
fn block_means(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> vec4<f32> {
    let q = vec4<f32>(0.25);
    return vec4<f32>(dot(a, q), dot(b, q), dot(c, q), dot(d, q));
}

fn block_m2s(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, means: vec4<f32>) -> vec4<f32> {
    let da = a - vec4<f32>(means.x);
    let db = b - vec4<f32>(means.y);
    let dc = c - vec4<f32>(means.z);
    let dd = d - vec4<f32>(means.w);
    return vec4<f32>(dot(da, da), dot(db, db), dot(dc, dc), dot(dd, dd));
}

// Chan's merge of four rows' states (count n, `mean`, `m2`) with blocks of 4.
struct Merged {
    mean: vec4<f32>,
    m2: vec4<f32>,
}

fn merge_quads(n: f32, mean: vec4<f32>, m2: vec4<f32>, x_rows: vec4<u32>, pivot: vec4<f32>, scale: vec4<f32>, q: u32) -> Merged {
    let a = quad(x_rows.x, q) * scale.x - vec4<f32>(pivot.x);
    let b = quad(x_rows.y, q) * scale.y - vec4<f32>(pivot.y);
    let c = quad(x_rows.z, q) * scale.z - vec4<f32>(pivot.z);
    let d = quad(x_rows.w, q) * scale.w - vec4<f32>(pivot.w);
    let means = block_means(a, b, c, d);
    let w = 4.0 / (n + 4.0);
    let delta = means - mean;
    return Merged(mean + delta * w, m2 + block_m2s(a, b, c, d, means) + delta * delta * (n * w));
}

// Adds quad `q` of the eight rows.
fn add_quad(m: Moments, rows: EightRows, q: u32) -> Moments {
    let lo = merge_quads(m.n, m.mean_lo, m.m2_lo, rows.x_lo, rows.spivot_lo, rows.scale_lo, q);
    let hi = merge_quads(m.n, m.mean_hi, m.m2_hi, rows.x_hi, rows.spivot_hi, rows.scale_hi, q);
    return Moments(m.n + 4.0, lo.mean, hi.mean, lo.m2, hi.m2);
}

// Adds the single column `col` of the eight rows (Welford's update).
fn add_column(m: Moments, rows: EightRows, col: u32) -> Moments {
    let n = m.n + 1.0;
    let inv = 1.0 / n;
    let v_lo = column4(rows.x_lo, col) * rows.scale_lo - rows.spivot_lo;
    let v_hi = column4(rows.x_hi, col) * rows.scale_hi - rows.spivot_hi;
    let d_lo = v_lo - m.mean_lo;
    let d_hi = v_hi - m.mean_hi;
    let mean_lo = m.mean_lo + d_lo * inv;
    let mean_hi = m.mean_hi + d_hi * inv;
    return Moments(n, mean_lo, mean_hi, m.m2_lo + d_lo * (v_lo - mean_lo), m.m2_hi + d_hi * (v_hi - mean_hi));
}

// The eight rows' statistics: shifted means (of x * scale - pivot * scale)
// and the rstd of the scaled rows.
struct RowStats {
    shifted_lo: vec4<f32>,
    shifted_hi: vec4<f32>,
    rstd_lo: vec4<f32>,
    rstd_hi: vec4<f32>,
}

// From whole-row moments: rstd = 1 / sqrt(M2 / dim + epsilon * scale^2); for
// RMSNorm the mean square is var + mean^2. Writes the unscaled mean and rstd
// where asked.
fn row_stats_of(rows: EightRows, shifted_lo: vec4<f32>, shifted_hi: vec4<f32>, m2_lo: vec4<f32>, m2_hi: vec4<f32>, write: bool) -> RowStats {
    let n = f32(params.dim);
    var ms_lo = m2_lo / n;
    var ms_hi = m2_hi / n;
    // Rows holding NaN or Inf get a NaN rstd (see row_rstd).
    let ok_lo = finite4(ms_lo) & finite4(shifted_lo) & finite4(rows.spivot_lo);
    let ok_hi = finite4(ms_hi) & finite4(shifted_hi) & finite4(rows.spivot_hi);
    ms_lo = select(ms_lo, vec4<f32>(0.0), ms_lo < vec4<f32>(0.0));
    ms_hi = select(ms_hi, vec4<f32>(0.0), ms_hi < vec4<f32>(0.0));
    let mean_lo = rows.spivot_lo + shifted_lo;
    let mean_hi = rows.spivot_hi + shifted_hi;
    if (RMS) {
        ms_lo += mean_lo * mean_lo;
        ms_hi += mean_hi * mean_hi;
    }
    let nan = vec4<f32>(nan());
    let s = RowStats(
        shifted_lo,
        shifted_hi,
        select(nan, rstd4(ms_lo, rows.scale_lo), ok_lo),
        select(nan, rstd4(ms_hi, rows.scale_hi), ok_hi),
    );
    if (write) {
        let out_mean_lo = mean_lo / rows.scale_lo;
        let out_mean_hi = mean_hi / rows.scale_hi;
        let out_rstd_lo = s.rstd_lo * rows.scale_lo;
        let out_rstd_hi = s.rstd_hi * rows.scale_hi;
        for (var r = 0u; r < rows.count; r += 1u) {
            let k = r % 4u;
            store_mean(rows.first + r, select(out_mean_hi[k], out_mean_lo[k], r < 4u));
            store_rstd(rows.first + r, select(out_rstd_hi[k], out_rstd_lo[k], r < 4u));
        }
    }
    return s;
}

// 1 / sqrt(ms + epsilon * scale^2), as `scaled_rstd` for four rows.
fn rstd4(ms: vec4<f32>, scale: vec4<f32>) -> vec4<f32> {
    let t = ms + vec4<f32>(params.epsilon) * scale * scale;
    return select(inverseSqrt(t), vec4<f32>(inverseSqrt(params.epsilon)) / scale, t == vec4<f32>(0.0));
}

// (v - pivot) * scale, for an unscaled pivot: halved first so that it
// cannot overflow, and subtracted before scaling, since Mesa's compiler
// turns v * scale - a - b into v * scale - (a + b), which loses the digits of
// a row on a large offset (a is the pivot, b the small shifted mean).
fn deviation(v: vec4<f32>, pivot: f32, scale: f32) -> vec4<f32> {
    return (v * 0.5 - vec4<f32>(pivot * 0.5)) * (2.0 * scale);
}

fn deviation4(v: vec4<f32>, pivot: vec4<f32>, scale: vec4<f32>) -> vec4<f32> {
    return (v * 0.5 - pivot * 0.5) * (2.0 * scale);
}

// Normalises quad `q` of one row and writes it (and s): y = ((x - pivot) *
// scale - shifted mean) * rstd * g + b (pivot unscaled), as one vec4 store
// where VEC4_ROWS.
fn normalize_quad(x_row: u32, y_row: u32, q: u32, pivot: f32, shifted_mean: f32, rstd: f32, scale: f32, g: vec4<f32>, b: vec4<f32>) {
    let v = quad(x_row, q);
    let col = 4u * q;
    store_sum(v.x, y_row, col);
    store_sum(v.y, y_row, col + 1u);
    store_sum(v.z, y_row, col + 2u);
    store_sum(v.w, y_row, col + 3u);
    let c = centre(pivot, shifted_mean);
    store_y4(y_row + col, (deviation(v, c.x, scale) - vec4<f32>(c.y)) * rstd * g + b);
}

// Quad `q` of the block's rows inside the tensor, gamma and beta read once.
fn normalize_quads(rows: EightRows, s: RowStats, q: u32) {
    var g = vec4<f32>(1.0);
    var b = vec4<f32>(0.0);
    if (HAS_GAMMA) {
        g = gamma4_at(4u * q);
    }
    if (HAS_BETA) {
        b = beta4_at(4u * q);
    }
    let n = rows.count;
    normalize_quad(rows.x_lo.x, rows.y_lo.x, q, rows.pivot_lo.x, s.shifted_lo.x, s.rstd_lo.x, rows.scale_lo.x, g, b);
    if (n > 1u) { normalize_quad(rows.x_lo.y, rows.y_lo.y, q, rows.pivot_lo.y, s.shifted_lo.y, s.rstd_lo.y, rows.scale_lo.y, g, b); }
    if (n > 2u) { normalize_quad(rows.x_lo.z, rows.y_lo.z, q, rows.pivot_lo.z, s.shifted_lo.z, s.rstd_lo.z, rows.scale_lo.z, g, b); }
    if (n > 3u) { normalize_quad(rows.x_lo.w, rows.y_lo.w, q, rows.pivot_lo.w, s.shifted_lo.w, s.rstd_lo.w, rows.scale_lo.w, g, b); }
    if (n > 4u) { normalize_quad(rows.x_hi.x, rows.y_hi.x, q, rows.pivot_hi.x, s.shifted_hi.x, s.rstd_hi.x, rows.scale_hi.x, g, b); }
    if (n > 5u) { normalize_quad(rows.x_hi.y, rows.y_hi.y, q, rows.pivot_hi.y, s.shifted_hi.y, s.rstd_hi.y, rows.scale_hi.y, g, b); }
    if (n > 6u) { normalize_quad(rows.x_hi.z, rows.y_hi.z, q, rows.pivot_hi.z, s.shifted_hi.z, s.rstd_hi.z, rows.scale_hi.z, g, b); }
    if (n > 7u) { normalize_quad(rows.x_hi.w, rows.y_hi.w, q, rows.pivot_hi.w, s.shifted_hi.w, s.rstd_hi.w, rows.scale_hi.w, g, b); }
}

// The single column `col` of the block's rows inside the tensor.
fn normalize_column(rows: EightRows, s: RowStats, col: u32) {
    let v_lo = column4(rows.x_lo, col);
    let v_hi = column4(rows.x_hi, col);
    let lo = (deviation4(v_lo, select(rows.pivot_lo, vec4<f32>(0.0), RMS), rows.scale_lo) - select(s.shifted_lo, vec4<f32>(0.0), RMS)) * s.rstd_lo;
    let hi = (deviation4(v_hi, select(rows.pivot_hi, vec4<f32>(0.0), RMS), rows.scale_hi) - select(s.shifted_hi, vec4<f32>(0.0), RMS)) * s.rstd_hi;
    for (var r = 0u; r < rows.count; r += 1u) {
        let k = r % 4u;
        let y_row = select(rows.y_hi[k], rows.y_lo[k], r < 4u);
        let v = select(v_hi[k], v_lo[k], r < 4u);
        store_sum(v, y_row, col);
        store_y(y_row + col, affine(select(hi[k], lo[k], r < 4u), col));
    }
}
