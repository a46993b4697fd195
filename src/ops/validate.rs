//! Checks every op runs before it encodes anything: shapes, element types,
//! and buffer sharing that wgpu or browsers' WebGPU would refuse.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::config::{NormConfig, NormKind};
use crate::ops::io::{BackwardIo, ForwardIo};
use crate::plan::binding_window_of;
use crate::shape::{DType, RowsCols};
use crate::tensor::GpuTensor;

/// `what` must have the element type `expected`; statistics are f32.
pub(crate) fn check_dtype(what: &'static str, t: &GpuTensor, expected: DType) -> Result<()> {
    if t.dtype() != expected {
        return Err(Error::DTypeMismatch {
            what,
            expected,
            actual: t.dtype(),
        });
    }
    Ok(())
}

/// Checks that `t` holds `expected_len` values, or names its expected shape.
pub(crate) fn check_len(
    what: &'static str,
    t: &GpuTensor,
    expected_len: usize,
    expected_shape: &[usize],
) -> Result<()> {
    if t.len() != expected_len {
        return Err(Error::ShapeMismatch {
            what,
            expected: expected_shape.to_vec(),
            actual: t.shape().to_vec(),
        });
    }
    Ok(())
}

/// The bytes a tensor's bindings may span: from the aligned offset at or
/// before its first value to the 4-byte word after its last.
fn bound_range(t: &GpuTensor, align: u64) -> (u64, u64) {
    let w = binding_window_of(t.offset(), t.len() as u64, t.dtype(), align);
    (w.offset, w.offset + w.size)
}

/// Refuses buffer sharing wgpu or WebGPU forbids in one dispatch: an output
/// in the buffer of an input (one buffer cannot be bound read-only and
/// writable at once), or two outputs whose bindings would overlap (WebGPU
/// refuses overlapping writable bindings; a binding starts at the aligned
/// offset before its tensor, so outputs closer than the alignment overlap).
pub(crate) fn check_aliasing(
    ctx: &Context,
    inputs: &[Option<(&'static str, &GpuTensor)>],
    outputs: &[Option<(&'static str, &GpuTensor)>],
) -> Result<()> {
    for (a, ta) in outputs.iter().flatten() {
        for (b, tb) in inputs.iter().flatten() {
            if ta.buffer() == tb.buffer() {
                return Err(Error::AliasedBuffers { a, b });
            }
        }
    }
    let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
    for (i, (a, ta)) in outputs.iter().flatten().enumerate() {
        for (b, tb) in outputs.iter().flatten().skip(i + 1) {
            let (sa, ea) = bound_range(ta, align);
            let (sb, eb) = bound_range(tb, align);
            if ta.buffer() == tb.buffer() && sa < eb && sb < ea {
                return Err(Error::AliasedBuffers { a, b });
            }
        }
    }
    Ok(())
}

/// The checks forward and backward share: tensors shaped like x (`like_x`,
/// of x's type), per-column tensors (`columns`: `cols` values, x's type) and
/// per-row statistics (`stats`: `rows` f32 values).
fn check_tensors(
    cfg: &NormConfig,
    x: &GpuTensor,
    rc: RowsCols,
    like_x: &[(&'static str, Option<&GpuTensor>)],
    columns: &[(&'static str, Option<&GpuTensor>)],
    stats: &[(&'static str, Option<&GpuTensor>)],
) -> Result<()> {
    let (shape, dtype) = (x.shape(), x.dtype());
    let norm_shape = &cfg.norm_shape(shape)?;
    let stats_shape = &cfg.stats_shape(shape)?;
    for &(what, t) in like_x {
        if let Some(t) = t {
            if t.shape() != shape {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: shape.to_vec(),
                    actual: t.shape().to_vec(),
                });
            }
            check_dtype(what, t, dtype)?;
        }
    }
    for &(what, t) in columns {
        if let Some(t) = t {
            check_len(what, t, rc.cols, norm_shape)?;
            check_dtype(what, t, dtype)?;
        }
    }
    for &(what, t) in stats {
        if let Some(t) = t {
            check_len(what, t, rc.rows, stats_shape)?;
            check_dtype(what, t, DType::F32)?;
        }
    }
    Ok(())
}

/// Checks shapes, element types and buffer sharing of a forward.
pub(crate) fn forward(cfg: &NormConfig, ctx: &Context, io: &ForwardIo<'_>) -> Result<RowsCols> {
    let rc = cfg.rows_cols(io.x.shape())?;
    ctx.check_dtype_supported(io.x.dtype())?;
    let residual = io.residual.map(|r| r.residual);
    let bias = io.residual.and_then(|r| r.bias);
    let sum = io.residual.and_then(|r| r.sum);
    check_tensors(
        cfg,
        io.x,
        rc,
        &[("y", io.y), ("residual", residual), ("sum", sum)],
        &[("gamma", io.gamma), ("beta", io.beta), ("bias", bias)],
        &[("mean", io.mean), ("rstd", io.rstd)],
    )?;
    check_aliasing(
        ctx,
        &[
            Some(("x", io.x)),
            io.gamma.map(|t| ("gamma", t)),
            io.beta.map(|t| ("beta", t)),
            residual.map(|t| ("residual", t)),
            bias.map(|t| ("bias", t)),
        ],
        &[
            io.y.map(|t| ("y", t)),
            io.mean.map(|t| ("mean", t)),
            io.rstd.map(|t| ("rstd", t)),
            sum.map(|t| ("sum", t)),
        ],
    )?;
    Ok(rc)
}

/// Checks shapes, element types, statistics and buffer sharing of a backward.
pub(crate) fn backward(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &Context,
    io: &BackwardIo<'_>,
) -> Result<RowsCols> {
    let rc = cfg.rows_cols(io.x.shape())?;
    ctx.check_dtype_supported(io.x.dtype())?;
    check_tensors(
        cfg,
        io.x,
        rc,
        &[("dy", Some(io.dy)), ("dx", Some(io.dx))],
        &[
            ("gamma", io.gamma),
            ("dgamma", io.dgamma),
            ("dbeta", io.dbeta),
        ],
        &[("mean", io.mean), ("rstd", io.rstd)],
    )?;
    if kind == NormKind::Layer && io.mean.is_some() != io.rstd.is_some() {
        return Err(Error::IncompleteStats {
            given: if io.mean.is_some() { "mean" } else { "rstd" },
            missing: if io.mean.is_some() { "rstd" } else { "mean" },
        });
    }
    check_aliasing(
        ctx,
        &[
            Some(("x", io.x)),
            Some(("dy", io.dy)),
            io.gamma.map(|t| ("gamma", t)),
            io.mean.map(|t| ("mean", t)),
            io.rstd.map(|t| ("rstd", t)),
        ],
        &[
            Some(("dx", io.dx)),
            io.dgamma.map(|t| ("dgamma", t)),
            io.dbeta.map(|t| ("dbeta", t)),
        ],
    )?;
    Ok(rc)
}
