//! Ticks overhead: the same step loop (encode a layer-norm forward, submit,
//! wait) with and without the profiler. BENCHMARKS.md records the difference.
//!
//! `cargo bench --bench ticks` (pick the adapter with WGPU_BACKEND).

use criterion::{Criterion, criterion_group, criterion_main};
use wgpu_norm::{
    Context, GpuTensor, LayerNorm, LayerNormIo, NormOp, Ticks, TicksSettings, synthetic,
};

fn ticks_overhead(c: &mut Criterion) {
    let ctx = Context::new().expect("an adapter (see README: apt-get install mesa-vulkan-drivers)");
    let mut group = c.benchmark_group(format!("ticks_overhead/{:?}", ctx.adapter_info().backend));
    for shape in [[64usize, 64, 64], [8, 512, 768]] {
        let n = shape.iter().product();
        let x = GpuTensor::from_slice(&ctx, &synthetic::normal(0, n, 0.0, 1.0), &shape).unwrap();
        let y = GpuTensor::zeros(&ctx, &shape).unwrap();
        let io = LayerNormIo {
            x: &x,
            y: &y,
            gamma: None,
            beta: None,
            mean: None,
            rstd: None,
            residual: None,
        };
        let op = LayerNorm::new();
        let name = shape.map(|d| d.to_string()).join("x");
        group.bench_function(format!("{name}/ticks_off"), |b| {
            b.iter(|| {
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                op.encode(&ctx, &mut encoder, &io).unwrap();
                ctx.queue().submit([encoder.finish()]);
                ctx.wait().unwrap();
            })
        });
        let mut ticks = Ticks::new(&ctx, TicksSettings::default());
        let mut step = 0;
        group.bench_function(format!("{name}/ticks_on"), |b| {
            b.iter(|| {
                ticks.set_step(step);
                step += 1;
                let mut encoder = ctx.device().create_command_encoder(&Default::default());
                op.encode_ticked(&ctx, &mut encoder, &io, &mut ticks)
                    .unwrap();
                ticks.submit(encoder).unwrap();
                ctx.wait().unwrap();
                ticks.collect().unwrap();
                if ticks.record_count() > 10_000 {
                    ticks.drain();
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = ticks_overhead
}
criterion_main!(benches);
