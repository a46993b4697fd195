//! The dispatch plan: which kernel variant runs a shape on an adapter, and how
//! the rows are cut into dispatches that fit the device's limits.
//!
//! Everything that depends on (dim, rows, adapter) is decided here, in one
//! place, from small tables, so the ops only encode what the plan says.

use crate::context::Capabilities;
use crate::error::{Error, Result};
use crate::tensor::DType;

/// How the lanes of a workgroup combine their partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// `subgroupAdd` within each subgroup, then one workgroup-memory slot per
    /// subgroup (`shaders/reduce_subgroup.wgsl`; the row block's workgroup is
    /// one subgroup and sums with `subgroupAdd` alone). Needs `Features::SUBGROUP`.
    Subgroup,
    /// Without subgroups: a tree in workgroup memory
    /// (`shaders/reduce_workgroup.wgsl`; the row block instead writes its
    /// lanes' moments to a buffer and combines them in a dispatch of their
    /// own). Runs everywhere.
    Workgroup,
}

/// Which layer-norm kernel runs (each is a file in `shaders/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `layer_norm_row_per_lane.wgsl`: one invocation per block of
    /// [`ROWS_PER_BLOCK`] rows, no barriers; whole vec4s where the rows are
    /// vec4-aligned. For CPU adapters.
    RowPerLane,
    /// `layer_norm_row_per_subgroup.wgsl`: one subgroup per row, reduced with
    /// `subgroupAdd`, no barriers. Needs `Features::SUBGROUP`.
    RowPerSubgroup,
    /// `layer_norm_row_per_workgroup.wgsl`: one workgroup per row, with the
    /// given reduction across its lanes.
    RowPerWorkgroup(Reduction),
    /// `layer_norm_row_block.wgsl`: one workgroup per block of
    /// [`ROWS_PER_BLOCK`] rows, its lanes sharing the columns, no barriers:
    /// with subgroups the workgroup is one subgroup and sums with
    /// `subgroupAdd`; without, the lanes' moments are combined in a dispatch
    /// of their own. For CPU adapters' medium and long rows.
    RowBlock(Reduction),
    /// `layer_norm_split_row.wgsl`: each row cut into pieces, one workgroup
    /// per piece (moments, combine, apply), for long rows and few of them.
    SplitRow(Reduction),
}

impl Kernel {
    /// Every kernel, in the order the autotuner tries them.
    pub const ALL: [Kernel; 8] = [
        Kernel::RowPerLane,
        Kernel::RowPerSubgroup,
        Kernel::RowPerWorkgroup(Reduction::Subgroup),
        Kernel::RowPerWorkgroup(Reduction::Workgroup),
        Kernel::RowBlock(Reduction::Subgroup),
        Kernel::RowBlock(Reduction::Workgroup),
        Kernel::SplitRow(Reduction::Subgroup),
        Kernel::SplitRow(Reduction::Workgroup),
    ];

    /// A short name: `row-per-lane`, `row-per-subgroup`,
    /// `row-per-workgroup/subgroup`, `row-per-workgroup/workgroup`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::RowPerLane => "row-per-lane",
            Kernel::RowPerSubgroup => "row-per-subgroup",
            Kernel::RowPerWorkgroup(Reduction::Subgroup) => "row-per-workgroup/subgroup",
            Kernel::RowPerWorkgroup(Reduction::Workgroup) => "row-per-workgroup/workgroup",
            Kernel::RowBlock(Reduction::Subgroup) => "row-block/subgroup",
            Kernel::RowBlock(Reduction::Workgroup) => "row-block/workgroup",
            Kernel::SplitRow(Reduction::Subgroup) => "split-row/subgroup",
            Kernel::SplitRow(Reduction::Workgroup) => "split-row/workgroup",
        }
    }

    /// Whether the kernel needs subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        matches!(
            self,
            Kernel::RowPerSubgroup
                | Kernel::RowPerWorkgroup(Reduction::Subgroup)
                | Kernel::RowBlock(Reduction::Subgroup)
                | Kernel::SplitRow(Reduction::Subgroup)
        )
    }

    /// The longest row the kernel takes: a lane of the one-lane-per-row and
    /// one-subgroup-per-row kernels walks a whole row (or an eighth of it), and
    /// llvmpipe stops an invocation's loops after 65,535 iterations.
    pub fn max_dim(self) -> usize {
        match self {
            Kernel::RowPerLane => 16_384,
            Kernel::RowPerSubgroup => 65_536,
            Kernel::RowBlock(_) => 131_072,
            Kernel::RowPerWorkgroup(_) | Kernel::SplitRow(_) => usize::MAX,
        }
    }
}

/// What kind of processor runs the shaders: the plan's first key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// A CPU running the shaders (Mesa's llvmpipe / lavapipe, WARP, SwiftShader).
    Cpu,
    /// Anything else: a GPU.
    Gpu,
}

impl AdapterClass {
    /// The class of an adapter, from its reported device type.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        match info.device_type {
            wgpu::DeviceType::Cpu => AdapterClass::Cpu,
            _ => AdapterClass::Gpu,
        }
    }
}

/// One rung of the ladder: up to `max_rows` rows of up to `max_dim` values
/// on an adapter of `class` run `kernel` with `workgroup_size` lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    /// The adapter class the rung is for.
    pub class: AdapterClass,
    /// The most rows the rung takes.
    pub max_rows: usize,
    /// The longest row the rung takes.
    pub max_dim: usize,
    /// The kernel.
    pub kernel: Kernel,
    /// Lanes per workgroup.
    pub workgroup_size: u32,
}

const fn rung(
    class: AdapterClass,
    max_rows: usize,
    max_dim: usize,
    kernel: Kernel,
    workgroup_size: u32,
) -> Rung {
    Rung {
        class,
        max_rows,
        max_dim,
        kernel,
        workgroup_size,
    }
}

use AdapterClass::{Cpu, Gpu};
const SUBGROUP: Reduction = Reduction::Subgroup;
const TREE: Reduction = Reduction::Workgroup;

/// The ladder: the first rung that matches the adapter's class, takes the
/// shape, and whose kernel the adapter can run, is the default plan (the
/// autotuner may pick another). The reasons are in the kernel files: on CPU
/// adapters barriers and buffer accesses are what cost; on GPUs a subgroup
/// per row suits short rows and a workgroup per row long ones, with more
/// lanes the longer the row; a few long rows are split across workgroups so
/// that they still fill the device.
///
/// On CPU adapters the workgroup kernels run 8 lanes: llvmpipe runs 8 lanes
/// as one SIMD group, so a workgroup of 8 passes its barriers without the
/// coroutine switch that each group of 8 lanes costs at every barrier in a
/// larger workgroup. On lavapipe that took 1x1x1048576 from 7.0 to 3.0 times
/// a copy (256, 64, 32, 16, 8 lanes: 7.0, 5.4, 4.5, 3.7, 3.0) and
/// 1x32x65536 from 5.7 to 3.0. The 8-lane rungs stop where a lane's two
/// walks over its share of a row would near llvmpipe's 65,535 iterations.
///
/// On CPU adapters, rows are taken eight at a time where they are many, so
/// that gamma and beta are read once for eight rows: up to 1,024 values
/// each lane walks its own eight rows (row per lane); beyond, the lanes of
/// an 8-lane workgroup walk the same eight rows side by side (row block),
/// which measured better on long rows; neither has a barrier (the row block
/// sums its lanes with `subgroupAdd`, or without subgroups in a dispatch of
/// its own). On lavapipe / GL (`wgpu-norm bench --all-kernels`), row per lane
/// against row block (the latter still with workgroup-memory sums on GL):
/// 1.70 / 1.87 and 1.77 / 2.04 at 4096x768, 1.95 / 1.79 and 2.08 / 1.94 at
/// 1024x2048. Fewer than 16 rows (under two
/// blocks, one per core) go to the split-row kernel, which spreads a row over
/// many workgroups: at 16x65536 the row block measured 1.85–2.05 and split
/// row 2.91–3.06, at 8x65536 3.35–3.50 against 2.79–3.00.
///
/// | class | rows up to | dim up to | kernel                      | lanes |
/// |-------|------------|-----------|-----------------------------|-------|
/// | CPU   | any        | 1,024     | row per lane (8 rows/lane)  | 32    |
/// | CPU   | 15         | any       | split row, subgroup         | 8     |
/// | CPU   | 15         | any       | split row, tree             | 8     |
/// | CPU   | any        | 131,072   | row block, subgroup         | 8     |
/// | CPU   | any        | 131,072   | row block, no subgroups     | 8     |
/// | GPU   | any        | 1,024     | row per subgroup            | 128   |
/// | GPU   | any        | 256       | row per workgroup, tree     | 32    |
/// | GPU   | any        | 2,048     | row per workgroup, subgroup | 64    |
/// | GPU   | any        | 2,048     | row per workgroup, tree     | 64    |
/// | GPU   | any        | 8,192     | row per workgroup, subgroup | 128   |
/// | GPU   | any        | 8,192     | row per workgroup, tree     | 128   |
/// | GPU   | 63         | any       | split row, subgroup         | 256   |
/// | GPU   | 63         | any       | split row, tree             | 256   |
/// | CPU   | any        | 262,144   | row per workgroup, subgroup | 8     |
/// | CPU   | any        | 262,144   | row per workgroup, tree     | 8     |
/// | any   | any        | 4,194,304 | row per workgroup, subgroup | 256   |
/// | any   | any        | 4,194,304 | row per workgroup, tree     | 256   |
/// | any   | any        | larger    | row per workgroup, subgroup | 1,024 |
/// | any   | any        | larger    | row per workgroup, tree     | 1,024 |
pub const LADDER: &[Rung] = &[
    rung(Cpu, ANY, 1024, Kernel::RowPerLane, 32),
    rung(Cpu, 15, ANY, Kernel::SplitRow(SUBGROUP), 8),
    rung(Cpu, 15, ANY, Kernel::SplitRow(TREE), 8),
    rung(Cpu, ANY, 131_072, Kernel::RowBlock(SUBGROUP), 8),
    rung(Cpu, ANY, 131_072, Kernel::RowBlock(TREE), 8),
    rung(Gpu, ANY, 1024, Kernel::RowPerSubgroup, 128),
    rung(Gpu, ANY, 256, Kernel::RowPerWorkgroup(TREE), 32),
    rung(Gpu, ANY, 2048, Kernel::RowPerWorkgroup(SUBGROUP), 64),
    rung(Gpu, ANY, 2048, Kernel::RowPerWorkgroup(TREE), 64),
    rung(Gpu, ANY, 8192, Kernel::RowPerWorkgroup(SUBGROUP), 128),
    rung(Gpu, ANY, 8192, Kernel::RowPerWorkgroup(TREE), 128),
    rung(Gpu, 63, ANY, Kernel::SplitRow(SUBGROUP), 256),
    rung(Gpu, 63, ANY, Kernel::SplitRow(TREE), 256),
    rung(Cpu, ANY, 1 << 18, Kernel::RowPerWorkgroup(SUBGROUP), 8),
    rung(Cpu, ANY, 1 << 18, Kernel::RowPerWorkgroup(TREE), 8),
    rung(Cpu, ANY, 1 << 22, Kernel::RowPerWorkgroup(SUBGROUP), 256),
    rung(Cpu, ANY, 1 << 22, Kernel::RowPerWorkgroup(TREE), 256),
    rung(Gpu, ANY, 1 << 22, Kernel::RowPerWorkgroup(SUBGROUP), 256),
    rung(Gpu, ANY, 1 << 22, Kernel::RowPerWorkgroup(TREE), 256),
    rung(Cpu, ANY, ANY, Kernel::RowPerWorkgroup(SUBGROUP), 1024),
    rung(Cpu, ANY, ANY, Kernel::RowPerWorkgroup(TREE), 1024),
    rung(Gpu, ANY, ANY, Kernel::RowPerWorkgroup(SUBGROUP), 1024),
    rung(Gpu, ANY, ANY, Kernel::RowPerWorkgroup(TREE), 1024),
];

const ANY: usize = usize::MAX;

/// Rows one lane of the row-per-lane kernel, or one workgroup of the
/// row-block kernel, normalises in step (`ROWS_PER_BLOCK` of
/// `shaders/layer_norm_eight_rows.wgsl`): gamma and beta are read once for them.
pub const ROWS_PER_BLOCK: u32 = 8;

/// Values per piece the split-row kernel aims for (so a piece keeps one
/// workgroup busy, and no lane loops long).
pub const SPLIT_PIECE: usize = 8192;

/// Rows one dispatch can address: 65,535 workgroups in x times 65,535 in y.
pub const MAX_WORKGROUPS_PER_DISPATCH: u64 = 65_535 * 65_535;

/// What the plan picked for a layer-norm forward of rows of `dim` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerNormPlan {
    /// The kernel.
    pub kernel: Kernel,
    /// Lanes per workgroup.
    pub workgroup_size: u32,
    /// Rows one workgroup normalises (row-per-* kernels).
    pub rows_per_workgroup: u32,
    /// Pieces each row is cut into (split-row kernel; 1 otherwise).
    pub splits: u32,
}

impl LayerNormPlan {
    /// The default plan: the first rung of [`LADDER`] that fits.
    pub fn new(
        rows: usize,
        dim: usize,
        capabilities: Capabilities,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
    ) -> Self {
        let class = AdapterClass::of(info);
        LADDER
            .iter()
            .filter(|r| r.class == class && rows <= r.max_rows && dim <= r.max_dim)
            .find_map(|r| {
                Self::with_kernel(r.kernel, r.workgroup_size, dim, capabilities, info, limits).ok()
            })
            .expect("the ladder ends with rungs for any dim that any adapter can run")
    }

    /// A plan for `kernel` with (about) `workgroup_size` lanes: the size is
    /// capped by the device, and raised to whole subgroups where the kernel
    /// uses them. Errors when the adapter lacks a feature the kernel needs
    /// (`MissingFeature`), or rows of `dim` values are too long for it
    /// (`KernelUnsuitable`).
    pub fn with_kernel(
        kernel: Kernel,
        workgroup_size: u32,
        dim: usize,
        capabilities: Capabilities,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
    ) -> Result<Self> {
        if dim > kernel.max_dim() {
            return Err(Error::KernelUnsuitable {
                kernel: kernel.name(),
                reason: format!(
                    "rows of {dim} values exceed its maximum of {}",
                    kernel.max_dim()
                ),
            });
        }
        let mut lanes = workgroup_size.min(device_lanes(limits)).max(1);
        let mut rows_per_workgroup = 1;
        if kernel.needs_subgroups() {
            let sizes = capabilities
                .subgroups
                .ok_or_else(|| Error::MissingFeature {
                    op: kernel.name(),
                    feature: "SUBGROUP",
                    adapter: info.name.clone(),
                })?;
            lanes = lanes.max(sizes.max);
            if kernel == Kernel::RowPerSubgroup {
                rows_per_workgroup = lanes / sizes.min;
            }
            if kernel == Kernel::RowBlock(Reduction::Subgroup) {
                // Its sums are one subgroupAdd: the workgroup must be one subgroup.
                if sizes.min != sizes.max {
                    return Err(Error::KernelUnsuitable {
                        kernel: kernel.name(),
                        reason: format!(
                            "it needs one subgroup size, and adapter {} has {} to {}",
                            info.name, sizes.min, sizes.max
                        ),
                    });
                }
                lanes = sizes.max;
            }
        }
        if let Kernel::RowBlock(_) = kernel {
            // Lanes 0-2 take the dim % 4 last columns.
            lanes = lanes.max(4);
            rows_per_workgroup = ROWS_PER_BLOCK;
        }
        if kernel == Kernel::RowPerLane {
            rows_per_workgroup = ROWS_PER_BLOCK * lanes;
        }
        let splits = match kernel {
            Kernel::SplitRow(_) => dim.div_ceil(SPLIT_PIECE).clamp(1, 1024) as u32,
            // Without subgroups every lane's share of a row is a piece.
            Kernel::RowBlock(Reduction::Workgroup) => lanes,
            _ => 1,
        };
        if let Kernel::SplitRow(_) = kernel {
            // No more lanes than a piece has vec4s (short pieces idle less),
            // but whole subgroups.
            let piece4 = dim.div_ceil(splits as usize).div_ceil(4) as u32;
            let floor = capabilities.subgroups.map_or(8, |s| s.max.max(8));
            lanes = lanes.min(piece4.next_power_of_two().max(floor));
        }
        Ok(LayerNormPlan {
            kernel,
            workgroup_size: lanes,
            rows_per_workgroup,
            splits,
        })
    }

    /// The plan for a kernel chosen explicitly, with the lane count of its
    /// narrowest ladder rung that takes `dim`, of the adapter's class if it
    /// has one (else of any class).
    pub fn forced(
        kernel: Kernel,
        dim: usize,
        capabilities: Capabilities,
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
    ) -> Result<Self> {
        // The adapter's own class first (its lane counts suit it), then any.
        let class = AdapterClass::of(info);
        let lanes = LADDER
            .iter()
            .filter(|r| r.kernel == kernel)
            .min_by_key(|r| (r.class != class, dim > r.max_dim, r.max_dim))
            .map_or(256, |r| r.workgroup_size);
        Self::with_kernel(kernel, lanes, dim, capabilities, info, limits)
    }

    /// `row-per-lane, 64 lanes`, `split-row/subgroup, 256 lanes, 128 pieces` etc.
    pub fn describe(&self) -> String {
        match self.kernel {
            Kernel::SplitRow(_) => format!(
                "{}, {} lanes, {} pieces",
                self.kernel.name(),
                self.workgroup_size,
                self.splits
            ),
            _ => format!("{}, {} lanes", self.kernel.name(), self.workgroup_size),
        }
    }
}

/// Which dx kernel of `shaders/norm_backward.wgsl` runs the backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackwardKernel {
    /// `dx_four_rows_per_lane`: one invocation per four rows, no barriers,
    /// the dgamma/dbeta partial sums written in the same pass. For CPU adapters.
    RowPerLane,
    /// `dx_row_per_workgroup`: one workgroup per row, with the given reduction.
    RowPerWorkgroup(Reduction),
    /// `dx_split_sums` then `dx_split_apply`: each row cut into pieces, a
    /// workgroup each, so that few long rows still fill the device.
    SplitRow(Reduction),
}

impl BackwardKernel {
    /// Every dx kernel.
    pub const ALL: [BackwardKernel; 5] = [
        BackwardKernel::RowPerLane,
        BackwardKernel::RowPerWorkgroup(Reduction::Subgroup),
        BackwardKernel::RowPerWorkgroup(Reduction::Workgroup),
        BackwardKernel::SplitRow(Reduction::Subgroup),
        BackwardKernel::SplitRow(Reduction::Workgroup),
    ];

    /// `row-per-lane`, `row-per-workgroup/subgroup`, `split-row/workgroup` etc.
    pub fn name(self) -> &'static str {
        match self {
            BackwardKernel::RowPerLane => "row-per-lane",
            BackwardKernel::RowPerWorkgroup(Reduction::Subgroup) => "row-per-workgroup/subgroup",
            BackwardKernel::RowPerWorkgroup(Reduction::Workgroup) => "row-per-workgroup/workgroup",
            BackwardKernel::SplitRow(Reduction::Subgroup) => "split-row/subgroup",
            BackwardKernel::SplitRow(Reduction::Workgroup) => "split-row/workgroup",
        }
    }

    /// Whether the kernel needs subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        matches!(
            self,
            BackwardKernel::RowPerWorkgroup(SUBGROUP) | BackwardKernel::SplitRow(SUBGROUP)
        )
    }
}

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
/// [`SPLIT_PIECE`] values, and 1,024 lanes for the longest rows. As in the
/// forward's [`LADDER`], few long rows are split so that they fill the
/// device, and CPU adapters run 8-lane workgroups (the forward's reason).
/// On lavapipe that took 1x32x65536 from 8.1 to 6.5 times a copy and
/// 1x1x1048576 from 11 to 8.6; four rows per lane and 8-lane workgroups were
/// within noise of each other on rows of 8,192–16,384 values.
///
/// | class | rows up to | dim up to | dx kernel                   | lanes |
/// |-------|------------|-----------|-----------------------------|-------|
/// | CPU   | 240,000    | 4,096     | four rows per lane          | 64    |
/// | any   | any        | 1,024     | row per workgroup, subgroup | 64    |
/// | any   | any        | 1,024     | row per workgroup, tree     | 64    |
/// | CPU   | 63         | any       | split row, subgroup         | 8     |
/// | CPU   | 63         | any       | split row, tree             | 8     |
/// | GPU   | 63         | any       | split row, subgroup         | 256   |
/// | GPU   | 63         | any       | split row, tree             | 256   |
/// | CPU   | any        | 131,072   | row per workgroup, subgroup | 8     |
/// | CPU   | any        | 131,072   | row per workgroup, tree     | 8     |
/// | any   | any        | 4,194,304 | row per workgroup, subgroup | 256   |
/// | any   | any        | 4,194,304 | row per workgroup, tree     | 256   |
/// | any   | any        | larger    | row per workgroup, subgroup | 1,024 |
/// | any   | any        | larger    | row per workgroup, tree     | 1,024 |
pub const BACKWARD_LADDER: &[BackwardRung] = &[
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
    back(Some(Gpu), 63, ANY, BackwardKernel::SplitRow(SUBGROUP), 256),
    back(Some(Gpu), 63, ANY, BackwardKernel::SplitRow(TREE), 256),
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
        Self::from_rung(*rung, rows, dim, capabilities, limits)
    }

    fn from_rung(
        rung: BackwardRung,
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
            BackwardKernel::SplitRow(_) => dim.div_ceil(SPLIT_PIECE).clamp(1, 1024) as u32,
            _ => 1,
        };
        let rows_per_part = match rung.kernel {
            // Each lane's four rows are a part.
            BackwardKernel::RowPerLane => 4,
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
        Ok(Self::from_rung(rung, rows, dim, capabilities, limits))
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

/// The most lanes a workgroup may have on the device, as a power of two (at least 64).
fn device_lanes(limits: &wgpu::Limits) -> u32 {
    let device_max = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x)
        .max(64);
    1u32 << (31 - device_max.leading_zeros())
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

    fn caps(subgroups: Option<(u32, u32)>) -> Capabilities {
        Capabilities {
            timestamps: false,
            timestamps_inside_passes: false,
            subgroups: subgroups.map(|(min, max)| crate::SubgroupSizes { min, max }),
            shader_f16: false,
        }
    }

    fn info(device_type: wgpu::DeviceType) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan)
    }

    #[test]
    fn the_ladder_picks_by_class_dim_and_features() {
        let limits = wgpu::Limits::default(); // 256 invocations
        let cpu = info(wgpu::DeviceType::Cpu);
        let gpu = info(wgpu::DeviceType::DiscreteGpu);
        let plan = |dim, c, i: &wgpu::AdapterInfo| LayerNormPlan::new(100, dim, c, i, &limits);
        let lavapipe = caps(Some((8, 8)));
        assert_eq!(plan(768, lavapipe, &cpu).kernel, Kernel::RowPerLane);
        assert_eq!(plan(768, lavapipe, &cpu).rows_per_workgroup, 256);
        // Longer rows: a block of eight rows per 8-lane workgroup.
        let p = plan(4096, lavapipe, &cpu);
        assert_eq!(
            (p.kernel, p.workgroup_size, p.rows_per_workgroup),
            (Kernel::RowBlock(SUBGROUP), 8, 8)
        );
        assert_eq!(plan(4096, caps(None), &cpu).kernel, Kernel::RowBlock(TREE));
        // Fewer than 16 long rows: split across workgroups.
        let few = LayerNormPlan::new(15, 65_536, lavapipe, &cpu, &limits);
        assert_eq!(few.kernel, Kernel::SplitRow(SUBGROUP));
        let many = LayerNormPlan::new(16, 65_536, lavapipe, &cpu, &limits);
        assert_eq!(many.kernel, Kernel::RowBlock(SUBGROUP));
        // The subgroup row block sums with one subgroupAdd: it needs a single
        // subgroup size.
        let intel = caps(Some((8, 32)));
        assert!(matches!(
            LayerNormPlan::with_kernel(Kernel::RowBlock(SUBGROUP), 8, 4096, intel, &cpu, &limits),
            Err(Error::KernelUnsuitable { .. })
        ));
        // A forced kernel takes its adapter class's lanes even past its rung's dims.
        let forced = LayerNormPlan::forced(Kernel::RowPerLane, 4096, lavapipe, &cpu, &limits);
        assert_eq!(forced.unwrap().workgroup_size, 32);
        assert_eq!(
            plan(1 << 20, lavapipe, &cpu).kernel,
            Kernel::RowPerWorkgroup(SUBGROUP)
        );
        assert_eq!(
            plan(1 << 20, caps(None), &cpu).kernel,
            Kernel::RowPerWorkgroup(TREE)
        );
        let nvidia = caps(Some((32, 32)));
        let p = plan(768, nvidia, &gpu);
        assert_eq!(
            (p.kernel, p.workgroup_size, p.rows_per_workgroup),
            (Kernel::RowPerSubgroup, 128, 4)
        );
        assert_eq!(
            plan(200, caps(None), &gpu).kernel,
            Kernel::RowPerWorkgroup(TREE)
        );
        assert_eq!(plan(4096, nvidia, &gpu).workgroup_size, 128);
        // The top rung asks for 1,024 lanes; a device with 256 gets 256.
        assert_eq!(plan(1 << 23, nvidia, &gpu).workgroup_size, 256);
        // AMD's wave64: a workgroup holds whole subgroups.
        let amd = caps(Some((64, 64)));
        let p = LayerNormPlan::with_kernel(
            Kernel::RowPerWorkgroup(SUBGROUP),
            32,
            100,
            amd,
            &gpu,
            &limits,
        )
        .unwrap();
        assert_eq!(p.workgroup_size, 64);
    }

    #[test]
    fn few_long_rows_are_split() {
        let limits = wgpu::Limits::default();
        let cpu = info(wgpu::DeviceType::Cpu);
        let p = LayerNormPlan::new(1, 1 << 20, caps(Some((8, 8))), &cpu, &limits);
        assert_eq!((p.kernel, p.splits), (Kernel::SplitRow(SUBGROUP), 128));
        assert_eq!(p.workgroup_size, 8, "one SIMD group of llvmpipe");
        let p = LayerNormPlan::new(15, 65_536, caps(None), &cpu, &limits);
        assert_eq!((p.kernel, p.splits), (Kernel::SplitRow(TREE), 8));
        // 16 rows or more: a workgroup of 8 lanes per block of eight rows,
        // then (past the row block's 131,072 values) per row.
        let p = LayerNormPlan::new(16, 65_536, caps(None), &cpu, &limits);
        assert_eq!((p.kernel, p.workgroup_size), (Kernel::RowBlock(TREE), 8));
        let p = LayerNormPlan::new(64, 262_144, caps(None), &cpu, &limits);
        assert_eq!(
            (p.kernel, p.workgroup_size),
            (Kernel::RowPerWorkgroup(TREE), 8)
        );
    }

    #[test]
    fn unsuitable_kernels_are_refused() {
        let limits = wgpu::Limits::default();
        let gpu = info(wgpu::DeviceType::DiscreteGpu);
        let e =
            LayerNormPlan::with_kernel(Kernel::RowPerSubgroup, 64, 10, caps(None), &gpu, &limits)
                .unwrap_err();
        assert!(
            matches!(
                e,
                Error::MissingFeature {
                    feature: "SUBGROUP",
                    ..
                }
            ),
            "{e}"
        );
        let e =
            LayerNormPlan::with_kernel(Kernel::RowPerLane, 64, 1 << 20, caps(None), &gpu, &limits)
                .unwrap_err();
        assert!(e.to_string().contains("1048576"), "{e}");
    }

    #[test]
    fn every_class_and_feature_set_finds_a_rung_for_any_dim() {
        for class in [wgpu::DeviceType::Cpu, wgpu::DeviceType::IntegratedGpu] {
            for c in [caps(None), caps(Some((8, 8))), caps(Some((32, 64)))] {
                for dim in [1usize, 1000, 5000, 1 << 21, 1 << 25] {
                    let p = LayerNormPlan::new(100, dim, c, &info(class), &wgpu::Limits::default());
                    assert!(dim <= p.kernel.max_dim());
                }
            }
        }
    }
}
