//! The tensors of one row-normalisation call, as the shared encoders see
//! them; each op maps its own io types onto these.

use crate::tensor::GpuTensor;

/// A residual added to the input before normalising (the pre-LN transformer
/// block): `s = x + residual (+ bias)`, then `y = norm(s)`, in one pass over
/// memory. `s` is also written to `sum` when given.
#[derive(Clone, Copy, Debug)]
pub struct ResidualAdd<'a> {
    /// Same shape and type as x.
    pub residual: &'a GpuTensor,
    /// Optional bias, one value per normalised column (shaped like gamma).
    pub bias: Option<&'a GpuTensor>,
    /// Optional output of s, same shape and type as x, in its own buffer.
    pub sum: Option<&'a GpuTensor>,
}

/// Every tensor a forward may touch. `y: None` computes the statistics only.
#[derive(Clone, Copy, Debug)]
pub struct ForwardIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output (None: statistics only).
    pub y: Option<&'a GpuTensor>,
    /// Scale.
    pub gamma: Option<&'a GpuTensor>,
    /// Bias.
    pub beta: Option<&'a GpuTensor>,
    /// Per-row mean output.
    pub mean: Option<&'a GpuTensor>,
    /// Per-row rstd output.
    pub rstd: Option<&'a GpuTensor>,
    /// The fused residual add.
    pub residual: Option<ResidualAdd<'a>>,
}

/// Every tensor a backward may touch (RMSNorm has no mean and no dbeta).
#[derive(Clone, Copy, Debug)]
pub struct BackwardIo<'a> {
    /// The forward's input.
    pub x: &'a GpuTensor,
    /// Gradient of y.
    pub dy: &'a GpuTensor,
    /// The forward's scale.
    pub gamma: Option<&'a GpuTensor>,
    /// Saved per-row mean.
    pub mean: Option<&'a GpuTensor>,
    /// Saved per-row rstd.
    pub rstd: Option<&'a GpuTensor>,
    /// Gradient of x (output).
    pub dx: &'a GpuTensor,
    /// Gradient of gamma (output).
    pub dgamma: Option<&'a GpuTensor>,
    /// Gradient of beta (output).
    pub dbeta: Option<&'a GpuTensor>,
}

/// What the fused residual forwards return.
#[derive(Clone, Debug)]
pub struct ResidualOutput {
    /// norm(x + residual + bias).
    pub y: GpuTensor,
    /// x + residual + bias, the input of the next residual block.
    pub sum: GpuTensor,
}
