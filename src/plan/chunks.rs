//! Cutting rows into dispatches that fit the device: chunks no larger than
//! one storage binding, binding windows at aligned offsets, and 2-D grids
//! of at most 65,535 workgroups per dimension.

use crate::error::{Error, Result};
use crate::shape::DType;

/// Rows one dispatch can address: 65,535 workgroups in x times 65,535 in y.
pub const MAX_WORKGROUPS_PER_DISPATCH: u64 = 65_535 * 65_535;

/// The largest binding the crate makes, whatever the device allows: the
/// kernels index with u32, and Metal reports bindings up to its buffer
/// length, where an index past 2^32 elements would wrap silently. 2^31
/// bytes keeps every element index (2^30 f16 values) far from it.
pub const MAX_BINDING_BYTES: u64 = 1 << 31;

/// The bytes one storage binding may span on a device of `limits`.
pub fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(MAX_BINDING_BYTES)
}

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
/// the device's offset alignment, so a window may begin up to `slack` bytes
/// before its first row (the alignment, or 0 where every row-indexed tensor
/// starts aligned and a row is a multiple of the alignment: see
/// [`start_slack`]) and end up to 2 bytes past its last (whole words); that
/// is reserved. A row of exactly one binding then fits.
pub fn chunk_rows(
    rows: u64,
    dim: usize,
    row_bytes: u64,
    max_binding: u64,
    slack: u64,
    max_rows_per_dispatch: u64,
) -> Result<Vec<RowChunk>> {
    let usable = max_binding.saturating_sub(slack) & !3;
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

/// The bytes a chunk's window may start before its first row: none where
/// every row-indexed tensor starts at a multiple of `alignment` and a row is
/// one (then so is every chunk's start), else `alignment`.
pub fn start_slack(offsets: impl IntoIterator<Item = u64>, row_bytes: u64, alignment: u64) -> u64 {
    let aligned = row_bytes % alignment == 0 && offsets.into_iter().all(|o| o % alignment == 0);
    if aligned { 0 } else { alignment }
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
    fn a_row_of_exactly_one_binding_fits_where_it_starts_aligned() {
        let max = 128u64 << 20;
        let slack = start_slack([0, 256], max, 256);
        assert_eq!(slack, 0);
        let chunks = chunk_rows(2, (max / 4) as usize, max, max, slack, u64::MAX).unwrap();
        assert_eq!(chunks.len(), 2, "a row a chunk");
        for c in &chunks {
            let w = binding_window(c.first_row * max, c.rows * max / 4, 256);
            assert!(w.size <= max && w.offset % 256 == 0, "{w:?}");
        }
        // At an unaligned offset the slack is needed, and the row is refused.
        let slack = start_slack([4], max, 256);
        assert!(chunk_rows(2, (max / 4) as usize, max, max, slack, u64::MAX).is_err());
    }

    #[test]
    fn bindings_stop_at_two_gibibytes() {
        let limits = |max| wgpu::Limits {
            max_storage_buffer_binding_size: max,
            ..Default::default()
        };
        assert_eq!(max_binding(&limits(4 << 30)), 1 << 31);
        assert_eq!(max_binding(&limits(128 << 20)), 128 << 20);
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
