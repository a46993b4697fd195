//! Soak: threads sharing one context for many calls, with every result
//! checked and the resources measured, not assumed, to stay flat.
//!
//! Vulkan (lavapipe, SwiftShader): 8 threads each make `SOAK_CALLS` (default
//! 10,000) calls, cycling through LayerNorm and RMSNorm forwards (plain and
//! ticked), their backwards, and a fresh pair of tensors every 500 calls.
//! Each call's result is read back and must equal, bit for bit, the first
//! result of its kind on that thread, which is checked against the f64
//! reference. wgpu-core's live buffers, bind groups and query sets
//! (`Instance::generate_report`), the process's resident memory, the bind
//! cache's entries and the ticks pool are read after a warm-up tenth and at
//! the end, with every thread parked, and must not grow.
//!
//! GL: wgpu's GL backend holds one context lock per device for a whole
//! submission and panics when another thread waits for it more than a second
//! (gfx-rs/wgpu#5299). The rule there is one submitter at a time: the same
//! soak runs with every call under one lock, as the README tells GL users to
//! do.

use std::sync::{Arc, Barrier, Mutex};

use wgpu_norm::{
    Context, ContextOptions, GpuTensor, LayerNorm, LayerNormIo, NormOp, RmsNorm, RmsNormIo, Ticks,
    TicksSettings, reference, synthetic,
};

const THREADS: usize = 8;
const SHAPE: [usize; 2] = [6, 40];

/// Live resources of the device, and the process's resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Resources {
    buffers: usize,
    bind_groups: usize,
    query_sets: usize,
    bind_cache_entries: usize,
    rss_kib: u64,
}

fn resources(instance: &wgpu::Instance, ctx: &Context) -> Resources {
    let report = instance
        .generate_report()
        .expect("a wgpu-core instance reports");
    let hub = report.hub_report();
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    Resources {
        buffers: hub.buffers.num_kept_from_user,
        bind_groups: hub.bind_groups.num_kept_from_user,
        query_sets: hub.query_sets.num_kept_from_user,
        bind_cache_entries: ctx.bind_cache().len(),
        rss_kib,
    }
}

/// One thread's tensors and expected results.
struct Work {
    x: GpuTensor,
    dy: GpuTensor,
    gamma: GpuTensor,
    y: GpuTensor,
    dx: GpuTensor,
    dgamma: GpuTensor,
    mean: GpuTensor,
    rstd: GpuTensor,
}

fn work(ctx: &Context, seed: u64) -> Work {
    let n = SHAPE[0] * SHAPE[1];
    let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice(ctx, v, s).unwrap();
    Work {
        x: up(&synthetic::normal(seed, n, 0.5, 2.0), &SHAPE),
        dy: up(&synthetic::normal(seed + 1, n, 0.0, 1.0), &SHAPE),
        gamma: up(
            &synthetic::normal(seed + 2, SHAPE[1], 1.0, 0.3),
            &[SHAPE[1]],
        ),
        y: GpuTensor::zeros(ctx, &SHAPE).unwrap(),
        dx: GpuTensor::zeros(ctx, &SHAPE).unwrap(),
        dgamma: GpuTensor::zeros(ctx, &[SHAPE[1]]).unwrap(),
        mean: GpuTensor::zeros(ctx, &[SHAPE[0], 1]).unwrap(),
        rstd: GpuTensor::zeros(ctx, &[SHAPE[0], 1]).unwrap(),
    }
}

/// Call `i` of a thread: its kind (0-4) and its result.
fn call(ctx: &Context, ticks: &mut Ticks, w: &Work, kind: usize) -> Vec<f32> {
    let ln = LayerNorm::new();
    let rn = RmsNorm::new();
    match kind {
        0 => {
            let mut io = LayerNormIo::new(&w.x, &w.y);
            io.gamma = Some(&w.gamma);
            io.mean = Some(&w.mean);
            io.rstd = Some(&w.rstd);
            ln.forward_into(ctx, &io).unwrap();
            w.y.read(ctx).unwrap()
        }
        1 => {
            let mut io = RmsNormIo::new(&w.x, &w.y);
            io.gamma = Some(&w.gamma);
            rn.forward_into(ctx, &io).unwrap();
            w.y.read(ctx).unwrap()
        }
        2 => {
            // Ticked: the query sets come from the profiler's pool.
            let mut io = LayerNormIo::new(&w.x, &w.y);
            io.gamma = Some(&w.gamma);
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            ln.encode_ticked(ctx, &mut encoder, &io, ticks).unwrap();
            ticks.submit(encoder).unwrap();
            ticks.collect().unwrap();
            // A long-running caller takes its records (else up to
            // `max_retained_records` of them are kept, by design).
            ticks.drain();
            w.y.read(ctx).unwrap()
        }
        3 => {
            let g = ln.backward(ctx, &w.x, &w.dy, Some(&w.gamma), None).unwrap();
            let mut out = g.dx.read(ctx).unwrap();
            out.extend(g.dgamma.read(ctx).unwrap());
            out
        }
        _ => {
            let io = wgpu_norm::RmsNormGradIo {
                x: &w.x,
                dy: &w.dy,
                gamma: Some(&w.gamma),
                rstd: None,
                dx: &w.dx,
                dgamma: Some(&w.dgamma),
            };
            rn.backward_into(ctx, &io).unwrap();
            let mut out = w.dx.read(ctx).unwrap();
            out.extend(w.dgamma.read(ctx).unwrap());
            out
        }
    }
}

/// The reference result of `kind` on `w`'s inputs, checked once a thread.
fn check_against_reference(ctx: &Context, w: &Work, kind: usize, got: &[f32]) {
    let x = w.x.read(ctx).unwrap();
    let dy = w.dy.read(ctx).unwrap();
    let g = w.gamma.read(ctx).unwrap();
    let cols = SHAPE[1];
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (want, tol) = match kind {
        0 | 2 => {
            let r = reference::layer_norm_f64(&xs, cols, Some(&g), None, 1e-5);
            let tol = reference::layer_norm_tolerance(&x, &r, Some(&g), None);
            (r.y, tol)
        }
        1 => (reference::rms_norm_f64(&xs, cols, Some(&g), 1e-5).y, 1e-4),
        _ => {
            let r = reference::norm_backward(&x, &dy, cols, Some(&g), 1e-5, kind == 4);
            let (tdx, tdg, _) = reference::norm_backward_tolerance(&dy, &r, Some(&g));
            let mut want = r.dx.clone();
            want.extend(&r.dgamma);
            (want, tdx.max(tdg))
        }
    };
    let err = reference::max_abs_error(got, &want);
    assert!(err <= tol, "kind {kind}: error {err:e} > {tol:e}");
}

fn soak(instance: &wgpu::Instance, ctx: &Context, calls: usize, one_submitter: bool) {
    let lock = Arc::new(Mutex::new(()));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let warm = calls / 10;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (lock, barrier) = (lock.clone(), barrier.clone());
            s.spawn(move || {
                let mut ticks = Ticks::new(ctx, TicksSettings::default());
                let mut w = work(ctx, 100 * t as u64);
                let mut expected: [Option<Vec<f32>>; 5] = Default::default();
                for i in 0..calls {
                    if i == warm {
                        barrier.wait(); // parked while the main thread measures
                        barrier.wait();
                    }
                    if i % 500 == 499 {
                        w = work(ctx, 100 * t as u64); // the same values, new buffers
                    }
                    let kind = i % 5;
                    let got = {
                        let _one = one_submitter.then(|| lock.lock().unwrap());
                        call(ctx, &mut ticks, &w, kind)
                    };
                    match &expected[kind] {
                        Some(e) => assert!(
                            e.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "thread {t} call {i} (kind {kind}): the result changed"
                        ),
                        None => {
                            check_against_reference(ctx, &w, kind, &got);
                            expected[kind] = Some(got);
                        }
                    }
                }
                let pool = ticks.pool_stats();
                assert!(
                    pool.query_sets_created <= 2,
                    "thread {t}: the ticks pool made {} query sets",
                    pool.query_sets_created
                );
                barrier.wait();
            });
        }
        barrier.wait();
        let before = resources(instance, ctx);
        barrier.wait();
        barrier.wait();
        // Every thread has finished its calls (its ticks still alive).
        let after = resources(instance, ctx);
        eprintln!(
            "[soak] {:?}, {THREADS} threads x {calls} calls{}: after {warm} calls a thread {before:?}, at the end {after:?}",
            ctx.adapter_info().backend,
            if one_submitter {
                " (one submitter at a time)"
            } else {
                ""
            }
        );
        assert!(
            after.buffers <= before.buffers,
            "buffers grew: {before:?} -> {after:?}"
        );
        assert!(
            after.bind_groups <= before.bind_groups,
            "bind groups grew: {before:?} -> {after:?}"
        );
        assert!(
            after.query_sets <= before.query_sets,
            "query sets grew: {before:?} -> {after:?}"
        );
        assert!(
            after.bind_cache_entries <= before.bind_cache_entries,
            "bind cache grew: {before:?} -> {after:?}"
        );
        // Resident memory: allocator noise, not growth with the calls.
        assert!(
            after.rss_kib <= before.rss_kib + 32 * 1024,
            "resident memory grew by more than 32 MiB: {before:?} -> {after:?}"
        );
    });
}

/// Runs the soak in a process of its own (the test binary again, with only
/// `soak_in_its_own_process`), so that the resident memory it measures is
/// its own and not that of the tests running beside it.
#[test]
fn threads_share_a_context_for_many_calls_and_resources_stay_flat() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "soak::soak_in_its_own_process",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in err.lines().filter(|l| l.starts_with("[soak]")) {
        eprintln!("{line}");
    }
    assert!(out.status.success(), "the soak failed:\n{stdout}\n{err}");
    assert!(
        stdout.contains("1 passed"),
        "the soak did not run:\n{stdout}"
    );
}

#[test]
#[ignore = "run by threads_share_a_context_for_many_calls_and_resources_stay_flat, in a process of its own"]
fn soak_in_its_own_process() {
    let calls: usize = std::env::var("SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let backend = crate::common::ctx().adapter_info().backend;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backend.into();
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(backend.into()));
    let name = crate::common::ctx().adapter_info().name.clone();
    let adapter = adapters
        .into_iter()
        .find(|a| a.get_info().name == name)
        .expect("the suite's adapter, again");
    let ctx =
        pollster::block_on(Context::from_adapter(&adapter, &ContextOptions::default())).unwrap();
    soak(&instance, &ctx, calls, backend == wgpu::Backend::Gl);
}
