//! The backward's ladder: which dx kernel runs a shape, with how many lanes
//! and how many rows each dgamma/dbeta partial sums ([`BACKWARD_LADDER`]).

use crate::caps::{AdapterClass, Capabilities};
use crate::error::{Error, Result};
use crate::plan::forward::{ANY, GPU_MIN_WORKGROUPS, GPU_SPLIT_ROWS, device_lanes, split_pieces};
use crate::plan::specs::{BackwardKernel, Reduction};

use AdapterClass::{Cpu, Gpu};
const SUBGROUP: Reduction = Reduction::Subgroup;
const TREE: Reduction = Reduction::Workgroup;

/// What the plan picked for a backward (LayerNorm or RMSNorm) of rows of
/// `dim` values: the dx kernel, its lanes, its pieces per row, and how many
/// rows each dgamma/dbeta partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackwardPlan {
    /// The dx kernel.
    pub kernel: BackwardKernel,
    /// Lanes per workgroup of the dx kernel.
    pub workgroup_size: u32,
    /// Pieces each row is cut into (split-row kernel; 1 otherwise).
    pub splits: u32,
    /// Rows summed by one lane of the first dgamma/dbeta stage.
    pub rows_per_part: u32,
}

/// One rung of [`BACKWARD_LADDER`]: up to `max_rows` rows of up to `max_dim`
/// values on an adapter of `class` (`None`: any) run `kernel` with
/// `workgroup_size` lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardRung {
    /// The adapter class, or any.
    pub class: Option<AdapterClass>,
    /// The most rows the rung takes.
    pub max_rows: usize,
    /// The longest row the rung takes.
    pub max_dim: usize,
    /// The dx kernel.
    pub kernel: BackwardKernel,
    /// Lanes per workgroup.
    pub workgroup_size: u32,
}

const fn back(
    class: Option<AdapterClass>,
    max_rows: usize,
    max_dim: usize,
    kernel: BackwardKernel,
    workgroup_size: u32,
) -> BackwardRung {
    BackwardRung {
        class,
        max_rows,
        max_dim,
        kernel,
        workgroup_size,
    }
}

/// The backward's ladder: the first rung that matches the adapter's class,
/// takes the shape, and whose kernel the adapter can run. A lane walks its
/// share of a row twice (sums, then dx), and llvmpipe stops an invocation
/// after 65,535 loop iterations: hence 8-lane workgroups only up to 131,072
/// values (the backward walks scalars), four rows per lane at most
/// [`FUSED_MAX_ROWS`] rows (its dgamma parts are four rows), pieces of
/// [`SPLIT_PIECE`](crate::plan::SPLIT_PIECE) values (more on GPUs:
/// [`split_pieces`]), and 1,024 lanes for the longest rows. As in the
/// forward's [`LADDER`](crate::plan::LADDER), few long rows are split so that they fill the
/// device, and CPU adapters run 8-lane workgroups (the forward's reason).
/// On lavapipe that took 1x32x65536 from 8.1 to 6.5 times a copy and
/// 1x1x1048576 from 11 to 8.6; four rows per lane and 8-lane workgroups were
/// within noise of each other on rows of 8,192–16,384 values.
///
/// | class | rows up to | dim up to | dx kernel                   | lanes |
/// |-------|------------|-----------|-----------------------------|-------|
/// | GPU   | any        | 8,192     | rows cached, subgroup       | 256   |
/// | GPU   | any        | 8,192     | rows cached, tree           | 256   |
/// | CPU   | 240,000    | 4,096     | four rows per lane          | 64    |
/// | any   | any        | 1,024     | row per workgroup, subgroup | 64    |
/// | any   | any        | 1,024     | row per workgroup, tree     | 64    |
/// | CPU   | 63         | any       | split row, subgroup         | 8     |
/// | CPU   | 63         | any       | split row, tree             | 8     |
/// | GPU   | 511        | any       | split row, subgroup         | 256   |
/// | GPU   | 511        | any       | split row, tree             | 256   |
/// | CPU   | any        | 131,072   | row per workgroup, subgroup | 8     |
/// | CPU   | any        | 131,072   | row per workgroup, tree     | 8     |
/// | any   | any        | 4,194,304 | row per workgroup, subgroup | 256   |
/// | any   | any        | 4,194,304 | row per workgroup, tree     | 256   |
/// | any   | any        | larger    | row per workgroup, subgroup | 1,024 |
/// | any   | any        | larger    | row per workgroup, tree     | 1,024 |
pub const BACKWARD_LADDER: &[BackwardRung] = &[
    back(
        Some(Gpu),
        ANY,
        8192,
        BackwardKernel::RowsCached(SUBGROUP),
        256,
    ),
    back(Some(Gpu), ANY, 8192, BackwardKernel::RowsCached(TREE), 256),
    back(
        Some(Cpu),
        FUSED_MAX_ROWS,
        4096,
        BackwardKernel::RowPerLane,
        64,
    ),
    back(
        None,
        ANY,
        1024,
        BackwardKernel::RowPerWorkgroup(SUBGROUP),
        64,
    ),
    back(None, ANY, 1024, BackwardKernel::RowPerWorkgroup(TREE), 64),
    back(Some(Cpu), 63, ANY, BackwardKernel::SplitRow(SUBGROUP), 8),
    back(Some(Cpu), 63, ANY, BackwardKernel::SplitRow(TREE), 8),
    back(
        Some(Cpu),
        ANY,
        1 << 17,
        BackwardKernel::RowPerWorkgroup(SUBGROUP),
        8,
    ),
    back(
        Some(Cpu),
        ANY,
        1 << 17,
        BackwardKernel::RowPerWorkgroup(TREE),
        8,
    ),
    back(
        Some(Gpu),
        GPU_SPLIT_ROWS,
        ANY,
        BackwardKernel::SplitRow(SUBGROUP),
        256,
    ),
    back(
        Some(Gpu),
        GPU_SPLIT_ROWS,
        ANY,
        BackwardKernel::SplitRow(TREE),
        256,
    ),
    back(
        None,
        ANY,
        1 << 22,
        BackwardKernel::RowPerWorkgroup(SUBGROUP),
        256,
    ),
    back(
        None,
        ANY,
        1 << 22,
        BackwardKernel::RowPerWorkgroup(TREE),
        256,
    ),
    back(
        None,
        ANY,
        ANY,
        BackwardKernel::RowPerWorkgroup(SUBGROUP),
        1024,
    ),
    back(None, ANY, ANY, BackwardKernel::RowPerWorkgroup(TREE), 1024),
];

/// The most partial sums per column the dgamma/dbeta stages aim for.
pub const MAX_PARTS: usize = 1024;

/// The most rows of the four-rows-per-lane backward: its dgamma/dbeta parts
/// are four rows each, and the second stage's lanes loop over all of them
/// (under llvmpipe's 65,535 iterations).
pub const FUSED_MAX_ROWS: usize = 240_000;

impl BackwardPlan {
    /// The plan for `rows` rows of `dim` values: the first rung of
    /// [`BACKWARD_LADDER`] that fits, lanes capped by the device, and at
    /// least 64 rows per part, more when there would be over [`MAX_PARTS`].
    pub fn new(
        rows: usize,
        dim: usize,
        capabilities: Capabilities,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
    ) -> Self {
        let class = AdapterClass::of(info);
        let rung = BACKWARD_LADDER
            .iter()
            .find(|r| {
                r.class.is_none_or(|c| c == class)
                    && rows <= r.max_rows
                    && dim <= r.max_dim
                    && (!r.kernel.needs_subgroups() || capabilities.subgroups.is_some())
            })
            .expect("the backward ladder ends with a rung for any shape without subgroups");
        Self::from_rung(*rung, class, rows, dim, capabilities, limits)
    }

    fn from_rung(
        rung: BackwardRung,
        class: AdapterClass,
        rows: usize,
        dim: usize,
        capabilities: Capabilities,
        limits: &wgpu::Limits,
    ) -> Self {
        let mut lanes = rung.workgroup_size.min(device_lanes(limits));
        if let (true, Some(sizes)) = (rung.kernel.needs_subgroups(), capabilities.subgroups) {
            lanes = lanes.max(sizes.max);
        }
        let splits = match rung.kernel {
            BackwardKernel::SplitRow(_) => split_pieces(rows, dim, class),
            _ => 1,
        };
        let rows_per_part = match rung.kernel {
            // Each lane's four rows are a part.
            BackwardKernel::RowPerLane => 4,
            // A workgroup per part: enough parts to fill a GPU.
            BackwardKernel::RowsCached(_) => {
                rows.div_ceil(GPU_MIN_WORKGROUPS).clamp(1, 32_768) as u32
            }
            _ => rows.div_ceil(MAX_PARTS).clamp(64, 32_768) as u32,
        };
        BackwardPlan {
            kernel: rung.kernel,
            workgroup_size: lanes,
            splits,
            rows_per_part,
        }
    }

    /// The plan for a dx kernel chosen explicitly, with the lanes of its
    /// narrowest rung that takes `dim`. `MissingFeature` without subgroups
    /// for the subgroup reductions; `KernelUnsuitable` for rows of over
    /// 16,384 values or over [`FUSED_MAX_ROWS`] rows on the lane-per-row
    /// kernel (llvmpipe's loop cap).
    pub fn with_kernel(
        kernel: BackwardKernel,
        rows: usize,
        dim: usize,
        capabilities: Capabilities,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
    ) -> Result<Self> {
        if kernel == BackwardKernel::RowPerLane && (dim > 16_384 || rows > FUSED_MAX_ROWS) {
            return Err(Error::KernelUnsuitable {
                kernel: kernel.name(),
                reason: format!(
                    "{rows} rows of {dim} values exceed its maximum of {FUSED_MAX_ROWS} rows of 16384"
                ),
            });
        }
        if kernel.needs_subgroups() && capabilities.subgroups.is_none() {
            return Err(Error::MissingFeature {
                op: kernel.name(),
                feature: "SUBGROUP",
                adapter: info.name.clone(),
            });
        }
        let class = AdapterClass::of(info);
        let rung = BACKWARD_LADDER
            .iter()
            .filter(|r| r.kernel == kernel && dim <= r.max_dim)
            // The adapter's own class first, then any.
            .min_by_key(|r| (r.class.is_some_and(|c| c != class), r.max_dim))
            .copied()
            .unwrap_or(back(None, ANY, ANY, kernel, 64));
        Ok(Self::from_rung(
            rung,
            class,
            rows,
            dim,
            capabilities,
            limits,
        ))
    }

    /// `row-per-lane, 64 lanes, 64 rows per part`,
    /// `split-row/subgroup, 256 lanes, 128 pieces, 64 rows per part` etc.
    pub fn describe(&self) -> String {
        let pieces = match self.kernel {
            BackwardKernel::SplitRow(_) => format!(", {} pieces", self.splits),
            _ => String::new(),
        };
        format!(
            "{}, {} lanes{pieces}, {} rows per part",
            self.kernel.name(),
            self.workgroup_size,
            self.rows_per_part
        )
    }
}
