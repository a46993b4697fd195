//! LpNormalization-1: `y = x / ‖x‖_p` along any axis, p 1 or 2; a zero
//! vector gives 0.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::GroupedVariant;
use crate::ops::grouped::{GroupedCall, GroupedTensors, encode_grouped};
use crate::ops::grouped_op::{GroupedNorm, check_shape};
use crate::plan::GroupedView;
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// LpNorm (ONNX LpNormalization-1, PyTorch `F.normalize`): `y = x / ‖x‖_p`
/// along `axis` (default −1), `‖x‖_1 = Σ|x|`, `‖x‖_2 = sqrt(Σx²)`.
///
/// A zero vector gives 0, not NaN: ONNX's test vectors expect 0 where the
/// norm is 0, and PyTorch clamps the norm at 1e-12, with the same effect on
/// exact zeros. Its gradient there is 0 too. The norm is taken as
/// `max · (Σ(|x| / max)^p)^(1/p)`, so values up to f32's largest neither
/// overflow nor underflow it. Backward:
/// `dx = (dy − t · Σ dy·y) / ‖x‖`, t = y for p = 2 and sign(x) for p = 1.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, GroupedNorm, LpNorm, LpNormIo};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[3.0, 4.0, 0.0, 0.0], &[2, 2])?;
/// let y = GpuTensor::zeros(&ctx, &[2, 2])?;
/// LpNorm::new().forward_into(&ctx, &LpNormIo { x: &x, y: &y })?;
/// assert_eq!(y.read(&ctx)?, vec![0.6, 0.8, 0.0, 0.0]);
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpNorm {
    /// 1 or 2.
    pub p: u32,
    /// The axis normalised (negative counts from the end).
    pub axis: isize,
}

impl Default for LpNorm {
    fn default() -> Self {
        LpNorm { p: 2, axis: -1 }
    }
}

/// The tensors of an LpNorm forward.
#[derive(Clone, Copy, Debug)]
pub struct LpNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output, like x.
    pub y: &'a GpuTensor,
}

/// The tensors of an LpNorm backward.
#[derive(Clone, Copy, Debug)]
pub struct LpNormGradIo<'a> {
    /// The forward's input.
    pub x: &'a GpuTensor,
    /// Gradient with respect to y.
    pub dy: &'a GpuTensor,
    /// Gradient with respect to x (written).
    pub dx: &'a GpuTensor,
}

impl LpNorm {
    /// p 2 along the last axis.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets p (1 or 2).
    pub fn with_p(mut self, p: u32) -> Self {
        self.p = p;
        self
    }

    /// Sets the axis.
    pub fn with_axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    fn call<'a>(&self, backward: bool, tensors: GroupedTensors<'a>) -> Result<GroupedCall<'a>> {
        if self.p != 1 && self.p != 2 {
            return Err(Error::InvalidParameter {
                op: Self::NAME,
                what: "p",
                value: self.p.to_string(),
                expected: "1 or 2".to_string(),
            });
        }
        let shape = tensors.x.shape();
        crate::shape::element_count(shape)?;
        let rank = shape.len();
        let axis = crate::shape::normalized_axis(self.axis, rank)?;
        let inner: usize = shape[axis + 1..].iter().product();
        let (outer, len) = (
            shape[..axis].iter().product::<usize>() as u64,
            shape[axis] as u64,
        );
        // A vector along the last axis is one contiguous run (cells of 4
        // where its length allows); others are `len` runs of one value.
        let view = match inner {
            1 => GroupedView {
                a: outer,
                b: 1,
                c: 1,
                d: len,
                cg: 1,
            },
            _ => GroupedView {
                a: outer,
                b: len,
                c: inner as u64,
                d: 1,
                cg: 1,
            },
        };
        Ok(GroupedCall {
            op: Self::NAME,
            backward,
            view,
            variant: GroupedVariant {
                lp: Some(self.p),
                lp_grad: backward,
                ..Default::default()
            },
            epsilon: 0.0,
            momentum: 0.0,
            unbiased: false,
            tensors,
        })
    }
}

impl GroupedNorm for LpNorm {
    const NAME: &'static str = "lp_norm";
    type Io<'a> = LpNormIo<'a>;
    type GradIo<'a> = LpNormGradIo<'a>;

    fn encode_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LpNormIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let call = self.call(false, GroupedTensors::new(io.x, io.y))?;
        check_shape("Y", io.y, io.x.shape())?;
        encode_grouped(ctx, encoder, &call, ticks)
    }

    fn encode_backward_with(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LpNormGradIo<'_>,
        ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let tensors = GroupedTensors {
            dy: Some(io.dy),
            ..GroupedTensors::new(io.x, io.dx)
        };
        let call = self.call(true, tensors)?;
        check_shape("dY", io.dy, io.x.shape())?;
        check_shape("dX", io.dx, io.x.shape())?;
        encode_grouped(ctx, encoder, &call, ticks)
    }
}
