//! BatchNormalization-15: per channel over the batch and spatial positions —
//! with given statistics (inference) or the batch's own (training, which
//! also updates the running statistics). The per-channel reduction runs
//! across rows: pieces of every channel on lanes over the whole device, then
//! an ordered merge per channel (deterministic).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::GroupedVariant;
use crate::ops::group_norm::{check_grad_io, check_stats, grad_tensors};
use crate::ops::grouped::{GroupedCall, GroupedTensors, encode_grouped};
use crate::ops::grouped_op::{
    ChannelNormGradIo, GroupedNorm, channel_dims, check_channels, check_epsilon, check_shape,
};
use crate::plan::GroupedView;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// Which batch variance the running variance is updated with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RunningVariance {
    /// The biased batch variance, Σ(x − mean)² / m: ONNX's reference.
    #[default]
    Biased,
    /// The unbiased one, Σ(x − mean)² / (m − 1): PyTorch's `batch_norm`.
    Unbiased,
}

/// BatchNorm (ONNX BatchNormalization-15): x `[N, C, *spatial]`.
/// - Inference: `y = (x − input_mean) / sqrt(input_var + ε) · scale + bias`
///   per channel.
/// - Training ([`BatchNorm::training`]): mean and biased var per channel
///   over N × spatial normalise x; `running_mean = input_mean · momentum +
///   mean · (1 − momentum)`, `running_var = input_var · momentum + var' ·
///   (1 − momentum)`, var' biased or unbiased ([`RunningVariance`]).
///
/// The backward follows the mode: in training the statistics depend on x
/// (the full batch-norm gradient), in inference they are constants
/// (`dx = dy · scale / sqrt(input_var + ε)`).
///
/// ```
/// use wgpu_norm::{BatchNorm, BatchNormIo, Context, GpuTensor, GroupedNorm};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 5.0, 3.0, 7.0], &[2, 2])?; // N 2, C 2
/// let (mean, var) = (
///     GpuTensor::from_slice(&ctx, &[2.0, 6.0], &[2])?,
///     GpuTensor::from_slice(&ctx, &[1.0, 1.0], &[2])?,
/// );
/// let y = GpuTensor::zeros(&ctx, &[2, 2])?;
/// BatchNorm::new()
///     .with_epsilon(0.0)
///     .forward_into(&ctx, &BatchNormIo::new(&x, &y, &mean, &var))?;
/// assert_eq!(y.read(&ctx)?, vec![-1.0, -1.0, 1.0, 1.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    /// ε, default 1e-5.
    pub epsilon: f32,
    /// Weight of the old running statistics, default 0.9.
    pub momentum: f32,
    /// Statistics from the batch (training mode).
    pub training: bool,
    /// The variance the running variance is updated with.
    pub running_variance: RunningVariance,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm {
            epsilon: 1e-5,
            momentum: 0.9,
            training: false,
            running_variance: RunningVariance::Biased,
        }
    }
}

/// The tensors of a BatchNorm forward: x `[N, C, *spatial]`, y like x, the
/// per-channel scale and bias (1 and 0 where absent), input_mean and
/// input_var (`[C]`, f32), and in training the running statistics written
/// (`[C]`, f32, optional).
#[derive(Clone, Copy, Debug)]
pub struct BatchNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output.
    pub y: &'a GpuTensor,
    /// Per-channel scale.
    pub scale: Option<&'a GpuTensor>,
    /// Per-channel bias.
    pub bias: Option<&'a GpuTensor>,
    /// The running mean (inference: the mean used).
    pub input_mean: &'a GpuTensor,
    /// The running variance (inference: the variance used).
    pub input_var: &'a GpuTensor,
    /// Training: the updated running mean (written).
    pub running_mean: Option<&'a GpuTensor>,
    /// Training: the updated running variance (written).
    pub running_var: Option<&'a GpuTensor>,
    /// Training: the batch mean per channel (written, `[C]`, f32), for the
    /// backward (as PyTorch's `save_mean`).
    pub saved_mean: Option<&'a GpuTensor>,
    /// Training: the batch's 1/sqrt(var + ε) per channel (written), for
    /// the backward (PyTorch's `save_invstd`).
    pub saved_inv_std_dev: Option<&'a GpuTensor>,
}

impl<'a> BatchNormIo<'a> {
    /// x, y and the statistics; no scale, bias or running outputs.
    pub fn new(
        x: &'a GpuTensor,
        y: &'a GpuTensor,
        input_mean: &'a GpuTensor,
        input_var: &'a GpuTensor,
    ) -> Self {
        BatchNormIo {
            x,
            y,
            scale: None,
            bias: None,
            input_mean,
            input_var,
            running_mean: None,
            running_var: None,
            saved_mean: None,
            saved_inv_std_dev: None,
        }
    }

    /// Writing the batch statistics for the backward (training).
    pub fn with_saved(mut self, mean: &'a GpuTensor, inv_std_dev: &'a GpuTensor) -> Self {
        self.saved_mean = Some(mean);
        self.saved_inv_std_dev = Some(inv_std_dev);
        self
    }

    /// With a per-channel scale and bias.
    pub fn with_params(
        mut self,
        scale: Option<&'a GpuTensor>,
        bias: Option<&'a GpuTensor>,
    ) -> Self {
        self.scale = scale;
        self.bias = bias;
        self
    }

    /// Writing the running statistics (training).
    pub fn with_running(mut self, mean: &'a GpuTensor, var: &'a GpuTensor) -> Self {
        self.running_mean = Some(mean);
        self.running_var = Some(var);
        self
    }
}

/// The tensors of a BatchNorm backward: the channel-norm gradients (in
/// training mode with the batch statistics the forward saved, where given:
/// `grads.mean` and `grads.inv_std_dev`), and in inference mode the
/// statistics the forward used.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormGradIo<'a> {
    /// x, dy, dx, the parameters and their gradients.
    pub grads: ChannelNormGradIo<'a>,
    /// Inference mode: the mean the forward used.
    pub input_mean: Option<&'a GpuTensor>,
    /// Inference mode: the variance the forward used.
    pub input_var: Option<&'a GpuTensor>,
}

impl BatchNorm {
    /// Inference mode, ε 1e-5, momentum 0.9.
    pub fn new() -> Self {
        Self::default()
    }

    /// Training mode: statistics from the batch.
    pub fn training() -> Self {
        BatchNorm {
            training: true,
            ..Self::default()
        }
    }

    /// Sets ε.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the variance the running variance is updated with.
    pub fn with_running_variance(mut self, v: RunningVariance) -> Self {
        self.running_variance = v;
        self
    }

    fn view(&self, shape: &[usize]) -> Result<(GroupedView, usize)> {
        check_epsilon(self.epsilon)?;
        if !self.momentum.is_finite() {
            return Err(Error::InvalidParameter {
                op: Self::NAME,
                what: "momentum",
                value: self.momentum.to_string(),
                expected: "finite".to_string(),
            });
        }
        let (n, c, spatial) = channel_dims(Self::NAME, shape, false)?;
        let view = GroupedView {
            a: 1,
            b: n as u64,
            c: c as u64,
            d: spatial as u64,
            cg: 1,
        };
        Ok((view, c))
    }

    fn stats<'a>(
        &self,
        mean: Option<&'a GpuTensor>,
        var: Option<&'a GpuTensor>,
        c: usize,
    ) -> Result<Option<(&'a GpuTensor, &'a GpuTensor)>> {
        if self.training && mean.is_none() && var.is_none() {
            return Ok(None);
        }
        let mean = mean.ok_or(Error::MissingTensor { what: "input_mean" })?;
        let var = var.ok_or(Error::MissingTensor { what: "input_var" })?;
        check_channels(&[("input_mean", Some(mean)), ("input_var", Some(var))], c)?;
        Ok(Some((mean, var)))
    }
}

impl GroupedNorm for BatchNorm {
    const NAME: &'static str = "batch_norm";
    type Io<'a> = BatchNormIo<'a>;
    type GradIo<'a> = BatchNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &BatchNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let (view, c) = self.view(io.x.shape())?;
        check_shape("Y", io.y, io.x.shape())?;
        check_channels(
            &[
                ("Scale", io.scale),
                ("B", io.bias),
                ("running_mean", io.running_mean),
                ("running_var", io.running_var),
            ],
            c,
        )?;
        self.stats(Some(io.input_mean), Some(io.input_var), c)?;
        let saved = [
            ("saved_mean", io.saved_mean),
            ("saved_inv_std_dev", io.saved_inv_std_dev),
        ];
        check_stats(&saved, &view)?;
        if !self.training && io.saved_mean.is_some() {
            return Err(Error::InvalidParameter {
                op: Self::NAME,
                what: "saved statistics",
                value: "given in inference mode".to_string(),
                expected: "training mode (inference uses input_mean and input_var)".to_string(),
            });
        }
        let running = self.training && (io.running_mean.is_some() || io.running_var.is_some());
        if running && (io.running_mean.is_none() || io.running_var.is_none()) {
            return Err(Error::MissingTensor {
                what: match io.running_mean {
                    None => "running_mean",
                    Some(_) => "running_var",
                },
            });
        }
        let call = GroupedCall {
            op: Self::NAME,
            backward: false,
            view,
            variant: GroupedVariant {
                scale: io.scale.is_some(),
                bias: io.bias.is_some(),
                running,
                const_stats: !self.training,
                ..Default::default()
            },
            epsilon: self.epsilon,
            momentum: self.momentum,
            unbiased: self.running_variance == RunningVariance::Unbiased,
            tensors: GroupedTensors {
                scale: io.scale,
                bias: io.bias,
                input_mean: Some(io.input_mean),
                input_var: Some(io.input_var),
                running_mean: io.running_mean.filter(|_| running),
                running_var: io.running_var.filter(|_| running),
                saved_mean: io.saved_mean,
                saved_rstd: io.saved_inv_std_dev,
                ..GroupedTensors::new(io.x, io.y)
            },
        };
        encode_grouped(ctx, encoder, &call, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &BatchNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let (view, c) = self.view(io.grads.x.shape())?;
        check_grad_io(&io.grads, c)?;
        // Training takes the saved batch statistics, or recomputes them;
        // inference takes input_mean and input_var.
        let g = &io.grads;
        check_stats(&[("Mean", g.mean), ("InvStdDev", g.inv_std_dev)], &view)?;
        let stats = match self.training {
            true => g.mean.zip(g.inv_std_dev),
            false => {
                if g.mean.is_some() {
                    return Err(Error::InvalidParameter {
                        op: Self::NAME,
                        what: "saved statistics",
                        value: "given in inference mode".to_string(),
                        expected: "training mode (inference uses input_mean and input_var)"
                            .to_string(),
                    });
                }
                self.stats(io.input_mean, io.input_var, c)?
            }
        };
        let call = GroupedCall {
            op: Self::NAME,
            backward: true,
            view,
            variant: GroupedVariant {
                scale: io.grads.scale.is_some(),
                bias: io.grads.bias.is_some(),
                const_stats: !self.training,
                saved: self.training && stats.is_some(),
                ..Default::default()
            },
            epsilon: self.epsilon,
            momentum: self.momentum,
            unbiased: false,
            tensors: GroupedTensors {
                input_mean: stats.map(|s| s.0),
                input_var: stats.map(|s| s.1),
                ..grad_tensors(&io.grads)
            },
        };
        encode_grouped(ctx, encoder, &call, ticks)
    }
}
