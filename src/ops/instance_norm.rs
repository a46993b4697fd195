//! InstanceNormalization-6: statistics per (sample, channel) over the
//! spatial positions — GroupNorm with one channel per group.

use crate::context::Context;
use crate::error::Result;
use crate::ops::group_norm::{GroupNorm, channels_of};
use crate::ops::grouped::encode_grouped;
use crate::ops::grouped_op::{ChannelNormGradIo, ChannelNormIo, GroupedNorm};
use crate::ticks::Ticks;

/// InstanceNorm (ONNX InstanceNormalization-6, PyTorch `F.instance_norm`
/// without running statistics): per (n, c), `mean` and biased `var` over the
/// spatial values, `y = (x − mean) / sqrt(var + ε) · scale[c] + bias[c]`.
///
/// ```
/// use wgpu_norm::{ChannelNormIo, Context, GpuTensor, GroupedNorm, InstanceNorm};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 3.0, 10.0, 30.0], &[1, 2, 2])?;
/// let y = GpuTensor::zeros(&ctx, &[1, 2, 2])?;
/// InstanceNorm::new().with_epsilon(0.0).forward_into(&ctx, &ChannelNormIo::new(&x, &y))?;
/// assert_eq!(y.read(&ctx)?, vec![-1.0, 1.0, -1.0, 1.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceNorm {
    /// ε, default 1e-5.
    pub epsilon: f32,
    /// x is `[N, *spatial, C]`.
    pub channels_last: bool,
}

impl Default for InstanceNorm {
    fn default() -> Self {
        InstanceNorm {
            epsilon: 1e-5,
            channels_last: false,
        }
    }
}

impl InstanceNorm {
    /// ε 1e-5, channels first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets ε.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// x is channels-last, `[N, *spatial, C]`.
    pub fn with_channels_last(mut self, channels_last: bool) -> Self {
        self.channels_last = channels_last;
        self
    }

    /// GroupNorm with a group per channel of x's `shape`.
    fn as_group_norm(&self, shape: &[usize]) -> GroupNorm {
        GroupNorm::new(channels_of(shape, self.channels_last))
            .with_epsilon(self.epsilon)
            .with_channels_last(self.channels_last)
    }
}

impl GroupedNorm for InstanceNorm {
    const NAME: &'static str = "instance_norm";
    type Io<'a> = ChannelNormIo<'a>;
    type GradIo<'a> = ChannelNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &ChannelNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let call = self
            .as_group_norm(io.x.shape())
            .forward_call(Self::NAME, io)?;
        encode_grouped(ctx, encoder, &call, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &ChannelNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let call = self
            .as_group_norm(io.x.shape())
            .backward_call(Self::NAME, io)?;
        encode_grouped(ctx, encoder, &call, ticks)
    }
}
