//! Layer-norm forward against a copy of the same bytes, on the default
//! shapes of `wgpu-norm bench`, timed by criterion on the CPU's clock (one
//! step = encode, submit, wait). `wgpu-norm bench` reports the GPU-tick
//! medians and their ratio; this is the same comparison as criterion sees it.
//!
//! `cargo bench --bench layer_norm` (pick the adapter with WGPU_BACKEND).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wgpu_norm::{
    Context, DEFAULT_SHAPES, GpuTensor, LayerNorm, LayerNormIo, encode_copy, synthetic,
};

fn layer_norm_vs_copy(c: &mut Criterion) {
    let ctx = Context::new().expect("an adapter (see README: apt-get install mesa-vulkan-drivers)");
    let mut group = c.benchmark_group(format!("layer_norm/{:?}", ctx.adapter_info().backend));
    for shape in DEFAULT_SHAPES {
        let n: usize = shape.iter().product();
        let cols = *shape.last().unwrap();
        let x = GpuTensor::from_slice(&ctx, &synthetic::normal(0, n, 0.0, 1.0), shape).unwrap();
        let y = GpuTensor::zeros(&ctx, shape).unwrap();
        let gamma = GpuTensor::from_slice(&ctx, &vec![1.0; cols], &[cols]).unwrap();
        let beta = GpuTensor::from_slice(&ctx, &vec![0.0; cols], &[cols]).unwrap();
        let io = LayerNormIo {
            x: &x,
            y: &y,
            gamma: Some(&gamma),
            beta: Some(&beta),
            mean: None,
            rstd: None,
            residual: None,
        };
        let op = LayerNorm::new();
        let name = shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        group.throughput(Throughput::Bytes(2 * n as u64 * 4));
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| {
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                op.encode(&ctx, &mut encoder, &io).unwrap();
                ctx.queue().submit([encoder.finish()]);
                ctx.wait().unwrap();
            })
        });
        group.bench_function(format!("{name}/copy"), |b| {
            b.iter(|| {
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                encode_copy(&ctx, &mut encoder, &x, &y, None).unwrap();
                ctx.queue().submit([encoder.finish()]);
                ctx.wait().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = layer_norm_vs_copy
}
criterion_main!(benches);
