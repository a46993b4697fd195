//! A second call with the same tensors and shape reuses what the first
//! built: the bind cache hits, nothing new is built, and the result is
//! still right; entries go with their tensors.

use wgpu_norm::{
    Context, GpuTensor, LayerNorm, LayerNormGradIo, LayerNormIo, NormOp, reference, synthetic,
};

use crate::common::{ctx, gl_serial};

/// A context of its own, so that other tests' calls do not move the counters.
fn own_ctx() -> Context {
    let options = wgpu_norm::ContextOptions {
        backends: Some(ctx().adapter_info().backend.into()),
        adapter_name: Some(ctx().adapter_info().name.clone()),
        ..Default::default()
    };
    pollster::block_on(Context::with_options(options)).unwrap()
}

#[test]
fn a_warm_forward_and_backward_build_nothing() {
    let _serial = gl_serial();
    let ctx = own_ctx();
    let (rows, cols) = (33, 100);
    let x = synthetic::normal(1, rows * cols, 5.0, 2.0);
    let dy = synthetic::normal(2, rows * cols, 0.0, 1.0);
    let xg = GpuTensor::from_slice(&ctx, &x, &[rows, cols]).unwrap();
    let dyg = GpuTensor::from_slice(&ctx, &dy, &[rows, cols]).unwrap();
    let y = GpuTensor::zeros(&ctx, &[rows, cols]).unwrap();
    let (dx, dgamma, dbeta) = (
        GpuTensor::zeros(&ctx, &[rows, cols]).unwrap(),
        GpuTensor::zeros(&ctx, &[cols]).unwrap(),
        GpuTensor::zeros(&ctx, &[cols]).unwrap(),
    );
    let op = LayerNorm::new();
    let step = |ctx: &Context| {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        op.encode(ctx, &mut encoder, &LayerNormIo::new(&xg, &y))
            .unwrap();
        let io = LayerNormGradIo {
            x: &xg,
            dy: &dyg,
            gamma: None,
            mean: None,
            rstd: None,
            dx: &dx,
            dgamma: Some(&dgamma),
            dbeta: Some(&dbeta),
        };
        op.encode_backward(ctx, &mut encoder, &io).unwrap();
        ctx.submit_and_wait(encoder).unwrap();
    };
    step(&ctx);
    let cold = ctx.bind_cache().stats();
    let (entries, pipelines) = (ctx.bind_cache().len(), ctx.cached_pipelines());
    // forward, backward, and the backward's statistics pass
    assert_eq!((cold.misses, cold.hits, entries), (3, 0, 3), "{cold:?}");
    for _ in 0..5 {
        step(&ctx);
    }
    let warm = ctx.bind_cache().stats();
    assert_eq!(
        warm.misses, cold.misses,
        "warm calls built something: {warm:?}"
    );
    assert_eq!(warm.hits, 15, "{warm:?}");
    assert_eq!(ctx.bind_cache().len(), entries);
    assert_eq!(ctx.cached_pipelines(), pipelines);
    let want = reference::layer_norm(&x, cols, None, None, 1e-5);
    assert!(reference::max_abs_error(&y.read(&ctx).unwrap(), &want.y) < 2e-5);
    let grads = reference::norm_backward(&x, &dy, cols, None, 1e-5, false);
    let (tol_dx, tol_dg, _) = reference::norm_backward_tolerance(&dy, &grads, None);
    assert!(reference::max_abs_error(&dx.read(&ctx).unwrap(), &grads.dx) <= tol_dx);
    assert!(reference::max_abs_error(&dgamma.read(&ctx).unwrap(), &grads.dgamma) <= tol_dg);
}

#[test]
fn new_values_in_the_same_tensors_are_read_on_a_warm_call() {
    let _serial = gl_serial();
    let ctx = own_ctx();
    let (rows, cols) = (4, 64);
    let xg = GpuTensor::zeros(&ctx, &[rows, cols]).unwrap();
    let y = GpuTensor::zeros(&ctx, &[rows, cols]).unwrap();
    for seed in 0..3 {
        let x = synthetic::normal(seed, rows * cols, seed as f32, 1.0);
        xg.write(&ctx, &x).unwrap();
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        LayerNorm::new()
            .encode(&ctx, &mut encoder, &LayerNormIo::new(&xg, &y))
            .unwrap();
        ctx.submit_and_wait(encoder).unwrap();
        let want = reference::layer_norm(&x, cols, None, None, 1e-5);
        assert!(
            reference::max_abs_error(&y.read(&ctx).unwrap(), &want.y) < 2e-5,
            "seed {seed}"
        );
    }
    assert_eq!(ctx.bind_cache().stats().hits, 2);
}

#[test]
fn entries_go_with_their_tensors_and_rewrapped_buffers_reuse_theirs() {
    let _serial = gl_serial();
    let ctx = own_ctx();
    let encode = |x: &GpuTensor, y: &GpuTensor| {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        LayerNorm::new()
            .encode(&ctx, &mut encoder, &LayerNormIo::new(x, y))
            .unwrap();
        ctx.submit_and_wait(encoder).unwrap();
    };
    // Fresh tensors every call (a loop that allocates its activations):
    // the cache does not grow.
    for _ in 0..10 {
        let x = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
        let y = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
        encode(&x, &y);
    }
    assert_eq!(ctx.bind_cache().len(), 1, "{:?}", ctx.bind_cache().stats());
    assert_eq!(ctx.bind_cache().stats().freed, 9);
    // Fresh outputs against the same input (a training loop's pattern): the
    // entries of dropped outputs go too, so their buffers are not pinned.
    let kept = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
    for _ in 0..10 {
        let y = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
        encode(&kept, &y);
    }
    assert_eq!(ctx.bind_cache().len(), 1, "{:?}", ctx.bind_cache().stats());
    drop(kept);
    let freed = ctx.bind_cache().stats().freed;
    // The last call's tensors are gone too: the next allocation frees what
    // was built for them (their buffers with it) before it allocates.
    let x = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
    assert_eq!(
        (ctx.bind_cache().len(), ctx.bind_cache().stats().freed),
        (0, freed + 1)
    );
    // The caller's own buffers, wrapped anew each call: the entry is found.
    let y = GpuTensor::zeros(&ctx, &[8, 16]).unwrap();
    let before = ctx.bind_cache().stats();
    for _ in 0..3 {
        let xw = GpuTensor::from_buffer(x.buffer().clone(), 0, &[8, 16]).unwrap();
        let yw = GpuTensor::from_buffer(y.buffer().clone(), 0, &[8, 16]).unwrap();
        encode(&xw, &yw);
    }
    let after = ctx.bind_cache().stats();
    assert_eq!(
        (after.misses - before.misses, after.hits - before.hits),
        (1, 2)
    );
}
