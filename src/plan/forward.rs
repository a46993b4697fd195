//! The forward's ladder: which kernel variant runs a shape on an adapter,
//! with how many lanes — one readable table, [`LADDER`].

use crate::caps::{AdapterClass, Capabilities};
use crate::error::{Error, Result};
use crate::plan::specs::{Kernel, ROW_CACHE_VALUES, ROWS_PER_BLOCK, Reduction, Rows};

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
/// | GPU   | any        | 2,048     | row cached, subgroup        | 64    |
/// | GPU   | any        | 2,048     | row cached, tree            | 64    |
/// | GPU   | any        | 8,192     | row cached, subgroup        | 256   |
/// | GPU   | any        | 8,192     | row cached, tree            | 256   |
/// | GPU   | 511        | any       | split row, subgroup         | 256   |
/// | GPU   | 511        | any       | split row, tree             | 256   |
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
    rung(Gpu, ANY, 2048, Kernel::RowCached(SUBGROUP), 64),
    rung(Gpu, ANY, 2048, Kernel::RowCached(TREE), 64),
    rung(Gpu, ANY, 8192, Kernel::RowCached(SUBGROUP), 256),
    rung(Gpu, ANY, 8192, Kernel::RowCached(TREE), 256),
    rung(Gpu, GPU_SPLIT_ROWS, ANY, Kernel::SplitRow(SUBGROUP), 256),
    rung(Gpu, GPU_SPLIT_ROWS, ANY, Kernel::SplitRow(TREE), 256),
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

/// No limit, in a rung.
pub(crate) const ANY: usize = usize::MAX;

/// On GPUs, rows longer than 8,192 values are split when there are fewer than
/// [`GPU_MIN_WORKGROUPS`] / 2 of them: one workgroup per row would leave
/// compute units idle (128 rows of 65,536 were 128 workgroups).
pub const GPU_SPLIT_ROWS: usize = GPU_MIN_WORKGROUPS / 2 - 1;

/// Values per piece the split-row kernel aims for (so a piece keeps one
/// workgroup busy, and no lane loops long).
pub const SPLIT_PIECE: usize = 8192;

/// Workgroups a GPU's grid should have at least: several per compute unit
/// (wgpu does not report how many a GPU has; 1,024 is eight each on a
/// 128-unit GPU). Rows fewer than that are split into more pieces, down to
/// [`GPU_MIN_PIECE`] values; the autotuner can still pick a kernel that does
/// not split.
pub const GPU_MIN_WORKGROUPS: usize = 1024;

/// The fewest values a piece takes when a GPU's rows are split to fill it.
pub const GPU_MIN_PIECE: usize = 2048;

/// Pieces per row of the split-row kernel: pieces of [`SPLIT_PIECE`] values,
/// and on a GPU more of them (of at least [`GPU_MIN_PIECE`]) until the grid
/// has [`GPU_MIN_WORKGROUPS`]; at most 1,024.
pub fn split_pieces(rows: usize, dim: usize, class: AdapterClass) -> u32 {
    let mut pieces = dim.div_ceil(SPLIT_PIECE);
    if class == AdapterClass::Gpu {
        let fill = GPU_MIN_WORKGROUPS.div_ceil(rows.max(1));
        pieces = pieces.max(fill.min(dim / GPU_MIN_PIECE));
    }
    pieces.clamp(1, 1024) as u32
}

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
                Self::with_kernel(
                    r.kernel,
                    r.workgroup_size,
                    rows,
                    dim,
                    capabilities,
                    info,
                    limits,
                )
                .ok()
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
        rows: usize,
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
        let spec = kernel.spec();
        let mut lanes = workgroup_size.min(device_lanes(limits)).max(1);
        let mut rows_per_workgroup = 1;
        if spec.needs_subgroups {
            let sizes = capabilities
                .subgroups
                .ok_or_else(|| Error::MissingFeature {
                    op: kernel.name(),
                    feature: "SUBGROUP",
                    adapter: info.name.clone(),
                })?;
            lanes = lanes.max(sizes.max);
            if spec.rows == Rows::PerSubgroup {
                // The size that runs, not the range wgpu reports (4..64 on
                // Metal, 4..128 on Vulkan without subgroup-size control).
                rows_per_workgroup = (lanes / sizes.probed.clamp(sizes.min, sizes.max)).max(1);
            }
            if spec.single_subgroup_size {
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
        if let Kernel::RowCached(_) = kernel
            && dim > lanes as usize * ROW_CACHE_VALUES
        {
            return Err(Error::KernelUnsuitable {
                kernel: kernel.name(),
                reason: format!(
                    "rows of {dim} values exceed what {lanes} lanes hold ({} values each)",
                    ROW_CACHE_VALUES
                ),
            });
        }
        if spec.rows == Rows::BlockPerWorkgroup {
            // Lanes 0-2 take the dim % 4 last columns.
            lanes = lanes.max(4);
            rows_per_workgroup = ROWS_PER_BLOCK;
        }
        if spec.rows == Rows::BlockPerLane {
            rows_per_workgroup = ROWS_PER_BLOCK * lanes;
        }
        let splits = match kernel {
            Kernel::SplitRow(_) => split_pieces(rows, dim, AdapterClass::of(info)),
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
        rows: usize,
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
        Self::with_kernel(kernel, lanes, rows, dim, capabilities, info, limits)
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

/// The most lanes a workgroup may have on the device, as a power of two (at least 64).
pub(crate) fn device_lanes(limits: &wgpu::Limits) -> u32 {
    let device_max = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x)
        .max(64);
    1u32 << (31 - device_max.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::SubgroupSizes;

    fn caps(subgroups: Option<(u32, u32)>) -> Capabilities {
        Capabilities {
            timestamps: false,
            timestamps_inside_passes: false,
            subgroups: subgroups.map(|(min, max)| SubgroupSizes {
                min,
                max,
                probed: min,
            }),
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
            LayerNormPlan::with_kernel(
                Kernel::RowBlock(SUBGROUP),
                8,
                100,
                4096,
                intel,
                &cpu,
                &limits
            ),
            Err(Error::KernelUnsuitable { .. })
        ));
        // A forced kernel takes its adapter class's lanes even past its rung's dims.
        let forced = LayerNormPlan::forced(Kernel::RowPerLane, 100, 4096, lavapipe, &cpu, &limits);
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
        // Rows up to 8,192 are held in registers on GPUs: x read once.
        let p = plan(4096, nvidia, &gpu);
        assert_eq!(
            (p.kernel, p.workgroup_size),
            (Kernel::RowCached(SUBGROUP), 256)
        );
        assert_eq!(plan(2000, caps(None), &gpu).kernel, Kernel::RowCached(TREE));
        // The top rung asks for 1,024 lanes; a device with 256 gets 256.
        assert_eq!(plan(1 << 23, nvidia, &gpu).workgroup_size, 256);
        // AMD's wave64: a workgroup holds whole subgroups.
        let amd = caps(Some((64, 64)));
        let p = LayerNormPlan::with_kernel(
            Kernel::RowPerWorkgroup(SUBGROUP),
            32,
            100,
            100,
            amd,
            &gpu,
            &limits,
        )
        .unwrap();
        assert_eq!(p.workgroup_size, 64);
    }

    #[test]
    fn subgroup_rows_follow_the_probed_size_not_the_reported_minimum() {
        let limits = wgpu::Limits::default();
        let gpu = info(wgpu::DeviceType::IntegratedGpu);
        // Metal reports 4..64; an Apple GPU runs 32.
        let mut apple = caps(Some((4, 64)));
        apple.subgroups.as_mut().unwrap().probed = 32;
        let p = LayerNormPlan::new(100, 768, apple, &gpu, &limits);
        assert_eq!(p.kernel, Kernel::RowPerSubgroup);
        assert_eq!(
            (p.workgroup_size, p.rows_per_workgroup),
            (128, 4),
            "one row per 32-wide subgroup, not per 4 lanes"
        );
    }

    #[test]
    fn long_rows_on_a_gpu_are_split_until_the_grid_is_full() {
        let limits = wgpu::Limits::default();
        let gpu = info(wgpu::DeviceType::DiscreteGpu);
        let nvidia = caps(Some((32, 32)));
        // 128 rows of 65,536: eight pieces a row, 1,024 workgroups (was 128).
        let p = LayerNormPlan::new(128, 65_536, nvidia, &gpu, &limits);
        assert_eq!((p.kernel, p.splits), (Kernel::SplitRow(SUBGROUP), 8));
        // One row of 1M: 512 pieces of 2,048 (was 128 of 8,192).
        let p = LayerNormPlan::new(1, 1 << 20, nvidia, &gpu, &limits);
        assert_eq!(p.splits, 512);
        // 4,096 rows fill the grid as they are: a workgroup a row.
        let p = LayerNormPlan::new(4096, 65_536, nvidia, &gpu, &limits);
        assert_eq!(p.kernel, Kernel::RowPerWorkgroup(SUBGROUP));
        // CPU adapters keep their measured rule.
        assert_eq!(split_pieces(1, 1 << 20, AdapterClass::Cpu), 128);
    }

    #[test]
    fn gpu_backwards_hold_rows_in_registers_in_parts_that_fill_the_gpu() {
        let limits = wgpu::Limits::default();
        let gpu = info(wgpu::DeviceType::DiscreteGpu);
        let nvidia = caps(Some((32, 32)));
        let p = crate::plan::BackwardPlan::new(4096, 768, nvidia, &gpu, &limits);
        assert_eq!(
            (p.kernel, p.workgroup_size, p.rows_per_part),
            (crate::plan::BackwardKernel::RowsCached(SUBGROUP), 256, 4),
            "1,024 parts of four rows"
        );
        let p = crate::plan::BackwardPlan::new(4096, 768, caps(None), &gpu, &limits);
        assert_eq!(p.kernel, crate::plan::BackwardKernel::RowsCached(TREE));
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
        let e = LayerNormPlan::with_kernel(
            Kernel::RowPerSubgroup,
            64,
            1,
            10,
            caps(None),
            &gpu,
            &limits,
        )
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
        let e = LayerNormPlan::with_kernel(
            Kernel::RowPerLane,
            64,
            1,
            1 << 20,
            caps(None),
            &gpu,
            &limits,
        )
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
