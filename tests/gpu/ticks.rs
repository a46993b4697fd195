//! Ticks on the GPU: one record per pass, positive durations, monotonic
//! steps, the CPU fallback, the trace format, and a bounded pool.

use wgpu_norm::NormOp;
use wgpu_norm::{
    Context, ContextOptions, GpuTensor, LayerNorm, LayerNormIo, RecordKind, Ticks, TicksSettings,
    TimingSource, synthetic,
};

use crate::common::ctx;

/// A caller's own kernel: doubles a buffer.
fn double_pipeline(ctx: &Context) -> (wgpu::ComputePipeline, wgpu::BindGroup) {
    let module = ctx
        .device()
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("double"),
            source: wgpu::ShaderSource::Wgsl(
                "@group(0) @binding(0) var<storage, read_write> v: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
                 if (id.x < arrayLength(&v)) { v[id.x] = 2.0 * v[id.x]; }
             }"
                .into(),
            ),
        });
    let pipeline = ctx
        .device()
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("double"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    let t = GpuTensor::zeros(ctx, &[4096]).unwrap();
    let bind = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: t.buffer().as_entire_binding(),
        }],
    });
    (pipeline, bind)
}

struct Work {
    x: GpuTensor,
    y: GpuTensor,
}

fn work(ctx: &Context, shape: &[usize]) -> Work {
    let n = shape.iter().product();
    Work {
        x: GpuTensor::from_slice(ctx, &synthetic::normal(1, n, 0.0, 1.0), shape).unwrap(),
        y: GpuTensor::zeros(ctx, shape).unwrap(),
    }
}

fn io(w: &Work) -> LayerNormIo<'_> {
    LayerNormIo {
        x: &w.x,
        y: &w.y,
        gamma: None,
        beta: None,
        mean: None,
        rstd: None,
        residual: None,
    }
}

#[test]
fn one_record_per_pass_with_positive_durations_and_monotonic_steps() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let expected_source = match ctx.capabilities().timestamps {
        true => TimingSource::GpuTimestamps,
        false => TimingSource::CpuWallClock,
    };
    let mut ticks = Ticks::new(ctx, TicksSettings::default());
    assert_eq!(ticks.timing_source(), expected_source);
    let w = work(ctx, &[2, 64, 768]);
    let (pipeline, bind) = double_pipeline(ctx);
    let steps = 12u64;
    for step in 0..steps {
        ticks.set_step(step);
        ticks.set_epoch(step / 4);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        {
            let mut train = ticks.scope("train");
            {
                let mut forward = train.scope("forward");
                LayerNorm::new()
                    .encode_ticked(ctx, &mut encoder, &io(&w), &mut forward)
                    .unwrap();
            }
            // The caller's own pass, profiled the same way.
            let mut pass =
                train.begin_compute_pass(&mut encoder, "caller's double", &[("n", "4096".into())]);
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(64, 1, 1);
        }
        ticks.submit(encoder).unwrap();
    }
    ticks.flush().unwrap();
    let records = ticks.records();
    if expected_source == TimingSource::CpuWallClock {
        assert_eq!(
            records.len() as u64,
            steps,
            "one submission record per step"
        );
        return;
    }
    assert_eq!(records.len() as u64, 2 * steps, "one record per pass");
    for pair in records.chunks(2) {
        let (ln, dbl) = (&pair[0], &pair[1]);
        assert!(
            ln.label.starts_with("layer_norm_forward 2x64x768 ("),
            "{}",
            ln.label
        );
        assert_eq!(ln.scope, vec!["train", "forward"]);
        assert_eq!(dbl.label, "caller's double");
        assert_eq!(dbl.scope, vec!["train"]);
        assert_eq!(ln.step, dbl.step);
        assert_eq!(ln.epoch, ln.step / 4);
        assert!(ln.args.iter().any(|(k, v)| k == "shape" && v == "2x64x768"));
        for r in pair {
            assert_eq!(
                (r.kind, r.source),
                (RecordKind::Pass, TimingSource::GpuTimestamps)
            );
            assert!(r.duration_ns > 0.0, "{}: {} ns", r.label, r.duration_ns);
        }
        assert!(
            dbl.start_ns >= ln.start_ns + ln.duration_ns,
            "passes of a step are ordered"
        );
    }
    for w in records.windows(2) {
        assert!(w[1].step >= w[0].step, "steps are monotonic");
        assert!(
            w[1].start_ns >= w[0].start_ns,
            "timestamps are monotonic across steps"
        );
    }
    let report = ticks.report();
    assert_eq!(report.timing_source, "gpu_timestamps");
    assert_eq!(report.passes.len(), 2);
    assert!(
        report
            .passes
            .iter()
            .all(|p| p.count == steps as usize && p.min_us > 0.0)
    );
}

#[test]
fn single_dispatches_are_timed_inside_passes() {
    let _serial = crate::common::gl_serial();
    // A small binding limit cuts the tensor into several dispatches in one pass.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = 64 << 10;
    let small = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let mut ticks = Ticks::new(
        &small,
        TicksSettings {
            time_dispatches: true,
            ..Default::default()
        },
    );
    assert_eq!(
        ticks.times_dispatches(),
        small.capabilities().timestamps_inside_passes
    );
    let w = work(&small, &[100, 1000]); // 400 kB: 7 chunks of 16 rows or fewer
    let mut encoder = small.device().create_command_encoder(&Default::default());
    LayerNorm::new()
        .encode_ticked(&small, &mut encoder, &io(&w), &mut ticks)
        .unwrap();
    ticks.submit(encoder).unwrap();
    ticks.flush().unwrap();
    let records = ticks.records();
    let pass = records
        .iter()
        .find(|r| r.kind == RecordKind::Pass)
        .expect("the pass is timed");
    let chunks: usize = pass
        .args
        .iter()
        .find(|(k, _)| k == "chunks")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(chunks > 1, "the tensor was meant to be chunked");
    let dispatches: Vec<_> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Dispatch)
        .collect();
    if ticks.times_dispatches() {
        assert_eq!(dispatches.len(), chunks);
        for d in &dispatches {
            assert!(d.duration_ns > 0.0 && d.start_ns >= pass.start_ns, "{d:?}");
            assert!(d.start_ns + d.duration_ns <= pass.start_ns + pass.duration_ns);
        }
    } else {
        assert!(dispatches.is_empty());
    }
}

#[test]
fn cpu_fallback_says_so() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let mut ticks = Ticks::new(
        ctx,
        TicksSettings {
            force_cpu_timing: true,
            ..Default::default()
        },
    );
    assert_eq!(ticks.timing_source(), TimingSource::CpuWallClock);
    let w = work(ctx, &[8, 1024]);
    for step in 0..3 {
        ticks.set_step(step);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        LayerNorm::new()
            .encode_ticked(ctx, &mut encoder, &io(&w), &mut ticks)
            .unwrap();
        LayerNorm::new()
            .with_epsilon(0.1)
            .encode_ticked(ctx, &mut encoder, &io(&w), &mut ticks)
            .unwrap();
        ticks.submit(encoder).unwrap();
        ctx.wait().unwrap();
    }
    ticks.flush().unwrap();
    let records = ticks.records();
    assert_eq!(records.len(), 3, "one record per submission");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            (r.kind, r.source, r.step),
            (RecordKind::Submission, TimingSource::CpuWallClock, i as u64)
        );
        assert!(r.duration_ns > 0.0);
        assert!(
            r.label.contains(" + "),
            "both passes are named: {}",
            r.label
        );
        assert!(
            r.args
                .contains(&("passes_in_submission".to_string(), "2".to_string()))
        );
    }
    assert_eq!(ticks.report().timing_source, "cpu_wall_clock");
    assert_eq!(
        ticks.pool_stats().query_sets_created,
        0,
        "no queries without GPU timing"
    );
}

#[test]
fn chrome_trace_has_the_required_fields_and_escapes_labels() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let mut ticks = Ticks::new(ctx, TicksSettings::default());
    let w = work(ctx, &[4, 33]);
    let weird = "weird \"label\"\n\\ with <tags> & ünïcode";
    for step in 0..2 {
        ticks.set_step(step);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        {
            let mut scope = ticks.scope("step");
            LayerNorm::new()
                .encode_ticked(ctx, &mut encoder, &io(&w), &mut scope)
                .unwrap();
            drop(scope.begin_compute_pass(
                &mut encoder,
                weird,
                &[("note", "a \"quoted\" arg".into())],
            ));
        }
        ticks.submit(encoder).unwrap();
    }
    ticks.flush().unwrap();
    let trace: serde_json::Value =
        serde_json::from_str(&ticks.chrome_trace()).expect("the trace is valid JSON");
    let events = trace["traceEvents"].as_array().unwrap();
    let process = events
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "process_name")
        .unwrap();
    assert!(
        process["args"]["name"]
            .as_str()
            .unwrap()
            .contains(&ctx.adapter_info().name)
    );
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    for e in &complete {
        for key in ["name", "ts", "dur", "pid", "tid", "args"] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0);
    }
    let passes: Vec<_> = complete.iter().filter(|e| e["cat"] == "gpu").collect();
    let scopes: Vec<_> = complete.iter().filter(|e| e["cat"] == "scope").collect();
    if ticks.timing_source() == TimingSource::GpuTimestamps {
        assert_eq!(passes.len(), 4);
        assert!(
            passes
                .iter()
                .any(|e| e["name"] == weird && e["args"]["note"] == "a \"quoted\" arg")
        );
        let ln = passes
            .iter()
            .find(|e| e["args"]["shape"] == "4x33")
            .unwrap();
        assert_eq!(ln["args"]["step"], 0);
        assert_eq!(scopes.len(), 2, "one span per step's scope");
    } else {
        assert_eq!(passes.len(), 2, "one submission per step");
    }
}

#[test]
fn the_pool_stays_bounded_over_100000_iterations() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let settings = TicksSettings {
        max_frames_in_flight: 4,
        ..Default::default()
    };
    let mut ticks = Ticks::new(ctx, settings);
    let mut seen = 0usize;
    let mut peak = wgpu_norm::PoolStats::default();
    for step in 0..100_000u64 {
        ticks.set_step(step);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        drop(ticks.begin_compute_pass(&mut encoder, "empty pass", &[]));
        ticks.submit(encoder).unwrap();
        let stats = ticks.pool_stats();
        peak.query_sets_created = peak.query_sets_created.max(stats.query_sets_created);
        peak.frames_in_flight = peak.frames_in_flight.max(stats.frames_in_flight);
        if step % 1000 == 0 {
            seen += ticks.drain().len();
        }
    }
    ticks.flush().unwrap();
    seen += ticks.drain().len();
    assert_eq!(seen, 100_000, "every iteration's record arrived");
    assert!(peak.frames_in_flight <= 4, "{peak:?}");
    // One query set per frame in flight, plus the one being encoded.
    assert!(peak.query_sets_created <= 6, "{peak:?}");
    let end = ticks.pool_stats();
    assert_eq!(
        (end.frames_in_flight, end.query_sets_free),
        (0, end.query_sets_created)
    );
}
