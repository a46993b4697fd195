//! Layer normalisation (PyTorch `F.layer_norm`, ONNX LayerNormalization-17).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::backward::{BackwardIo, encode_backward};
use crate::ops::forward::{ForwardIo, Norm, ResidualAdd, encode_forward, run};
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

    fn forward_io(&self) -> ForwardIo<'a> {
        ForwardIo {
            x: self.x,
            y: Some(self.y),
            gamma: self.gamma,
            beta: self.beta,
            mean: self.mean,
            rstd: self.rstd,
            residual: self.residual,
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

/// What the fused residual forwards return.
#[derive(Clone, Debug)]
pub struct ResidualOutput {
    /// norm(x + residual + bias).
    pub y: GpuTensor,
    /// x + residual + bias, the input of the next residual block.
    pub sum: GpuTensor,
}

impl LayerNorm {
    /// The backward plan for a tensor of `shape` on `ctx`: the forced dx
    /// kernel if any, else the first fitting rung of
    /// [`BACKWARD_LADDER`](crate::plan::BACKWARD_LADDER).
    pub fn backward_plan(&self, ctx: &Context, shape: &[usize]) -> Result<BackwardPlan> {
        let (rows, cols) = self.rows_cols(shape)?;
        let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
        match self.backward_kernel {
            Some(k) => BackwardPlan::with_kernel(k, rows, cols, caps, info, limits),
            None => Ok(BackwardPlan::new(rows, cols, caps, info, limits)),
        }
    }

    /// `(rows, cols)` of a tensor of `shape`: the product of the dimensions
    /// before `axis`, and of those from `axis` on.
    pub fn rows_cols(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let axis = normalized_axis(self.axis, shape.len())?;
        crate::tensor::element_count(shape)?;
        Ok((
            shape[..axis].iter().product(),
            shape[axis..].iter().product(),
        ))
    }

    /// The normalised dims, `shape[axis..]`: the shape of gamma, beta and
    /// their gradients.
    pub fn norm_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        Ok(shape[normalized_axis(self.axis, shape.len())?..].to_vec())
    }

    /// The shape of the mean and rstd outputs: `[d0 … d(axis−1), 1, …, 1]`.
    pub fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let axis = normalized_axis(self.axis, shape.len())?;
        Ok(shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < axis { d } else { 1 })
            .collect())
    }

    /// The kernel for a tensor of `shape` on `ctx`: the forced one if any,
    /// else the autotuner's pick where the context tunes (timing the
    /// candidates on first use of the shape class), else the plan's ladder.
    /// An error for a bad shape, or when a forced kernel cannot run there.
    pub fn plan(&self, ctx: &Context, shape: &[usize]) -> Result<LayerNormPlan> {
        let (rows, cols) = self.rows_cols(shape)?;
        let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
        if let Some(k) = self.kernel {
            return LayerNormPlan::forced(k, cols, caps, info, limits);
        }
        if let Some(tuned) = crate::autotune::tuned_plan(ctx, self, rows, cols)? {
            return Ok(tuned);
        }
        Ok(LayerNormPlan::new(rows, cols, caps, info, limits))
    }

    /// Normalises `x`, submits, waits, and returns y (of x's element type).
    pub fn forward(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        self.validate_params(x.shape())?;
        let y = GpuTensor::zeros_as(ctx, x.shape(), x.dtype())?;
        let io = LayerNormIo {
            gamma,
            beta,
            ..LayerNormIo::new(x, &y)
        };
        run(ctx, "layer_norm", |e| self.encode(ctx, e, &io))?;
        Ok(y)
    }

    /// Like [`LayerNorm::forward`], also returning the per-row mean and rstd.
    pub fn forward_with_stats(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<LayerNormOutput> {
        let stats_shape = self.stats_shape(x.shape())?;
        self.validate_params(x.shape())?;
        let out = LayerNormOutput {
            y: GpuTensor::zeros_as(ctx, x.shape(), x.dtype())?,
            mean: GpuTensor::zeros(ctx, &stats_shape)?,
            rstd: GpuTensor::zeros(ctx, &stats_shape)?,
        };
        let io = LayerNormIo {
            gamma,
            beta,
            mean: Some(&out.mean),
            rstd: Some(&out.rstd),
            ..LayerNormIo::new(x, &out.y)
        };
        run(ctx, "layer_norm", |e| self.encode(ctx, e, &io))?;
        Ok(out)
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
        self.validate_params(x.shape())?;
        let out = ResidualOutput {
            y: GpuTensor::zeros_as(ctx, x.shape(), x.dtype())?,
            sum: GpuTensor::zeros_as(ctx, x.shape(), x.dtype())?,
        };
        let io = LayerNormIo {
            gamma,
            beta,
            residual: Some(ResidualAdd {
                residual,
                bias,
                sum: Some(&out.sum),
            }),
            ..LayerNormIo::new(x, &out.y)
        };
        run(ctx, "layer_norm", |e| self.encode(ctx, e, &io))?;
        Ok(out)
    }

    pub(crate) fn validate_params(&self, shape: &[usize]) -> Result<()> {
        if !self.epsilon.is_finite() || self.epsilon < 0.0 {
            return Err(Error::InvalidEpsilon(self.epsilon));
        }
        self.rows_cols(shape).map(|_| ())
    }

    /// Encodes the forward into the caller's `encoder`: one compute pass with
    /// one dispatch per chunk of rows (a single chunk unless the tensor is
    /// larger than one storage binding). Nothing is submitted.
    ///
    /// Bad input is rejected before anything is encoded; wgpu errors raised
    /// while creating the bind groups are returned. Errors wgpu defers to
    /// `encoder.finish()` surface there, in the caller's error handling.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
    ) -> Result<()> {
        encode_forward(self, Norm::Layer, ctx, encoder, &io.forward_io(), None)
    }

    /// [`LayerNorm::encode`] with the pass timed by `ticks`, labelled
    /// `layer_norm_forward <shape> (<kernel>, <lanes> lanes)`
    /// (`layer_norm_residual_forward` when fused, ` f16` after the shape
    /// for f16), with the shape, dtype, kernel and chunk count in its args
    /// (and each chunk's dispatch timed too when `ticks` times dispatches).
    pub fn encode_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        encode_forward(
            self,
            Norm::Layer,
            ctx,
            encoder,
            &io.forward_io(),
            Some(ticks),
        )
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
        self.validate_params(x.shape())?;
        let norm_shape = self.norm_shape(x.shape())?;
        let grads = LayerNormGrads {
            dx: GpuTensor::zeros_as(ctx, x.shape(), x.dtype())?,
            dgamma: GpuTensor::zeros_as(ctx, &norm_shape, x.dtype())?,
            dbeta: GpuTensor::zeros_as(ctx, &norm_shape, x.dtype())?,
        };
        let io = LayerNormGradIo {
            x,
            dy,
            gamma,
            mean: stats.map(|s| s.0),
            rstd: stats.map(|s| s.1),
            dx: &grads.dx,
            dgamma: Some(&grads.dgamma),
            dbeta: Some(&grads.dbeta),
        };
        run(ctx, "layer_norm_backward", |e| {
            self.encode_backward(ctx, e, &io)
        })?;
        Ok(grads)
    }

    /// Encodes the backward into the caller's `encoder`: a statistics pass
    /// first when `io` has no mean/rstd, then one pass with dx and the two
    /// deterministic dgamma/dbeta stages. Nothing is submitted.
    pub fn encode_backward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormGradIo<'_>,
    ) -> Result<()> {
        encode_backward(self, Norm::Layer, ctx, encoder, &io.backward_io(), None)
    }

    /// [`LayerNorm::encode_backward`] with its passes timed by `ticks`:
    /// `layer_norm_backward <shape> (<kernel>, …)`, and `layer_norm_stats …`
    /// when the statistics are recomputed.
    pub fn encode_backward_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormGradIo<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        encode_backward(
            self,
            Norm::Layer,
            ctx,
            encoder,
            &io.backward_io(),
            Some(ticks),
        )
    }
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

impl<'a> LayerNormGradIo<'a> {
    fn backward_io(&self) -> BackwardIo<'a> {
        BackwardIo {
            x: self.x,
            dy: self.dy,
            gamma: self.gamma,
            mean: self.mean,
            rstd: self.rstd,
            dx: self.dx,
            dgamma: self.dgamma,
            dbeta: self.dbeta,
        }
    }
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

/// A shape as the CLI and the labels spell it: `[8, 512, 768]` → `8x512x768`.
pub fn shape_string(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// `axis` in `0..rank`, from ONNX's `-rank..rank`.
pub(crate) fn normalized_axis(axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    if rank == 0 || axis < -r || axis >= r {
        return Err(Error::AxisOutOfRange { axis, rank });
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}
