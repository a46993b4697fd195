// Layer normalisation, forward, for GPUs: one workgroup per row with the row
// held in registers, so that x is read from memory once (the other kernels
// read it twice: statistics first, then y). Rows up to WG x CACHE4 x 4 values
// (8,192 at 256 lanes); the host checks.
//
// The host prepends layer_norm_common.wgsl and its views and appends one of
// the reduction files (reduce_subgroup.wgsl / reduce_workgroup.wgsl), as for
// layer_norm_row_per_workgroup.wgsl, whose scheme this follows:
//   1. every lane loads its vec4s of the row's body (vec4 lid, lid + WG, ...;
//      at most CACHE4) into `cache`, merging the moments of each vec4 of
//      x - pivot as it goes (Welford/Chan blocks); lanes 0-2 take the scalar
//      head and tail values and keep them too;
//   2. two workgroup sums combine the lanes exactly (the parallel-variance
//      formula, every term >= 0);
//   3. every lane normalises the values it holds and writes y.
// The cache is a fixed-size private array indexed by a constant-bounded
// loop, which GPU compilers keep in registers (on Mesa's llvmpipe it is
// memory: this kernel is not on the CPU adapters' ladder, only tested there).

const CACHE4: u32 = 8u;

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
    var pivot = load_x(r.x_row);

    // 1. Load once, keep, and take the moments of x - pivot.
    var cache: array<vec4<f32>, CACHE4>;
    var acc = vec3<f32>(0.0);
    for (var k = 0u; k < CACHE4; k += 1u) {
        let i = lid + k * WG;
        if (i < r.body4) {
            let v = load_x4(r.first4 + i);
            cache[k] = v;
            acc = chan_merge(acc, block_moments(v - vec4<f32>(pivot)));
        }
    }
    let tail_len = dim - r.tail_start;
    var head = 0.0;
    var tail = 0.0;
    if (lid < r.head) {
        head = load_x(r.x_row + lid);
        acc = chan_merge(acc, vec3<f32>(1.0, head - pivot, 0.0));
    }
    if (lid < tail_len) {
        tail = load_x(r.x_row + r.tail_start + lid);
        acc = chan_merge(acc, vec3<f32>(1.0, tail - pivot, 0.0));
    }

    // 2. Combine the lanes.
    let n_row = f32(dim);
    var shifted_mean = workgroup_sum(acc.x * acc.y, ids) / n_row;
    var lane_dev = acc.y - shifted_mean;
    var m2 = workgroup_sum(acc.z + acc.x * lane_dev * lane_dev, ids);
    if (workgroup_decision(overflowed(pivot, shifted_mean, m2, n_row), ids)) {
        // Again at RESCALE, from the values held (see layer_norm_common.wgsl).
        x_scale = RESCALE;
        pivot *= RESCALE;
        head *= RESCALE;
        tail *= RESCALE;
        acc = vec3<f32>(0.0);
        for (var k = 0u; k < CACHE4; k += 1u) {
            let i = lid + k * WG;
            if (i < r.body4) {
                cache[k] *= RESCALE;
                acc = chan_merge(acc, block_moments(cache[k] - vec4<f32>(pivot)));
            }
        }
        if (lid < r.head) {
            acc = chan_merge(acc, vec3<f32>(1.0, head - pivot, 0.0));
        }
        if (lid < tail_len) {
            acc = chan_merge(acc, vec3<f32>(1.0, tail - pivot, 0.0));
        }
        shifted_mean = workgroup_sum(acc.x * acc.y, ids) / n_row;
        lane_dev = acc.y - shifted_mean;
        m2 = workgroup_sum(acc.z + acc.x * lane_dev * lane_dev, ids);
    }
    let rstd = row_rstd(pivot, shifted_mean, m2, n_row);
    if (lid == 0u) {
        store_mean(row, unscaled_mean(pivot, shifted_mean, x_scale));
        store_rstd(row, unscaled_rstd(rstd, x_scale));
    }
    if (!WRITE_Y) {
        return;
    }

    // 3. Normalise what this lane holds.
    let c = centre(pivot, shifted_mean);
    for (var k = 0u; k < CACHE4; k += 1u) {
        let i = lid + k * WG;
        if (i < r.body4) {
            normalize4(cache[k], y_row, r.head + 4u * i, c.x, c.y, rstd);
        }
    }
    if (lid < r.head) {
        normalize1(head, y_row, lid, c.x, c.y, rstd);
    }
    if (lid < tail_len) {
        normalize1(tail, y_row, r.tail_start + lid, c.x, c.y, rstd);
    }
}
