//! Benchmarks measured the way the project reports them: GPU-tick medians of a
//! kernel and of a copy moving the same bytes, on the same adapter, in the
//! same run, interleaved step by step, and their ratio.

use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::copy::encode_copy;
use crate::ops::layer_norm::{LayerNorm, LayerNormGradIo, LayerNormIo, shape_string};
use crate::ops::rms_norm::{RmsNorm, RmsNormGradIo, RmsNormIo};
use crate::synthetic;
use crate::tensor::GpuTensor;
use crate::ticks::{Report, Ticks, TicksSettings, TimingSource};

/// The shapes `wgpu-norm bench` measures by default.
pub const DEFAULT_SHAPES: &[&[usize]] = &[
    &[8, 512, 768],
    &[4, 256, 4096],
    &[64, 64, 64],
    &[1, 32, 65536],
    &[4096, 1, 1024],
    &[1, 1, 1_048_576],
];

/// The operations `wgpu-norm bench` can time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchOp {
    /// LayerNorm forward with gamma and beta: reads x, writes y.
    LayerNormForward,
    /// RMSNorm forward with gamma: reads x, writes y.
    RmsNormForward,
    /// LayerNorm backward with the saved statistics, gamma, and dgamma and
    /// dbeta: reads x and dy, writes dx.
    LayerNormBackward,
    /// RMSNorm backward with the saved rstd, gamma, and dgamma.
    RmsNormBackward,
}

impl BenchOp {
    /// All four, in the order the bench reports them.
    pub const ALL: [BenchOp; 4] = [
        BenchOp::LayerNormForward,
        BenchOp::RmsNormForward,
        BenchOp::LayerNormBackward,
        BenchOp::RmsNormBackward,
    ];

    /// The pass label's prefix: `layer_norm_forward` etc.
    pub fn label(self) -> &'static str {
        match self {
            BenchOp::LayerNormForward => "layer_norm_forward",
            BenchOp::RmsNormForward => "rms_norm_forward",
            BenchOp::LayerNormBackward => "layer_norm_backward",
            BenchOp::RmsNormBackward => "rms_norm_backward",
        }
    }

    /// Tensors of the shape's size the op must read or write at least: 2
    /// forward (x, y), 3 backward (x, dy, dx). The copy it is compared with
    /// moves as many bytes.
    pub fn tensors_moved(self) -> usize {
        match self {
            BenchOp::LayerNormForward | BenchOp::RmsNormForward => 2,
            BenchOp::LayerNormBackward | BenchOp::RmsNormBackward => 3,
        }
    }
}

/// One measured (op, shape).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchRow {
    /// `layer_norm_forward`, `rms_norm_forward`, `layer_norm_backward`, `rms_norm_backward`.
    pub op: BenchOp,
    /// `8x512x768`.
    pub shape: String,
    /// The kernel that ran, e.g. `row-per-lane, 64 lanes`.
    pub kernel: String,
    /// Median time of the op, µs (named for the layer-norm forward, the
    /// first op measured; it holds whichever `op` says).
    pub ln_median_us: f64,
    /// Median time of a copy of the same bytes, µs.
    pub copy_median_us: f64,
    /// `ln_median_us / copy_median_us`: 1.0 is the memory floor.
    pub ratio: f64,
    /// The op's effective bandwidth: the bytes it must move (x read once and
    /// y written once; for a backward x and dy read, dx written) over its time, GB/s.
    pub gbps: f64,
    /// The copy's bandwidth, GB/s.
    pub copy_gbps: f64,
    /// Timed steps.
    pub iters: usize,
    /// `gpu_timestamps` or `cpu_wall_clock`.
    pub timing_source: String,
}

/// Times `op` (with gamma and beta) on a tensor of `shape` against a copy of
/// the same bytes: `iters` steps after two warm-up steps (which include the
/// pipelines' compilation), layer norm and copy in separate submissions.
pub fn bench_layer_norm(
    ctx: &Context,
    op: &LayerNorm,
    shape: &[usize],
    iters: usize,
) -> Result<BenchRow> {
    bench_op(ctx, BenchOp::LayerNormForward, op, shape, iters)
}

/// Times `which` (configured as `op`: axis, epsilon, forced kernels) on a
/// tensor of `shape` against a copy kernel moving the bytes the op must move
/// ([`BenchOp::tensors_moved`]), as [`bench_layer_norm`] does. A backward
/// runs with the statistics a forward saved, and computes dgamma (and dbeta).
pub fn bench_op(
    ctx: &Context,
    which: BenchOp,
    op: &LayerNorm,
    shape: &[usize],
    iters: usize,
) -> Result<BenchRow> {
    let n: usize = shape.iter().product();
    let inputs = ScratchInputs::new(ctx, op, shape, 0)?;
    let io = inputs.io();
    let (_, cols) = op.rows_cols(shape)?;
    // The copy moves as many bytes as the op: n/2 floats per tensor moved.
    let copy_len = (n * which.tensors_moved()).div_ceil(2);
    let copy_src = GpuTensor::zeros(ctx, &[copy_len])?;
    let copy_dst = GpuTensor::zeros(ctx, &[copy_len])?;
    let rms = RmsNorm {
        axis: op.axis,
        epsilon: op.epsilon,
        kernel: op.kernel,
        backward_kernel: op.backward_kernel,
    };
    let backward = matches!(which, BenchOp::LayerNormBackward | BenchOp::RmsNormBackward);
    let describe = if backward {
        op.backward_plan(ctx, shape)?.describe()
    } else {
        op.plan(ctx, shape)?.describe()
    };
    // Backward inputs: dy, the saved statistics, and the gradients.
    let grads = if backward {
        let stats = op.forward_with_stats(ctx, &inputs.x, Some(&inputs.gamma), None)?;
        let dy = synthetic::normal(3, n, 0.0, 1.0);
        Some((
            GpuTensor::from_slice(ctx, &dy, shape)?,
            stats,
            GpuTensor::zeros(ctx, &[cols])?,
            GpuTensor::zeros(ctx, &[cols])?,
        ))
    } else {
        None
    };
    let mut op_pass = |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| -> Result<()> {
        match (which, &grads) {
            (BenchOp::LayerNormForward, _) => op.encode_ticked(ctx, encoder, &io, ticks),
            (BenchOp::RmsNormForward, _) => {
                let io = RmsNormIo {
                    gamma: Some(&inputs.gamma),
                    ..RmsNormIo::new(&inputs.x, &inputs.y)
                };
                rms.encode_ticked(ctx, encoder, &io, ticks)
            }
            (BenchOp::LayerNormBackward, Some((dy, stats, dgamma, dbeta))) => {
                let io = LayerNormGradIo {
                    x: &inputs.x,
                    dy,
                    gamma: Some(&inputs.gamma),
                    mean: Some(&stats.mean),
                    rstd: Some(&stats.rstd),
                    dx: &inputs.y,
                    dgamma: Some(dgamma),
                    dbeta: Some(dbeta),
                };
                op.encode_backward_ticked(ctx, encoder, &io, ticks)
            }
            (BenchOp::RmsNormBackward, Some((dy, stats, dgamma, _))) => {
                let io = RmsNormGradIo {
                    x: &inputs.x,
                    dy,
                    gamma: Some(&inputs.gamma),
                    rstd: Some(&stats.rstd),
                    dx: &inputs.y,
                    dgamma: Some(dgamma),
                };
                rms.encode_backward_ticked(ctx, encoder, &io, ticks)
            }
            _ => unreachable!("backward ops have their gradients' tensors"),
        }
    };

    let report = ticked_steps(
        ctx,
        2,
        iters as u64,
        &mut [&mut op_pass, &mut |encoder, ticks| {
            encode_copy(ctx, encoder, &copy_src, &copy_dst, Some(ticks))
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
    let ln = median(which.label())?;
    let copy = median("copy")?;
    let bytes = (which.tensors_moved() * n) as f64 * 4.0;
    Ok(BenchRow {
        op: which,
        shape: shape_string(shape),
        kernel: describe,
        ln_median_us: ln,
        copy_median_us: copy,
        ratio: ln / copy,
        gbps: bytes / (ln * 1e-6) / 1e9,
        copy_gbps: bytes / (copy * 1e-6) / 1e9,
        iters,
        timing_source: report.timing_source,
    })
}

/// Encodes one pass into a fresh encoder, timed by the ticks.
pub(crate) type TickedPass<'a> =
    dyn FnMut(&mut wgpu::CommandEncoder, &mut Ticks) -> Result<()> + 'a;

/// Runs `warmup` then `steps` steps; each step submits each of `passes` in a
/// submission of its own, timed by ticks (waiting after each submission when
/// the timing is the CPU's, so that a wall-clock time is one submission's).
/// Returns the profiler (warm-up records in scope `warm-up`) and the report
/// of the timed steps.
pub(crate) fn ticked_steps(
    ctx: &Context,
    warmup: u64,
    steps: u64,
    passes: &mut [&mut TickedPass<'_>],
) -> Result<(Ticks, Report)> {
    let mut ticks = Ticks::new(ctx, TicksSettings::default());
    let cpu_timed = ticks.timing_source() == TimingSource::CpuWallClock;
    for step in 0..warmup + steps {
        ticks.set_step(step);
        if step < warmup {
            ticks.push_scope("warm-up");
        }
        for pass in passes.iter_mut() {
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            pass(&mut encoder, &mut ticks)?;
            ticks.submit(encoder)?;
            if cpu_timed {
                ctx.wait()?;
            }
        }
        if step < warmup {
            ticks.pop_scope();
        }
    }
    ticks.flush()?;
    let timed: Vec<_> = ticks
        .records()
        .into_iter()
        .filter(|r| r.scope.is_empty())
        .collect();
    let report = Report::new(&timed);
    Ok((ticks, report))
}

/// Seeded inputs and an output for timing a layer norm of `shape`: x from
/// N(0, 1), gamma from N(1, 0.1²), beta from N(0, 0.1²).
pub(crate) struct ScratchInputs {
    pub(crate) x: GpuTensor,
    y: GpuTensor,
    gamma: GpuTensor,
    beta: GpuTensor,
}

impl ScratchInputs {
    pub(crate) fn new(ctx: &Context, op: &LayerNorm, shape: &[usize], seed: u64) -> Result<Self> {
        let (_, cols) = op.rows_cols(shape)?;
        let n: usize = shape.iter().product();
        Ok(ScratchInputs {
            x: GpuTensor::from_slice(ctx, &synthetic::normal(seed, n, 0.0, 1.0), shape)?,
            y: GpuTensor::zeros(ctx, shape)?,
            gamma: GpuTensor::from_slice(
                ctx,
                &synthetic::normal(seed + 1, cols, 1.0, 0.1),
                &[cols],
            )?,
            beta: GpuTensor::from_slice(
                ctx,
                &synthetic::normal(seed + 2, cols, 0.0, 0.1),
                &[cols],
            )?,
        })
    }

    /// The forward's tensors: x, y, gamma and beta, no statistics.
    pub(crate) fn io(&self) -> LayerNormIo<'_> {
        LayerNormIo {
            gamma: Some(&self.gamma),
            beta: Some(&self.beta),
            ..LayerNormIo::new(&self.x, &self.y)
        }
    }
}
