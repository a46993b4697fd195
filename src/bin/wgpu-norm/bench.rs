//! `wgpu-norm bench`: each op (layer-norm and RMSNorm, forward and backward)
//! against a copy of the bytes it must move, per shape, with GPU ticks; a
//! progress bar on stderr, a table or JSON lines on stdout, and optionally an
//! SVG plot (of the layer-norm forward).

use wgpu_norm::{Autotune, BENCH_OPS, BenchOp, BenchRow, Kernel, LayerNorm, NormConfig};

use wgpu_norm::plan::tuned::Winners;

use crate::common::{CliError, CliResult, Shape, adapter_label, open_with};
use crate::output::Outputs;

#[derive(clap::Args)]
pub struct Args {
    /// Shapes, comma-separated (default: the six of BENCHMARKS.md; the
    /// grouped ops' own three).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<Shape>,
    /// Ops, comma-separated (default: the row normalisations): layer-norm,
    /// rms-norm, layer-norm-backward, rms-norm-backward; and group-norm,
    /// instance-norm, batch-norm (inference), batch-norm-training, lp-norm
    /// and their -backward (batch-norm-backward in training mode), each
    /// timed by default on 1x512x64x64, 32x256x14x14 and 4096x768.
    #[arg(long, value_delimiter = ',', value_parser = parse_op)]
    ops: Vec<BenchOp>,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    backend: Option<String>,
    /// Timed steps per shape (after two warm-up steps).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Run the whole set this many times, interleaved (round after round),
    /// and report per row the median ratio and its spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Measure every forward kernel that can run each shape (layer-norm forward
    /// only), not only the planned one.
    #[arg(long)]
    all_kernels: bool,
    /// Time every copy kernel (and the driver's copy) on each shape's bytes
    /// instead of the ops: the floor's candidates.
    #[arg(long)]
    copies: bool,
    /// One JSON object per line per measurement on stdout.
    #[arg(long)]
    json: bool,
    /// Draw GB/s of layer norm and copy per shape into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Autotune: time every kernel on first use of each shape and run the fastest.
    #[arg(long)]
    autotune: bool,
    /// Keep the autotuner's picks in this JSON file (implies --autotune): read
    /// at the start if it exists (a file that is not a tune file is refused,
    /// never overwritten), written at the end.
    #[arg(long)]
    tune_file: Option<std::path::PathBuf>,
    /// Write --plot or --tune-file into a FIFO or a device if one names one;
    /// without this they are refused.
    #[arg(long)]
    allow_special_output: bool,
}

/// The winners a tune file holds: none for a missing file; a file that is
/// not one is refused (exit code 2), so that it is never overwritten.
fn read_tune_file(path: &std::path::Path) -> CliResult<Winners> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Winners>(&text).map_err(|e| {
            CliError::Input(format!(
                "--tune-file {}: not a wgpu-norm tune file ({e}); refusing to overwrite it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Winners::new()),
        Err(e) => Err(CliError::Input(format!(
            "--tune-file {}: cannot be read ({e})",
            path.display()
        ))),
    }
}

/// An op of [`BENCH_OPS`] by its name.
fn parse_op(name: &str) -> Result<BenchOp, String> {
    BenchOp::by_name(name).ok_or_else(|| {
        let names: Vec<_> = BENCH_OPS.iter().map(|o| o.name).collect();
        format!("unknown op {name:?}: expected one of {}", names.join(", "))
    })
}

pub fn main(args: Args) -> CliResult {
    // Every output checked (and the tune file read) before anything runs.
    let mut files = Outputs::new(args.allow_special_output);
    let plot = args
        .plot
        .as_ref()
        .map(|p| files.add("--plot", p))
        .transpose()?;
    let tune = match &args.tune_file {
        Some(path) => {
            let winners = if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                read_tune_file(path)?
            } else {
                Winners::new()
            };
            Some((files.add("--tune-file", path)?, winners))
        }
        None => None,
    };
    let autotune = if args.autotune || tune.is_some() {
        Autotune::InMemory
    } else {
        Autotune::Off
    };
    let ctx = open_with(args.backend.as_deref(), autotune)?;
    if let Some((_, winners)) = &tune {
        ctx.tuned().load(ctx.adapter_info(), winners);
    }
    let shapes: Vec<Vec<usize>> = if args.shapes.is_empty() {
        wgpu_norm::DEFAULT_SHAPES
            .iter()
            .map(|s| s.to_vec())
            .collect()
    } else {
        args.shapes.iter().map(|s| s.0.clone()).collect()
    };
    // Per shape: the op's tensors and a copy of up to 1.5 of them on the
    // device; x, dy and their f32 staging on the host.
    for shape in &shapes {
        crate::common::fit_shape(&ctx, shape, 1.5, 16)?;
    }
    if args.copies {
        return copies(&ctx, &shapes, args.iters, args.json);
    }
    let ops: Vec<BenchOp> = if args.ops.is_empty() {
        BENCH_OPS.iter().copied().filter(|o| o.by_default).collect()
    } else {
        args.ops.clone()
    };
    let default = LayerNorm::new().config();
    let mut jobs: Vec<(Vec<usize>, BenchOp, NormConfig)> = Vec::new();
    for &which in &ops {
        // Without --shapes each op runs on its own default shapes.
        let own: Vec<Vec<usize>> = which.default_shapes.iter().map(|s| s.to_vec()).collect();
        let op_shapes = if args.shapes.is_empty() {
            &own
        } else {
            &shapes
        };
        for shape in op_shapes {
            if args.all_kernels && which.by_default && which.is_forward() {
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
    let bar = indicatif::ProgressBar::new(jobs.len() as u64 * args.repeat as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    // Round after round over every job, so that a slow spell of the machine
    // touches every row alike.
    let mut rounds: Vec<Vec<BenchRow>> = vec![Vec::new(); jobs.len()];
    for _ in 0..args.repeat {
        for ((shape, which, op), results) in jobs.iter().zip(&mut rounds) {
            bar.set_message(format!(
                "{} {}",
                which.label,
                crate::common::shape_string(shape)
            ));
            results.push(which.run(&ctx, *op, shape, args.iters as usize)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let rows: Vec<BenchRow> = rounds.into_iter().map(median_row).collect();

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
            "{:<20} {:<14} {:<46} {:>12} {:>12} {:<20} {:>13} {:>9} {:>9} {:>9}",
            "op",
            "shape",
            "kernel",
            "op (us)",
            "copy (us)",
            "copy kernel",
            "ratio",
            "GB/s",
            "copy GB/s",
            "driver copy (us, CPU)"
        );
        for r in &rows {
            let ratio = match r.repeats {
                1 => format!("{:.2}", r.ratio),
                _ => format!("{:.2} ({:.2}-{:.2})", r.ratio, r.ratio_min, r.ratio_max),
            };
            println!(
                "{:<20} {:<14} {:<46} {:>12.1} {:>12.1} {:<20} {:>13} {:>9.2} {:>9.2} {:>9.1}",
                r.op,
                r.shape,
                r.kernel,
                r.ln_median_us,
                r.copy_median_us,
                r.copy_kernel,
                ratio,
                r.gbps,
                r.copy_gbps,
                r.driver_copy_cpu_us
            );
        }
        if let Some(r) = rows.first() {
            let repeats = match r.repeats {
                1 => String::new(),
                k => format!("; ratio: median (range) of {k} rounds"),
            };
            println!(
                "(medians of {} steps, {}; copy: the fastest copy kernel for the bytes{repeats})",
                r.iters, r.timing_source
            );
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
        let svg = crate::plot::bandwidth_svg(ctx.adapter_info(), &forward)
            .map_err(|e| CliError::Failed(format!("--plot {}: {e}", path.display())))?;
        files.write_bytes(plot.expect("reserved with --plot"), svg.as_bytes())?;
    }
    if let Some((id, _)) = tune {
        let text = serde_json::to_string_pretty(&ctx.tuned().snapshot(ctx.adapter_info()))
            .expect("plain data serialises");
        files.write_bytes(id, text.as_bytes())?;
    }
    files.commit()
}

/// The row whose ratio is the median of `rows` (the upper one of an even
/// count), with the spread of their ratios.
fn median_row(mut rows: Vec<BenchRow>) -> BenchRow {
    rows.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let (min, max) = (rows[0].ratio, rows[rows.len() - 1].ratio);
    let repeats = rows.len();
    let mut row = rows.swap_remove(repeats / 2);
    row.repeats = repeats;
    row.ratio_min = min;
    row.ratio_max = max;
    row
}

/// `--copies`: every copy kernel, and the driver's copy, on the bytes of each
/// shape's forward (x read, y written).
fn copies(ctx: &wgpu_norm::Context, shapes: &[Vec<usize>], iters: u32, json: bool) -> CliResult {
    if !json {
        println!("{}", adapter_label(ctx.adapter_info()));
        println!(
            "{:<14} {:<22} {:>12} {:>9}",
            "shape", "copy", "median (us)", "GB/s"
        );
    }
    for shape in shapes {
        let n: usize = shape.iter().product();
        let bytes = n as u64 * 4;
        let mut rows = wgpu_norm::time_copies(ctx, bytes, iters as u64)?
            .into_iter()
            .map(|(k, us)| (k.name(), us, "gpu_timestamps"))
            .collect::<Vec<_>>();
        let src = wgpu_norm::GpuTensor::zeros(ctx, &[n])?;
        let dst = wgpu_norm::GpuTensor::zeros(ctx, &[n])?;
        let driver = wgpu_norm::driver_copy_us(ctx, &src, &dst, iters as usize)?;
        rows.push(("copy_buffer_to_buffer".into(), driver, "cpu_wall_clock"));
        for (name, us, clock) in rows {
            // A copy reads and writes every byte.
            let gbps = 2.0 * bytes as f64 / (us * 1e-6) / 1e9;
            let shape = crate::common::shape_string(shape);
            if json {
                let row = serde_json::json!({"shape": shape, "copy": name, "median_us": us, "gbps": gbps, "clock": clock});
                println!("{row}");
            } else {
                println!("{shape:<14} {name:<22} {us:>12.1} {gbps:>9.2}");
            }
        }
    }
    Ok(())
}
