//! [`NormOp`]: what every normalisation op is to the rest of the crate —
//! its name, its io types, its encoders — so that encoding with or without
//! ticks, the bench and the checks come with implementing it.

use crate::context::Context;
use crate::error::Result;
use crate::ops::io::ResidualAdd;
use crate::ops::named::{NamedTensors, Signature};
use crate::ops::record::run;
use crate::ops::tensors::OpTensors;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// A normalisation op: LayerNorm and RmsNorm implement it; a new op is one
/// file implementing it, its WGSL, its reference function and its tests.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, LayerNorm, LayerNormIo, NormOp};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
/// let y = GpuTensor::zeros(&ctx, &[2, 2])?;
/// let mut encoder = ctx.device().create_command_encoder(&Default::default());
/// LayerNorm::new()
///     .with_epsilon(0.0)
///     .encode(&ctx, &mut encoder, &LayerNormIo::new(&x, &y))?;
/// ctx.submit_and_wait(encoder)?;
/// assert_eq!(y.read(&ctx)?, vec![-1.0, 1.0, -1.0, 1.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
///
/// # Errors
///
/// Every entry point checks its input before it encodes or allocates
/// anything, and returns one of these, naming the values (never a panic):
/// - `InvalidEpsilon`: epsilon negative, NaN or infinite;
/// - `AxisOutOfRange`: an axis outside `-rank..rank`;
/// - `EmptyShape`, `ShapeOverflow`: a zero dimension, no dimension, or a
///   shape whose element count overflows `usize`;
/// - `ShapeMismatch`, `LengthMismatch`: a tensor whose shape does not fit
///   its role (Y like X, gamma like the normalised dims, statistics one per row);
/// - `DTypeMismatch`: tensors of different storage types where they must
///   agree (the statistics are always f32);
/// - `AliasedBuffers`: an output whose binding window overlaps an input's
///   or another output's;
/// - `MissingTensor`, `IncompleteStats`: a role the call needs left out, or
///   one saved statistic without the other;
/// - `TensorTooLarge`, `RowTooLarge`, `LimitTooLow`: more than the
///   device's buffers, bindings or dispatches can hold (tensors over one
///   binding are chunked, rows are not split past the kernel's reach);
/// - `MissingFeature`, `KernelUnsuitable`: f16 without `SHADER_F16`, a forced
///   kernel that cannot run the shape or needs subgroups;
/// - `Validation`, `OutOfMemory`, `DeviceLost`: what only wgpu can see,
///   caught in error scopes.
///
/// Values are not input errors: NaN and Inf stay in their row (its outputs
/// and statistics NaN), and finite values up to f32's largest are handled
/// without overflow.
pub trait NormOp {
    /// `layer_norm`, `rms_norm`: the prefix of its pass labels and bench rows.
    const NAME: &'static str;
    /// The forward's tensors.
    type Io<'a>;
    /// The backward's tensors.
    type GradIo<'a>;

    /// Encodes the forward into `encoder`, timed by `ticks` when given.
    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::Io<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()>;

    /// Encodes the backward into `encoder`, timed by `ticks` when given.
    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()>;

    /// The shape of the op's per-column parameters (gamma, beta and their
    /// gradients) for an input of `shape`.
    fn param_shape(&self, shape: &[usize]) -> Result<Vec<usize>>;

    /// The shape of its per-row statistics for an input of `shape`.
    fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>>;

    /// Which named tensors the op has (for the CLI's flags and messages).
    const SIGNATURE: Signature;

    /// The forward's io from tensors named by role (X and Y present; the
    /// others as given, those the op does not have ignored).
    fn named_io<'a>(t: &NamedTensors<'a>) -> Result<Self::Io<'a>>;

    /// The backward's io from tensors named by role (X, dY and dX present).
    fn named_grad_io<'a>(t: &NamedTensors<'a>) -> Result<Self::GradIo<'a>>;

    /// The kernel the op would run on a tensor of `shape` (forward or
    /// backward), as a short description: `row-per-lane, 32 lanes`.
    fn describe(&self, ctx: &Context, shape: &[usize], backward: bool) -> Result<String>;

    /// Seeded standard tensors for an input of `shape` (see [`OpTensors`]).
    fn tensors(&self, ctx: &Context, shape: &[usize], seed: u64) -> Result<OpTensors> {
        let params = self.param_shape(shape)?;
        let stats = self.stats_shape(shape)?;
        OpTensors::new(ctx, shape, &params, &stats, seed)
    }

    /// Encodes the forward into the caller's `encoder`. Nothing is submitted.
    ///
    /// Bad input is rejected before anything is encoded; wgpu errors raised
    /// while creating bind groups are returned. A second call with the same
    /// tensors and shape reuses what the first built (no allocation).
    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::Io<'_>,
    ) -> Result<()> {
        self.encode_with(ctx, encoder, io, None)
    }

    /// [`NormOp::encode`] with the pass timed by `ticks`, labelled
    /// `<NAME>_forward <shape> (<kernel>, <lanes> lanes)` (`_residual_forward`
    /// when fused, ` f16` after the shape for f16), with the shape, dtype,
    /// kernel and chunk count in its args.
    fn encode_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::Io<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        self.encode_with(ctx, encoder, io, Some(ticks))
    }

    /// Encodes the backward into the caller's `encoder`: a statistics pass
    /// first where `io` has no saved statistics, then dx and the
    /// deterministic parameter gradients. Nothing is submitted.
    fn encode_backward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
    ) -> Result<()> {
        self.encode_backward_with(ctx, encoder, io, None)
    }

    /// Encodes the forward, submits it and waits: the tensors of `io` hold
    /// the results when it returns.
    fn forward_into(&self, ctx: &Context, io: &Self::Io<'_>) -> Result<()> {
        run(ctx, Self::NAME, |encoder| self.encode(ctx, encoder, io))
    }

    /// Encodes the backward, submits it and waits.
    fn backward_into(&self, ctx: &Context, io: &Self::GradIo<'_>) -> Result<()> {
        run(ctx, Self::NAME, |encoder| {
            self.encode_backward(ctx, encoder, io)
        })
    }

    /// Runs the forward on fresh outputs and waits: Y of X's shape and
    /// type, the statistics where `stats` (and the op has them: f32, shaped
    /// [`NormOp::stats_shape`]), and the sum where `inputs` has a residual.
    /// The outputs named in `inputs` are ignored. Shapes and epsilon are
    /// checked before anything is allocated.
    fn forward_new(
        &self,
        ctx: &Context,
        inputs: &NamedTensors<'_>,
        stats: bool,
    ) -> Result<ForwardOutputs> {
        let (shape, dtype) = (inputs.x.shape(), inputs.x.dtype());
        self.param_shape(shape)?;
        let stats_shape = self.stats_shape(shape)?;
        let stat = |has: bool| -> Result<Option<GpuTensor>> {
            (stats && has)
                .then(|| GpuTensor::zeros(ctx, &stats_shape))
                .transpose()
        };
        let out = ForwardOutputs {
            y: GpuTensor::zeros_as(ctx, shape, dtype)?,
            mean: stat(Self::SIGNATURE.mean)?,
            rstd: stat(true)?,
            sum: inputs
                .residual
                .map(|_| GpuTensor::zeros_as(ctx, shape, dtype))
                .transpose()?,
        };
        let named = NamedTensors {
            y: Some(&out.y),
            mean: out.mean.as_ref(),
            inv_std_dev: out.rstd.as_ref(),
            residual: inputs.residual.map(|r| ResidualAdd {
                sum: out.sum.as_ref(),
                ..r
            }),
            ..*inputs
        };
        self.forward_into(ctx, &Self::named_io(&named)?)?;
        Ok(out)
    }

    /// Runs the backward on fresh gradients and waits: dX of X's shape and
    /// type, dScale and (where the op has a bias) dB shaped
    /// [`NormOp::param_shape`]. `inputs` holds X, dY, the scale and the saved
    /// statistics (recomputed where absent); its output tensors are ignored.
    fn backward_new(&self, ctx: &Context, inputs: &NamedTensors<'_>) -> Result<BackwardOutputs> {
        let (shape, dtype) = (inputs.x.shape(), inputs.x.dtype());
        let params = self.param_shape(shape)?;
        let out = BackwardOutputs {
            dx: GpuTensor::zeros_as(ctx, shape, dtype)?,
            dscale: GpuTensor::zeros_as(ctx, &params, dtype)?,
            dbias: Self::SIGNATURE
                .bias
                .then(|| GpuTensor::zeros_as(ctx, &params, dtype))
                .transpose()?,
        };
        let named = NamedTensors {
            dx: Some(&out.dx),
            dscale: Some(&out.dscale),
            dbias: out.dbias.as_ref(),
            ..*inputs
        };
        self.backward_into(ctx, &Self::named_grad_io(&named)?)?;
        Ok(out)
    }

    /// [`NormOp::encode_backward`] with its passes timed by `ticks`:
    /// `<NAME>_backward <shape> (…)`, and `<NAME>_stats …` where the
    /// statistics are recomputed.
    fn encode_backward_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        self.encode_backward_with(ctx, encoder, io, Some(ticks))
    }
}

/// What [`NormOp::forward_new`] returns.
#[derive(Clone, Debug)]
pub struct ForwardOutputs {
    /// The normalised tensor.
    pub y: GpuTensor,
    /// Per-row mean, where asked and the op has one.
    pub mean: Option<GpuTensor>,
    /// Per-row rstd (InvStdDev), where asked.
    pub rstd: Option<GpuTensor>,
    /// x + residual (+ bias), where the call had a residual.
    pub sum: Option<GpuTensor>,
}

/// What [`NormOp::backward_new`] returns.
#[derive(Clone, Debug)]
pub struct BackwardOutputs {
    /// Gradient with respect to x.
    pub dx: GpuTensor,
    /// Gradient with respect to the scale.
    pub dscale: GpuTensor,
    /// Gradient with respect to the bias, where the op has one.
    pub dbias: Option<GpuTensor>,
}
