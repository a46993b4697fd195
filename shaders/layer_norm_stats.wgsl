// The per-row statistics written straight to the caller's mean and rstd
// tensors. `row` counts from the dispatch's first row.

@group(0) @binding(6) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> rstd_out: array<f32>;

fn store_mean(row: u32, v: f32) {
    if (WRITE_MEAN) {
        mean_out[params.mean_base + row] = v;
    }
}

fn store_rstd(row: u32, v: f32) {
    if (WRITE_RSTD) {
        rstd_out[params.rstd_base + row] = v;
    }
}
