//! CPU cost of encoding one normalisation into a command encoder (no
//! submit): what a model that calls dozens of norms per token pays on the
//! host before the GPU sees anything.
//!
//! * `cold`: a fresh `LayerNorm` call on tensors the context has not seen
//!   (every call allocates new tensors first; only the encode is timed).
//! * `warm`: the same tensors and shape again and again — the case the bind
//!   cache is for.
//! * `empty_pass`: one empty compute pass, the floor of any encode.
//!
//! `cargo bench --bench encode` (pick the adapter with WGPU_BACKEND).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wgpu_norm::{Context, GpuTensor, LayerNorm, LayerNormIo, NormOp};

struct Tensors {
    x: GpuTensor,
    y: GpuTensor,
    gamma: GpuTensor,
    beta: GpuTensor,
}

fn tensors(ctx: &Context, shape: &[usize]) -> Tensors {
    let n: usize = shape.iter().product();
    let cols = *shape.last().unwrap();
    Tensors {
        x: GpuTensor::from_slice(ctx, &vec![0.5; n], shape).unwrap(),
        y: GpuTensor::zeros(ctx, shape).unwrap(),
        gamma: GpuTensor::from_slice(ctx, &vec![1.0; cols], &[cols]).unwrap(),
        beta: GpuTensor::from_slice(ctx, &vec![0.0; cols], &[cols]).unwrap(),
    }
}

fn encode(ctx: &Context, op: &LayerNorm, t: &Tensors, encoder: &mut wgpu::CommandEncoder) {
    let io = LayerNormIo {
        gamma: Some(&t.gamma),
        beta: Some(&t.beta),
        ..LayerNormIo::new(&t.x, &t.y)
    };
    op.encode(ctx, encoder, &io).unwrap();
}

fn encode_cost(c: &mut Criterion) {
    let ctx = Context::new().expect("an adapter (see README: apt-get install mesa-vulkan-drivers)");
    let op = LayerNorm::new();
    let mut group = c.benchmark_group(format!("encode/{:?}", ctx.adapter_info().backend));
    for shape in [&[1usize, 1, 4096][..], &[8, 512, 768][..]] {
        let name = wgpu_norm::shape_string(shape);
        let warm = tensors(&ctx, shape);
        // Build the pipelines (and, where cached, the bindings) once.
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        encode(&ctx, &op, &warm, &mut encoder);
        drop(encoder);
        group.bench_function(format!("warm/{name}"), |b| {
            b.iter_batched_ref(
                || ctx.device().create_command_encoder(&Default::default()),
                |encoder| encode(&ctx, &op, &warm, encoder),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("cold/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    (
                        tensors(&ctx, shape),
                        ctx.device().create_command_encoder(&Default::default()),
                    )
                },
                |(t, encoder)| encode(&ctx, &op, t, encoder),
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("empty_pass", |b| {
        b.iter_batched_ref(
            || ctx.device().create_command_encoder(&Default::default()),
            |encoder| {
                encoder.begin_compute_pass(&Default::default());
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = encode_cost
}
criterion_main!(benches);
