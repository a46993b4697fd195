//! Benchmarks measured the way the project reports them: GPU-tick medians of a
//! kernel and of a copy moving the same bytes, on the same adapter, in the
//! same run, interleaved step by step, and their ratio.

use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::copy::encode_copy;
use crate::ops::layer_norm::{LayerNorm, LayerNormIo, shape_string};
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

/// One measured shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchRow {
    /// `8x512x768`.
    pub shape: String,
    /// The kernel that ran, e.g. `row-per-lane, 64 lanes`.
    pub kernel: String,
    /// Median layer-norm forward time, µs.
    pub ln_median_us: f64,
    /// Median time of a copy of the same bytes, µs.
    pub copy_median_us: f64,
    /// `ln_median_us / copy_median_us`: 1.0 is the memory floor.
    pub ratio: f64,
    /// Layer norm's effective bandwidth: x read once and y written once, GB/s.
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
    let n: usize = shape.iter().product();
    let inputs = ScratchInputs::new(ctx, op, shape, 0)?;
    let io = inputs.io();
    let copy_dst = GpuTensor::zeros(ctx, shape)?;
    let plan = op.plan(ctx, shape)?;

    let report = ticked_steps(
        ctx,
        2,
        iters as u64,
        &mut [
            &mut |encoder, ticks| op.encode_ticked(ctx, encoder, &io, ticks),
            &mut |encoder, ticks| encode_copy(ctx, encoder, &inputs.x, &copy_dst, Some(ticks)),
        ],
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
    let ln = median("layer_norm_forward")?;
    let copy = median("copy")?;
    let bytes = 2.0 * n as f64 * 4.0;
    Ok(BenchRow {
        shape: shape_string(shape),
        kernel: plan.describe(),
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
