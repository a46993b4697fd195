//! The dispatch plan: which kernel variant runs a shape on an adapter, and how
//! the rows are cut into dispatches that fit the device's limits.
//!
//! Everything that depends on (dim, rows, adapter) is decided here, in one
//! place, from small tables, so the ops only encode what the plan says.

use crate::context::Capabilities;
use crate::error::{Error, Result};

/// How the lanes of a workgroup combine their partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// `subgroupAdd` within each subgroup, then one workgroup-memory slot per
    /// subgroup (`shaders/reduce_subgroup.wgsl`). Needs `Features::SUBGROUP`.
    Subgroup,
    /// A tree in workgroup memory (`shaders/reduce_workgroup.wgsl`). Runs everywhere.
    Workgroup,
}

/// The ladder of workgroup sizes by row length: the first rung whose
/// `max_dim` is at least the row's dim gives the lanes per row. Small rows
/// get few lanes, so that no lane idles through the reduction; long rows get
/// many, so that no lane loops too often (llvmpipe stops an invocation's
/// loops after 65,535 iterations; see `shaders/layer_norm.wgsl`).
///
/// | dim up to | lanes per row (one workgroup) | vec4 loads per lane |
/// |-----------|-------------------------------|---------------------|
/// | 256       | 32                            | ≤ 2                 |
/// | 2,048     | 64                            | ≤ 8                 |
/// | 8,192     | 128                           | ≤ 16                |
/// | 4,194,304 | 256                           | ≤ 4,096             |
/// | larger    | 1,024 (or the device maximum) | ≤ 8,192 at 2^25     |
pub const WORKGROUP_LADDER: &[(usize, u32)] = &[
    (256, 32),
    (2048, 64),
    (8192, 128),
    (1 << 22, 256),
    (usize::MAX, 1024),
];

/// Rows one dispatch can address: 65,535 workgroups in x times 65,535 in y.
pub const MAX_ROWS_PER_DISPATCH: u64 = 65_535 * 65_535;

/// What the plan picked for a layer-norm forward of rows of `dim` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerNormPlan {
    /// Lanes in the workgroup that normalises one row.
    pub workgroup_size: u32,
    /// How those lanes reduce.
    pub reduction: Reduction,
}

impl LayerNormPlan {
    /// Picks the workgroup size from [`WORKGROUP_LADDER`] (capped by the
    /// device) and the subgroup reduction wherever every subgroup is full.
    pub fn new(dim: usize, capabilities: Capabilities, limits: &wgpu::Limits) -> Self {
        let device_max = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x);
        let rung = WORKGROUP_LADDER
            .iter()
            .find(|(max_dim, _)| dim <= *max_dim)
            .map_or(256, |(_, lanes)| *lanes);
        // The largest power of two the device allows (at least 64: WebGPU's minimum).
        let device_pow2 = 1u32 << (31 - device_max.max(64).leading_zeros());
        let workgroup_size = rung.min(device_pow2);
        let reduction = match capabilities.subgroups {
            Some(sizes) if sizes.max <= workgroup_size && workgroup_size % sizes.max == 0 => {
                Reduction::Subgroup
            }
            _ => Reduction::Workgroup,
        };
        LayerNormPlan {
            workgroup_size,
            reduction,
        }
    }

    /// The same plan with the reduction forced. The subgroup reduction needs
    /// `Features::SUBGROUP` (`Error::MissingFeature` without it) and a
    /// workgroup that holds whole subgroups (the workgroup grows to one
    /// subgroup if it is smaller).
    pub fn with_reduction(
        mut self,
        reduction: Reduction,
        capabilities: Capabilities,
        adapter: &str,
    ) -> Result<Self> {
        if reduction == Reduction::Subgroup {
            let sizes = capabilities
                .subgroups
                .ok_or_else(|| Error::MissingFeature {
                    op: "the subgroup reduction",
                    feature: "SUBGROUP",
                    adapter: adapter.to_string(),
                })?;
            self.workgroup_size = self.workgroup_size.max(sizes.max);
        }
        self.reduction = reduction;
        Ok(self)
    }
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
/// per chunk (dim × 4 for x and y). A binding must start at a multiple of
/// `offset_alignment`, so a window may begin up to `offset_alignment - 4`
/// bytes before its first row; that slack is reserved.
pub fn chunk_rows(
    rows: u64,
    dim: usize,
    row_bytes: u64,
    max_binding: u64,
    offset_alignment: u64,
) -> Result<Vec<RowChunk>> {
    let usable = max_binding.saturating_sub(offset_alignment.saturating_sub(4)) & !3;
    let rows_per_chunk = (usable / row_bytes).min(MAX_ROWS_PER_DISPATCH);
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
    /// Index of the slice's first f32 inside the binding.
    pub base: u32,
}

/// The binding window for `elements` f32 values starting at byte `start` of a buffer.
pub fn binding_window(start: u64, elements: u64, offset_alignment: u64) -> BindingWindow {
    let offset = start - start % offset_alignment;
    BindingWindow {
        offset,
        size: start + elements * 4 - offset,
        base: ((start - offset) / 4) as u32,
    }
}

/// The 2-D grid of workgroups for `rows` rows, one workgroup per row: x takes
/// up to 65,535 and y counts the rest (the shader flattens `y * nx + x`).
pub fn row_grid(rows: u64) -> (u32, u32) {
    let x = rows.min(65_535);
    (x as u32, rows.div_ceil(x) as u32)
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
            let chunks = chunk_rows(rows, dim, row_bytes, max_binding, align).unwrap();
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
    }

    #[test]
    fn a_row_larger_than_a_binding_is_an_error() {
        let err = chunk_rows(1, 1 << 20, 4 << 20, 1 << 20, 256).unwrap_err();
        assert!(
            matches!(err, Error::RowTooLarge { dim: 1_048_576, .. }),
            "{err}"
        );
    }

    #[test]
    fn grid_covers_rows_beyond_65535() {
        for rows in [1u64, 65_535, 65_536, 70_000, 65_535 * 65_535] {
            let (x, y) = row_grid(rows);
            assert!(x as u64 * y as u64 >= rows && x <= 65_535 && y <= 65_535);
            assert!(
                (x as u64) * (y as u64 - 1) < rows,
                "no empty last line of the grid"
            );
        }
    }

    #[test]
    fn ladder_is_sorted_and_plans_respect_the_device() {
        assert!(WORKGROUP_LADDER.windows(2).all(|w| w[0].0 < w[1].0));
        let caps = Capabilities {
            timestamps: false,
            timestamps_inside_passes: false,
            subgroups: Some(crate::SubgroupSizes { min: 8, max: 8 }),
            shader_f16: false,
        };
        let small = wgpu::Limits::default(); // 256 invocations
        assert_eq!(LayerNormPlan::new(1, caps, &small).workgroup_size, 32);
        assert_eq!(LayerNormPlan::new(768, caps, &small).workgroup_size, 64);
        assert_eq!(
            LayerNormPlan::new(1 << 24, caps, &small).workgroup_size,
            256
        );
        assert_eq!(
            LayerNormPlan::new(1, caps, &small).reduction,
            Reduction::Subgroup
        );
        let wide = Capabilities {
            subgroups: Some(crate::SubgroupSizes { min: 64, max: 64 }),
            ..caps
        };
        assert_eq!(
            LayerNormPlan::new(1, wide, &small).reduction,
            Reduction::Workgroup
        );
        assert_eq!(
            LayerNormPlan::new(4096, wide, &small).reduction,
            Reduction::Subgroup
        );
    }
}
