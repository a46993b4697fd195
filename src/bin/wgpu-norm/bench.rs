//! `wgpu-norm bench`: each op (layer-norm and RMSNorm, forward and backward)
//! against a copy of the bytes it must move, per shape, with GPU ticks; a
//! progress bar on stderr, a table or JSON lines on stdout, and optionally an
//! SVG plot (of the layer-norm forward).

use wgpu_norm::{Autotune, BenchOp, BenchRow, Kernel, LayerNorm, bench_op};

use crate::common::{CliError, CliResult, Shape, adapter_label, open_with};

#[derive(clap::Args)]
pub struct Args {
    /// Shapes, comma-separated (default: the six of BENCHMARKS.md).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<Shape>,
    /// Ops, comma-separated (default: all four).
    #[arg(long, value_delimiter = ',', value_enum)]
    ops: Vec<OpArg>,
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

/// An op as `--ops` spells it.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpArg {
    /// LayerNorm forward.
    LayerNorm,
    /// RMSNorm forward.
    RmsNorm,
    /// LayerNorm backward.
    LayerNormBackward,
    /// RMSNorm backward.
    RmsNormBackward,
}

impl From<OpArg> for BenchOp {
    fn from(o: OpArg) -> Self {
        match o {
            OpArg::LayerNorm => BenchOp::LayerNormForward,
            OpArg::RmsNorm => BenchOp::RmsNormForward,
            OpArg::LayerNormBackward => BenchOp::LayerNormBackward,
            OpArg::RmsNormBackward => BenchOp::RmsNormBackward,
        }
    }
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
        BenchOp::ALL.to_vec()
    } else {
        args.ops.iter().map(|&o| o.into()).collect()
    };
    let mut jobs: Vec<(Vec<usize>, BenchOp, LayerNorm)> = Vec::new();
    for &which in &ops {
        for shape in &shapes {
            if args.all_kernels && which == BenchOp::LayerNormForward {
                for kernel in Kernel::ALL {
                    let op = LayerNorm::new().with_kernel(kernel);
                    if op.plan(&ctx, shape).is_ok() {
                        jobs.push((shape.clone(), which, op));
                    }
                }
            } else {
                jobs.push((shape.clone(), which, LayerNorm::new()));
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
            which.label(),
            crate::common::shape_string(shape)
        ));
        rows.push(bench_op(&ctx, *which, op, shape, args.iters as usize)?);
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
                r.op.label(),
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
            .filter(|r| r.op == BenchOp::LayerNormForward)
            .cloned()
            .collect();
        crate::plot::bandwidth_svg(path, ctx.adapter_info(), &forward)
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
