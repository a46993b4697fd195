//! [`OpTensors`]: seeded standard tensors for running any op — the
//! bench, the autotuner and the checks use them, so that they need no
//! op-specific code.

use crate::context::Context;
use crate::error::Result;
use crate::ops::named::NamedTensors;
use crate::synthetic;
use crate::tensor::GpuTensor;

/// Every tensor an op's forward and backward may touch, for one shape: x
/// and dy from N(0, 1), gamma from N(1, 0.1²), beta from N(0, 0.1²), the
/// rest zeros (mean and rstd are the forward's to fill).
#[derive(Debug)]
pub struct OpTensors {
    /// Input.
    pub x: GpuTensor,
    /// Output.
    pub y: GpuTensor,
    /// Scale.
    pub gamma: GpuTensor,
    /// Bias.
    pub beta: GpuTensor,
    /// Per-row statistics.
    pub mean: GpuTensor,
    /// Per-row statistics.
    pub rstd: GpuTensor,
    /// Gradient of y.
    pub dy: GpuTensor,
    /// Gradient of x.
    pub dx: GpuTensor,
    /// Gradient of gamma.
    pub dgamma: GpuTensor,
    /// Gradient of beta.
    pub dbeta: GpuTensor,
}

impl OpTensors {
    /// Tensors for an input of `shape`, parameters of `params` and
    /// statistics of `stats` (see [`NormOp::tensors`](crate::NormOp::tensors)),
    /// seeded with `seed`.
    pub fn new(
        ctx: &Context,
        shape: &[usize],
        params: &[usize],
        stats: &[usize],
        seed: u64,
    ) -> Result<Self> {
        let n = crate::shape::element_count(shape)?;
        let cols = crate::shape::element_count(params)?;
        // Allocated on the device first: a shape it cannot hold is refused
        // before its host data is made.
        let x = GpuTensor::zeros(ctx, shape)?;
        x.write(ctx, &synthetic::normal(seed, n, 0.0, 1.0))?;
        Ok(OpTensors {
            x,
            y: GpuTensor::zeros(ctx, shape)?,
            gamma: GpuTensor::from_slice(
                ctx,
                &synthetic::normal(seed + 1, cols, 1.0, 0.1),
                params,
            )?,
            beta: GpuTensor::from_slice(ctx, &synthetic::normal(seed + 2, cols, 0.0, 0.1), params)?,
            mean: GpuTensor::zeros(ctx, stats)?,
            rstd: GpuTensor::zeros(ctx, stats)?,
            dy: GpuTensor::from_slice(ctx, &synthetic::normal(seed + 3, n, 0.0, 1.0), shape)?,
            dx: GpuTensor::zeros(ctx, shape)?,
            dgamma: GpuTensor::zeros(ctx, params)?,
            dbeta: GpuTensor::zeros(ctx, params)?,
        })
    }

    /// The tensors by role: the forward's (with its statistics as outputs
    /// where `with_stats`) and the backward's (with the saved statistics).
    pub fn named(&self, with_stats: bool) -> NamedTensors<'_> {
        NamedTensors {
            scale: Some(&self.gamma),
            bias: Some(&self.beta),
            mean: with_stats.then_some(&self.mean),
            inv_std_dev: with_stats.then_some(&self.rstd),
            y: Some(&self.y),
            dy: Some(&self.dy),
            dx: Some(&self.dx),
            dscale: Some(&self.dgamma),
            dbias: Some(&self.dbeta),
            ..NamedTensors::new(&self.x)
        }
    }
}
