//! GroupNormalization-21: statistics per (sample, group of C/G channels)
//! over those channels and every spatial position; a per-channel scale and
//! bias; an optional fused SiLU; channels first or last.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::GroupedVariant;
use crate::ops::grouped::{GroupedCall, GroupedTensors, encode_grouped};
use crate::ops::grouped_op::{
    Activation, ChannelNormGradIo, ChannelNormIo, GroupedNorm, channel_dims, check_channels,
    check_epsilon, check_shape,
};
use crate::plan::GroupedView;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// GroupNorm (ONNX GroupNormalization-21, PyTorch `F.group_norm`): x
/// `[N, C, *spatial]`, G groups of C/G channels; per (n, group)
/// `mean = Σx / m` and `var = Σ(x − mean)² / m` over its m = C/G · spatial
/// values (biased), `y = (x − mean) / sqrt(var + ε) · scale[c] + bias[c]`,
/// then `y · sigmoid(y)` with [`Activation::Silu`].
///
/// ```
/// use wgpu_norm::{ChannelNormIo, Context, GpuTensor, GroupNorm, GroupedNorm};
/// let ctx = Context::new()?;
/// // N = 1, C = 2, spatial 2; one group: all four values.
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 3.0, 1.0, 3.0], &[1, 2, 2])?;
/// let y = GpuTensor::zeros(&ctx, &[1, 2, 2])?;
/// GroupNorm::new(1).with_epsilon(0.0).forward_into(&ctx, &ChannelNormIo::new(&x, &y))?;
/// assert_eq!(y.read(&ctx)?, vec![-1.0, 1.0, -1.0, 1.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    /// G: must divide the channels.
    pub num_groups: usize,
    /// ε, default 1e-5.
    pub epsilon: f32,
    /// What follows the affine.
    pub activation: Activation,
    /// x is `[N, *spatial, C]`.
    pub channels_last: bool,
}

impl GroupNorm {
    /// `num_groups` groups, ε 1e-5, no activation, channels first.
    pub fn new(num_groups: usize) -> Self {
        GroupNorm {
            num_groups,
            epsilon: 1e-5,
            activation: Activation::None,
            channels_last: false,
        }
    }

    /// Sets ε.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Sets the activation after the affine.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// x is channels-last, `[N, *spatial, C]`.
    pub fn with_channels_last(mut self, channels_last: bool) -> Self {
        self.channels_last = channels_last;
        self
    }

    /// The view of an input of `shape`, after checking ε and the groups.
    pub(crate) fn view(&self, op: &'static str, shape: &[usize]) -> Result<(GroupedView, usize)> {
        check_epsilon(self.epsilon)?;
        let (n, c, spatial) = channel_dims(op, shape, self.channels_last)?;
        let g = self.num_groups;
        if g == 0 || c % g != 0 {
            return Err(Error::InvalidParameter {
                op,
                what: "num_groups",
                value: g.to_string(),
                expected: format!("a divisor of the {c} channels"),
            });
        }
        let (b, d) = match self.channels_last {
            true => (spatial, 1),
            false => (1, spatial),
        };
        let view = GroupedView {
            a: n as u64,
            b: b as u64,
            c: c as u64,
            d: d as u64,
            cg: (c / g) as u64,
        };
        Ok((view, c))
    }

    pub(crate) fn forward_call<'a>(
        &self,
        op: &'static str,
        io: &ChannelNormIo<'a>,
    ) -> Result<GroupedCall<'a>> {
        let (view, c) = self.view(op, io.x.shape())?;
        check_shape("Y", io.y, io.x.shape())?;
        check_channels(&[("Scale", io.scale), ("B", io.bias)], c)?;
        check_stats(&[("Mean", io.mean), ("InvStdDev", io.inv_std_dev)], &view)?;
        Ok(GroupedCall {
            op,
            backward: false,
            view,
            variant: GroupedVariant {
                scale: io.scale.is_some(),
                bias: io.bias.is_some(),
                silu: self.activation == Activation::Silu,
                ..Default::default()
            },
            epsilon: self.epsilon,
            momentum: 0.0,
            unbiased: false,
            tensors: GroupedTensors {
                scale: io.scale,
                bias: io.bias,
                saved_mean: io.mean,
                saved_rstd: io.inv_std_dev,
                ..GroupedTensors::new(io.x, io.y)
            },
        })
    }

    pub(crate) fn backward_call<'a>(
        &self,
        op: &'static str,
        io: &ChannelNormGradIo<'a>,
    ) -> Result<GroupedCall<'a>> {
        let (view, c) = self.view(op, io.x.shape())?;
        check_grad_io(io, c)?;
        check_stats(&[("Mean", io.mean), ("InvStdDev", io.inv_std_dev)], &view)?;
        Ok(GroupedCall {
            op,
            backward: true,
            view,
            variant: GroupedVariant {
                scale: io.scale.is_some(),
                bias: io.bias.is_some(),
                silu: self.activation == Activation::Silu,
                saved: io.mean.is_some(),
                ..Default::default()
            },
            epsilon: self.epsilon,
            momentum: 0.0,
            unbiased: false,
            tensors: grad_tensors(io),
        })
    }
}

/// The checks every channel normalisation's backward makes.
pub(crate) fn check_grad_io(io: &ChannelNormGradIo<'_>, channels: usize) -> Result<()> {
    check_shape("dY", io.dy, io.x.shape())?;
    check_shape("dX", io.dx, io.x.shape())?;
    check_channels(
        &[
            ("Scale", io.scale),
            ("B", io.bias),
            ("dScale", io.dscale),
            ("dB", io.dbias),
        ],
        channels,
    )
}

/// Checks saved statistics: both or neither, f32, one per statistic set
/// (shaped [N, G]; [C] for BatchNorm).
pub(crate) fn check_stats(
    stats: &[(&'static str, Option<&GpuTensor>); 2],
    view: &GroupedView,
) -> Result<()> {
    let [(a, ta), (b, tb)] = *stats;
    if ta.is_some() != tb.is_some() {
        let (given, missing) = if ta.is_some() { (a, b) } else { (b, a) };
        return Err(Error::IncompleteStats { given, missing });
    }
    let sets = view.stat_sets() as usize;
    let shape: Vec<usize> = match view.a {
        1 => vec![sets],
        n => vec![n as usize, sets / n as usize],
    };
    for (what, t) in [(a, ta), (b, tb)] {
        if let Some(t) = t {
            crate::ops::validate::check_len(what, t, sets, &shape)?;
            crate::ops::validate::check_dtype(what, t, crate::shape::DType::F32)?;
        }
    }
    Ok(())
}

/// A channel normalisation's backward tensors by role (saved statistics
/// in the given-statistics slots).
pub(crate) fn grad_tensors<'a>(io: &ChannelNormGradIo<'a>) -> GroupedTensors<'a> {
    GroupedTensors {
        input_mean: io.mean,
        input_var: io.inv_std_dev,
        dy: Some(io.dy),
        scale: io.scale,
        bias: io.bias,
        dscale: io.dscale,
        dbias: io.dbias,
        ..GroupedTensors::new(io.x, io.dx)
    }
}

impl GroupedNorm for GroupNorm {
    const NAME: &'static str = "group_norm";
    type Io<'a> = ChannelNormIo<'a>;
    type GradIo<'a> = ChannelNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &ChannelNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let call = self.forward_call(Self::NAME, io)?;
        encode_grouped(ctx, encoder, &call, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &ChannelNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let call = self.backward_call(Self::NAME, io)?;
        encode_grouped(ctx, encoder, &call, ticks)
    }
}

/// The per-channel tensors of a channel normalisation for x of `shape`.
pub(crate) fn channels_of(shape: &[usize], channels_last: bool) -> usize {
    match channels_last {
        true => shape.last().copied().unwrap_or(1),
        false => shape.get(1).copied().unwrap_or(1),
    }
}
