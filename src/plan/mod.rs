//! The plan: which kernel variant runs a shape on a device, and how rows are
//! cut into dispatches that fit its limits. Pure: it reads a shape, the
//! device's [`Capabilities`], its limits and a table of tuned choices, and
//! does no GPU work.
//!
//! - [`specs`]: one descriptor per kernel variant (files, entry points,
//!   needs, longest row, rows per workgroup, override constants);
//! - [`LADDER`] and [`BACKWARD_LADDER`]: the default choice, by adapter
//!   class, rows and row length;
//! - [`TunedTable`]: the autotuner's picks, which override the ladder;
//! - [`chunk_rows`], [`binding_window_of`], [`grid`]: dispatches within one
//!   storage binding and 65,535 workgroups per dimension.

pub mod backward;
pub mod chunks;
pub mod forward;
pub mod grouped;
pub mod specs;
pub mod tuned;

pub use backward::{BACKWARD_LADDER, BackwardPlan, BackwardRung, FUSED_MAX_ROWS, MAX_PARTS};
pub use chunks::{
    BindingWindow, MAX_BINDING_BYTES, MAX_WORKGROUPS_PER_DISPATCH, RowChunk, binding_window,
    binding_window_of, chunk_rows, grid, max_binding, start_slack,
};
pub use forward::{
    GPU_MIN_PIECE, GPU_MIN_WORKGROUPS, GPU_SPLIT_ROWS, LADDER, LayerNormPlan, Rung, SPLIT_PIECE,
    split_pieces,
};
pub use grouped::{
    APPLY_GROUPS, GROUPED_LANES, GroupedEntry, GroupedPlan, GroupedView, MAX_LANE_LOOP, MAX_PIECES,
    PIECE_VALUES, grouped_pieces,
};
pub use specs::{
    BACKWARD_KERNELS, BackwardKernel, BackwardSpec, COMBINE_LANES, COPY_LANES, CopyKernel, Entry,
    KERNELS, Kernel, KernelSpec, ROW_CACHE_VALUES, ROWS_PER_BLOCK, Reduction, Roles, Rows,
};
pub use tuned::TunedTable;

pub use crate::caps::{AdapterClass, Capabilities};
