// Normalisations whose statistics span a set of values that need not be one
// row: GroupNorm, InstanceNorm, BatchNorm and LpNorm (src/ops/grouped.rs says
// how each op maps onto these views; src/plan/grouped.rs sizes the grids).
//
// The tensor is seen as [A, B, C, D] (row-major). A *fine set* (a, c) is the
// B * D values with those indices; a per-channel scale and bias apply to
// channel c. A *statistic set* joins CG consecutive channels: it is the fine
// view [A, B, C / CG, CG * D]. GroupNorm over [N, C, S] is A = N, B = 1,
// D = S; channels-last [N, S, C] is B = S, D = 1; BatchNorm is A = 1, B = N;
// LpNorm along an axis of [outer, len, inner] is [outer, len, inner, 1].
//
// Every entry runs one invocation per item and no barriers (on lavapipe and
// GL a barrier costs more than the arithmetic), and every reduction has a
// fixed order, so results are bit-identical run to run:
//   stat_partials   one lane per (statistic set, piece): Welford moments, or
//                   the Lp sums at a power-of-two scale, of its piece of the
//                   set (8 adjacent lanes interleave over one stretch:
//                   `piece_range`);
//   stat_combine    one lane per statistic set: merges its pieces in order;
//                   writes (mean, rstd, scale) [and BatchNorm's running
//                   statistics], or LpNorm's coefficients;
//   given_stats     BatchNorm inference: (mean, rstd) from the inputs;
//   coefficients    one lane per fine set: y = dev(x) * alpha + beta';
//   apply           grid-stride over the elements: y (with SiLU);
//   grad_partials   one lane per (fine set, piece): sums of dz and dz * x̂;
//   grad_combine    one lane per fine set: those sums, in order;
//   grad_sets       one lane per statistic set: dx's coefficients;
//   grad_params     one lane per channel: dscale and dbias, summed over a;
//   grad_apply      grid-stride: dx.
// No invocation loops more than the host allows (Mesa's llvmpipe stops an
// invocation's loops after 65,535 iterations in all; DESIGN.md).

override WG: u32 = 64u;
// 0: mean and variance; 1: the Lp norm.
override MODE: u32 = 0u;
// Lp's p, 1 or 2.
override P_NORM: u32 = 2u;
// LpNorm's backward: pieces also sum dy * x / max.
override LP_GRAD: bool = false;
override HAS_SCALE: bool = false;
override HAS_BIAS: bool = false;
// y = z * sigmoid(z) after the affine.
override SILU: bool = false;
// BatchNorm training: write running_mean and running_var.
override RUNNING: bool = false;
// The statistics are inputs (BatchNorm inference): dx has no mean terms.
override CONST_STATS: bool = false;
// Runs of D values are whole vec4s (D % 4 == 0, the tensors' offsets
// aligned): the partials read cells of 4 values through x4 and dy4, and
// apply4 / grad_apply4 do the elementwise work; otherwise value by value.
override VEC4: bool = false;
// The given statistics are a forward's saved (mean, rstd), not BatchNorm's
// (input_mean, input_var).
override SAVED: bool = false;

struct Params {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    cg: u32,           // channels per statistic set
    stat_pieces: u32,  // pieces per statistic set
    fine_pieces: u32,  // pieces per fine set
    lanes: u32,        // invocations of the grid-stride entries
    n: u32,            // elements
    epsilon: f32,
    momentum: f32,
    unbiased: u32,     // running_var from the unbiased batch variance
    // Element offsets of the tensors inside their bindings.
    base_x: u32,
    base_dy: u32,
    base_scale: u32,
    base_bias: u32,
    base_out: u32,
    base_dscale: u32,
    base_dbias: u32,
    base_mean: u32,
    base_var: u32,
    base_running_mean: u32,
    base_running_var: u32,
    base_saved_mean: u32,
    base_saved_rstd: u32,
    runs_per_group: u32, // apply_runs, grad_apply_runs: consecutive runs a workgroup takes
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<elem>;
@group(0) @binding(1) var<storage, read> dy: array<elem>;
@group(0) @binding(2) var<storage, read> scale: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read> input_mean: array<f32>;
@group(0) @binding(5) var<storage, read> input_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> stats: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> coef: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> fine: array<vec2<f32>>;
@group(0) @binding(10) var<storage, read_write> out: array<elem>;
@group(0) @binding(11) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(12) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(13) var<storage, read_write> dscale: array<elem>;
@group(0) @binding(14) var<storage, read_write> dbias: array<elem>;
@group(0) @binding(15) var<uniform> params: Params;
@group(0) @binding(16) var<storage, read> x4: array<vec4<elem>>;
@group(0) @binding(17) var<storage, read> dy4: array<vec4<elem>>;
@group(0) @binding(18) var<storage, read_write> out4: array<vec4<elem>>;
@group(0) @binding(19) var<storage, read_write> saved_mean: array<f32>;
@group(0) @binding(20) var<storage, read_write> saved_rstd: array<f32>;

// NaN from bits held in a variable (Tint refuses a constant NaN) and
// finiteness on the bits (compilers may drop `x != x`).
var<private> nan_bits: u32 = 0x7fc00000u;

fn nan() -> f32 {
    return bitcast<f32>(nan_bits);
}

fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Sets whose moments overflow f32 (deviations past about 1.8e19) are taken
// again with every value scaled by RESCALE, a power of two (exact).
const RESCALE: f32 = 0x1p-96f;

fn lane_index(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * WG + lid;
}

fn load(i: u32) -> f32 {
    return f32(x[params.base_x + i]);
}

fn load_dy(i: u32) -> f32 {
    return f32(dy[params.base_dy + i]);
}

fn load4(i: u32) -> vec4<f32> {
    return vec4<f32>(x4[params.base_x / 4u + i]);
}

fn load_dy4(i: u32) -> vec4<f32> {
    return vec4<f32>(dy4[params.base_dy / 4u + i]);
}

fn scale_of(c: u32) -> f32 {
    if (HAS_SCALE) {
        return f32(scale[params.base_scale + c]);
    }
    return 1.0;
}

fn bias_of(c: u32) -> f32 {
    if (HAS_BIAS) {
        return f32(bias[params.base_bias + c]);
    }
    return 0.0;
}

// The values of set `set` of the view [A, B, cs, ds], j = first, first +
// step, …: where the next one is. Adjacent lanes of a set start at adjacent j.
struct Walk {
    at: u32,     // index of the current value
    left: u32,   // values still to visit, the current one included
    d: u32,      // its position inside its run of ds
    dq: u32,     // step / ds
    dr: u32,     // step % ds
    ds: u32,
    jump: u32,   // cs * ds: from one run of the set to its next
}

fn walk(sid: u32, cs: u32, ds: u32, first: u32, step: u32) -> Walk {
    return walk_to(sid, cs, ds, first, step, params.b * ds);
}

// Piece p of `pieces` of a set of `total` items: (first, step, end). With
// 8 pieces or more (a multiple of 8), each 8 adjacent lanes take one
// contiguous stretch of the set, interleaved (lavapipe runs a workgroup 8
// lanes at a time, each to its end: the 8 then stream memory in order);
// fewer pieces interleave over the whole set.
fn piece_range(p: u32, pieces: u32, total: u32) -> vec3<u32> {
    if (pieces < 8u) {
        return vec3<u32>(p, pieces, total);
    }
    let r = stretch_of(p, pieces, total);
    return vec3<u32>(r.x, 8u, r.y);
}

// The walk of piece p of set `sid` of the view [A, B, cs, ds].
fn piece_walk(sid: u32, cs: u32, ds: u32, p: u32, pieces: u32) -> Walk {
    let r = piece_range(p, pieces, params.b * ds);
    return walk_to(sid, cs, ds, r.x, r.y, r.z);
}

fn walk_to(sid: u32, cs: u32, ds: u32, first: u32, step: u32, total: u32) -> Walk {
    var w: Walk;
    let base = ((sid / cs) * params.b * cs + sid % cs) * ds;
    w.jump = cs * ds;
    w.ds = ds;
    w.d = first % ds;
    w.at = base + (first / ds) * w.jump + w.d;
    w.left = 0u;
    if (first < total) {
        w.left = (total - first + step - 1u) / step;
    }
    w.dq = step / ds;
    w.dr = step % ds;
    return w;
}

fn advance(w: ptr<function, Walk>) {
    var runs = (*w).dq;
    var d = (*w).d + (*w).dr;
    if (d >= (*w).ds) {
        d -= (*w).ds;
        runs += 1u;
    }
    (*w).at += runs * (*w).jump + d - (*w).d;
    (*w).d = d;
    (*w).left -= 1u;
}

// A value's deviation from its set's pivot p at scale k: (x - p) * k, exact
// for values near p, or x * k - p * k where that would overflow. The
// multiply by k (1 at run time) keeps compilers from reassociating
// `(x - p) - mean` into `x - (p + mean)`, which loses the precision the
// pivot is for (Mesa's NIR does; DESIGN.md). Where no mean is subtracted
// next (the apply entries fold it into the bias), `x * k - p * k` alone
// is as exact and cheaper.
fn dev(v: f32, p: f32, k: f32) -> f32 {
    return select(v * k - p * k, (v - p) * k, k == 1.0);
}

fn dev4(v: vec4<f32>, p: f32, k: f32) -> vec4<f32> {
    return select(v * k - p * k, (v - p) * k, k == 1.0);
}

// The same over cells of 4 values: each cell's own moments, merged.
fn piece_moments4(w0: Walk, p: f32, k: f32) -> vec3<f32> {
    var w = w0;
    var m = vec3<f32>(0.0);
    let bx = params.base_x / 4u;
    while (w.left > 0u) {
        let v = dev4(vec4<f32>(x4[bx + w.at]), p, k);
        let mean = (v.x + v.y + v.z + v.w) * 0.25;
        let d = v - vec4<f32>(mean);
        m = chan_merge(m, vec3<f32>(4.0, mean, dot(d, d)));
        advance(&w);
    }
    return m;
}

fn moments(w0: Walk, p: f32, k: f32) -> vec3<f32> {
    if (VEC4) {
        return piece_moments4(w0, p, k);
    }
    return piece_moments(w0, p, k);
}

// Welford's moments (count, mean, M2) of one piece's deviations.
fn piece_moments(w0: Walk, p: f32, k: f32) -> vec3<f32> {
    var w = w0;
    var m = vec3<f32>(0.0);
    while (w.left > 0u) {
        let v = dev(load(w.at), p, k);
        m.x += 1.0;
        let delta = v - m.y;
        m.y += delta / m.x;
        m.z += delta * (v - m.y);
        advance(&w);
    }
    return m;
}

// The pivot of statistic set `set`: its first value.
fn pivot(sid: u32) -> f32 {
    let cs = params.c / params.cg;
    return load(walk(sid, cs, params.cg * params.d, 0u, 1u).at);
}

fn pow_p(r: f32) -> f32 {
    if (P_NORM == 1u) {
        return r;
    }
    return r * r;
}

// Chan's merge of two Welford states (count, mean, M2).
fn chan_merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) {
        return a;
    }
    let n = a.x + b.x;
    let delta = b.y - a.y;
    let wb = b.x / n;
    return vec3<f32>(n, a.y + delta * wb, a.z + b.z + delta * delta * a.x * wb);
}

// v * 2^e for e <= 0, on the exponent bits (0 below f32's normal range; v
// where it is 0, Inf or NaN): a product by a power of two that cannot
// underflow halfway (`v * r * r` may be computed as `v * (r * r)`).
fn times_pow2(v: f32, e: i32) -> f32 {
    let bits = bitcast<u32>(v);
    let ex = i32((bits >> 23u) & 0xffu);
    if (ex == 0 || ex == 255) {
        return v;
    }
    let ne = ex + e;
    if (ne <= 0) {
        return 0.0;
    }
    return bitcast<f32>((bits & 0x807fffffu) | (u32(ne) << 23u));
}

// The exponent of a power of two.
fn log2_pow2(k: f32) -> i32 {
    return i32((bitcast<u32>(k) >> 23u) & 0xffu) - 127;
}

// M2 * RESCALE^2 on the exponent bits (a product folds to 0 on some compilers).
fn times_rescale_squared(m2: f32) -> f32 {
    let bits = bitcast<u32>(m2);
    if (((bits >> 23u) & 0xffu) <= 192u) {
        return 0.0;
    }
    return bitcast<f32>(bits - (192u << 23u));
}

@compute @workgroup_size(WG)
fn stat_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = lane_index(wid, groups, lid);
    let sets = params.a * (params.c / params.cg);
    let pieces = params.stat_pieces;
    if (t >= sets * pieces) {
        return;
    }
    let run = select(params.cg * params.d, params.cg * params.d / 4u, VEC4);
    let w0 = piece_walk(t / pieces, params.c / params.cg, run, t % pieces, pieces);
    if (MODE == 0u) {
        let p = pivot(t / pieces);
        var m = moments(w0, p, 1.0);
        var k = 1.0;
        if (!finite(m.y) || !finite(m.z)) {
            // Overflow, or NaN/Inf in the set (which stay NaN either way).
            k = RESCALE;
            m = moments(w0, p, k);
        }
        partials[t] = vec4<f32>(m, k);
        return;
    }
    // Lp: the sum of |x k|^p (and, backward, of dy x k) at k = 1, or where
    // that overflowed, or underflowed on values that are not all 0, again at
    // 2^-96 or 2^96 (powers of two: exact).
    var k = 1.0;
    var sums = lp_sums(w0, k);
    if (!finite(sums.x) || !finite(sums.y)) {
        k = RESCALE;
        sums = lp_sums(w0, k);
    } else if (P_NORM == 2u && sums.x < 0x1p-100f && sums.z > 0.0) {
        k = 0x1p96f;
        sums = lp_sums(w0, k);
    }
    partials[t] = vec4<f32>(sums.x, sums.y, k, 0.0);
}

fn pow_p4(r: vec4<f32>) -> vec4<f32> {
    if (P_NORM == 1u) {
        return abs(r);
    }
    return r * r;
}

// One piece's (sum of |x k|^p, sum of dy x k, sum of |x k|) at scale k.
fn lp_sums(w0: Walk, k: f32) -> vec3<f32> {
    var w = w0;
    var sums = vec3<f32>(0.0);
    while (w.left > 0u) {
        var v: vec4<f32>;
        var g = vec4<f32>(0.0);
        if (VEC4) {
            v = load4(w.at) * k;
            if (LP_GRAD) {
                g = load_dy4(w.at);
            }
        } else {
            v = vec4<f32>(load(w.at) * k, 0.0, 0.0, 0.0);
            if (LP_GRAD) {
                g = vec4<f32>(load_dy(w.at), 0.0, 0.0, 0.0);
            }
        }
        let vp = pow_p4(v);
        let a = abs(v);
        sums += vec3<f32>(vp.x + vp.y + vp.z + vp.w, dot(g, v), a.x + a.y + a.z + a.w);
        advance(&w);
    }
    return sums;
}

// Chan's merge, in order, of the moments of `pieces` pieces from `first`,
// each brought to scale k (1 or RESCALE) first.
fn merge_pieces(first: u32, pieces: u32, k: f32) -> vec3<f32> {
    var m = vec3<f32>(0.0);
    for (var p = 0u; p < pieces; p++) {
        let piece = partials[first + p];
        var b = piece.xyz;
        if (piece.w > k) {
            b = vec3<f32>(b.x, b.y * RESCALE, times_rescale_squared(b.z));
        }
        m = chan_merge(m, b);
    }
    return m;
}

// The Lp sums (sum of |x kk|^p, sum of dy x kk) of `pieces` pieces from
// `first`, each brought to scale kk (at most its own).
fn lp_merge(first: u32, pieces: u32, kk: f32) -> vec2<f32> {
    var sums = vec2<f32>(0.0);
    for (var p = 0u; p < pieces; p++) {
        let piece = partials[first + p];
        if (is_nan(piece.x) || piece.x != 0.0) {
            // (kk / k)^p and kk / k, powers of two, on the exponent bits.
            let e = log2_pow2(kk) - log2_pow2(piece.z);
            sums += vec2<f32>(times_pow2(piece.x, i32(P_NORM) * e), times_pow2(piece.y, e));
        }
    }
    return sums;
}

@compute @workgroup_size(WG)
fn stat_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let sid = lane_index(wid, groups, lid);
    let sets = params.a * (params.c / params.cg);
    if (sid >= sets) {
        return;
    }
    let pieces = params.stat_pieces;
    let first = sid * pieces;
    if (MODE == 0u) {
        // The pieces at one scale: the smallest any piece took, or RESCALE
        // where merging them at 1 overflows (pieces that each fit can sum
        // past f32).
        var k = 1.0;
        for (var p = 0u; p < pieces; p++) {
            k = min(k, partials[first + p].w);
        }
        var m = merge_pieces(first, pieces, k);
        if (k == 1.0 && (!finite(m.y) || !finite(m.z))) {
            k = RESCALE;
            m = merge_pieces(first, pieces, k);
        }
        var var_s = max(m.z / m.x, 0.0);
        var rstd = inverseSqrt(var_s + params.epsilon * k * k);
        if (!finite(m.y) || !finite(m.z)) {
            rstd = nan();
        } else if (var_s + params.epsilon * k * k == 0.0) {
            // A constant set at RESCALE, where epsilon * k^2 underflows.
            rstd = inverseSqrt(params.epsilon) / k;
        }
        let p = pivot(sid);
        stats[sid] = vec4<f32>(p, m.y, rstd, k);
        if (RUNNING) {
            // BatchNorm training: one statistic set per channel.
            let mean = (p * k + m.y) / k;
            var denominator = m.x;
            if (params.unbiased != 0u) {
                denominator = max(m.x - 1.0, 1.0);
            }
            // var = M2 / n / k^2, in two steps that stay finite.
            let batch_var = (m.z / k) / denominator / k;
            let mom = params.momentum;
            running_mean[params.base_running_mean + sid] = input_mean[params.base_mean + sid] * mom + mean * (1.0 - mom);
            running_var[params.base_running_var + sid] = input_var[params.base_var + sid] * mom + batch_var * (1.0 - mom);
        }
        return;
    }
    // The smallest scale of the pieces that are not 0 (NaN counts): the
    // others' sums are brought to it (pieces at 2^96 vanish beside pieces
    // at 1 or 2^-96, as they should).
    var kk = 0.0;
    for (var p = 0u; p < pieces; p++) {
        let piece = partials[first + p];
        if ((is_nan(piece.x) || piece.x != 0.0) && (kk == 0.0 || piece.z < kk)) {
            kk = piece.z;
        }
    }
    var sums = lp_merge(first, pieces, kk);
    let overflowed = (!finite(sums.x) && !is_nan(sums.x)) || (!finite(sums.y) && !is_nan(sums.y));
    if (kk == 1.0 && overflowed) {
        // Pieces that each fit summed past f32: all at 2^-96 instead.
        kk = RESCALE;
        sums = lp_merge(first, pieces, kk);
    }
    let sp = sums.x;
    var q = sums.y;
    // norm = root / kk; y = (x kk) / root.
    var root = sp;
    if (P_NORM == 2u) {
        root = sqrt(sp);
    }
    if (root > 0x1p100f && finite(root)) {
        // Keep 1 / root a normal f32 (adapters flush denormals to 0).
        kk *= 0x1p-64f;
        root *= 0x1p-64f;
        q *= 0x1p-64f;
    }
    var alpha = 1.0 / root;
    if (kk == 0.0) {
        // A zero vector: y = 0 and dx = 0.
        alpha = 0.0;
    }
    if (LP_GRAD) {
        // sum(dy * y) = q / root; 1 / norm = kk / root (0 where it is below
        // f32's normal range, as on adapters that flush denormals).
        var inv_norm = kk * alpha;
        if (abs(inv_norm) < 0x1p-126f) {
            inv_norm = 0.0;
        }
        coef[sid] = vec4<f32>(kk, alpha, q * alpha, inv_norm);
    } else {
        coef[sid] = vec4<f32>(0.0, kk, alpha, 0.0);
    }
}

// The statistics are inputs: BatchNorm inference's (input_mean, input_var)
// per channel, or a forward's saved (mean, rstd) per statistic set.
@compute @workgroup_size(WG)
fn given_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let sid = lane_index(wid, groups, lid);
    if (sid >= params.a * (params.c / params.cg)) {
        return;
    }
    stats[sid] = given(sid);
}

// (pivot, mean of the deviations, rstd of the deviations, k) of statistic
// set `sid` from input_mean and input_var (or the saved rstd).
fn given(sid: u32) -> vec4<f32> {
    let mean = input_mean[params.base_mean + sid];
    var rstd = input_var[params.base_var + sid];
    if (!SAVED) {
        rstd = inverseSqrt(rstd + params.epsilon);
    }
    // Deviations at RESCALE where x - mean could overflow.
    var k = 1.0;
    if (abs(mean) > 0x1p100f || rstd < 0x1p-100f) {
        k = RESCALE;
    }
    return vec4<f32>(mean, 0.0, rstd / k, k);
}

// A forward's statistics, written out unscaled: mean and rstd per set.
@compute @workgroup_size(WG)
fn save_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let sid = lane_index(wid, groups, lid);
    if (sid >= params.a * (params.c / params.cg)) {
        return;
    }
    let st = stats[sid];
    saved_mean[params.base_saved_mean + sid] = (st.x * st.w + st.y) / st.w;
    saved_rstd[params.base_saved_rstd + sid] = st.z * st.w;
}

fn stat_of(f: u32) -> u32 {
    let groups = params.c / params.cg;
    return (f / params.c) * groups + (f % params.c) / params.cg;
}

@compute @workgroup_size(WG)
fn coefficients(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = lane_index(wid, groups, lid);
    if (f >= params.a * params.c) {
        return;
    }
    if (CONST_STATS) {
        // BatchNorm inference: a fine set per channel, statistics given.
        coef[f] = forward_coefficients(given(f), f);
        return;
    }
    coef[f] = forward_coefficients(stats[stat_of(f)], f % params.c);
}

// y = dev(x, p, k) * alpha + beta' from the statistics (p, mean of the
// deviations, rstd of the deviations, k): (p, k, alpha, beta') with
// alpha = rstd * scale and beta' = bias - mean * alpha.
fn forward_coefficients(st: vec4<f32>, c: u32) -> vec4<f32> {
    let alpha = st.z * scale_of(c);
    return vec4<f32>(st.x, st.w, alpha, bias_of(c) - st.y * alpha);
}

// Which fine set element e is in, tracked across a grid stride without a
// division per element: f = (e / (B C D)) * C + (e / D) % C. The sizes are
// copied into the struct: loops then read no uniform.
struct FineOf {
    r1: u32,    // e % (B C D)
    part1: u32, // (e / (B C D)) * C
    r2: u32,    // e % D
    q2: u32,    // (e / D) % C
    s1q: u32,   // (stride / (B C D)) * C
    s1r: u32,
    s2q: u32,
    s2r: u32,
    p1: u32,    // B C D
    c: u32,
    d: u32,
}

fn fine_of(e: u32, stride: u32) -> FineOf {
    let p1 = params.b * params.c * params.d;
    var t: FineOf;
    t.p1 = p1;
    t.c = params.c;
    t.d = params.d;
    t.r1 = e % p1;
    t.part1 = (e / p1) * t.c;
    t.r2 = e % t.d;
    t.q2 = (e / t.d) % t.c;
    t.s1q = (stride / p1) * t.c;
    t.s1r = stride % p1;
    t.s2q = (stride / t.d) % t.c;
    t.s2r = stride % t.d;
    return t;
}

fn next_fine(t: ptr<function, FineOf>) {
    var r1 = (*t).r1 + (*t).s1r;
    var part1 = (*t).part1 + (*t).s1q;
    if (r1 >= (*t).p1) {
        r1 -= (*t).p1;
        part1 += (*t).c;
    }
    var r2 = (*t).r2 + (*t).s2r;
    var q2 = (*t).q2 + (*t).s2q;
    if (r2 >= (*t).d) {
        r2 -= (*t).d;
        q2 += 1u;
    }
    if (q2 >= (*t).c) {
        q2 -= (*t).c;
    }
    (*t).r1 = r1;
    (*t).part1 = part1;
    (*t).r2 = r2;
    (*t).q2 = q2;
}

@compute @workgroup_size(WG)
fn apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_index(wid, groups, lid);
    let stride = params.lanes;
    var t = fine_of(lane, stride);
    for (var e = lane; e < params.n; e += stride) {
        let y = y_of4(vec4<f32>(load(e)), coef[t.part1 + t.q2]);
        out[params.base_out + e] = elem(y.x);
        next_fine(&t);
    }
}

// y of a cell from its fine set's coefficients (pivot, k, alpha, beta'):
// (x k - pivot k) alpha + beta' (no mean is subtracted after the
// deviation, so its cheap form is as exact), then SiLU.
fn y_of4(v: vec4<f32>, k: vec4<f32>) -> vec4<f32> {
    var y = (v * k.y - k.x * k.y) * k.z + k.w;
    if (SILU) {
        y = y / (1.0 + exp(-y));
    }
    return y;
}

// dx's coefficients of fine set f: LpNorm's (k, alpha, sum(dy y), 1/norm),
// or grad_sets' two vec4s.
struct GradCoef {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn grad_coef(f: u32) -> GradCoef {
    var c: GradCoef;
    if (MODE == 1u) {
        c.a = coef[f];
    } else {
        c.a = coef[2u * f];
        c.b = coef[2u * f + 1u];
    }
    return c;
}

// dx of a cell. LpNorm: (dy - t sum(dy y)) / norm, t = y (p = 2) or
// sign(x). The others: rstd scale dz + b dev + c (grad_sets), dz being dy
// through SiLU at z = dev alpha + beta'.
fn dx_of4(v: vec4<f32>, g: vec4<f32>, c: GradCoef) -> vec4<f32> {
    if (MODE == 1u) {
        var u = sign(v);
        if (P_NORM == 2u) {
            u = v * c.a.x * c.a.y;
        }
        return (g - u * c.a.z) * c.a.w;
    }
    let dv = v * c.a.y - c.a.x * c.a.y;
    let dz = dz_of4(g, dv * c.a.z + c.a.w);
    return c.b.x * dz + c.b.y * dv + c.b.z;
}

// dz: dy through SiLU, at z = x̂ * scale + bias.
fn dz_of4(g: vec4<f32>, z: vec4<f32>) -> vec4<f32> {
    if (SILU) {
        let sg = 1.0 / (1.0 + exp(-z));
        return g * sg * (1.0 + z * (1.0 - sg));
    }
    return g;
}

@compute @workgroup_size(WG)
fn grad_partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = lane_index(wid, groups, lid);
    let pieces = params.fine_pieces;
    if (t >= params.a * params.c * pieces) {
        return;
    }
    let f = t / pieces;
    let c = f % params.c;
    let st = stats[stat_of(f)];
    let gamma = scale_of(c);
    let beta = bias_of(c);
    var sums = vec2<f32>(0.0);
    if (VEC4) {
        var w4 = piece_walk(f, params.c, params.d / 4u, t % pieces, pieces);
        let bx = params.base_x / 4u;
        let bdy = params.base_dy / 4u;
        while (w4.left > 0u) {
            let xh = (dev4(vec4<f32>(x4[bx + w4.at]), st.x, st.w) - st.y) * st.z;
            let dz = dz_of4(vec4<f32>(dy4[bdy + w4.at]), xh * gamma + beta);
            sums += vec2<f32>(dz.x + dz.y + dz.z + dz.w, dot(dz, xh));
            advance(&w4);
        }
        partials[t] = vec4<f32>(sums, 0.0, 0.0);
        return;
    }
    var w = piece_walk(f, params.c, params.d, t % pieces, pieces);
    while (w.left > 0u) {
        let xh = (dev(load(w.at), st.x, st.w) - st.y) * st.z;
        let dz = dz_of4(vec4<f32>(load_dy(w.at)), vec4<f32>(xh * gamma + beta)).x;
        sums += vec2<f32>(dz, dz * xh);
        advance(&w);
    }
    partials[t] = vec4<f32>(sums, 0.0, 0.0);
}

@compute @workgroup_size(WG)
fn grad_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = lane_index(wid, groups, lid);
    if (f >= params.a * params.c) {
        return;
    }
    let pieces = params.fine_pieces;
    var sums = vec2<f32>(0.0);
    for (var p = 0u; p < pieces; p++) {
        sums += partials[f * pieces + p].xy;
    }
    fine[f] = sums;
}

// dx = rstd * (dz * scale - mean(g) - x̂ * mean(g * x̂)), g = dz * scale,
// means over the statistic set, x̂ = (dev - mean) * rstd_s. Written per fine
// set as coef[2f] = the forward's coefficients (for SiLU's z) and
// coef[2f + 1] = (rstd * scale, b, c, 0) with dx = rstd scale dz + b dev + c.
@compute @workgroup_size(WG)
fn grad_sets(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let sid = lane_index(wid, groups, lid);
    let per_a = params.c / params.cg;
    if (sid >= params.a * per_a) {
        return;
    }
    let st = stats[sid];
    let first = (sid / per_a) * params.c + (sid % per_a) * params.cg;
    var g = vec2<f32>(0.0);
    for (var i = 0u; i < params.cg; i++) {
        g += fine[first + i] * scale_of((first + i) % params.c);
    }
    let count = f32(params.b) * f32(params.cg * params.d);
    var means = g / count;
    if (CONST_STATS) {
        means = vec2<f32>(0.0);
    }
    // rstd of the unscaled values; -rstd * mean(g x̂) * x̂ = b * dev + (part of c).
    let rstd = st.z * st.w;
    let b = -rstd * means.y * st.z;
    let c = -rstd * means.x - b * st.y;
    for (var i = 0u; i < params.cg; i++) {
        let f = first + i;
        let gamma = scale_of(f % params.c);
        coef[2u * f] = forward_coefficients(st, f % params.c);
        coef[2u * f + 1u] = vec4<f32>(rstd * gamma, b, c, 0.0);
    }
}

@compute @workgroup_size(WG)
fn grad_params(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = lane_index(wid, groups, lid);
    if (c >= params.c) {
        return;
    }
    var sums = vec2<f32>(0.0);
    for (var a = 0u; a < params.a; a++) {
        sums += fine[a * params.c + c];
    }
    dscale[params.base_dscale + c] = elem(sums.y);
    dbias[params.base_dbias + c] = elem(sums.x);
}

@compute @workgroup_size(WG)
fn grad_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_index(wid, groups, lid);
    let stride = params.lanes;
    var t = fine_of(lane, stride);
    for (var e = lane; e < params.n; e += stride) {
        let c = grad_coef(t.part1 + t.q2);
        let dx = dx_of4(vec4<f32>(load(e)), vec4<f32>(load_dy(e)), c);
        out[params.base_out + e] = elem(dx.x);
        next_fine(&t);
    }
}

// The stretch of cells [first, end) (stepping by 8) lane `lane` of `lanes`
// takes of `n4` cells: each 8 adjacent lanes take one contiguous stretch,
// interleaved (lavapipe runs a workgroup 8 lanes at a time, each to its
// end: the 8 then stream memory in order).
fn stretch_of(lane: u32, lanes: u32, n4: u32) -> vec2<u32> {
    let len = (n4 + lanes / 8u - 1u) / (lanes / 8u);
    let start = (lane / 8u) * len;
    return vec2<u32>(start + lane % 8u, min(start + len, n4));
}

// apply over cells of 4 values (VEC4): one coefficient load per cell.
@compute @workgroup_size(WG)
fn apply4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_index(wid, groups, lid);
    let stride = params.lanes;
    let bx = params.base_x / 4u;
    let bo = params.base_out / 4u;
    let r = stretch_of(lane, stride, params.n / 4u);
    var t = fine_of(4u * r.x, 32u);
    for (var i = r.x; i < r.y; i += 8u) {
        out4[bo + i] = vec4<elem>(y_of4(vec4<f32>(x4[bx + i]), coef[t.part1 + t.q2]));
        next_fine(&t);
    }
}

// grad_apply over cells of 4 values (VEC4).
@compute @workgroup_size(WG)
fn grad_apply4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lane_index(wid, groups, lid);
    let stride = params.lanes;
    let bx = params.base_x / 4u;
    let bdy = params.base_dy / 4u;
    let bo = params.base_out / 4u;
    let r = stretch_of(lane, stride, params.n / 4u);
    var t = fine_of(4u * r.x, 32u);
    for (var i = r.x; i < r.y; i += 8u) {
        let c = grad_coef(t.part1 + t.q2);
        let dx = dx_of4(vec4<f32>(x4[bx + i]), vec4<f32>(dy4[bdy + i]), c);
        out4[bo + i] = vec4<elem>(dx);
        next_fine(&t);
    }
}

// The runs a workgroup of the runs entries takes, [first, last), and each
// lane's stretch of cells within a run.
struct RunGroup {
    first: u32,
    last: u32,
    cells: u32,
    st: vec2<u32>,
}

fn run_group(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> RunGroup {
    var rg: RunGroup;
    let g = wid.y * groups.x + wid.x;
    rg.first = g * params.runs_per_group;
    rg.last = min(rg.first + params.runs_per_group, params.n / params.d);
    rg.cells = params.d / 4u;
    rg.st = stretch_of(lid, WG, rg.cells);
    return rg;
}

// The fine set of run r of D values (r = (a B + b) C + c): a C + c.
fn fine_of_run(r: u32) -> u32 {
    return (r / (params.b * params.c)) * params.c + r % params.c;
}

// apply over runs (the plan's `runs`: D a multiple of 4, and long): a
// workgroup takes consecutive runs of D values and reads each one's fine
// set's coefficients once; its lanes stride through the run's cells.
@compute @workgroup_size(WG)
fn apply_runs(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let rg = run_group(wid, groups, lid);
    for (var r = rg.first; r < rg.last; r++) {
        let k = coef[fine_of_run(r)];
        let bx = params.base_x / 4u + r * rg.cells;
        let bo = params.base_out / 4u + r * rg.cells;
        for (var i = rg.st.x; i < rg.st.y; i += 8u) {
            out4[bo + i] = vec4<elem>(y_of4(vec4<f32>(x4[bx + i]), k));
        }
    }
}

// grad_apply over runs, as apply_runs.
@compute @workgroup_size(WG)
fn grad_apply_runs(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let rg = run_group(wid, groups, lid);
    for (var r = rg.first; r < rg.last; r++) {
        let c = grad_coef(fine_of_run(r));
        let bx = params.base_x / 4u + r * rg.cells;
        let bdy = params.base_dy / 4u + r * rg.cells;
        let bo = params.base_out / 4u + r * rg.cells;
        for (var i = rg.st.x; i < rg.st.y; i += 8u) {
            let dx = dx_of4(vec4<f32>(x4[bx + i]), vec4<f32>(dy4[bdy + i]), c);
            out4[bo + i] = vec4<elem>(dx);
        }
    }
}

// grad_combine, grad_sets and grad_params in one, where every statistic set
// is one fine set and A is 1 (BatchNorm): one lane per channel sums its
// pieces, writes dx's coefficients and dscale, dbias. (Absent gradients are
// bound to small buffers whose writes nobody reads.)
@compute @workgroup_size(WG)
fn grad_finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let f = lane_index(wid, groups, lid);
    if (f >= params.c) {
        return;
    }
    let pieces = params.fine_pieces;
    var sums = vec2<f32>(0.0);
    for (var p = 0u; p < pieces; p++) {
        sums += partials[f * pieces + p].xy;
    }
    let gamma = scale_of(f);
    var means = sums * gamma / (f32(params.b) * f32(params.d));
    if (CONST_STATS) {
        means = vec2<f32>(0.0);
    }
    let st = stats[f];
    let rstd = st.z * st.w;
    let b = -rstd * means.y * st.z;
    let c = -rstd * means.x - b * st.y;
    coef[2u * f] = forward_coefficients(st, f);
    coef[2u * f + 1u] = vec4<f32>(rstd * gamma, b, c, 0.0);
    dscale[params.base_dscale + f] = elem(sums.y);
    dbias[params.base_dbias + f] = elem(sums.x);
}
