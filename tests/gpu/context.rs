//! Contexts: adapter choice, capabilities, wrapping a caller's device,
//! sharing across threads, composing with the caller's command encoder.

use wgpu_norm::NormOp;
use wgpu_norm::{
    BackwardKernel, Context, ContextOptions, GpuTensor, Kernel, LayerNorm, LayerNormIo, Reduction,
    RmsNorm, reference, synthetic,
};

use crate::common::{check, ctx};

#[test]
fn capabilities_match_the_adapter() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let caps = ctx.capabilities();
    let features = ctx.device().features();
    assert_eq!(
        caps.timestamps,
        features.contains(wgpu::Features::TIMESTAMP_QUERY)
    );
    assert_eq!(
        caps.subgroups.is_some(),
        features.contains(wgpu::Features::SUBGROUP)
    );
    assert_eq!(
        caps.shader_f16,
        features.contains(wgpu::Features::SHADER_F16)
    );
    // What CI's two adapters are known to offer (DESIGN.md, "Checked on the
    // software adapters"): an explicit expectation per backend, no skipping.
    match ctx.adapter_info().backend {
        wgpu::Backend::Vulkan if ctx.adapter_info().name.contains("llvmpipe") => {
            assert!(caps.timestamps && caps.shader_f16);
            assert_eq!(caps.subgroups.map(|s| (s.min, s.max)), Some((8, 8)));
        }
        wgpu::Backend::Gl if ctx.adapter_info().name.contains("llvmpipe") => {
            assert!(caps.timestamps);
            assert!(caps.subgroups.is_none() && !caps.shader_f16);
        }
        _ => {} // real hardware: whatever it reports, checked above against its features
    }
}

#[test]
fn the_subgroup_kernels_run_only_where_subgroups_exist() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let x = GpuTensor::from_slice(ctx, &[1.0, 2.0, 3.0], &[1, 3]).unwrap();
    for kernel in [
        Kernel::RowPerSubgroup,
        Kernel::RowPerWorkgroup(Reduction::Subgroup),
    ] {
        let op = LayerNorm::new().with_kernel(kernel);
        match ctx.capabilities().subgroups {
            Some(_) => {
                assert_eq!(op.plan(ctx, &[1, 3]).unwrap().kernel, kernel);
                op.forward(ctx, &x, None, None).unwrap();
            }
            None => {
                let err = op.forward(ctx, &x, None, None).unwrap_err();
                assert!(
                    matches!(
                        err,
                        wgpu_norm::Error::MissingFeature {
                            feature: "SUBGROUP",
                            ..
                        }
                    ),
                    "{err}"
                );
                assert!(err.to_string().contains("SUBGROUP"), "{err}");
            }
        }
    }
}

#[test]
fn disabled_features_are_not_requested() {
    let _serial = crate::common::gl_serial();
    let options = ContextOptions {
        disabled_features: wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY,
        ..Default::default()
    };
    let plain = pollster::block_on(Context::with_options(options)).unwrap();
    assert!(plain.capabilities().subgroups.is_none() && !plain.capabilities().timestamps);
    assert_eq!(
        LayerNorm::new()
            .plan(&plain, &[100, 1 << 20])
            .unwrap()
            .kernel,
        Kernel::RowPerWorkgroup(Reduction::Workgroup)
    );
    let x = synthetic::normal(1, 3 * 768, 0.0, 1.0);
    check(
        "no subgroups",
        &plain,
        LayerNorm::new(),
        &[3, 768],
        &x,
        None,
        None,
    );
}

#[test]
fn adapter_name_filter_is_honoured() {
    let _serial = crate::common::gl_serial();
    let name = ctx().adapter_info().name.clone();
    let options = ContextOptions {
        adapter_name: Some(name[..name.len().min(6)].to_uppercase()),
        backends: Some(ctx().adapter_info().backend.into()),
        ..Default::default()
    };
    let same = pollster::block_on(Context::with_options(options)).unwrap();
    assert_eq!(same.adapter_info().name, name);
    let options = ContextOptions {
        adapter_name: Some("no adapter is called this".into()),
        ..Default::default()
    };
    let err = pollster::block_on(Context::with_options(options)).unwrap_err();
    assert!(
        matches!(err, wgpu_norm::Error::NoAdapter { .. })
            && err.to_string().contains("no adapter is called this"),
        "{err}"
    );
}

#[test]
fn wraps_a_device_the_application_already_has() {
    let _serial = crate::common::gl_serial();
    // The application opens its own device, with its own features and limits.
    let adapter = pollster::block_on(Context::adapters(None))
        .into_iter()
        .find(|a| a.get_info().backend == ctx().adapter_info().backend)
        .expect("the shared context's backend has an adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let wrapped = Context::from_device(device.clone(), queue);
    assert!(
        wrapped.capabilities().subgroups.is_none(),
        "a default device has no optional features"
    );
    let x = synthetic::normal(2, 5 * 100, 1.0, 1.0);
    check(
        "wrapped device",
        &wrapped,
        LayerNorm::new(),
        &[5, 100],
        &x,
        None,
        None,
    );
    // WebGPU's default limits allow 8 storage buffers per stage: every op fits.
    assert_eq!(wrapped.limits().max_storage_buffers_per_shader_stage, 8);
    let dy = synthetic::normal(3, 5 * 100, 0.0, 1.0);
    let xt = GpuTensor::from_slice(&wrapped, &x, &[5, 100]).unwrap();
    let dyt = GpuTensor::from_slice(&wrapped, &dy, &[5, 100]).unwrap();
    let want = reference::norm_backward(&x, &dy, 100, None, 1e-5, false);
    for kernel in [
        BackwardKernel::RowPerLane,
        BackwardKernel::RowPerWorkgroup(Reduction::Workgroup),
        BackwardKernel::SplitRow(Reduction::Workgroup),
    ] {
        let op = LayerNorm::new().with_backward_kernel(kernel);
        let grads = op.backward(&wrapped, &xt, &dyt, None, None).unwrap();
        let err = reference::max_abs_error(&grads.dx.read(&wrapped).unwrap(), &want.dx);
        assert!(
            err < 1e-5,
            "{kernel:?} on a default device: dx error {err:.3e}"
        );
    }
    let y = RmsNorm::new().forward(&wrapped, &xt, None).unwrap();
    let want = reference::rms_norm(&x, 100, None, 1e-5);
    assert!(reference::max_abs_error(&y.read(&wrapped).unwrap(), &want.y) < 1e-5);
    // The fused residual fits them too (tests/gpu/default_limits.rs runs
    // every op and kernel on such a device).
    let out = LayerNorm::new()
        .forward_residual(&wrapped, &xt, &dyt, None, None, None)
        .unwrap();
    let want = reference::layer_norm_f64(
        &reference::residual_sum(&x, &dy, None, 100),
        100,
        None,
        None,
        1e-5,
    );
    assert!(reference::max_abs_error(&out.y.read(&wrapped).unwrap(), &want.y) < 1e-5);
}

#[test]
fn encodes_into_the_callers_encoder_between_their_own_commands() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let (rows, dim) = (6usize, 50usize);
    let x = synthetic::normal(3, rows * dim, 0.0, 1.0);
    let staging = GpuTensor::from_slice(ctx, &x, &[rows, dim]).unwrap();
    let xt = GpuTensor::zeros(ctx, &[rows, dim]).unwrap();
    let yt = GpuTensor::zeros(ctx, &[rows, dim]).unwrap();
    let copy_back = GpuTensor::zeros(ctx, &[rows, dim]).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    // The caller's work before ours: x arrives by a copy in the same encoder ...
    encoder.copy_buffer_to_buffer(staging.buffer(), 0, xt.buffer(), 0, xt.size_bytes());
    LayerNorm::new()
        .encode(
            ctx,
            &mut encoder,
            &LayerNormIo {
                x: &xt,
                y: &yt,
                gamma: None,
                beta: None,
                mean: None,
                rstd: None,
                residual: None,
            },
        )
        .unwrap();
    // ... and after ours: y is consumed by a later command of the same submission.
    encoder.copy_buffer_to_buffer(yt.buffer(), 0, copy_back.buffer(), 0, yt.size_bytes());
    ctx.queue().submit([encoder.finish()]);
    let want = reference::layer_norm(&x, dim, None, None, 1e-5);
    let err = reference::max_abs_error(&copy_back.read(ctx).unwrap(), &want.y);
    assert!(
        err <= reference::layer_norm_tolerance(&x, &want, None, None),
        "{err:.3e}"
    );
}

#[test]
fn threads_share_one_context() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..5u64 {
                    let dim = [7usize, 64, 333, 1024][t as usize];
                    let x = synthetic::normal(t * 100 + i, 9 * dim, t as f32, 1.0);
                    check("threads", ctx, LayerNorm::new(), &[9, dim], &x, None, None);
                }
            });
        }
    });
}

#[test]
fn read_async_completes_when_the_device_is_polled() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let t = GpuTensor::from_slice(ctx, &data, &[1000]).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Someone has to poll the device on native: here, a helper thread.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                ctx.device().poll(wgpu::PollType::Poll).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let got = pollster::block_on(t.read_async(ctx)).unwrap();
        done.store(true, std::sync::atomic::Ordering::Release);
        assert_eq!(got, data);
    });
}

#[test]
fn pipelines_are_built_once_and_reused() {
    let _serial = crate::common::gl_serial();
    let ctx = pollster::block_on(Context::with_options(ContextOptions::default())).unwrap();
    let x = GpuTensor::from_slice(&ctx, &synthetic::normal(4, 3 * 33, 0.0, 1.0), &[3, 33]).unwrap();
    let g = GpuTensor::from_slice(&ctx, &[1.0; 33], &[33]).unwrap();
    assert_eq!(ctx.cached_pipelines(), 0);
    for _ in 0..3 {
        LayerNorm::new().forward(&ctx, &x, None, None).unwrap();
    }
    assert_eq!(ctx.cached_pipelines(), 1, "one variant, one pipeline");
    // Another variant (with gamma) is another specialisation.
    LayerNorm::new().forward(&ctx, &x, Some(&g), None).unwrap();
    LayerNorm::new().forward(&ctx, &x, Some(&g), None).unwrap();
    assert_eq!(ctx.cached_pipelines(), 2);
}

#[test]
fn the_autotuner_times_candidates_once_and_persists_the_winner() {
    let _serial = crate::common::gl_serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tuning.json");
    let open = || {
        let options = ContextOptions {
            tuner: wgpu_norm::Autotune::File(file.clone()).hook(),
            ..Default::default()
        };
        pollster::block_on(Context::with_options(options)).unwrap()
    };
    let tuned = open();
    assert!(tuned.tuned_kernels().is_empty());
    let x = synthetic::normal(5, 300 * 100, 2.0, 1.0);
    check(
        "autotuned",
        &tuned,
        LayerNorm::new(),
        &[300, 100],
        &x,
        None,
        None,
    );
    let picks = tuned.tuned_kernels();
    assert_eq!(picks.len(), 1, "{picks:?}");
    assert_eq!(picks[0].1, "dim 100, rows <= 512");
    let winner = picks[0].2.clone();
    assert!(Kernel::ALL.iter().any(|k| k.name() == winner), "{winner}");
    // Tuning built every candidate's pipeline; a second call of the same class tunes no more.
    let built = tuned.cached_pipelines();
    let more = synthetic::normal(6, 400 * 100, -1.0, 2.0);
    check(
        "autotuned again",
        &tuned,
        LayerNorm::new(),
        &[400, 100],
        &more,
        None,
        None,
    );
    assert_eq!(tuned.cached_pipelines(), built);
    // The next process starts tuned: the winner comes from the file, nothing is timed.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&winner) && text.contains(&tuned.adapter_info().name),
        "{text}"
    );
    let next = open();
    assert_eq!(next.tuned_kernels(), picks);
    let plan = LayerNorm::new().plan(&next, &[300, 100]).unwrap();
    assert_eq!(plan.kernel.name(), winner);
    assert_eq!(next.cached_pipelines(), 0, "no candidate was timed");
}

#[test]
fn the_subgroup_size_is_probed_and_planned_with() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    match ctx.capabilities().subgroups {
        Some(s) => {
            assert!(
                s.min <= s.probed && s.probed <= s.max && s.probed.is_power_of_two(),
                "probed {s:?}"
            );
            let plan = LayerNorm::new()
                .with_kernel(Kernel::RowPerSubgroup)
                .plan(ctx, &[100, 64])
                .unwrap();
            assert_eq!(plan.rows_per_workgroup, plan.workgroup_size / s.probed);
        }
        // The refusal of the subgroup kernels there is tested above.
        None => assert!(!ctx.device().features().contains(wgpu::Features::SUBGROUP)),
    }
}
