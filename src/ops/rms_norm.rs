//! RMS normalisation (ONNX RMSNormalization-23), forward and backward.
//!
//! It runs the same kernels as [`LayerNorm`](crate::LayerNorm), specialised
//! with the `RMS` override constant: the same plan, chunking, residual
//! fusion, f16 storage and ticks.

use crate::context::Context;
use crate::error::Result;
use crate::ops::backward::encode_backward;
use crate::ops::config::{NormConfig, NormKind};
use crate::ops::forward::encode_forward;
use crate::ops::io::{BackwardIo, ForwardIo, ResidualAdd, ResidualOutput};
use crate::ops::named::{NamedTensors, Signature, required};
use crate::ops::op::NormOp;
use crate::plan::{BackwardKernel, BackwardPlan, Kernel, LayerNormPlan};
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// RMS normalisation over the trailing dimensions from `axis` on:
///
/// `y = x / sqrt(mean(x²) + epsilon) · gamma` per row of
/// `cols = prod(shape[axis..])` values, gamma optional; no centring, no bias.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, RmsNorm};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[3.0, 4.0], &[1, 2])?;
/// let y = RmsNorm::new().with_epsilon(0.0).forward(&ctx, &x, None)?.read(&ctx)?;
/// // rms = sqrt((9 + 16) / 2)
/// assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNorm {
    /// First normalised dimension; negative counts from the end. Default −1.
    pub axis: isize,
    /// Added to the mean square inside the square root. Default 1e-5.
    pub epsilon: f32,
    /// Forces a kernel instead of the plan's choice (tests, benchmarks).
    pub kernel: Option<Kernel>,
    /// Forces the backward's dx kernel instead of the plan's choice.
    pub backward_kernel: Option<BackwardKernel>,
}

norm_config!(RmsNorm);

impl From<NormConfig> for RmsNorm {
    fn from(c: NormConfig) -> Self {
        RmsNorm {
            axis: c.axis,
            epsilon: c.epsilon,
            kernel: c.kernel,
            backward_kernel: c.backward_kernel,
        }
    }
}

/// The tensors of one RMSNorm forward, for [`RmsNorm::encode`]. All of x's
/// element type except `rstd` (f32).
#[derive(Clone, Copy, Debug)]
pub struct RmsNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output, same shape as `x`, in another buffer.
    pub y: &'a GpuTensor,
    /// Scale, `cols` values.
    pub gamma: Option<&'a GpuTensor>,
    /// Per-row 1/sqrt(mean(x²) + epsilon) output, `rows` values.
    pub rstd: Option<&'a GpuTensor>,
    /// A residual added to x first (y = rms_norm(x + residual + bias)).
    pub residual: Option<ResidualAdd<'a>>,
}

impl<'a> RmsNormIo<'a> {
    /// `x` in, `y` out, nothing optional.
    pub fn new(x: &'a GpuTensor, y: &'a GpuTensor) -> Self {
        RmsNormIo {
            x,
            y,
            gamma: None,
            rstd: None,
            residual: None,
        }
    }
}

/// The tensors of one RMSNorm backward, for [`RmsNorm::encode_backward`].
#[derive(Clone, Copy, Debug)]
pub struct RmsNormGradIo<'a> {
    /// The forward's input.
    pub x: &'a GpuTensor,
    /// Gradient of the loss with respect to y, shaped like x.
    pub dy: &'a GpuTensor,
    /// The forward's scale, if it had one.
    pub gamma: Option<&'a GpuTensor>,
    /// The forward's saved per-row rstd (f32); recomputed when absent.
    pub rstd: Option<&'a GpuTensor>,
    /// Output: gradient with respect to x.
    pub dx: &'a GpuTensor,
    /// Output: gradient with respect to gamma (`cols` values).
    pub dgamma: Option<&'a GpuTensor>,
}

/// What [`RmsNorm::backward`] returns.
#[derive(Clone, Debug)]
pub struct RmsNormGrads {
    /// Gradient with respect to x.
    pub dx: GpuTensor,
    /// Gradient with respect to gamma, shaped like the normalised dims.
    pub dgamma: GpuTensor,
}

impl NormOp for RmsNorm {
    const NAME: &'static str = "rms_norm";
    type Io<'a> = RmsNormIo<'a>;
    type GradIo<'a> = RmsNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &RmsNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let io = ForwardIo {
            x: io.x,
            y: Some(io.y),
            gamma: io.gamma,
            beta: None,
            mean: None,
            rstd: io.rstd,
            residual: io.residual,
        };
        encode_forward(&self.config(), NormKind::Rms, ctx, encoder, &io, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &RmsNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let io = BackwardIo {
            x: io.x,
            dy: io.dy,
            gamma: io.gamma,
            mean: None,
            rstd: io.rstd,
            dx: io.dx,
            dgamma: io.dgamma,
            dbeta: None,
        };
        encode_backward(&self.config(), NormKind::Rms, ctx, encoder, &io, ticks)
    }

    fn param_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        // Checks epsilon and the shape too, before anything is allocated.
        self.config().rows_cols(shape)?;
        self.config().norm_shape(shape)
    }

    fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.config().stats_shape(shape)
    }

    const SIGNATURE: Signature = Signature {
        title: "RMSNorm",
        bias: false,
        mean: false,
        residual: true,
    };

    fn named_io<'a>(t: &NamedTensors<'a>) -> Result<RmsNormIo<'a>> {
        Ok(RmsNormIo {
            x: t.x,
            y: required(t.y, "Y")?,
            gamma: t.scale,
            rstd: t.inv_std_dev,
            residual: t.residual,
        })
    }

    fn named_grad_io<'a>(t: &NamedTensors<'a>) -> Result<RmsNormGradIo<'a>> {
        Ok(RmsNormGradIo {
            x: t.x,
            dy: required(t.dy, "dY")?,
            gamma: t.scale,
            rstd: t.inv_std_dev,
            dx: required(t.dx, "dX")?,
            dgamma: t.dscale,
        })
    }

    fn describe(&self, ctx: &Context, shape: &[usize], backward: bool) -> Result<String> {
        let cfg = self.config();
        let rc = cfg.rows_cols(shape)?;
        Ok(match backward {
            true => cfg.backward_plan(ctx, rc)?.describe(),
            false => cfg.plan(ctx, rc)?.describe(),
        })
    }
}

impl RmsNorm {
    /// The configuration the row-norm encoders read.
    pub fn config(&self) -> NormConfig {
        NormConfig {
            axis: self.axis,
            epsilon: self.epsilon,
            kernel: self.kernel,
            backward_kernel: self.backward_kernel,
        }
    }

    /// `(rows, cols)` of a tensor of `shape` (as [`LayerNorm::rows_cols`](crate::LayerNorm::rows_cols)).
    pub fn rows_cols(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let rc = crate::shape::RowsCols::of(shape, self.axis)?;
        Ok((rc.rows, rc.cols))
    }

    /// The kernel for a tensor of `shape` on `ctx` (as [`LayerNorm::plan`](crate::LayerNorm::plan)).
    pub fn plan(&self, ctx: &Context, shape: &[usize]) -> Result<LayerNormPlan> {
        let cfg = self.config();
        cfg.plan(ctx, cfg.rows_cols(shape)?)
    }

    /// The backward plan for a tensor of `shape` on `ctx`.
    pub fn backward_plan(&self, ctx: &Context, shape: &[usize]) -> Result<BackwardPlan> {
        let cfg = self.config();
        cfg.backward_plan(ctx, cfg.rows_cols(shape)?)
    }

    /// Normalises `x`, submits, waits, and returns y (of x's element type).
    pub fn forward(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let inputs = NamedTensors {
            scale: gamma,
            ..NamedTensors::new(x)
        };
        Ok(self.forward_new(ctx, &inputs, false)?.y)
    }

    /// Like [`RmsNorm::forward`], also returning the per-row rstd (f32,
    /// shaped `[d0 … d(axis−1), 1, …, 1]`).
    pub fn forward_with_rstd(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let inputs = NamedTensors {
            scale: gamma,
            ..NamedTensors::new(x)
        };
        let out = self.forward_new(ctx, &inputs, true)?;
        Ok((out.y, out.rstd.expect("statistics were asked for")))
    }

    /// The fused step `s = x + residual (+ bias)`, `y = rms_norm(s)`, in one
    /// pass; returns both.
    pub fn forward_residual(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        residual: &GpuTensor,
        bias: Option<&GpuTensor>,
        gamma: Option<&GpuTensor>,
    ) -> Result<ResidualOutput> {
        let inputs = NamedTensors {
            scale: gamma,
            residual: Some(ResidualAdd {
                residual,
                bias,
                sum: None,
            }),
            ..NamedTensors::new(x)
        };
        let out = self.forward_new(ctx, &inputs, false)?;
        Ok(ResidualOutput {
            y: out.y,
            sum: out.sum.expect("a residual call writes the sum"),
        })
    }

    /// The gradients dx and dgamma from `dy`, x, gamma, and the forward's
    /// saved rstd (recomputed when `None`). Submits and waits.
    pub fn backward(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        dy: &GpuTensor,
        gamma: Option<&GpuTensor>,
        rstd: Option<&GpuTensor>,
    ) -> Result<RmsNormGrads> {
        let inputs = NamedTensors {
            dy: Some(dy),
            scale: gamma,
            inv_std_dev: rstd,
            ..NamedTensors::new(x)
        };
        let out = self.backward_new(ctx, &inputs)?;
        Ok(RmsNormGrads {
            dx: out.dx,
            dgamma: out.dscale,
        })
    }
}
