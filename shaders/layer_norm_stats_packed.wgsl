// The per-row statistics of the fused residual pipelines, which have no
// binding to spare (x, y, gamma, beta, residual, bias and sum take 7 of
// WebGPU's 8 storage buffers): the kernels write (mean, rstd) pairs to one
// scratch binding, and `unpack_stats`, a dispatch of its own, copies them to
// the caller's mean and rstd tensors. `row` counts from the dispatch's first row.

@group(0) @binding(6) var<storage, read_write> stats_out: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(14) var<storage, read_write> rstd_out: array<f32>;

fn store_mean(row: u32, v: f32) {
    if (WRITE_MEAN) {
        stats_out[row].x = v;
    }
}

fn store_rstd(row: u32, v: f32) {
    if (WRITE_RSTD) {
        stats_out[row].y = v;
    }
}

// One lane per row of the dispatch.
@compute @workgroup_size(COMBINE_WG)
fn unpack_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wid.y * groups.x + wid.x) * COMBINE_WG + lid;
    if (row >= params.rows) {
        return;
    }
    let s = stats_out[row];
    if (WRITE_MEAN) {
        mean_out[params.mean_base + row] = s.x;
    }
    if (WRITE_RSTD) {
        rstd_out[params.rstd_base + row] = s.y;
    }
}
