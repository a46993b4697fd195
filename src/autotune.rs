//! The autotuner: for an (adapter, shape class), time every forward kernel
//! that can run it with ticks, keep the fastest in the context's
//! [`TunedTable`](crate::plan::TunedTable) — and optionally in a JSON file,
//! so that the next process starts tuned.
//!
//! It sits above the ops (it runs them) and reaches the plan only through
//! the table: installed as the context's [`TuneHook`], it is called on first
//! use of a shape class; or call [`tune`] yourself.
//!
//! A shape class is the row length and the row count rounded up to a power of
//! two. Tuning runs the candidates on scratch tensors of the class's shape
//! (fewer rows when that would exceed 64 MiB), with gamma and beta, three
//! timed steps each after one warm-up, and compares their medians.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::{Context, TuneHook};
use crate::error::{Error, Result};
use crate::ops::layer_norm::LayerNorm;
use crate::ops::op::NormOp;
use crate::plan::Kernel;
use crate::plan::tuned::Winners;
use crate::ticks::{Ticks, ticked_steps};

/// Whether and where a [`Context`] autotunes its forward kernels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Autotune {
    /// No tuning: the plan's ladder decides (the default).
    #[default]
    Off,
    /// Tune on first use of each shape class; remember for this context.
    InMemory,
    /// As `InMemory`, and read and write the winners in this JSON file
    /// (keyed by adapter), so that the next process starts tuned. A file
    /// that cannot be written, or that exists and is not a tune file (which
    /// is then left as it is), costs only the next process's tuning: a
    /// warning on stderr, no error.
    File(PathBuf),
}

impl Autotune {
    /// The hook to install on a context (`ContextOptions::tuner`,
    /// [`Context::set_tuner`]); `None` for `Off`.
    ///
    /// ```
    /// use wgpu_norm::{Autotune, Context, ContextOptions, GpuTensor, LayerNorm};
    /// let ctx = pollster::block_on(Context::with_options(ContextOptions {
    ///     tuner: Autotune::InMemory.hook(),
    ///     ..Default::default()
    /// }))?;
    /// let x = GpuTensor::from_slice(&ctx, &vec![1.0; 64], &[4, 16])?;
    /// LayerNorm::new().forward(&ctx, &x, None, None)?;
    /// assert_eq!(ctx.tuned_kernels().len(), 1, "the shape class was tuned on first use");
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn hook(self) -> Option<Arc<dyn TuneHook>> {
        match self {
            Autotune::Off => None,
            Autotune::InMemory => Some(Arc::new(Autotuner { file: None })),
            Autotune::File(path) => Some(Arc::new(Autotuner { file: Some(path) })),
        }
    }
}

/// The largest scratch tensor a tuning run allocates.
const TUNE_BYTES: usize = 64 << 20;
/// Timed steps per candidate.
const TUNE_STEPS: u64 = 3;

/// The crate's autotuner, as a [`TuneHook`].
#[derive(Debug)]
struct Autotuner {
    file: Option<PathBuf>,
}

impl TuneHook for Autotuner {
    fn attach(&self, ctx: &Context) {
        let Some(path) = &self.file else { return };
        if let Some(winners) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Winners>(&text).ok())
        {
            ctx.tuned().load(ctx.adapter_info(), &winners);
        }
    }

    fn tune(&self, ctx: &Context, rows: usize, cols: usize) -> Result<Option<Kernel>> {
        let winner = tune(ctx, rows, cols)?;
        if let Some(path) = &self.file {
            let text = serde_json::to_string_pretty(&ctx.tuned().snapshot(ctx.adapter_info()))
                .expect("plain data serialises");
            // A file that is there but is not a tune file is never overwritten.
            let foreign = std::fs::read_to_string(path)
                .is_ok_and(|old| serde_json::from_str::<Winners>(&old).is_err());
            // A tuning file that cannot be written costs only the next process's tuning.
            if foreign {
                eprintln!(
                    "wgpu-norm: {} is not a tune file; not overwriting it",
                    path.display()
                );
            } else if let Err(e) = std::fs::write(path, text) {
                eprintln!(
                    "wgpu-norm: could not write the tuning file {}: {e}",
                    path.display()
                );
            }
        }
        Ok(Some(winner))
    }
}

/// Times every forward kernel that can run rows × cols on `ctx`, records
/// the fastest in [`Context::tuned`] and returns it.
pub fn tune(ctx: &Context, rows: usize, cols: usize) -> Result<Kernel> {
    let class_rows = rows
        .checked_next_power_of_two()
        .unwrap_or(rows)
        .min((TUNE_BYTES / 4 / cols.max(1)).max(1));
    let shape = [class_rows, cols];
    let tensors = LayerNorm::new().tensors(ctx, &shape, 7)?;
    let named = tensors.named(false);
    let io = LayerNorm::named_io(&named)?;
    let mut best: Option<(f64, Kernel)> = None;
    for kernel in Kernel::ALL {
        let candidate = LayerNorm::new().with_kernel(kernel);
        if candidate.plan(ctx, &shape).is_err() {
            continue;
        }
        let encode = &mut |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| {
            candidate.encode_ticked(ctx, encoder, &io, ticks)
        };
        let (_, report) = ticked_steps(ctx, 1, TUNE_STEPS, &mut [encode])?;
        let median = report.passes.first().map_or(f64::INFINITY, |p| p.median_us);
        if best.is_none_or(|(t, _)| median < t) {
            best = Some((median, kernel));
        }
    }
    let (_, winner) = best.ok_or_else(|| Error::KernelUnsuitable {
        kernel: "any",
        reason: format!("no kernel can run rows of {cols} values"),
    })?;
    ctx.tuned().insert(rows, cols, winner);
    Ok(winner)
}
