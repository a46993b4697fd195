//! Cutting rows into dispatches that fit the device: chunks no larger than
//! one storage binding, binding windows at aligned offsets, and 2-D grids
//! of at most 65,535 workgroups per dimension.

use crate::error::{Error, Result};
use crate::shape::DType;

/// Rows one dispatch can address: 65,535 workgroups in x times 65,535 in y.
pub const MAX_WORKGROUPS_PER_DISPATCH: u64 = 65_535 * 65_535;

/// A run of consecutive rows encoded as one dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowChunk {
    /// First row of the chunk.
    pub first_row: u64,
    /// Rows in the chunk.
    pub rows: u64,
}

/// Cuts `rows` rows into chunks so that every row-indexed tensor's part of a
/// chunk fits in one storage binding.
///
/// `row_bytes` is the largest number of bytes a row takes in any tensor bound
/// per chunk (dim × 4 for f32 x and y). A binding must start at a multiple of
/// `offset_alignment`, so a window may begin up to `offset_alignment - 2`
/// bytes before its first row and end up to 2 bytes past its last (whole
/// words); that slack is reserved.
pub fn chunk_rows(
    rows: u64,
    dim: usize,
    row_bytes: u64,
    max_binding: u64,
    offset_alignment: u64,
    max_rows_per_dispatch: u64,
) -> Result<Vec<RowChunk>> {
    let usable = max_binding.saturating_sub(offset_alignment) & !3;
    let rows_per_chunk = (usable / row_bytes).min(max_rows_per_dispatch);
    if rows_per_chunk == 0 {
        return Err(Error::RowTooLarge {
            dim,
            row_bytes,
            max_binding,
        });
    }
    let mut chunks = Vec::with_capacity(rows.div_ceil(rows_per_chunk) as usize);
    let mut first_row = 0;
    while first_row < rows {
        let n = rows_per_chunk.min(rows - first_row);
        chunks.push(RowChunk { first_row, rows: n });
        first_row += n;
    }
    Ok(chunks)
}

/// Where one tensor's slice of a chunk is bound: the binding starts at the
/// aligned byte `offset` of the buffer, spans `size` bytes, and the slice's
/// first element is element `base` of the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingWindow {
    /// Byte offset of the binding in the buffer (a multiple of the alignment).
    pub offset: u64,
    /// Bytes bound.
    pub size: u64,
    /// Index of the slice's first element inside the binding.
    pub base: u32,
}

/// The binding window for `elements` f32 values starting at byte `start` of a buffer.
pub fn binding_window(start: u64, elements: u64, offset_alignment: u64) -> BindingWindow {
    binding_window_of(start, elements, DType::F32, offset_alignment)
}

/// The binding window for `elements` values of `dtype` starting at byte
/// `start` of a buffer: from the aligned offset at or before `start` to the
/// next whole 4-byte word after the last value.
pub fn binding_window_of(
    start: u64,
    elements: u64,
    dtype: DType,
    offset_alignment: u64,
) -> BindingWindow {
    let offset = start - start % offset_alignment;
    BindingWindow {
        offset,
        size: (start + elements * dtype.size_bytes() - offset).next_multiple_of(4),
        base: ((start - offset) / dtype.size_bytes()) as u32,
    }
}

/// The 2-D grid of `workgroups` workgroups: x takes up to 65,535 and y counts
/// the rest (the shaders flatten `y * nx + x`).
pub fn grid(workgroups: u64) -> (u32, u32) {
    let x = workgroups.min(65_535);
    (x as u32, workgroups.div_ceil(x) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_and_fit_the_binding() {
        let (max_binding, align) = (1 << 20, 256);
        for dim in [1usize, 3, 768, 4097, 65_537] {
            let row_bytes = dim as u64 * 4;
            let rows = 3 * max_binding / row_bytes + 7;
            let chunks = chunk_rows(rows, dim, row_bytes, max_binding, align, u64::MAX).unwrap();
            let mut next = 0;
            for c in &chunks {
                assert_eq!(c.first_row, next);
                next += c.rows;
                // Worst case: the tensor starts 4 bytes after an aligned offset.
                let w = binding_window(4 + c.first_row * row_bytes, c.rows * dim as u64, align);
                assert!(w.size <= max_binding, "dim {dim}: window {w:?}");
                assert_eq!(w.offset % align, 0);
            }
            assert_eq!(next, rows);
        }
        let capped = chunk_rows(1000, 1, 4, 1 << 20, 256, 300).unwrap();
        assert_eq!(capped.len(), 4, "a dispatch's row cap cuts chunks too");
    }

    #[test]
    fn a_row_larger_than_a_binding_is_an_error() {
        let err = chunk_rows(1, 1 << 20, 4 << 20, 1 << 20, 256, u64::MAX).unwrap_err();
        assert!(
            matches!(err, Error::RowTooLarge { dim: 1_048_576, .. }),
            "{err}"
        );
    }

    #[test]
    fn grid_covers_every_workgroup() {
        for n in [1u64, 65_535, 65_536, 70_000, 65_535 * 65_535] {
            let (x, y) = grid(n);
            assert!(x as u64 * y as u64 >= n && x <= 65_535 && y <= 65_535);
            assert!(
                (x as u64) * (y as u64 - 1) < n,
                "no empty last line of the grid"
            );
        }
    }
}
