//! `wgpu-norm run`: the main job. Layer-norm of seeded random data on the best
//! adapter, checked against the f64 reference, and timed.

use std::time::Instant;

use serde_json::json;
use wgpu_norm::{
    GpuTensor, LayerNorm, LayerNormIo, NormOp, Ticks, TicksSettings, TimingSource, reference,
    synthetic,
};

use crate::common::{CliError, CliResult, Shape, adapter_label, open, shape_string};
use crate::output::Outputs;

#[derive(clap::Args)]
pub struct Args {
    /// Tensor shape; the last dimension is normalised.
    #[arg(long, default_value = "8x512x768")]
    shape: Shape,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    backend: Option<String>,
    /// Timed iterations (after one warm-up run that includes the shader compile).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Seed of the random data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Write the passes' ticks as a Chrome trace (Perfetto, chrome://tracing).
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Time with the CPU wall clock even where the adapter has GPU timestamps.
    #[arg(long)]
    cpu_timing: bool,
    /// Write --trace into a FIFO or a device (/dev/stdout) if it names one;
    /// without this it is refused.
    #[arg(long)]
    allow_special_output: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            shape: Shape(vec![8, 512, 768]),
            backend: None,
            iters: 20,
            seed: 0,
            json: false,
            trace: None,
            cpu_timing: false,
            allow_special_output: false,
        }
    }
}

pub fn main(args: Args) -> CliResult {
    let mut files = Outputs::new(args.allow_special_output);
    let trace = args
        .trace
        .as_ref()
        .map(|p| files.add("--trace", p))
        .transpose()?;
    let ctx = open(args.backend.as_deref())?;
    let shape = &args.shape.0;
    // x and y on the device; x, y read back and the f64 reference on the host.
    crate::common::fit_shape(&ctx, shape, 1.0, 32)?;
    let cols = *shape.last().expect("Shape gives at least one dim");
    let n: usize = shape.iter().product();
    let x = synthetic::normal(args.seed, n, 0.0, 1.0);
    let gamma = synthetic::normal(args.seed + 1, cols, 1.0, 0.1);
    let beta = synthetic::normal(args.seed + 2, cols, 0.0, 0.1);

    let x_gpu = GpuTensor::from_slice(&ctx, &x, shape)?;
    let g_gpu = GpuTensor::from_slice(&ctx, &gamma, &[cols])?;
    let b_gpu = GpuTensor::from_slice(&ctx, &beta, &[cols])?;
    let op = LayerNorm::new();
    let plan = op.plan(&ctx, shape)?;

    // Warm-up: compiles the pipeline (tens to hundreds of ms on Mesa), and
    // gives the values we check.
    let y = op.forward(&ctx, &x_gpu, Some(&g_gpu), Some(&b_gpu))?;
    let got = y.read(&ctx)?;
    let want = reference::layer_norm(&x, cols, Some(&gamma), Some(&beta), op.epsilon as f64);
    let max_err = reference::max_abs_error(&got, &want.y);
    let tol = reference::layer_norm_tolerance(&x, &want, Some(&gamma), Some(&beta));
    let ok = max_err <= tol;

    // The timed loop: one ticked pass per step, several steps in flight.
    let mut ticks = Ticks::new(
        &ctx,
        TicksSettings {
            force_cpu_timing: args.cpu_timing,
            ..Default::default()
        },
    );
    let cpu_timed = ticks.timing_source() == TimingSource::CpuWallClock;
    let io = LayerNormIo {
        x: &x_gpu,
        y: &y,
        gamma: Some(&g_gpu),
        beta: Some(&b_gpu),
        mean: None,
        rstd: None,
        residual: None,
    };
    let started = Instant::now();
    for step in 0..args.iters {
        ticks.set_step(step as u64);
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        op.encode_ticked(&ctx, &mut encoder, &io, &mut ticks)?;
        ticks.submit(encoder)?;
        if cpu_timed {
            // Wall-clock times are submit-to-done: keep one submission in flight.
            ctx.wait()?;
        }
    }
    ticks.flush()?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3 / args.iters as f64;
    let report = ticks.report();
    let ln = report
        .passes
        .iter()
        .find(|p| p.label.starts_with("layer_norm_forward"))
        .ok_or_else(|| CliError::Failed("no layer-norm pass was timed".into()))?;
    let median_ms = ln.median_us / 1e3;
    let min_ms = ln.min_us / 1e3;
    // Memory moved: x read and y written once each.
    let gbps = 2.0 * n as f64 * 4.0 / (median_ms * 1e-3) / 1e9;
    if let Some(id) = trace {
        files.write_bytes(id, ticks.chrome_trace().as_bytes())?;
    }
    files.commit()?;

    let info = ctx.adapter_info();
    println!("adapter     {}", adapter_label(info));
    println!(
        "shape       {} ({} rows of {cols}), kernel: {}",
        shape_string(shape),
        n / cols,
        plan.describe()
    );
    println!(
        "check       max |y - f64 reference| = {max_err:.3e} (tolerance {tol:.3e}): {}",
        if ok { "ok" } else { "FAILED" }
    );
    println!(
        "time        median {median_ms:.3} ms, min {min_ms:.3} ms over {} steps ({}), {gbps:.2} GB/s; {wall_ms:.3} ms per step on the CPU's clock",
        args.iters, report.timing_source
    );
    println!();
    print!("{}", report.table());
    if let Some(path) = &args.trace {
        println!("trace       {}", path.display());
    }
    if args.json {
        println!(
            "{}",
            json!({
                "adapter": info.name,
                "backend": format!("{:?}", info.backend),
                "shape": shape_string(shape),
                "rows": n / cols,
                "cols": cols,
                "workgroup_size": plan.workgroup_size,
                "kernel": plan.kernel.name(),
                "max_abs_error": max_err,
                "tolerance": tol,
                "ok": ok,
                "iters": args.iters,
                "timing_source": report.timing_source,
                "passes": report.passes.iter().map(|p| json!({
                    "label": p.label,
                    "count": p.count,
                    "min_us": p.min_us,
                    "median_us": p.median_us,
                    "p95_us": p.p95_us,
                    "max_us": p.max_us,
                })).collect::<Vec<_>>(),
                "median_ms": median_ms,
                "min_ms": min_ms,
                "gbps": gbps,
            })
        );
    }
    if !ok {
        return Err(CliError::Failed(format!(
            "layer norm differs from the f64 reference by {max_err:.3e} > {tol:.3e}"
        )));
    }
    Ok(())
}
