//! Benchmarks measured the way the project reports them: GPU-tick medians of
//! an op and of a copy moving the same bytes, on the same adapter, in the
//! same run, interleaved step by step, and their ratio. The copy is the
//! fastest copy kernel on the adapter for that many bytes ([`fastest_copy`],
//! tuned once per size class and kept in the context's tuned table); the
//! driver's own `copy_buffer_to_buffer` is reported beside it.
//!
//! Any [`NormOp`] can be timed with [`bench_norm`]; [`BENCH_OPS`] is the
//! list `wgpu-norm bench --ops` offers (a new op adds its lines there).

use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::batch_norm::{BatchNorm, BatchNormGradIo, BatchNormIo};
use crate::ops::config::NormConfig;
use crate::ops::copy::{encode_copy_with, encode_driver_copy};
use crate::ops::group_norm::GroupNorm;
use crate::ops::grouped_op::{ChannelNormGradIo, ChannelNormIo, GroupedNorm};
use crate::ops::instance_norm::InstanceNorm;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::lp_norm::{LpNorm, LpNormGradIo, LpNormIo};
use crate::ops::op::NormOp;
use crate::ops::rms_norm::RmsNorm;
use crate::plan::CopyKernel;
use crate::shape::shape_string;
use crate::tensor::GpuTensor;
use crate::ticks::{Ticks, ticked_steps};

/// The shapes `wgpu-norm bench` measures by default.
pub const DEFAULT_SHAPES: &[&[usize]] = &[
    &[8, 512, 768],
    &[4, 256, 4096],
    &[64, 64, 64],
    &[1, 32, 65536],
    &[4096, 1, 1024],
    &[1, 1, 1_048_576],
];

/// One benchmarkable op and direction.
#[derive(Clone, Copy, Debug)]
pub struct BenchOp {
    /// As `--ops` spells it: `layer-norm`, `rms-norm-backward`.
    pub name: &'static str,
    /// The pass label's prefix and the rows' `op`: `layer_norm_forward`.
    pub label: &'static str,
    /// Timed with this configuration's forced kernels.
    run: fn(&Context, NormConfig, &[usize], usize) -> Result<BenchRow>,
    /// The shapes it is timed on when `bench` is given none.
    pub default_shapes: &'static [&'static [usize]],
    /// Whether `bench` without `--ops` times it.
    pub by_default: bool,
}

impl PartialEq for BenchOp {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl BenchOp {
    /// The op named `name` (as `--ops` spells it).
    pub fn by_name(name: &str) -> Option<BenchOp> {
        BENCH_OPS.iter().copied().find(|o| o.name == name)
    }

    /// Whether it is a forward (the ops `--all-kernels` varies).
    pub fn is_forward(&self) -> bool {
        self.label.ends_with("_forward")
    }

    /// Times the op configured by `cfg` on a tensor of `shape` against a copy.
    pub fn run(
        &self,
        ctx: &Context,
        cfg: NormConfig,
        shape: &[usize],
        iters: usize,
    ) -> Result<BenchRow> {
        (self.run)(ctx, cfg, shape, iters)
    }
}

/// Every op `wgpu-norm bench` can time, in the order it reports them.
pub const BENCH_OPS: &[BenchOp] = &[
    BenchOp {
        name: "layer-norm",
        label: "layer_norm_forward",
        run: |ctx, cfg, shape, iters| bench_norm(ctx, &LayerNorm::from(cfg), false, shape, iters),
        default_shapes: DEFAULT_SHAPES,
        by_default: true,
    },
    BenchOp {
        name: "rms-norm",
        label: "rms_norm_forward",
        run: |ctx, cfg, shape, iters| bench_norm(ctx, &RmsNorm::from(cfg), false, shape, iters),
        default_shapes: DEFAULT_SHAPES,
        by_default: true,
    },
    BenchOp {
        name: "layer-norm-backward",
        label: "layer_norm_backward",
        run: |ctx, cfg, shape, iters| bench_norm(ctx, &LayerNorm::from(cfg), true, shape, iters),
        default_shapes: DEFAULT_SHAPES,
        by_default: true,
    },
    BenchOp {
        name: "rms-norm-backward",
        label: "rms_norm_backward",
        run: |ctx, cfg, shape, iters| bench_norm(ctx, &RmsNorm::from(cfg), true, shape, iters),
        default_shapes: DEFAULT_SHAPES,
        by_default: true,
    },
    grouped_op(
        "group-norm",
        "group_norm_forward",
        Grouped::GroupNorm,
        false,
    ),
    grouped_op(
        "group-norm-backward",
        "group_norm_backward",
        Grouped::GroupNorm,
        true,
    ),
    grouped_op(
        "instance-norm",
        "instance_norm_forward",
        Grouped::InstanceNorm,
        false,
    ),
    grouped_op(
        "instance-norm-backward",
        "instance_norm_backward",
        Grouped::InstanceNorm,
        true,
    ),
    grouped_op(
        "batch-norm",
        "batch_norm_forward",
        Grouped::BatchNorm,
        false,
    ),
    grouped_op(
        "batch-norm-training",
        "batch_norm_forward",
        Grouped::BatchNormTraining,
        false,
    ),
    grouped_op(
        "batch-norm-backward",
        "batch_norm_backward",
        Grouped::BatchNormTraining,
        true,
    ),
    grouped_op("lp-norm", "lp_norm_forward", Grouped::LpNorm, false),
    grouped_op(
        "lp-norm-backward",
        "lp_norm_backward",
        Grouped::LpNorm,
        true,
    ),
];

/// The shapes the grouped ops are timed on by default: an SD-VAE GroupNorm
/// (also InstanceNorm's), a ResNet BatchNorm, embeddings for L2.
pub const GROUPED_SHAPES: [&[&[usize]]; 3] =
    [&[&[1, 512, 64, 64]], &[&[32, 256, 14, 14]], &[&[4096, 768]]];

/// The grouped normalisations `bench` times (the shape read as
/// [N, C, spatial…]; LpNorm along the last axis, p 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouped {
    /// GroupNorm, G = the largest divisor of C up to 32.
    GroupNorm,
    /// InstanceNorm.
    InstanceNorm,
    /// BatchNorm inference.
    BatchNorm,
    /// BatchNorm training (batch statistics; running statistics written).
    BatchNormTraining,
    /// LpNorm, p 2, last axis.
    LpNorm,
}

const fn grouped_op(
    name: &'static str,
    label: &'static str,
    op: Grouped,
    backward: bool,
) -> BenchOp {
    // A const fn cannot capture: one function per (op, direction).
    macro_rules! runner {
        ($op:expr, $b:expr) => {
            |ctx, _, shape, iters| bench_grouped(ctx, $op, $b, shape, iters)
        };
    }
    let run: fn(&Context, NormConfig, &[usize], usize) -> Result<BenchRow> = match (op, backward) {
        (Grouped::GroupNorm, false) => runner!(Grouped::GroupNorm, false),
        (Grouped::GroupNorm, true) => runner!(Grouped::GroupNorm, true),
        (Grouped::InstanceNorm, false) => runner!(Grouped::InstanceNorm, false),
        (Grouped::InstanceNorm, true) => runner!(Grouped::InstanceNorm, true),
        (Grouped::BatchNorm, _) => runner!(Grouped::BatchNorm, false),
        (Grouped::BatchNormTraining, false) => runner!(Grouped::BatchNormTraining, false),
        (Grouped::BatchNormTraining, true) => runner!(Grouped::BatchNormTraining, true),
        (Grouped::LpNorm, false) => runner!(Grouped::LpNorm, false),
        (Grouped::LpNorm, true) => runner!(Grouped::LpNorm, true),
    };
    BenchOp {
        name,
        label,
        run,
        default_shapes: match op {
            Grouped::GroupNorm | Grouped::InstanceNorm => GROUPED_SHAPES[0],
            Grouped::BatchNorm | Grouped::BatchNormTraining => GROUPED_SHAPES[1],
            Grouped::LpNorm => GROUPED_SHAPES[2],
        },
        by_default: false,
    }
}

/// Times a grouped op on `shape` against a copy of the bytes it must move
/// (x read and y written; x and dy read and dx written for a backward), as
/// [`bench_norm`] does: a backward with the statistics a forward saved, and
/// every parameter gradient.
pub fn bench_grouped(
    ctx: &Context,
    op: Grouped,
    backward: bool,
    shape: &[usize],
    iters: usize,
) -> Result<BenchRow> {
    let n = crate::shape::element_count(shape)?;
    let lp = op == Grouped::LpNorm;
    let c = if lp { 1 } else { *shape.get(1).unwrap_or(&1) };
    let x = GpuTensor::from_slice(ctx, &crate::synthetic::normal(0, n, 0.0, 1.0), shape)?;
    let dy = GpuTensor::from_slice(ctx, &crate::synthetic::normal(3, n, 0.0, 1.0), shape)?;
    let out = GpuTensor::zeros(ctx, shape)?;
    let param = |seed, mean| -> Result<GpuTensor> {
        GpuTensor::from_slice(ctx, &crate::synthetic::normal(seed, c, mean, 0.1), &[c])
    };
    let (scale, bias, dscale, dbias) = (
        param(1, 1.0)?,
        param(2, 0.0)?,
        param(4, 0.0)?,
        param(5, 0.0)?,
    );
    let (mean, var) = (param(6, 0.0)?, param(7, 1.0)?);
    let (rmean, rvar) = (param(8, 0.0)?, param(9, 1.0)?);
    let groups = (1..=c.min(32)).rev().find(|g| c % g == 0).unwrap_or(1);
    // The statistics a forward saves and a backward reads, as for the row
    // normalisations: one per (n, group), per (n, channel) or per channel.
    let sets = match op {
        Grouped::GroupNorm => shape[0] * groups,
        Grouped::InstanceNorm => shape[0] * c,
        _ => c,
    };
    let (mean_out, rstd_out) = (
        GpuTensor::zeros(ctx, &[sets])?,
        GpuTensor::zeros(ctx, &[sets])?,
    );
    let fwd = ChannelNormIo::new(&x, &out)
        .with_scale(&scale)
        .with_bias(&bias);
    let grads = ChannelNormGradIo::new(&x, &dy, &out)
        .with_params(Some(&scale), Some(&bias))
        .with_grads(Some(&dscale), Some(&dbias));
    let grads = match op {
        Grouped::LpNorm | Grouped::BatchNorm => grads,
        _ => grads.with_stats(&mean_out, &rstd_out),
    };
    let bn = BatchNorm {
        training: op == Grouped::BatchNormTraining,
        ..BatchNorm::new()
    };
    let bn_io = BatchNormIo::new(&x, &out, &mean, &var)
        .with_params(Some(&scale), Some(&bias))
        .with_running(&rmean, &rvar);
    let bn_grads = BatchNormGradIo {
        grads,
        input_mean: Some(&mean),
        input_var: Some(&var),
    };
    let (gn, inn, lpn) = (GroupNorm::new(groups), InstanceNorm::new(), LpNorm::new());
    if backward && op != Grouped::LpNorm {
        // The statistics the backward reads, saved by a forward.
        let saving = fwd.with_stats(&mean_out, &rstd_out);
        match op {
            Grouped::GroupNorm => gn.forward_into(ctx, &saving)?,
            Grouped::InstanceNorm => inn.forward_into(ctx, &saving)?,
            _ => bn.forward_into(ctx, &bn_io.with_saved(&mean_out, &rstd_out))?,
        }
    }
    let mut pass = |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| match (op, backward) {
        (Grouped::GroupNorm, false) => gn.encode_ticked(ctx, encoder, &fwd, ticks),
        (Grouped::GroupNorm, true) => gn.encode_backward_ticked(ctx, encoder, &grads, ticks),
        (Grouped::InstanceNorm, false) => inn.encode_ticked(ctx, encoder, &fwd, ticks),
        (Grouped::InstanceNorm, true) => inn.encode_backward_ticked(ctx, encoder, &grads, ticks),
        (Grouped::BatchNorm | Grouped::BatchNormTraining, false) => {
            bn.encode_ticked(ctx, encoder, &bn_io, ticks)
        }
        (Grouped::BatchNorm | Grouped::BatchNormTraining, true) => {
            bn.encode_backward_ticked(ctx, encoder, &bn_grads, ticks)
        }
        (Grouped::LpNorm, false) => {
            lpn.encode_ticked(ctx, encoder, &LpNormIo { x: &x, y: &out }, ticks)
        }
        (Grouped::LpNorm, true) => {
            let io = LpNormGradIo {
                x: &x,
                dy: &dy,
                dx: &out,
            };
            lpn.encode_backward_ticked(ctx, encoder, &io, ticks)
        }
    };
    let name = match op {
        Grouped::GroupNorm => "group_norm",
        Grouped::InstanceNorm => "instance_norm",
        Grouped::BatchNorm | Grouped::BatchNormTraining => "batch_norm",
        Grouped::LpNorm => "lp_norm",
    };
    let label = format!("{name}_{}", if backward { "backward" } else { "forward" });
    let describe = match op {
        Grouped::GroupNorm => format!("{groups} groups"),
        Grouped::InstanceNorm => "a group per channel".to_string(),
        Grouped::BatchNorm => "inference".to_string(),
        Grouped::BatchNormTraining => "training".to_string(),
        Grouped::LpNorm => "p 2, last axis".to_string(),
    };
    time_against_copy(
        ctx,
        &label,
        describe,
        shape,
        iters,
        if backward { 3 } else { 2 },
        &mut pass,
    )
}

/// One measured (op, shape).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchRow {
    /// `layer_norm_forward`, `rms_norm_forward`, `layer_norm_backward`, `rms_norm_backward`.
    pub op: String,
    /// `8x512x768`.
    pub shape: String,
    /// The kernel that ran, e.g. `row-per-lane, 64 lanes`.
    pub kernel: String,
    /// Median time of the op, µs (named for the layer-norm forward, the
    /// first op measured; it holds whichever `op` says).
    pub ln_median_us: f64,
    /// Median time of a copy of the same bytes, µs: the fastest copy kernel.
    pub copy_median_us: f64,
    /// Which copy kernel that is (`grid-stride/1024`, …).
    pub copy_kernel: String,
    /// The driver's `copy_buffer_to_buffer` of the same bytes, median µs on
    /// the CPU's clock (submit to done: it runs outside any compute pass,
    /// which timestamps time), so not comparable with the GPU times.
    pub driver_copy_cpu_us: f64,
    /// `ln_median_us / copy_median_us`: 1.0 is the memory floor.
    pub ratio: f64,
    /// The op's effective bandwidth: the bytes it must move (x read once and
    /// y written once; for a backward x and dy read, dx written) over its time, GB/s.
    pub gbps: f64,
    /// The copy's bandwidth, GB/s.
    pub copy_gbps: f64,
    /// Timed steps.
    pub iters: usize,
    /// Rounds of the whole bench this row's ratio is the median of (1
    /// unless `--repeat`); `ratio_min` and `ratio_max` are their spread.
    pub repeats: usize,
    /// The smallest ratio over the rounds.
    pub ratio_min: f64,
    /// The largest ratio over the rounds.
    pub ratio_max: f64,
    /// `gpu_timestamps` or `cpu_wall_clock`.
    pub timing_source: String,
}

/// Times `op` on a tensor of `shape` against a copy kernel moving the
/// bytes the op must move (2 tensors for a forward: x read, y written; 3 for
/// a backward: x and dy read, dx written): `iters` steps after two warm-up
/// steps (which include the pipelines' compilation), op and copy in separate
/// submissions. A backward runs with the statistics a forward saved and
/// computes every parameter gradient.
pub fn bench_norm<O: NormOp>(
    ctx: &Context,
    op: &O,
    backward: bool,
    shape: &[usize],
    iters: usize,
) -> Result<BenchRow> {
    let t = op.tensors(ctx, shape, 0)?;
    if backward {
        // The statistics the backward reads, saved by a forward.
        op.forward_into(ctx, &O::named_io(&t.named(true))?)?;
    }
    let describe = op.describe(ctx, shape, backward)?;
    let (forward, backward_tensors) = (t.named(false), t.named(true));
    let (io, grad_io) = (O::named_io(&forward)?, O::named_grad_io(&backward_tensors)?);
    let mut op_pass = |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| match backward {
        true => op.encode_backward_ticked(ctx, encoder, &grad_io, ticks),
        false => op.encode_ticked(ctx, encoder, &io, ticks),
    };
    let label = format!(
        "{}_{}",
        O::NAME,
        if backward { "backward" } else { "forward" }
    );
    let tensors_moved = if backward { 3 } else { 2 };
    time_against_copy(
        ctx,
        &label,
        describe,
        shape,
        iters,
        tensors_moved,
        &mut op_pass,
    )
}

/// Times `op_pass` (whose pass label starts with `label`) against the
/// fastest copy of `tensors_moved` f32 tensors of `shape`, interleaved
/// step by step, with the driver's copy beside it.
fn time_against_copy(
    ctx: &Context,
    label: &str,
    describe: String,
    shape: &[usize],
    iters: usize,
    tensors_moved: usize,
    op_pass: &mut crate::ticks::TickedPass<'_>,
) -> Result<BenchRow> {
    let n: usize = shape.iter().product();
    // The copy moves as many bytes as the op: n/2 floats per tensor moved.
    let copy_len = (n * tensors_moved).div_ceil(2);
    let copy_src = GpuTensor::zeros(ctx, &[copy_len])?;
    let copy_dst = GpuTensor::zeros(ctx, &[copy_len])?;
    let copy_kernel = fastest_copy(ctx, copy_len as u64 * 4)?;
    let report = ticked_steps(
        ctx,
        2,
        iters as u64,
        &mut [op_pass, &mut |encoder, ticks| {
            encode_copy_with(ctx, encoder, copy_kernel, &copy_src, &copy_dst, Some(ticks))
        }],
    )?
    .1;
    let median = |prefix: &str| {
        report
            .passes
            .iter()
            .find(|p| p.label.starts_with(prefix))
            .map(|p| p.median_us)
            .ok_or_else(|| Error::Validation {
                during: "benchmarking",
                message: format!("no {prefix} pass was timed"),
            })
    };
    let op_us = median(label)?;
    let copy_us = median("copy")?;
    let driver_copy_cpu_us = driver_copy_us(ctx, &copy_src, &copy_dst, iters.max(3))?;
    let bytes = (tensors_moved * n) as f64 * 4.0;
    Ok(BenchRow {
        op: label.to_string(),
        shape: shape_string(shape),
        kernel: describe,
        ln_median_us: op_us,
        copy_median_us: copy_us,
        copy_kernel: copy_kernel.name(),
        driver_copy_cpu_us,
        ratio: op_us / copy_us,
        repeats: 1,
        ratio_min: op_us / copy_us,
        ratio_max: op_us / copy_us,
        gbps: bytes / (op_us * 1e-6) / 1e9,
        copy_gbps: bytes / (copy_us * 1e-6) / 1e9,
        iters,
        timing_source: report.timing_source,
    })
}

/// The fastest copy kernel for copies of `bytes` on `ctx`: the tuned one for
/// the size class, else the fastest of [`time_copies`], kept in the
/// context's tuned table.
pub fn fastest_copy(ctx: &Context, bytes: u64) -> Result<CopyKernel> {
    if let Some(k) = ctx.tuned().copy(bytes) {
        return Ok(k);
    }
    let winner = time_copies(ctx, bytes, 5)?
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
        .ok_or_else(|| Error::Validation {
            during: "tuning the copy",
            message: "no copy pass was timed".into(),
        })?;
    ctx.tuned().insert_copy(bytes, winner);
    Ok(winner)
}

/// Every [`CopyKernel`] copying `bytes`, checked (each must copy every value
/// exactly), then timed with ticks — one warm-up and `steps` steps, the
/// kernels interleaved — as (kernel, median µs).
pub fn time_copies(ctx: &Context, bytes: u64, steps: u64) -> Result<Vec<(CopyKernel, f64)>> {
    let n = (bytes / 4).max(1) as usize;
    let data: Vec<f32> = (0..n).map(|i| (i % 1021) as f32).collect();
    let src = GpuTensor::from_slice(ctx, &data, &[n])?;
    let dst = GpuTensor::zeros(ctx, &[n])?;
    for kernel in CopyKernel::ALL {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        encode_copy_with(ctx, &mut encoder, kernel, &src, &dst, None)?;
        ctx.submit_and_wait(encoder)?;
        if dst.read(ctx)? != data {
            return Err(Error::Validation {
                during: "checking a copy kernel",
                message: format!("{} did not copy {n} values exactly", kernel.name()),
            });
        }
    }
    let mut passes: Vec<Box<crate::ticks::TickedPass<'_>>> = CopyKernel::ALL
        .into_iter()
        .map(|kernel| {
            let (src, dst) = (&src, &dst);
            Box::new(
                move |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| {
                    encode_copy_with(ctx, encoder, kernel, src, dst, Some(ticks))
                },
            ) as Box<crate::ticks::TickedPass<'_>>
        })
        .collect();
    let mut refs: Vec<&mut crate::ticks::TickedPass<'_>> =
        passes.iter_mut().map(|p| &mut **p).collect();
    let report = ticked_steps(ctx, 1, steps, &mut refs)?.1;
    Ok(CopyKernel::ALL
        .into_iter()
        .filter_map(|k| {
            let suffix = format!("({})", k.name());
            report
                .passes
                .iter()
                .find(|p| p.label.ends_with(&suffix))
                .map(|p| (k, p.median_us))
        })
        .collect())
}

/// Median of `steps` driver copies (`copy_buffer_to_buffer`) of `src` into
/// `dst`, µs on the CPU's clock (each submitted and waited for, after one
/// warm-up).
pub fn driver_copy_us(
    ctx: &Context,
    src: &GpuTensor,
    dst: &GpuTensor,
    steps: usize,
) -> Result<f64> {
    let mut times = Vec::with_capacity(steps);
    for step in 0..=steps {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        encode_driver_copy(ctx, &mut encoder, src, dst)?;
        let start = std::time::Instant::now();
        ctx.submit_and_wait(encoder)?;
        if step > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
