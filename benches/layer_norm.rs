//! Layer-norm forward, RMSNorm forward and layer-norm backward against a copy
//! of the same bytes, on the default shapes of `wgpu-norm bench`, timed by
//! criterion on the CPU's clock (one step = encode, submit, wait).
//! `wgpu-norm bench` reports the GPU-tick medians and their ratios; this is
//! the same comparison as criterion sees it.
//!
//! `cargo bench --bench layer_norm` (pick the adapter with WGPU_BACKEND).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wgpu_norm::{
    Context, DEFAULT_SHAPES, GpuTensor, LayerNorm, LayerNormGradIo, LayerNormIo, NormOp, RmsNorm,
    RmsNormIo, encode_copy, synthetic,
};

/// Encodes with `encode`, submits, and waits: one criterion iteration.
fn step(ctx: &Context, encode: impl FnOnce(&mut wgpu::CommandEncoder)) {
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    encode(&mut encoder);
    ctx.queue().submit([encoder.finish()]);
    ctx.wait().unwrap();
}

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
            gamma: Some(&gamma),
            beta: Some(&beta),
            ..LayerNormIo::new(&x, &y)
        };
        let op = LayerNorm::new();
        let rms_io = RmsNormIo {
            gamma: Some(&gamma),
            ..RmsNormIo::new(&x, &y)
        };
        let stats = op.forward_with_stats(&ctx, &x, Some(&gamma), None).unwrap();
        let dy = GpuTensor::from_slice(&ctx, &synthetic::normal(1, n, 0.0, 1.0), shape).unwrap();
        let dgamma = GpuTensor::zeros(&ctx, &[cols]).unwrap();
        let dbeta = GpuTensor::zeros(&ctx, &[cols]).unwrap();
        let grad_io = LayerNormGradIo {
            x: &x,
            dy: &dy,
            gamma: Some(&gamma),
            mean: Some(&stats.mean),
            rstd: Some(&stats.rstd),
            dx: &y,
            dgamma: Some(&dgamma),
            dbeta: Some(&dbeta),
        };
        let name = shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        group.throughput(Throughput::Bytes(2 * n as u64 * 4));
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| step(&ctx, |e| op.encode(&ctx, e, &io).unwrap()))
        });
        group.bench_function(format!("{name}/rms_forward"), |b| {
            b.iter(|| step(&ctx, |e| RmsNorm::new().encode(&ctx, e, &rms_io).unwrap()))
        });
        group.bench_function(format!("{name}/copy"), |b| {
            b.iter(|| step(&ctx, |e| encode_copy(&ctx, e, &x, &y, None).unwrap()))
        });
        // The backward moves 3 tensors (x and dy read, dx written): 1.5x the copy's bytes.
        group.throughput(Throughput::Bytes(3 * n as u64 * 4));
        group.bench_function(format!("{name}/backward"), |b| {
            b.iter(|| step(&ctx, |e| op.encode_backward(&ctx, e, &grad_io).unwrap()))
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
