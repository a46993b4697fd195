//! `wgpu-norm bench`: each op (layer-norm and RMSNorm, forward and backward)
//! against a copy of the bytes it must move, per shape, with GPU ticks; a
//! progress bar on stderr, a table or JSON lines on stdout, and optionally an
//! SVG plot (of the layer-norm forward).

use wgpu_norm::{Autotune, BENCH_OPS, BenchOp, BenchRow, Kernel, LayerNorm, NormConfig};

use crate::common::{CliError, CliResult, Shape, adapter_label, open_with};

#[derive(clap::Args)]
pub struct Args {
    /// Shapes, comma-separated (default: the six of BENCHMARKS.md).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<Shape>,
    /// Ops, comma-separated (default: all of them): layer-norm, rms-norm,
    /// layer-norm-backward, rms-norm-backward.
    #[arg(long, value_delimiter = ',', value_parser = parse_op)]
    ops: Vec<BenchOp>,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    backend: Option<String>,
    /// Timed steps per shape (after two warm-up steps).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Measure every forward kernel that can run each shape (layer-norm forward
    /// only), not only the planned one.
    #[arg(long)]
    all_kernels: bool,
    /// One JSON object per line per measurement on stdout.
    #[arg(long)]
    json: bool,
    /// Draw GB/s of layer norm and copy per shape into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Autotune: time every kernel on first use of each shape and run the fastest.
    #[arg(long)]
    autotune: bool,
    /// Keep the autotuner's picks in this JSON file (implies --autotune).
    #[arg(long)]
    tune_file: Option<std::path::PathBuf>,
}

/// An op of [`BENCH_OPS`] by its name.
fn parse_op(name: &str) -> Result<BenchOp, String> {
    BenchOp::by_name(name).ok_or_else(|| {
        let names: Vec<_> = BENCH_OPS.iter().map(|o| o.name).collect();
        format!("unknown op {name:?}: expected one of {}", names.join(", "))
    })
}

pub fn main(args: Args) -> CliResult {
    let autotune = match (&args.tune_file, args.autotune) {
        (Some(path), _) => Autotune::File(path.clone()),
        (None, true) => Autotune::InMemory,
        (None, false) => Autotune::Off,
    };
    let ctx = open_with(args.backend.as_deref(), autotune)?;
    let shapes: Vec<Vec<usize>> = if args.shapes.is_empty() {
        wgpu_norm::DEFAULT_SHAPES
            .iter()
            .map(|s| s.to_vec())
            .collect()
    } else {
        args.shapes.iter().map(|s| s.0.clone()).collect()
    };
    let ops: Vec<BenchOp> = if args.ops.is_empty() {
        BENCH_OPS.to_vec()
    } else {
        args.ops.clone()
    };
    let default = LayerNorm::new().config();
    let mut jobs: Vec<(Vec<usize>, BenchOp, NormConfig)> = Vec::new();
    for &which in &ops {
        for shape in &shapes {
            if args.all_kernels && which.is_forward() {
                for kernel in Kernel::ALL {
                    let op = LayerNorm::new().with_kernel(kernel);
                    if op.plan(&ctx, shape).is_ok() {
                        jobs.push((shape.clone(), which, op.config()));
                    }
                }
            } else {
                jobs.push((shape.clone(), which, default));
            }
        }
    }
    let bar = indicatif::ProgressBar::new(jobs.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let mut rows: Vec<BenchRow> = Vec::new();
    for (shape, which, op) in &jobs {
        bar.set_message(format!(
            "{} {}",
            which.label,
            crate::common::shape_string(shape)
        ));
        rows.push(which.run(&ctx, *op, shape, args.iters as usize)?);
        bar.inc(1);
    }
    bar.finish_and_clear();

    if args.json {
        for r in &rows {
            println!(
                "{}",
                serde_json::to_string(r).expect("plain data serialises")
            );
        }
    } else {
        println!("{}", adapter_label(ctx.adapter_info()));
        println!(
            "{:<20} {:<14} {:<46} {:>12} {:>12} {:>7} {:>9} {:>9}",
            "op", "shape", "kernel", "op (us)", "copy (us)", "ratio", "GB/s", "copy GB/s"
        );
        for r in &rows {
            println!(
                "{:<20} {:<14} {:<46} {:>12.1} {:>12.1} {:>7.2} {:>9.2} {:>9.2}",
                r.op,
                r.shape,
                r.kernel,
                r.ln_median_us,
                r.copy_median_us,
                r.ratio,
                r.gbps,
                r.copy_gbps
            );
        }
        if let Some(r) = rows.first() {
            println!("(medians of {} steps, {})", r.iters, r.timing_source);
        }
        for (_, class, kernel) in ctx.tuned_kernels() {
            println!("autotuner: {class} -> {kernel}");
        }
    }
    if let Some(path) = &args.plot {
        let forward: Vec<BenchRow> = rows
            .iter()
            .filter(|r| r.op == "layer_norm_forward")
            .cloned()
            .collect();
        crate::plot::bandwidth_svg(path, ctx.adapter_info(), &forward)
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
