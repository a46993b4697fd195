//! The kernel registry: one descriptor per kernel variant — its files, its
//! dispatches (entry points) in order, what it needs, the longest row it
//! takes, how its workgroups map to rows, and the override constants it
//! reads. The ladders ([`LADDER`](super::LADDER),
//! [`BACKWARD_LADDER`](super::BACKWARD_LADDER)) name these variants; the
//! pipeline cache builds them from these descriptors.
//!
//! Index (forward, `shaders/`; every variant is checked against the f64
//! reference by `tests/gpu/layer_norm.rs` and timed against a copy by
//! `wgpu-norm bench --all-kernels`):
//!
//! | variant                     | what it changes                                                                 |
//! |-----------------------------|---------------------------------------------------------------------------------|
//! | row-per-lane                | one invocation per 8 rows, gamma/beta read once per 8 rows, no barriers (CPU)   |
//! | row-per-subgroup            | one subgroup per row, `subgroupAdd`, no barriers (GPU short rows)               |
//! | row-per-workgroup/subgroup  | one workgroup per row, `subgroupAdd` then one slot per subgroup                  |
//! | row-per-workgroup/workgroup | one workgroup per row, tree sum in workgroup memory (no subgroups)               |
//! | row-block/subgroup          | an 8-lane workgroup (one subgroup) per 8 rows, lanes side by side (CPU)         |
//! | row-block/workgroup         | the same without subgroups: lanes' moments combined in a dispatch of their own |
//! | split-row/subgroup          | a long row cut into pieces, a workgroup each: moments, combine, apply           |
//! | split-row/workgroup         | the same with the tree sum                                                      |
//!
//! Backward (`shaders/norm_backward.wgsl`, one module, entry points per variant):
//!
//! | variant                     | what it changes                                                                 |
//! |-----------------------------|---------------------------------------------------------------------------------|
//! | row-per-lane                | four rows per invocation, dgamma/dbeta parts written in the dx pass (CPU)        |
//! | row-per-workgroup/…         | one workgroup per row (three workgroup sums), then two dgamma/dbeta stages      |
//! | split-row/…                 | pieces of a long row: sums, combine, apply, then the two dgamma/dbeta stages    |
//! | rows-cached/…               | GPUs: rows in registers as vec4s, one fused sum, dgamma/dbeta parts in the dx pass |

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

/// Which forward kernel runs (each is a file in `shaders/`; see [`KernelSpec`]).
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
    /// `layer_norm_row_cached.wgsl`: one workgroup per row, the row held in
    /// registers so that x is read once; rows up to [`ROW_CACHE_VALUES`]
    /// values a lane. For GPUs.
    RowCached(Reduction),
}

/// Values of a row one lane of the row-cached kernel holds in registers
/// (`CACHE4` vec4s of `shaders/layer_norm_row_cached.wgsl`): rows up to
/// this many times its lanes.
pub const ROW_CACHE_VALUES: usize = 32;

/// Rows one lane of the row-per-lane kernel, or one workgroup of the
/// row-block kernel, normalises in step (`ROWS_PER_BLOCK` of
/// `shaders/layer_norm_eight_rows.wgsl`): gamma and beta are read once for them.
pub const ROWS_PER_BLOCK: u32 = 8;

/// Lanes of the one-lane-per-row helper dispatches (`split_combine`,
/// `dx_split_combine`, `unpack_stats`): the `COMBINE_WG` override of the shaders.
pub const COMBINE_LANES: u32 = 64;

/// How a kernel's workgroups map to rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rows {
    /// Each lane takes [`ROWS_PER_BLOCK`] rows.
    BlockPerLane,
    /// Each subgroup takes a row.
    PerSubgroup,
    /// Each workgroup takes a row.
    PerWorkgroup,
    /// Each workgroup takes [`ROWS_PER_BLOCK`] rows.
    BlockPerWorkgroup,
    /// Each row is cut into pieces, a workgroup each.
    Pieces,
}

/// A dispatch: one entry point of a kernel's module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// `layer_norm_forward` of the row-per-* kernels (statistics and y in one).
    Forward,
    /// `split_stats` of the split-row kernel: each piece's moments.
    SplitStats,
    /// `split_combine`: a row's piece moments merged into its statistics.
    SplitCombine,
    /// `split_apply` of the split-row kernel: each piece normalised.
    SplitApply,
    /// `row_block_moments` of the row-block kernel without subgroups.
    RowBlockMoments,
    /// `row_block_apply` of the row-block kernel without subgroups.
    RowBlockApply,
    /// `unpack_stats`: packed (mean, rstd) scratch copied to the mean and
    /// rstd outputs (fused residual pipelines, which have no binding to spare).
    UnpackStats,
    /// `dx_four_rows_per_lane` of the backward.
    DxFourRowsPerLane,
    /// `dx_row_per_workgroup` of the backward.
    DxRowPerWorkgroup,
    /// `dx_split_sums` of the backward.
    DxSplitSums,
    /// `dx_split_combine` of the backward.
    DxSplitCombine,
    /// `dx_split_apply` of the backward.
    DxSplitApply,
    /// `param_partials` of the backward (dgamma/dbeta stage 1).
    ParamPartials,
    /// `param_sums` of the backward (dgamma/dbeta stage 2).
    ParamSums,
    /// `dx_rows_cached` of the backward (GPUs: rows in registers, vec4s,
    /// one fused sum, dgamma/dbeta partials from the dx pass).
    DxRowsCached,
}

/// What a forward dispatch touches; the pipeline cache maps these roles to
/// binding slots for the pipeline's views (see `kernels::bindings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Roles {
    /// Reads x (and, fused, the residual and its bias).
    pub x: bool,
    /// Writes y (and, fused, the sum).
    pub y: bool,
    /// Reads gamma and beta.
    pub params: bool,
    /// Writes the per-row statistics.
    pub stats: bool,
    /// Reads or writes the piece moments.
    pub pieces: bool,
    /// Reads or writes the combined row statistics.
    pub row_stats: bool,
}

impl Entry {
    /// The WGSL function name.
    pub fn name(self) -> &'static str {
        match self {
            Entry::Forward => "layer_norm_forward",
            Entry::SplitStats => "split_stats",
            Entry::SplitCombine => "split_combine",
            Entry::SplitApply => "split_apply",
            Entry::RowBlockMoments => "row_block_moments",
            Entry::RowBlockApply => "row_block_apply",
            Entry::UnpackStats => "unpack_stats",
            Entry::DxFourRowsPerLane => "dx_four_rows_per_lane",
            Entry::DxRowPerWorkgroup => "dx_row_per_workgroup",
            Entry::DxSplitSums => "dx_split_sums",
            Entry::DxSplitCombine => "dx_split_combine",
            Entry::DxSplitApply => "dx_split_apply",
            Entry::ParamPartials => "param_partials",
            Entry::ParamSums => "param_sums",
            Entry::DxRowsCached => "dx_rows_cached",
        }
    }

    /// Whether the entry belongs to the backward's module.
    pub fn is_backward(self) -> bool {
        matches!(
            self,
            Entry::DxFourRowsPerLane
                | Entry::DxRowPerWorkgroup
                | Entry::DxSplitSums
                | Entry::DxSplitCombine
                | Entry::DxSplitApply
                | Entry::ParamPartials
                | Entry::ParamSums
                | Entry::DxRowsCached
        )
    }

    /// What a forward entry touches (all false for backward entries, whose
    /// bindings are fixed: [`Entry::backward_bindings`]).
    pub fn roles(self) -> Roles {
        let r = Roles::default();
        match self {
            Entry::Forward => Roles {
                x: true,
                y: true,
                params: true,
                stats: true,
                ..r
            },
            Entry::SplitStats | Entry::RowBlockMoments => Roles {
                x: true,
                pieces: true,
                ..r
            },
            Entry::SplitCombine => Roles {
                x: true,
                stats: true,
                pieces: true,
                row_stats: true,
                ..r
            },
            Entry::SplitApply | Entry::RowBlockApply => Roles {
                x: true,
                y: true,
                params: true,
                row_stats: true,
                ..r
            },
            Entry::UnpackStats => Roles { stats: true, ..r },
            _ => r,
        }
    }

    /// The bindings of a backward entry (`shaders/norm_backward.wgsl`: 0 x,
    /// 1 dy, 2 gamma, 3 mean, 4 rstd, 5 dx, 6 partial sums, 7 dgamma, 8 dbeta,
    /// 9 params, 10 row centres, 11 piece sums, 12 row sums, 13 x as vec4s,
    /// 14 dy as vec4s, 15 dx as vec4s).
    pub fn backward_bindings(self) -> &'static [u32] {
        match self {
            Entry::DxFourRowsPerLane => &[0, 1, 2, 3, 4, 5, 6, 9],
            Entry::DxRowPerWorkgroup => &[0, 1, 2, 3, 4, 5, 9, 10],
            Entry::DxSplitSums => &[0, 1, 2, 3, 4, 9, 11],
            Entry::DxSplitCombine => &[4, 9, 10, 11, 12],
            Entry::DxSplitApply => &[0, 1, 2, 3, 4, 5, 9, 10, 12],
            Entry::ParamPartials => &[0, 1, 3, 4, 6, 9, 10],
            Entry::ParamSums => &[6, 7, 8, 9],
            Entry::DxRowsCached => &[2, 3, 4, 6, 9, 13, 14, 15],
            _ => &[],
        }
    }
}

/// What one forward kernel variant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// The variant.
    pub kernel: Kernel,
    /// Its short name (`row-per-lane`, `split-row/subgroup`, …).
    pub name: &'static str,
    /// The kernel's own files, after the storage prelude, the common file,
    /// the views and the input file, in order (see `kernels::sources`).
    pub files: &'static [&'static str],
    /// Its dispatches per chunk of rows, in order.
    pub steps: &'static [Entry],
    /// Its dispatches for a statistics-only pass (no y).
    pub stats_steps: &'static [Entry],
    /// Needs `Features::SUBGROUP`.
    pub needs_subgroups: bool,
    /// Needs a single subgroup size (its workgroup is one subgroup).
    pub single_subgroup_size: bool,
    /// The longest row it takes (llvmpipe stops an invocation's loops after
    /// 65,535 iterations: a lane that walks a whole row must not walk more).
    pub max_dim: usize,
    /// How its workgroups map to rows.
    pub rows: Rows,
    /// The override constants it reads beyond the common ones (`WG`,
    /// `HAS_GAMMA`, `HAS_BETA`, `WRITE_MEAN`, `WRITE_RSTD`, `RMS`, `WRITE_Y`,
    /// `VEC4_ROWS`, `COMBINE_WG`).
    pub overrides: &'static [&'static str],
}

const SPLIT_STEPS: &[Entry] = &[Entry::SplitStats, Entry::SplitCombine, Entry::SplitApply];
const SPLIT_STATS: &[Entry] = &[Entry::SplitStats, Entry::SplitCombine];
const BLOCK_STEPS: &[Entry] = &[
    Entry::RowBlockMoments,
    Entry::SplitCombine,
    Entry::RowBlockApply,
];
const BLOCK_STATS: &[Entry] = &[Entry::RowBlockMoments, Entry::SplitCombine];
const ONE: &[Entry] = &[Entry::Forward];

/// Every forward kernel variant, in the order the autotuner tries them.
pub const KERNELS: [KernelSpec; 10] = [
    KernelSpec {
        kernel: Kernel::RowPerLane,
        name: "row-per-lane",
        files: &["layer_norm_eight_rows.wgsl", "layer_norm_row_per_lane.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: false,
        single_subgroup_size: false,
        max_dim: 16_384,
        rows: Rows::BlockPerLane,
        overrides: &[],
    },
    KernelSpec {
        kernel: Kernel::RowPerSubgroup,
        name: "row-per-subgroup",
        files: &["layer_norm_row_per_subgroup.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: true,
        single_subgroup_size: false,
        max_dim: 65_536,
        rows: Rows::PerSubgroup,
        overrides: &["ROWS_PER_WG"],
    },
    KernelSpec {
        kernel: Kernel::RowPerWorkgroup(Reduction::Subgroup),
        name: "row-per-workgroup/subgroup",
        files: &["layer_norm_row_per_workgroup.wgsl", "reduce_subgroup.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: true,
        single_subgroup_size: false,
        max_dim: usize::MAX,
        rows: Rows::PerWorkgroup,
        overrides: &[],
    },
    KernelSpec {
        kernel: Kernel::RowPerWorkgroup(Reduction::Workgroup),
        name: "row-per-workgroup/workgroup",
        files: &["layer_norm_row_per_workgroup.wgsl", "reduce_workgroup.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: false,
        single_subgroup_size: false,
        max_dim: usize::MAX,
        rows: Rows::PerWorkgroup,
        overrides: &[],
    },
    KernelSpec {
        kernel: Kernel::RowBlock(Reduction::Subgroup),
        name: "row-block/subgroup",
        files: &[
            "layer_norm_eight_rows.wgsl",
            "layer_norm_row_block.wgsl",
            "layer_norm_row_block_subgroup.wgsl",
        ],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: true,
        single_subgroup_size: true,
        max_dim: 131_072,
        rows: Rows::BlockPerWorkgroup,
        overrides: &[],
    },
    KernelSpec {
        kernel: Kernel::RowBlock(Reduction::Workgroup),
        name: "row-block/workgroup",
        files: &[
            "layer_norm_eight_rows.wgsl",
            "layer_norm_row_block.wgsl",
            "layer_norm_pieces.wgsl",
            "layer_norm_row_block_pieces.wgsl",
        ],
        steps: BLOCK_STEPS,
        stats_steps: BLOCK_STATS,
        needs_subgroups: false,
        single_subgroup_size: false,
        max_dim: 131_072,
        rows: Rows::BlockPerWorkgroup,
        overrides: &["SPLITS"],
    },
    KernelSpec {
        kernel: Kernel::SplitRow(Reduction::Subgroup),
        name: "split-row/subgroup",
        files: &[
            "layer_norm_pieces.wgsl",
            "layer_norm_split_row.wgsl",
            "reduce_subgroup.wgsl",
        ],
        steps: SPLIT_STEPS,
        stats_steps: SPLIT_STATS,
        needs_subgroups: true,
        single_subgroup_size: false,
        max_dim: usize::MAX,
        rows: Rows::Pieces,
        overrides: &["SPLITS"],
    },
    KernelSpec {
        kernel: Kernel::SplitRow(Reduction::Workgroup),
        name: "split-row/workgroup",
        files: &[
            "layer_norm_pieces.wgsl",
            "layer_norm_split_row.wgsl",
            "reduce_workgroup.wgsl",
        ],
        steps: SPLIT_STEPS,
        stats_steps: SPLIT_STATS,
        needs_subgroups: false,
        single_subgroup_size: false,
        max_dim: usize::MAX,
        rows: Rows::Pieces,
        overrides: &["SPLITS"],
    },
    KernelSpec {
        kernel: Kernel::RowCached(Reduction::Subgroup),
        name: "row-cached/subgroup",
        files: &["layer_norm_row_cached.wgsl", "reduce_subgroup.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: true,
        single_subgroup_size: false,
        max_dim: 256 * ROW_CACHE_VALUES,
        rows: Rows::PerWorkgroup,
        overrides: &[],
    },
    KernelSpec {
        kernel: Kernel::RowCached(Reduction::Workgroup),
        name: "row-cached/workgroup",
        files: &["layer_norm_row_cached.wgsl", "reduce_workgroup.wgsl"],
        steps: ONE,
        stats_steps: ONE,
        needs_subgroups: false,
        single_subgroup_size: false,
        max_dim: 256 * ROW_CACHE_VALUES,
        rows: Rows::PerWorkgroup,
        overrides: &[],
    },
];

impl Kernel {
    /// Every kernel, in the order the autotuner tries them.
    pub const ALL: [Kernel; 10] = [
        KERNELS[0].kernel,
        KERNELS[1].kernel,
        KERNELS[2].kernel,
        KERNELS[3].kernel,
        KERNELS[4].kernel,
        KERNELS[5].kernel,
        KERNELS[6].kernel,
        KERNELS[7].kernel,
        KERNELS[8].kernel,
        KERNELS[9].kernel,
    ];

    /// The variant's descriptor.
    pub fn spec(self) -> &'static KernelSpec {
        KERNELS
            .iter()
            .find(|s| s.kernel == self)
            .expect("every kernel has a descriptor")
    }

    /// A short name: `row-per-lane`, `row-per-subgroup`,
    /// `row-per-workgroup/subgroup`, `split-row/workgroup`, …
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Whether the kernel needs subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        self.spec().needs_subgroups
    }

    /// The longest row the kernel takes.
    pub fn max_dim(self) -> usize {
        self.spec().max_dim
    }

    /// The kernel named `name` ([`Kernel::name`]).
    pub fn by_name(name: &str) -> Option<Kernel> {
        KERNELS.iter().find(|s| s.name == name).map(|s| s.kernel)
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
    /// `dx_rows_cached`: a workgroup per part of rows, rows held in
    /// registers and read once as vec4s, one fused reduction per row, and the
    /// dgamma/dbeta partials written from the dx pass. For GPUs; rows up to
    /// [`ROW_CACHE_VALUES`] values a lane, vec4-aligned (else the
    /// workgroup-per-row kernel runs).
    RowsCached(Reduction),
}

/// What one backward dx variant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardSpec {
    /// The variant.
    pub kernel: BackwardKernel,
    /// Its short name.
    pub name: &'static str,
    /// Its dx dispatches per chunk, in order.
    pub steps: &'static [Entry],
    /// Whether the dx pass writes the dgamma/dbeta partial sums itself
    /// (else the `param_partials` stage runs after it).
    pub fused_params: bool,
    /// Needs `Features::SUBGROUP`.
    pub needs_subgroups: bool,
    /// Rows each invocation takes (four-rows kernel), else 0.
    pub rows_per_lane: u32,
}

const DX_SPLIT: &[Entry] = &[
    Entry::DxSplitSums,
    Entry::DxSplitCombine,
    Entry::DxSplitApply,
];

/// Every backward dx variant.
pub const BACKWARD_KERNELS: [BackwardSpec; 7] = [
    BackwardSpec {
        kernel: BackwardKernel::RowPerLane,
        name: "row-per-lane",
        steps: &[Entry::DxFourRowsPerLane],
        fused_params: true,
        needs_subgroups: false,
        rows_per_lane: 4,
    },
    BackwardSpec {
        kernel: BackwardKernel::RowPerWorkgroup(Reduction::Subgroup),
        name: "row-per-workgroup/subgroup",
        steps: &[Entry::DxRowPerWorkgroup],
        fused_params: false,
        needs_subgroups: true,
        rows_per_lane: 0,
    },
    BackwardSpec {
        kernel: BackwardKernel::RowPerWorkgroup(Reduction::Workgroup),
        name: "row-per-workgroup/workgroup",
        steps: &[Entry::DxRowPerWorkgroup],
        fused_params: false,
        needs_subgroups: false,
        rows_per_lane: 0,
    },
    BackwardSpec {
        kernel: BackwardKernel::SplitRow(Reduction::Subgroup),
        name: "split-row/subgroup",
        steps: DX_SPLIT,
        fused_params: false,
        needs_subgroups: true,
        rows_per_lane: 0,
    },
    BackwardSpec {
        kernel: BackwardKernel::SplitRow(Reduction::Workgroup),
        name: "split-row/workgroup",
        steps: DX_SPLIT,
        fused_params: false,
        needs_subgroups: false,
        rows_per_lane: 0,
    },
    BackwardSpec {
        kernel: BackwardKernel::RowsCached(Reduction::Subgroup),
        name: "rows-cached/subgroup",
        steps: &[Entry::DxRowsCached],
        fused_params: true,
        needs_subgroups: true,
        rows_per_lane: 0,
    },
    BackwardSpec {
        kernel: BackwardKernel::RowsCached(Reduction::Workgroup),
        name: "rows-cached/workgroup",
        steps: &[Entry::DxRowsCached],
        fused_params: true,
        needs_subgroups: false,
        rows_per_lane: 0,
    },
];

impl BackwardKernel {
    /// Every dx kernel.
    pub const ALL: [BackwardKernel; 7] = [
        BACKWARD_KERNELS[0].kernel,
        BACKWARD_KERNELS[1].kernel,
        BACKWARD_KERNELS[2].kernel,
        BACKWARD_KERNELS[3].kernel,
        BACKWARD_KERNELS[4].kernel,
        BACKWARD_KERNELS[5].kernel,
        BACKWARD_KERNELS[6].kernel,
    ];

    /// The variant's descriptor.
    pub fn spec(self) -> &'static BackwardSpec {
        BACKWARD_KERNELS
            .iter()
            .find(|s| s.kernel == self)
            .expect("every dx kernel has a descriptor")
    }

    /// `row-per-lane`, `row-per-workgroup/subgroup`, `split-row/workgroup` etc.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Whether the kernel needs subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        self.spec().needs_subgroups
    }

    /// The reduction its module is compiled with (the four-rows kernel
    /// reduces nothing: the tree file compiles anywhere).
    pub fn reduction(self) -> Reduction {
        match self {
            BackwardKernel::RowPerWorkgroup(r)
            | BackwardKernel::SplitRow(r)
            | BackwardKernel::RowsCached(r) => r,
            BackwardKernel::RowPerLane => Reduction::Workgroup,
        }
    }
}

/// Lanes per workgroup of every copy kernel.
pub const COPY_LANES: u32 = 256;

/// A copy kernel (`shaders/copy.wgsl`): the floor the bench measures every
/// op against. The bench tunes among them and takes the fastest.
///
/// | variant                 | what it changes                                              |
/// |-------------------------|--------------------------------------------------------------|
/// | grid-stride/256         | 256 workgroups of 256 lanes walk the array, a vec4 per trip  |
/// | grid-stride/1024        | 1,024 workgroups                                             |
/// | grid-stride/4096        | 4,096 workgroups                                             |
/// | grid-stride/1024/x2     | 1,024 workgroups, two vec4s per trip (unrolled)              |
/// | grid-stride/1024/x4     | 1,024 workgroups, four vec4s per trip                        |
/// | vec4-per-lane           | one vec4 per invocation, as many workgroups as that takes    |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CopyKernel {
    /// `groups` workgroups walk the array, `unroll` vec4s a lane per trip.
    GridStride {
        /// Workgroups in the grid.
        groups: u32,
        /// vec4s a lane copies per trip (1, 2 or 4).
        unroll: u32,
    },
    /// One vec4 per invocation.
    PerVec4,
    /// `groups` workgroups; each 8 adjacent lanes copy one contiguous
    /// stretch, a vec4 each per trip (lavapipe runs a workgroup 8 lanes at
    /// a time, each to its end: the 8 then stream memory in order).
    Stretch {
        /// Workgroups in the grid.
        groups: u32,
    },
}

impl CopyKernel {
    /// Every copy kernel.
    pub const ALL: [CopyKernel; 8] = [
        CopyKernel::GridStride {
            groups: 256,
            unroll: 1,
        },
        CopyKernel::GridStride {
            groups: 1024,
            unroll: 1,
        },
        CopyKernel::GridStride {
            groups: 4096,
            unroll: 1,
        },
        CopyKernel::GridStride {
            groups: 1024,
            unroll: 2,
        },
        CopyKernel::GridStride {
            groups: 1024,
            unroll: 4,
        },
        CopyKernel::PerVec4,
        CopyKernel::Stretch { groups: 256 },
        CopyKernel::Stretch { groups: 1024 },
    ];

    /// `grid-stride/1024/x2`, `vec4-per-lane`, …
    pub fn name(self) -> String {
        match self {
            CopyKernel::GridStride { groups, unroll: 1 } => format!("grid-stride/{groups}"),
            CopyKernel::GridStride { groups, unroll } => format!("grid-stride/{groups}/x{unroll}"),
            CopyKernel::PerVec4 => "vec4-per-lane".to_string(),
            CopyKernel::Stretch { groups } => format!("stretch/{groups}"),
        }
    }

    /// Whether 8-lane groups copy contiguous stretches (`STRETCH`).
    pub fn stretch(self) -> bool {
        matches!(self, CopyKernel::Stretch { .. })
    }

    /// vec4s a lane copies per trip.
    pub fn unroll(self) -> u32 {
        match self {
            CopyKernel::GridStride { unroll, .. } => unroll,
            CopyKernel::PerVec4 | CopyKernel::Stretch { .. } => 1,
        }
    }

    /// Workgroups of a dispatch over `vec4s` vec4s.
    pub fn workgroups(self, vec4s: u64) -> u64 {
        let needed = vec4s.div_ceil(COPY_LANES as u64).max(1);
        match self {
            CopyKernel::GridStride { groups, .. } | CopyKernel::Stretch { groups } => {
                needed.min(groups as u64)
            }
            CopyKernel::PerVec4 => needed,
        }
    }
}
