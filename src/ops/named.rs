//! Tensors by their ONNX role — X, Scale, B, Mean, InvStdDev, Y and the
//! gradients — so that the CLI, the bench and the autotuner can run any
//! [`NormOp`](crate::NormOp) without code of their own for it.

use crate::error::{Error, Result};
use crate::ops::io::ResidualAdd;
use crate::tensor::GpuTensor;

/// Which named tensors an op has beyond X, Y, Scale and InvStdDev (for
/// the CLI's flags and their messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The op's name in messages: `LayerNorm`, `RMSNorm`.
    pub title: &'static str,
    /// It takes a bias B (and its backward gives dB).
    pub bias: bool,
    /// It has a per-row Mean (an output of the forward, a saved input of
    /// the backward).
    pub mean: bool,
    /// It can add a residual before normalising.
    pub residual: bool,
}

/// One call's tensors by role; an op reads those its [`Signature`] lists
/// and ignores the rest. `y` is the forward's output, `dy` and `dx` the
/// backward's; statistics are outputs of a forward and saved inputs of a
/// backward.
#[derive(Clone, Copy, Debug)]
pub struct NamedTensors<'a> {
    /// X.
    pub x: &'a GpuTensor,
    /// Scale (gamma).
    pub scale: Option<&'a GpuTensor>,
    /// B (beta).
    pub bias: Option<&'a GpuTensor>,
    /// A residual added to X first (forward).
    pub residual: Option<ResidualAdd<'a>>,
    /// Mean.
    pub mean: Option<&'a GpuTensor>,
    /// InvStdDev (rstd).
    pub inv_std_dev: Option<&'a GpuTensor>,
    /// Y (forward output).
    pub y: Option<&'a GpuTensor>,
    /// dY (backward input).
    pub dy: Option<&'a GpuTensor>,
    /// dX (backward output).
    pub dx: Option<&'a GpuTensor>,
    /// dScale (backward output).
    pub dscale: Option<&'a GpuTensor>,
    /// dB (backward output).
    pub dbias: Option<&'a GpuTensor>,
}

impl<'a> NamedTensors<'a> {
    /// X alone; set the others with struct update syntax.
    pub fn new(x: &'a GpuTensor) -> Self {
        NamedTensors {
            x,
            scale: None,
            bias: None,
            residual: None,
            mean: None,
            inv_std_dev: None,
            y: None,
            dy: None,
            dx: None,
            dscale: None,
            dbias: None,
        }
    }
}

/// The tensor named `what`, which the call needs.
pub(crate) fn required<'a>(t: Option<&'a GpuTensor>, what: &'static str) -> Result<&'a GpuTensor> {
    t.ok_or(Error::MissingTensor { what })
}
