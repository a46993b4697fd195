//! What every row normalisation is configured by — an axis, an epsilon and
//! optional forced kernels — and what follows from a shape: rows and cols,
//! the shapes of parameters and statistics, and the plan.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{BackwardKernel, BackwardPlan, Kernel, LayerNormPlan};
use crate::shape::{self, DType, RowsCols};

/// Which row normalisation a kernel computes (the `RMS` override constant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    /// LayerNorm: centred, with mean and rstd.
    Layer,
    /// RMSNorm: not centred, rstd only.
    Rms,
}

impl NormKind {
    /// `layer_norm` or `rms_norm`: the prefix of pass labels.
    pub fn name(self) -> &'static str {
        match self {
            NormKind::Layer => "layer_norm",
            NormKind::Rms => "rms_norm",
        }
    }
}

/// The configuration LayerNorm and RMSNorm share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormConfig {
    /// First normalised dimension; negative counts from the end.
    pub axis: isize,
    /// Added to the variance (mean square) inside the square root.
    pub epsilon: f32,
    /// A forced forward kernel.
    pub kernel: Option<Kernel>,
    /// A forced backward dx kernel.
    pub backward_kernel: Option<BackwardKernel>,
}

impl NormConfig {
    /// Rows and cols of a tensor of `shape`, after checking epsilon, the
    /// axis and the shape.
    pub fn rows_cols(&self, shape: &[usize]) -> Result<RowsCols> {
        if !self.epsilon.is_finite() || self.epsilon < 0.0 {
            return Err(Error::InvalidEpsilon(self.epsilon));
        }
        RowsCols::of(shape, self.axis)
    }

    /// The shape of gamma, beta and their gradients: `shape[axis..]`.
    pub fn norm_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        shape::norm_shape(shape, self.axis)
    }

    /// The shape of the per-row statistics: `[d0 … d(axis−1), 1, …, 1]`.
    pub fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        shape::stats_shape(shape, self.axis)
    }

    /// The forward plan: the forced kernel, else the tuned table's pick
    /// (asking the context's autotuner on a miss, where one is installed),
    /// else the ladder.
    /// Refuses (`TensorTooLarge`) a tensor larger than the device's
    /// `max_buffer_size` in any storage type.
    pub fn plan(&self, ctx: &Context, rc: RowsCols) -> Result<LayerNormPlan> {
        fits_device(ctx, rc)?;
        let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
        if let Some(k) = self.kernel {
            return LayerNormPlan::forced(k, rc.rows, rc.cols, caps, info, limits);
        }
        let tuned = match ctx.tuned().get(rc.rows, rc.cols) {
            Some(k) => Some(k),
            None => match ctx.tuner() {
                Some(tuner) => tuner.tune(ctx, rc.rows, rc.cols)?,
                None => None,
            },
        };
        match tuned {
            Some(k) => LayerNormPlan::forced(k, rc.rows, rc.cols, caps, info, limits),
            None => Ok(LayerNormPlan::new(rc.rows, rc.cols, caps, info, limits)),
        }
    }

    /// The backward plan: the forced dx kernel, else the backward ladder.
    /// Refuses what [`NormConfig::plan`] refuses.
    pub fn backward_plan(&self, ctx: &Context, rc: RowsCols) -> Result<BackwardPlan> {
        fits_device(ctx, rc)?;
        let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
        match self.backward_kernel {
            Some(k) => BackwardPlan::with_kernel(k, rc.rows, rc.cols, caps, info, limits),
            None => Ok(BackwardPlan::new(rc.rows, rc.cols, caps, info, limits)),
        }
    }
}

/// A tensor of rows × cols, in the narrowest storage (f16), must fit one
/// buffer of the device.
fn fits_device(ctx: &Context, rc: RowsCols) -> Result<()> {
    let n = (rc.rows as u64).saturating_mul(rc.cols as u64);
    crate::tensor::buffer_bytes(ctx, n, DType::F16).map(|_| ())
}
