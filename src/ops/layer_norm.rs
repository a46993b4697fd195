//! Layer normalisation (PyTorch `F.layer_norm`, ONNX LayerNormalization-17).

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

/// Layer normalisation over the trailing dimensions of a tensor, from `axis` on:
///
/// `y = (x − mean) / sqrt(var + epsilon) · gamma + beta`, with the biased
/// variance, per row of `cols = prod(shape[axis..])` values
/// (`rows = prod(shape[..axis])`). gamma and beta are optional, each alone too.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, LayerNorm};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 10.0, 10.0, 10.0], &[2, 3])?;
/// let y = LayerNorm::new().forward(&ctx, &x, None, None)?.read(&ctx)?;
/// assert!((y[0] + 1.2247).abs() < 1e-3 && y[3..].iter().all(|v| *v == 0.0));
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNorm {
    /// First normalised dimension; negative counts from the end. Default −1.
    pub axis: isize,
    /// Added to the variance inside the square root. Default 1e-5.
    pub epsilon: f32,
    /// Forces a kernel instead of the plan's choice (tests, benchmarks).
    pub kernel: Option<Kernel>,
    /// Forces the backward's dx kernel instead of the plan's choice.
    pub backward_kernel: Option<BackwardKernel>,
}

norm_config!(LayerNorm);

impl From<NormConfig> for LayerNorm {
    fn from(c: NormConfig) -> Self {
        LayerNorm {
            axis: c.axis,
            epsilon: c.epsilon,
            kernel: c.kernel,
            backward_kernel: c.backward_kernel,
        }
    }
}

/// The tensors of one layer-norm forward, for [`LayerNorm::encode`]. Every
/// tensor has x's element type except `mean` and `rstd`, which are f32.
#[derive(Clone, Copy, Debug)]
pub struct LayerNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output, same shape as `x`, in another buffer.
    pub y: &'a GpuTensor,
    /// Scale, `cols` values.
    pub gamma: Option<&'a GpuTensor>,
    /// Bias, `cols` values.
    pub beta: Option<&'a GpuTensor>,
    /// Per-row mean output, `rows` values.
    pub mean: Option<&'a GpuTensor>,
    /// Per-row 1/sqrt(var + epsilon) output, `rows` values.
    pub rstd: Option<&'a GpuTensor>,
    /// A residual added to x first (y = norm(x + residual + bias)).
    pub residual: Option<ResidualAdd<'a>>,
}

impl<'a> LayerNormIo<'a> {
    /// `x` in, `y` out, nothing optional.
    pub fn new(x: &'a GpuTensor, y: &'a GpuTensor) -> Self {
        LayerNormIo {
            x,
            y,
            gamma: None,
            beta: None,
            mean: None,
            rstd: None,
            residual: None,
        }
    }
}

/// What [`LayerNorm::forward_with_stats`] returns.
#[derive(Clone, Debug)]
pub struct LayerNormOutput {
    /// The normalised tensor.
    pub y: GpuTensor,
    /// Per-row mean, shaped `[d0 … d(axis−1), 1, …, 1]` (ONNX's Mean).
    pub mean: GpuTensor,
    /// Per-row 1/sqrt(var + epsilon), shaped like `mean` (ONNX's InvStdDev).
    pub rstd: GpuTensor,
}

/// The tensors of one layer-norm backward, for [`LayerNorm::encode_backward`].
/// All of x's element type except `mean` and `rstd` (f32).
#[derive(Clone, Copy, Debug)]
pub struct LayerNormGradIo<'a> {
    /// The forward's input.
    pub x: &'a GpuTensor,
    /// Gradient of the loss with respect to y, shaped like x.
    pub dy: &'a GpuTensor,
    /// The forward's scale, if it had one.
    pub gamma: Option<&'a GpuTensor>,
    /// The forward's saved per-row mean; recomputed when absent (give both
    /// mean and rstd, or neither).
    pub mean: Option<&'a GpuTensor>,
    /// The forward's saved per-row rstd.
    pub rstd: Option<&'a GpuTensor>,
    /// Output: gradient with respect to x.
    pub dx: &'a GpuTensor,
    /// Output: gradient with respect to gamma (`cols` values).
    pub dgamma: Option<&'a GpuTensor>,
    /// Output: gradient with respect to beta (`cols` values).
    pub dbeta: Option<&'a GpuTensor>,
}

/// What [`LayerNorm::backward`] returns.
#[derive(Clone, Debug)]
pub struct LayerNormGrads {
    /// Gradient with respect to x.
    pub dx: GpuTensor,
    /// Gradient with respect to gamma, shaped like the normalised dims.
    pub dgamma: GpuTensor,
    /// Gradient with respect to beta, shaped like the normalised dims.
    pub dbeta: GpuTensor,
}

impl NormOp for LayerNorm {
    const NAME: &'static str = "layer_norm";
    type Io<'a> = LayerNormIo<'a>;
    type GradIo<'a> = LayerNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let io = ForwardIo {
            x: io.x,
            y: Some(io.y),
            gamma: io.gamma,
            beta: io.beta,
            mean: io.mean,
            rstd: io.rstd,
            residual: io.residual,
        };
        encode_forward(&self.config(), NormKind::Layer, ctx, encoder, &io, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let io = BackwardIo {
            x: io.x,
            dy: io.dy,
            gamma: io.gamma,
            mean: io.mean,
            rstd: io.rstd,
            dx: io.dx,
            dgamma: io.dgamma,
            dbeta: io.dbeta,
        };
        encode_backward(&self.config(), NormKind::Layer, ctx, encoder, &io, ticks)
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
        title: "LayerNorm",
        bias: true,
        mean: true,
        residual: true,
    };

    fn named_io<'a>(t: &NamedTensors<'a>) -> Result<LayerNormIo<'a>> {
        Ok(LayerNormIo {
            x: t.x,
            y: required(t.y, "Y")?,
            gamma: t.scale,
            beta: t.bias,
            mean: t.mean,
            rstd: t.inv_std_dev,
            residual: t.residual,
        })
    }

    fn named_grad_io<'a>(t: &NamedTensors<'a>) -> Result<LayerNormGradIo<'a>> {
        Ok(LayerNormGradIo {
            x: t.x,
            dy: required(t.dy, "dY")?,
            gamma: t.scale,
            mean: t.mean,
            rstd: t.inv_std_dev,
            dx: required(t.dx, "dX")?,
            dgamma: t.dscale,
            dbeta: t.dbias,
        })
    }

    fn describe(&self, ctx: &Context, shape: &[usize], backward: bool) -> Result<String> {
        Ok(match backward {
            true => self.backward_plan(ctx, shape)?.describe(),
            false => self.plan(ctx, shape)?.describe(),
        })
    }
}

impl LayerNorm {
    /// The configuration the row-norm encoders read.
    pub fn config(&self) -> NormConfig {
        NormConfig {
            axis: self.axis,
            epsilon: self.epsilon,
            kernel: self.kernel,
            backward_kernel: self.backward_kernel,
        }
    }

    /// `(rows, cols)` of a tensor of `shape`: the product of the dimensions
    /// before `axis`, and of those from `axis` on.
    pub fn rows_cols(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let rc = crate::shape::RowsCols::of(shape, self.axis)?;
        Ok((rc.rows, rc.cols))
    }

    /// The normalised dims, `shape[axis..]`: the shape of gamma, beta and
    /// their gradients.
    pub fn norm_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.config().norm_shape(shape)
    }

    /// The shape of the mean and rstd outputs: `[d0 … d(axis−1), 1, …, 1]`.
    pub fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        self.config().stats_shape(shape)
    }

    /// The kernel for a tensor of `shape` on `ctx`: the forced one if any,
    /// else the tuned table's pick (asking the context's autotuner on first
    /// use of the shape class, where one is installed), else the ladder.
    pub fn plan(&self, ctx: &Context, shape: &[usize]) -> Result<LayerNormPlan> {
        let cfg = self.config();
        cfg.plan(ctx, cfg.rows_cols(shape)?)
    }

    /// The backward plan for a tensor of `shape` on `ctx`: the forced dx
    /// kernel if any, else the first fitting rung of
    /// [`BACKWARD_LADDER`](crate::plan::BACKWARD_LADDER).
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
        beta: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let inputs = NamedTensors {
            scale: gamma,
            bias: beta,
            ..NamedTensors::new(x)
        };
        Ok(self.forward_new(ctx, &inputs, false)?.y)
    }

    /// Like [`LayerNorm::forward`], also returning the per-row mean and rstd.
    pub fn forward_with_stats(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<LayerNormOutput> {
        let inputs = NamedTensors {
            scale: gamma,
            bias: beta,
            ..NamedTensors::new(x)
        };
        let out = self.forward_new(ctx, &inputs, true)?;
        Ok(LayerNormOutput {
            y: out.y,
            mean: out.mean.expect("LayerNorm has a mean"),
            rstd: out.rstd.expect("statistics were asked for"),
        })
    }

    /// The pre-LN block's fused step: `s = x + residual (+ bias)` and
    /// `y = layer_norm(s)` in one pass; returns both.
    ///
    /// ```
    /// use wgpu_norm::{Context, GpuTensor, LayerNorm};
    /// let ctx = Context::new()?;
    /// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0], &[1, 3])?;
    /// let r = GpuTensor::from_slice(&ctx, &[1.0, 1.0, 1.0], &[1, 3])?;
    /// let out = LayerNorm::new().forward_residual(&ctx, &x, &r, None, None, None)?;
    /// assert_eq!(out.sum.read(&ctx)?, vec![2.0, 3.0, 4.0]);
    /// assert!((out.y.read(&ctx)?[2] - 1.2247).abs() < 1e-3);
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn forward_residual(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        residual: &GpuTensor,
        bias: Option<&GpuTensor>,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<ResidualOutput> {
        let inputs = NamedTensors {
            scale: gamma,
            bias: beta,
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

    /// The gradients of a layer norm: from `dy` (and x, gamma, and the
    /// forward's saved mean and rstd, recomputed when `stats` is `None`),
    /// dx, dgamma and dbeta. Submits and waits.
    ///
    /// ```
    /// use wgpu_norm::{Context, GpuTensor, LayerNorm};
    /// let ctx = Context::new()?;
    /// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let dy = GpuTensor::from_slice(&ctx, &[1.0, 0.0, 0.0, 1.0], &[2, 2])?;
    /// let grads = LayerNorm::new().backward(&ctx, &x, &dy, None, None)?;
    /// assert_eq!(grads.dbeta.read(&ctx)?, vec![1.0, 1.0]);
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn backward(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        dy: &GpuTensor,
        gamma: Option<&GpuTensor>,
        stats: Option<(&GpuTensor, &GpuTensor)>,
    ) -> Result<LayerNormGrads> {
        let inputs = NamedTensors {
            dy: Some(dy),
            scale: gamma,
            mean: stats.map(|s| s.0),
            inv_std_dev: stats.map(|s| s.1),
            ..NamedTensors::new(x)
        };
        let out = self.backward_new(ctx, &inputs)?;
        Ok(LayerNormGrads {
            dx: out.dx,
            dgamma: out.dscale,
            dbeta: out.dbias.expect("LayerNorm has a bias"),
        })
    }
}
