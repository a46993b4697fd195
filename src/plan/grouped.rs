//! The plan of the grouped normalisations (GroupNorm, InstanceNorm,
//! BatchNorm, LpNorm: `shaders/grouped_norm.wgsl`): the [A, B, C, D] view of
//! the tensor, how many pieces each set is cut into, and every entry point's
//! grid. Pure: shapes in, numbers out.
//!
//! | entry | lanes | each lane |
//! | --- | --- | --- |
//! | `stat_partials` | statistic sets × pieces | ≤ [`PIECE_VALUES`]-ish values of its set, strided by the piece count |
//! | `stat_combine` | statistic sets | merges its pieces in order |
//! | `given_stats` | statistic sets | (mean, rstd) from BatchNorm's inputs or a forward's saved ones |
//! | `save_stats` | statistic sets | writes the forward's mean and rstd |
//! | `coefficients` | fine sets | y = dev(x) · α + β' (pivot, k, α, β') |
//! | `apply`, `grad_apply` (`4`: cells of 4) | `APPLY_GROUPS` × `GROUPED_LANES` at most | every value (cell) in a grid stride |
//! | `apply_runs`, `grad_apply_runs` | a workgroup per run of D values | the run's cells, one coefficient load |
//! | `grad_partials` | fine sets × pieces | Σdz and Σdz·x̂ of its values |
//! | `grad_combine` | fine sets | those sums, in order |
//! | `grad_sets` | statistic sets | dx's coefficients of its fine sets |
//! | `grad_params` | channels | dscale, dbias over A |
//! | `grad_finish` | channels (A = 1, a channel per set: BatchNorm) | the three above in one |

/// The entry points of `grouped_norm.wgsl` (the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupedEntry {
    /// Pieces' moments or Lp sums.
    StatPartials,
    /// A statistic set's pieces merged.
    StatCombine,
    /// BatchNorm inference's statistics from its inputs.
    GivenStats,
    /// Per fine set (mean, rstd · scale, bias, k).
    Coefficients,
    /// y.
    Apply,
    /// Pieces' Σdz, Σdz·x̂.
    GradPartials,
    /// A fine set's pieces summed.
    GradCombine,
    /// dx's coefficients per statistic set.
    GradSets,
    /// dscale and dbias.
    GradParams,
    /// dx.
    GradApply,
    /// y, a cell of 4 values per step.
    Apply4,
    /// dx, a cell of 4 values per step.
    GradApply4,
    /// The statistics written out (mean, rstd).
    SaveStats,
    /// y, a workgroup per run of D values.
    ApplyRuns,
    /// dx, a workgroup per run of D values.
    GradApplyRuns,
    /// `GradCombine`, `GradSets` and `GradParams` in one, where A and the
    /// channels per statistic set are 1 (BatchNorm).
    GradFinish,
}

impl GroupedEntry {
    /// The WGSL function's name.
    pub fn name(self) -> &'static str {
        match self {
            GroupedEntry::StatPartials => "stat_partials",
            GroupedEntry::StatCombine => "stat_combine",
            GroupedEntry::GivenStats => "given_stats",
            GroupedEntry::Coefficients => "coefficients",
            GroupedEntry::Apply => "apply",
            GroupedEntry::GradPartials => "grad_partials",
            GroupedEntry::GradCombine => "grad_combine",
            GroupedEntry::GradSets => "grad_sets",
            GroupedEntry::GradParams => "grad_params",
            GroupedEntry::GradApply => "grad_apply",
            GroupedEntry::Apply4 => "apply4",
            GroupedEntry::GradApply4 => "grad_apply4",
            GroupedEntry::SaveStats => "save_stats",
            GroupedEntry::ApplyRuns => "apply_runs",
            GroupedEntry::GradApplyRuns => "grad_apply_runs",
            GroupedEntry::GradFinish => "grad_finish",
        }
    }

    /// The bindings it uses (the module's slots: 0 x, 1 dy, 2 scale, 3 bias,
    /// 4 input_mean, 5 input_var, 6 partials, 7 stats, 8 coef, 9 fine,
    /// 10 out, 11 running_mean, 12 running_var, 13 dscale, 14 dbias,
    /// 15 params, 16 x4, 17 dy4, 18 out4: the vec4 views; 19 saved mean,
    /// 20 saved rstd).
    pub fn bindings(self) -> &'static [u32] {
        match self {
            GroupedEntry::StatPartials => &[0, 1, 6, 15, 16, 17],
            GroupedEntry::StatCombine => &[0, 4, 5, 6, 7, 8, 11, 12, 15],
            GroupedEntry::GivenStats => &[4, 5, 7, 15],
            GroupedEntry::SaveStats => &[7, 15, 19, 20],
            GroupedEntry::Coefficients => &[2, 3, 4, 5, 7, 8, 15],
            GroupedEntry::Apply => &[0, 8, 10, 15],
            GroupedEntry::GradPartials => &[0, 1, 2, 3, 6, 7, 15, 16, 17],
            GroupedEntry::GradCombine => &[6, 9, 15],
            GroupedEntry::GradSets => &[2, 3, 7, 8, 9, 15],
            GroupedEntry::GradParams => &[9, 13, 14, 15],
            GroupedEntry::GradFinish => &[2, 3, 6, 7, 8, 13, 14, 15],
            GroupedEntry::GradApply => &[0, 1, 8, 10, 15],
            GroupedEntry::Apply4 | GroupedEntry::ApplyRuns => &[8, 15, 16, 18],
            GroupedEntry::GradApply4 | GroupedEntry::GradApplyRuns => &[8, 15, 16, 17, 18],
        }
    }
}

/// Invocations per workgroup of every grouped entry.
pub const GROUPED_LANES: u32 = 64;

/// Items (values, or cells of 4 with `vec4`) one `stat_partials` or
/// `grad_partials` lane takes, about: sets are cut into
/// ⌈items / PIECE_VALUES⌉ pieces (at most [`MAX_PIECES`]).
pub const PIECE_VALUES: u64 = 128;

/// The most pieces a set is cut into: the combine lane loops over them
/// (up to three times).
pub const MAX_PIECES: u64 = 20_000;

/// Items (values or cells) each lane of the grid-stride entries takes at
/// least, where the tensor allows: a lane's setup (a few divisions to place
/// its first item) is then paid over many.
pub const APPLY_ITEMS: u64 = 8;

/// Workgroups of the grid-stride entries, at most.
pub const APPLY_GROUPS: u64 = 4096;

/// The most iterations any lane may run (Mesa's llvmpipe stops an
/// invocation's loops at 65,535 in all).
pub const MAX_LANE_LOOP: u64 = 60_000;

/// How a grouped op sees its tensor: [A, B, C, D], a fine set per (a, c), a
/// statistic set per (a, c / cg).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupedView {
    /// Outer count (N for GroupNorm, 1 for BatchNorm).
    pub a: u64,
    /// Runs per set (1 for channels-first GroupNorm, N for BatchNorm).
    pub b: u64,
    /// Channels (fine sets per a).
    pub c: u64,
    /// Contiguous values per run.
    pub d: u64,
    /// Channels per statistic set.
    pub cg: u64,
}

impl GroupedView {
    /// Values in the tensor.
    pub fn len(&self) -> u64 {
        self.a * self.b * self.c * self.d
    }

    /// Whether it holds no value (never, for a view of a valid shape).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Statistic sets: A · C / cg.
    pub fn stat_sets(&self) -> u64 {
        self.a * (self.c / self.cg)
    }

    /// Values per statistic set.
    pub fn stat_count(&self) -> u64 {
        self.b * self.cg * self.d
    }

    /// Fine sets: A · C.
    pub fn fine_sets(&self) -> u64 {
        self.a * self.c
    }

    /// Values per fine set.
    pub fn fine_count(&self) -> u64 {
        self.b * self.d
    }
}

/// The pieces a set of `count` values is cut into.
pub fn grouped_pieces(count: u64) -> u64 {
    // A multiple of 8 where there are several: lavapipe runs a
    // workgroup 8 lanes at a time, each to its end, and 8 adjacent lanes of
    // one set then stream one contiguous stretch of it.
    match count.div_ceil(PIECE_VALUES) {
        0 | 1 => 1,
        p => p.next_multiple_of(8).min(MAX_PIECES),
    }
}

/// Everything the grouped kernels' grids depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupedPlan {
    /// The view.
    pub view: GroupedView,
    /// Pieces per statistic set.
    pub stat_pieces: u64,
    /// Pieces per fine set.
    pub fine_pieces: u64,
    /// Workgroups of `apply` and `grad_apply`.
    pub apply_groups: u64,
    /// Runs of D values are whole vec4s and the kernels read cells of 4.
    pub vec4: bool,
    /// The runs are long enough (at least [`SHORT_RUN_CELLS`] cells) for a
    /// workgroup each: y and dx are made by `apply_runs`, `grad_apply_runs`.
    pub runs: bool,
    /// Invocations per workgroup of the runs entries: [`GROUPED_LANES`] for
    /// runs of [`RUN_CELLS`] cells or more, 8 for shorter ones.
    pub run_lanes: u32,
    /// Consecutive runs each workgroup of the runs entries takes: about
    /// [`GROUP_CELLS`] cells' worth (a workgroup's setup is then paid
    /// over many cells).
    pub runs_per_group: u64,
}

/// Cells a workgroup of the runs entries takes, about.
pub const GROUP_CELLS: u64 = 2048;

/// Cells of 4 values a run of D values needs for a workgroup of its own.
pub const RUN_CELLS: u64 = 256;

/// Cells a run needs for a workgroup of 8 lanes of its own.
pub const SHORT_RUN_CELLS: u64 = 32;

impl GroupedPlan {
    /// The plan of `view`, or the longest loop a lane would run where that
    /// is past [`MAX_LANE_LOOP`] (sets of more than about 1.2e9 values).
    /// `vec4`: whether the tensors allow cells of 4 (D % 4 == 0 and aligned
    /// offsets; the caller knows the offsets).
    pub fn new(view: GroupedView, vec4: bool) -> Result<Self, u64> {
        let vec4 = vec4 && view.d % 4 == 0;
        let cell = if vec4 { 4 } else { 1 };
        let stat_pieces = grouped_pieces(view.stat_count() / cell);
        let fine_pieces = grouped_pieces(view.fine_count() / cell);
        let apply_groups = (view.len() / cell)
            .div_ceil(GROUPED_LANES as u64 * APPLY_ITEMS)
            .clamp(1, APPLY_GROUPS);
        let runs = vec4
            && view.d / 4 >= SHORT_RUN_CELLS
            && (view.d / 4).div_ceil(GROUPED_LANES as u64) <= MAX_LANE_LOOP;
        let run_lanes = match view.d / 4 >= RUN_CELLS {
            true => GROUPED_LANES,
            false => 8,
        };
        let plan = GroupedPlan {
            view,
            stat_pieces,
            fine_pieces,
            apply_groups,
            vec4,
            runs,
            run_lanes,
            runs_per_group: (GROUP_CELLS / (view.d / 4).max(1)).max(1),
        };
        let longest = [
            (view.stat_count() / cell).div_ceil(stat_pieces),
            (view.fine_count() / cell).div_ceil(fine_pieces),
            (view.len() / cell).div_ceil(plan.apply_lanes()),
            stat_pieces,
            fine_pieces,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if longest > MAX_LANE_LOOP {
            return Err(longest);
        }
        Ok(plan)
    }

    /// The backward's parameter gradients loop over A (`grad_params`) and
    /// its statistic sets over their channels (`grad_sets`): the longer of
    /// the two where it is past [`MAX_LANE_LOOP`].
    pub fn check_backward(&self) -> Result<(), u64> {
        let longest = self.view.a.max(self.view.cg);
        match longest > MAX_LANE_LOOP {
            true => Err(longest),
            false => Ok(()),
        }
    }

    /// Lanes of the grid-stride entries.
    pub fn apply_lanes(&self) -> u64 {
        self.apply_groups * GROUPED_LANES as u64
    }

    /// Workgroups for `lanes` one-item lanes.
    pub fn groups_for(lanes: u64) -> u64 {
        lanes.div_ceil(GROUPED_LANES as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_sets_without_long_loops() {
        for count in [1u64, 127, 128, 129, 65_536, 6_272, 1 << 30] {
            let p = grouped_pieces(count);
            assert!((1..=MAX_PIECES).contains(&p));
            assert!(count.div_ceil(p) <= MAX_LANE_LOOP, "{count}");
        }
    }

    #[test]
    fn a_plan_refuses_what_a_lane_cannot_loop() {
        let view = |a, b, c, d, cg| GroupedView { a, b, c, d, cg };
        let sd_vae = GroupedPlan::new(view(1, 1, 512, 4096, 16), true).unwrap();
        assert!(sd_vae.vec4 && sd_vae.runs);
        assert_eq!(sd_vae.stat_pieces, 65_536 / 4 / PIECE_VALUES);
        assert_eq!(sd_vae.fine_pieces, 4096 / 4 / PIECE_VALUES);
        assert_eq!(sd_vae.apply_groups, (1 << 21) / 4 / 64 / APPLY_ITEMS);
        assert!(!GroupedPlan::new(view(1, 1, 3, 6, 1), true).unwrap().vec4);
        // 100,000 samples of one channel: grad_params loops over A.
        let many = GroupedPlan::new(view(100_000, 1, 1, 1, 1), false).unwrap();
        assert_eq!(many.check_backward(), Err(100_000));
    }
}
