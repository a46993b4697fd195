//! The autotuner: for an (adapter, shape class), time every kernel that can
//! run it with ticks on first use, keep the fastest — in memory, and
//! optionally in a JSON file so that the next process starts tuned.
//!
//! A shape class is the row length and the row count rounded up to a power of
//! two. Tuning runs the candidates on scratch tensors of the class's shape
//! (fewer rows when that would exceed 64 MiB), with gamma and beta, three
//! timed steps each after one warm-up, and compares their medians.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::bench::{ScratchInputs, ticked_steps};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::layer_norm::{LayerNorm, LayerNormIo};
use crate::plan::{Kernel, LayerNormPlan};
use crate::ticks::Ticks;

/// Whether and where a [`Context`] autotunes its layer-norm kernels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Autotune {
    /// No tuning: the plan's ladder decides (the default).
    #[default]
    Off,
    /// Tune on first use of each shape class; remember for this context.
    InMemory,
    /// As `InMemory`, and read and write the winners in this JSON file
    /// (keyed by adapter), so that the next process starts tuned.
    File(PathBuf),
}

/// The largest scratch tensor a tuning run allocates.
const TUNE_BYTES: usize = 64 << 20;
/// Timed steps per candidate.
const TUNE_STEPS: u64 = 3;

/// The winners, by adapter then shape class, as stored in the file.
type Winners = BTreeMap<String, BTreeMap<String, String>>;

/// The tuning state of one context.
pub(crate) struct Tuner {
    mode: Autotune,
    winners: Mutex<Winners>,
}

/// `dim 768, rows <= 4096`: the key of a shape class.
fn class_key(rows: usize, cols: usize) -> String {
    format!("dim {cols}, rows <= {}", rows.next_power_of_two())
}

fn adapter_key(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {})", info.name, info.backend, info.driver_info)
}

fn kernel_by_name(name: &str) -> Option<Kernel> {
    Kernel::ALL.into_iter().find(|k| k.name() == name)
}

impl Tuner {
    pub(crate) fn new(mode: Autotune) -> Self {
        let winners = match &mode {
            Autotune::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            _ => Winners::new(),
        };
        Tuner {
            mode,
            winners: Mutex::new(winners),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.mode != Autotune::Off
    }

    /// The kernel tuned for this shape class on this adapter, if any.
    pub(crate) fn known(&self, ctx: &Context, rows: usize, cols: usize) -> Option<Kernel> {
        let winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        winners
            .get(&adapter_key(ctx.adapter_info()))
            .and_then(|m| m.get(&class_key(rows, cols)))
            .and_then(|name| kernel_by_name(name))
    }

    /// Times every candidate for the shape class and keeps the fastest.
    pub(crate) fn tune(
        &self,
        ctx: &Context,
        op: &LayerNorm,
        rows: usize,
        cols: usize,
    ) -> Result<Kernel> {
        let class_rows = rows.next_power_of_two().min((TUNE_BYTES / 4 / cols).max(1));
        let shape = [class_rows, cols];
        let candidate_op = LayerNorm { axis: -1, ..*op };
        let inputs = ScratchInputs::new(ctx, &candidate_op, &shape, 7)?;
        let io = inputs.io();
        let mut best: Option<(f64, Kernel)> = None;
        for kernel in Kernel::ALL {
            let candidate = LayerNorm {
                kernel: Some(kernel),
                axis: -1,
                ..*op
            };
            if candidate.plan(ctx, &shape).is_err() {
                continue;
            }
            let median = time_candidate(ctx, &candidate, &io)?;
            if best.is_none_or(|(t, _)| median < t) {
                best = Some((median, kernel));
            }
        }
        let (_, winner) = best.ok_or_else(|| Error::KernelUnsuitable {
            kernel: "any",
            reason: format!("no kernel can run rows of {cols} values"),
        })?;
        let mut winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        winners
            .entry(adapter_key(ctx.adapter_info()))
            .or_default()
            .insert(class_key(rows, cols), winner.name().to_string());
        if let Autotune::File(path) = &self.mode {
            let text = serde_json::to_string_pretty(&*winners).expect("plain data serialises");
            // A tuning file that cannot be written costs only the next process's tuning.
            if let Err(e) = std::fs::write(path, text) {
                eprintln!(
                    "wgpu-norm: could not write the tuning file {}: {e}",
                    path.display()
                );
            }
        }
        Ok(winner)
    }

    /// Every (adapter, shape class, kernel) tuned so far.
    pub(crate) fn winners(&self) -> Vec<(String, String, String)> {
        let winners = self.winners.lock().unwrap_or_else(|p| p.into_inner());
        winners
            .iter()
            .flat_map(|(a, m)| {
                m.iter()
                    .map(move |(c, k)| (a.clone(), c.clone(), k.clone()))
            })
            .collect()
    }
}

/// Median time of `TUNE_STEPS` ticked forwards (after one warm-up).
fn time_candidate(ctx: &Context, op: &LayerNorm, io: &LayerNormIo<'_>) -> Result<f64> {
    let encode = &mut |encoder: &mut wgpu::CommandEncoder, ticks: &mut Ticks| {
        op.encode_ticked(ctx, encoder, io, ticks)
    };
    let (_, report) = ticked_steps(ctx, 1, TUNE_STEPS, &mut [encode])?;
    Ok(report.passes.first().map_or(f64::INFINITY, |p| p.median_us))
}

/// The plan of the kernel the tuner picked (tuning first if needed), or
/// `None` when the context does not tune.
pub(crate) fn tuned_plan(
    ctx: &Context,
    op: &LayerNorm,
    rows: usize,
    cols: usize,
) -> Result<Option<LayerNormPlan>> {
    let tuner = ctx.tuner();
    if !tuner.enabled() {
        return Ok(None);
    }
    let kernel = match tuner.known(ctx, rows, cols) {
        Some(k) => k,
        None => tuner.tune(ctx, op, rows, cols)?,
    };
    let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
    LayerNormPlan::forced(kernel, cols, caps, info, limits).map(Some)
}
