// Layer normalisation, forward: one invocation (lane) normalises four whole
// rows at once, one in each component of a vec4; a workgroup of WG lanes takes
// 4 * WG consecutive rows.
//
//   y = (x - mean) / sqrt(var + epsilon) * gamma + beta      (biased variance)
//
// The host prepends layer_norm_common.wgsl (bindings, Params, helpers).
//
// Why: on adapters that run shaders on a CPU (Mesa's llvmpipe behind lavapipe
// and GL), a barrier costs a coroutine switch per lane group and each buffer
// access is a gather or scatter of one value per lane, whatever the address
// pattern: time follows the number of buffer accesses per value. This kernel
// has no barrier and no cross-lane reduction, and it reads gamma[c] and beta[c]
// once for four rows. Per value: x twice, y once, gamma and beta a quarter
// each (3.5 accesses, against a copy's 2). On a real GPU the lanes' strided
// rows would not coalesce; the plan does not pick this kernel there.
//
// Scheme, per row (four rows in step, as vec4 components):
//   1. Values are shifted by the row's first element (the pivot), as in every
//      kernel here: a constant row gives exactly beta, and a row on a large offset
//      keeps its precision. Welford moments (count, mean, M2) are merged one block
//      of four columns at a time with Chan's formula; the division is shared by
//      the four rows.
//   2. rstd = 1 / sqrt(M2 / dim + epsilon).
//   3. Each value is re-read, normalised and written.
// Rows past the end of the tensor repeat the last row's work and are not written.
//
// Loops: a lane runs about dim / 4 + 3 + dim iterations; the plan keeps dim at
// most 16,384, well below llvmpipe's cap of 65,535 iterations per invocation.

fn load4(rows: vec4<u32>, col: u32) -> vec4<f32> {
    return vec4<f32>(load_x(rows.x + col), load_x(rows.y + col), load_x(rows.z + col), load_x(rows.w + col));
}

@compute @workgroup_size(WG)
fn layer_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first = ((wid.y * groups.x + wid.x) * WG + lid) * 4u;
    if (first >= params.rows) {
        return;
    }
    let count = min(params.rows - first, 4u);
    let rows = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(first + count - 1u));
    let dim = params.dim;
    let x_rows = vec4<u32>(params.x_base) + rows * dim;
    let y_rows = vec4<u32>(params.y_base) + rows * dim;
    let pivot = load4(x_rows, 0u);

    // 1. Welford moments of x - pivot, four rows at a time: each block of four
    //    columns is merged as one (4, block mean, block M2) with Chan's formula
    //    (one division per block, and the precision of a pairwise sum), then
    //    the 0-3 columns left over one by one.
    var n = 0.0;
    var mean = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    let full = dim & ~3u;
    var c = 0u;
    for (; c < full; c += 4u) {
        let a = load4(x_rows, c) - pivot;
        let b = load4(x_rows, c + 1u) - pivot;
        let d = load4(x_rows, c + 2u) - pivot;
        let e = load4(x_rows, c + 3u) - pivot;
        let block_mean = (a + b + d + e) * 0.25;
        let da = a - block_mean;
        let db = b - block_mean;
        let dd = d - block_mean;
        let de = e - block_mean;
        let block_m2 = da * da + db * db + dd * dd + de * de;
        let delta = block_mean - mean;
        let w = 4.0 / (n + 4.0);
        mean += delta * w;
        m2 += block_m2 + delta * delta * (n * w);
        n += 4.0;
    }
    for (; c < dim; c += 1u) {
        let v = load4(x_rows, c) - pivot;
        n += 1.0;
        let delta = v - mean;
        mean += delta * (1.0 / n);
        m2 += delta * (v - mean);
    }

    // 2. rstd per row (for RMSNorm from the mean square, var + mean^2).
    var mean_square = max(m2 / f32(dim), vec4<f32>(0.0));
    if (RMS) {
        mean_square += (pivot + mean) * (pivot + mean);
    }
    let rstd = inverseSqrt(mean_square + vec4<f32>(params.epsilon));
    let row_mean = pivot + mean;
    for (var r = 0u; r < count; r += 1u) {
        if (WRITE_MEAN) {
            mean_out[params.mean_base + first + r] = row_mean[r];
        }
        if (WRITE_RSTD) {
            rstd_out[params.rstd_base + first + r] = rstd[r];
        }
    }

    if (!WRITE_Y) {
        return;
    }

    // 3. Normalise; gamma and beta are read once for the four rows. RMSNorm
    //    does not centre.
    let centre_pivot = select(pivot, vec4<f32>(0.0), RMS);
    let centre_mean = select(mean, vec4<f32>(0.0), RMS);
    for (var c = 0u; c < dim; c += 1u) {
        let v = load4(x_rows, c);
        var out = (v - centre_pivot - centre_mean) * rstd;
        if (HAS_GAMMA) {
            out = out * f32(gamma[params.gamma_base + c]);
        }
        if (HAS_BETA) {
            out = out + f32(beta[params.beta_base + c]);
        }
        // Unrolled: llvmpipe caps the loop iterations of an invocation.
        y[y_rows.x + c] = elem(out.x);
        store_sum(v.x, y_rows.x, c);
        if (count > 1u) {
            y[y_rows.y + c] = elem(out.y);
            store_sum(v.y, y_rows.y, c);
        }
        if (count > 2u) {
            y[y_rows.z + c] = elem(out.z);
            store_sum(v.z, y_rows.z, c);
        }
        if (count > 3u) {
            y[y_rows.w + c] = elem(out.w);
            store_sum(v.w, y_rows.w, c);
        }
    }
}
