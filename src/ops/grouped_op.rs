//! [`GroupedNorm`]: what GroupNorm, InstanceNorm, BatchNorm and LpNorm are
//! to the rest of the crate (encoding with or without ticks, running and
//! waiting), and the io types the channel normalisations share.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::record::run;
use crate::ops::validate::check_len;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// A normalisation whose statistics span sets of values other than one row
/// (a group of channels, a channel over the batch, a vector along any
/// axis): [`GroupNorm`](crate::GroupNorm), [`InstanceNorm`](crate::InstanceNorm),
/// [`BatchNorm`](crate::BatchNorm), [`LpNorm`](crate::LpNorm).
///
/// Forward and backward are deterministic: every reduction runs in a fixed
/// order, so results are bit-identical from run to run. Storage is f32 or
/// f16 (x, y, dy, dx, scale, bias and their gradients alike; BatchNorm's
/// statistics are f32), arithmetic f32. NaN and Inf stay in their set.
///
/// # Errors
///
/// Before anything is encoded: `InvalidEpsilon`, `InvalidParameter` (groups
/// that do not divide the channels, p outside {1, 2}, a momentum that is
/// not finite), `AxisOutOfRange`, `ShapeMismatch` (a tensor not shaped for
/// its role), `DTypeMismatch`, `AliasedBuffers`, `MissingTensor`,
/// `BindingTooLarge` (a tensor past one storage binding: these ops do not
/// chunk), `MissingFeature` (f16 without `SHADER_F16`); and what wgpu
/// reports in error scopes.
pub trait GroupedNorm {
    /// `group_norm`, `batch_norm`…: the pass labels' prefix.
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

    /// Encodes the backward (dx, and the parameter gradients asked for).
    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()>;

    /// Encodes the forward into the caller's encoder; nothing is submitted.
    /// A second call with the same tensors reuses what the first built.
    fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::Io<'_>,
    ) -> Result<()> {
        self.encode_with(ctx, encoder, io, None)
    }

    /// [`GroupedNorm::encode`] as one pass timed by `ticks`, labelled
    /// `<NAME>_forward <shape> (<sets> sets x <pieces> pieces)`.
    fn encode_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::Io<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        self.encode_with(ctx, encoder, io, Some(ticks))
    }

    /// Encodes the backward into the caller's encoder.
    fn encode_backward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
    ) -> Result<()> {
        self.encode_backward_with(ctx, encoder, io, None)
    }

    /// [`GroupedNorm::encode_backward`] timed by `ticks` (`<NAME>_backward …`).
    fn encode_backward_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &Self::GradIo<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        self.encode_backward_with(ctx, encoder, io, Some(ticks))
    }

    /// Encodes the forward, submits and waits.
    fn forward_into(&self, ctx: &Context, io: &Self::Io<'_>) -> Result<()> {
        run(ctx, Self::NAME, |encoder| self.encode(ctx, encoder, io))
    }

    /// Encodes the backward, submits and waits.
    fn backward_into(&self, ctx: &Context, io: &Self::GradIo<'_>) -> Result<()> {
        run(ctx, Self::NAME, |encoder| {
            self.encode_backward(ctx, encoder, io)
        })
    }
}

/// What follows the affine: nothing, or SiLU (`z · sigmoid(z)`), as
/// diffusion models' GroupNorm blocks fuse it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// y = z.
    #[default]
    None,
    /// y = z · sigmoid(z).
    Silu,
}

/// The tensors of a GroupNorm or InstanceNorm forward: x `[N, C, *spatial]`
/// (or channels-last `[N, *spatial, C]`), y like x, the optional
/// per-channel scale and bias (`[C]`; 1 and 0 where absent), and the
/// optional statistics written out (`[N, G]`, f32: mean and 1/sqrt(var + ε)
/// per sample and group, as PyTorch's `native_group_norm` saves them for its
/// backward).
#[derive(Clone, Copy, Debug)]
pub struct ChannelNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output, like x.
    pub y: &'a GpuTensor,
    /// Per-channel scale.
    pub scale: Option<&'a GpuTensor>,
    /// Per-channel bias.
    pub bias: Option<&'a GpuTensor>,
    /// Written: the mean per (n, group).
    pub mean: Option<&'a GpuTensor>,
    /// Written: 1/sqrt(var + ε) per (n, group).
    pub inv_std_dev: Option<&'a GpuTensor>,
}

impl<'a> ChannelNormIo<'a> {
    /// x and y, no scale or bias.
    pub fn new(x: &'a GpuTensor, y: &'a GpuTensor) -> Self {
        ChannelNormIo {
            x,
            y,
            scale: None,
            bias: None,
            mean: None,
            inv_std_dev: None,
        }
    }

    /// Writing the statistics (both: `[N, G]`, f32).
    pub fn with_stats(mut self, mean: &'a GpuTensor, inv_std_dev: &'a GpuTensor) -> Self {
        self.mean = Some(mean);
        self.inv_std_dev = Some(inv_std_dev);
        self
    }

    /// With a per-channel scale.
    pub fn with_scale(mut self, scale: &'a GpuTensor) -> Self {
        self.scale = Some(scale);
        self
    }

    /// With a per-channel bias.
    pub fn with_bias(mut self, bias: &'a GpuTensor) -> Self {
        self.bias = Some(bias);
        self
    }
}

/// The tensors of a channel normalisation's backward (GroupNorm,
/// InstanceNorm, BatchNorm): x and dy in, dx out (like x), the forward's
/// scale and bias, the parameter gradients where wanted (`[C]`), and the
/// statistics the forward saved, where given (else they are recomputed from
/// x: one more pass over it).
#[derive(Clone, Copy, Debug)]
pub struct ChannelNormGradIo<'a> {
    /// The forward's input.
    pub x: &'a GpuTensor,
    /// Gradient of the loss with respect to y.
    pub dy: &'a GpuTensor,
    /// Gradient with respect to x (written).
    pub dx: &'a GpuTensor,
    /// The forward's scale.
    pub scale: Option<&'a GpuTensor>,
    /// The forward's bias (needed only with SiLU).
    pub bias: Option<&'a GpuTensor>,
    /// Gradient with respect to the scale (written), `[C]`.
    pub dscale: Option<&'a GpuTensor>,
    /// Gradient with respect to the bias (written), `[C]`.
    pub dbias: Option<&'a GpuTensor>,
    /// The forward's saved mean per statistic set (with `inv_std_dev`).
    pub mean: Option<&'a GpuTensor>,
    /// The forward's saved 1/sqrt(var + ε) per statistic set.
    pub inv_std_dev: Option<&'a GpuTensor>,
}

impl<'a> ChannelNormGradIo<'a> {
    /// x, dy and dx; no parameters.
    pub fn new(x: &'a GpuTensor, dy: &'a GpuTensor, dx: &'a GpuTensor) -> Self {
        ChannelNormGradIo {
            x,
            dy,
            dx,
            scale: None,
            bias: None,
            dscale: None,
            dbias: None,
            mean: None,
            inv_std_dev: None,
        }
    }

    /// With the statistics the forward saved (both, f32).
    pub fn with_stats(mut self, mean: &'a GpuTensor, inv_std_dev: &'a GpuTensor) -> Self {
        self.mean = Some(mean);
        self.inv_std_dev = Some(inv_std_dev);
        self
    }

    /// With the forward's scale and bias.
    pub fn with_params(
        mut self,
        scale: Option<&'a GpuTensor>,
        bias: Option<&'a GpuTensor>,
    ) -> Self {
        self.scale = scale;
        self.bias = bias;
        self
    }

    /// Writing the parameter gradients.
    pub fn with_grads(
        mut self,
        dscale: Option<&'a GpuTensor>,
        dbias: Option<&'a GpuTensor>,
    ) -> Self {
        self.dscale = dscale;
        self.dbias = dbias;
        self
    }
}

/// Checks epsilon: finite and not negative.
pub(crate) fn check_epsilon(epsilon: f32) -> Result<()> {
    match epsilon.is_finite() && epsilon >= 0.0 {
        true => Ok(()),
        false => Err(Error::InvalidEpsilon(epsilon)),
    }
}

/// Checks that `t` has exactly `shape`.
pub(crate) fn check_shape(what: &'static str, t: &GpuTensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::ShapeMismatch {
            what,
            expected: shape.to_vec(),
            actual: t.shape().to_vec(),
        });
    }
    Ok(())
}

/// Checks that each present per-channel tensor holds `channels` values.
pub(crate) fn check_channels(
    tensors: &[(&'static str, Option<&GpuTensor>)],
    channels: usize,
) -> Result<()> {
    for &(what, t) in tensors {
        if let Some(t) = t {
            check_len(what, t, channels, &[channels])?;
        }
    }
    Ok(())
}

/// x's shape as [N, C, spatial…] (or channels-last [N, spatial…, C]): N, C
/// and the product of the spatial dimensions; rank 2 at least.
pub(crate) fn channel_dims(
    op: &'static str,
    shape: &[usize],
    channels_last: bool,
) -> Result<(usize, usize, usize)> {
    crate::shape::element_count(shape)?;
    if shape.len() < 2 {
        return Err(Error::InvalidParameter {
            op,
            what: "the input's rank",
            value: format!("{} (shape {shape:?})", shape.len()),
            expected: "at least 2: [N, C, spatial...]".to_string(),
        });
    }
    let c = match channels_last {
        true => shape[shape.len() - 1],
        false => shape[1],
    };
    let spatial = shape.iter().product::<usize>() / (shape[0] * c);
    Ok((shape[0], c, spatial))
}
