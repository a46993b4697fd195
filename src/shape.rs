//! Shapes and element types: the leaf every layer above reads.
//!
//! A normalisation sees a tensor as `rows × cols`: `cols` is the product of
//! the dimensions from `axis` on (the normalised ones), `rows` that of the
//! dimensions before it (ONNX's and PyTorch's convention).

pub use crate::dtype::DType;
use crate::error::{Error, Result};

/// Elements in `shape`: `EmptyShape` when a dimension is zero or the shape
/// has no dimension at all, `ShapeOverflow` when the product overflows.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::EmptyShape {
            shape: shape.to_vec(),
        });
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::ShapeOverflow {
            shape: shape.to_vec(),
            bits: usize::BITS,
        })
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

/// A tensor of `shape` normalised from `axis` on, seen as rows × cols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowsCols {
    /// Product of the dimensions before the axis.
    pub rows: usize,
    /// Product of the dimensions from the axis on (the normalised values per row).
    pub cols: usize,
}

impl RowsCols {
    /// The rows and cols of `shape` normalised from `axis`; errors for an
    /// empty shape or an axis outside `-rank..rank`.
    pub fn of(shape: &[usize], axis: isize) -> Result<Self> {
        let axis = normalized_axis(axis, shape.len())?;
        element_count(shape)?;
        Ok(RowsCols {
            rows: shape[..axis].iter().product(),
            cols: shape[axis..].iter().product(),
        })
    }
}

/// The normalised dims, `shape[axis..]`: the shape of gamma, beta and
/// their gradients.
pub(crate) fn norm_shape(shape: &[usize], axis: isize) -> Result<Vec<usize>> {
    Ok(shape[normalized_axis(axis, shape.len())?..].to_vec())
}

/// The shape of per-row statistics: `[d0 … d(axis−1), 1, …, 1]`.
pub(crate) fn stats_shape(shape: &[usize], axis: isize) -> Result<Vec<usize>> {
    let axis = normalized_axis(axis, shape.len())?;
    Ok(shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < axis { d } else { 1 })
        .collect())
}
