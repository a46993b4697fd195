//! The WGSL kernels and the cache of pipelines built from them.
//!
//! Sources are the `.wgsl` files in `shaders/`, compiled into the crate. A
//! kernel's source is a storage prelude (`storage_f32.wgsl` or
//! `storage_f16.wgsl`), then for the forward kernels `layer_norm_common.wgsl`,
//! then the kernel file and, where lanes reduce together, one reduction file
//! (see the comment at the top of each). Whole files are joined, never edited:
//! everything else is specialised with override constants (workgroup size,
//! LayerNorm or RMSNorm, which optional inputs and outputs exist). Every
//! (source, entry point, overrides) combination is compiled once per
//! [`Context`](crate::Context) and reused.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::context::Context;
use crate::error::Result;
use crate::plan::{BackwardKernel, BackwardPlan, BindingWindow, Kernel, LayerNormPlan, Reduction};
use crate::tensor::DType;

/// `shaders/storage_f32.wgsl`: the prelude of f32 kernels.
pub const STORAGE_F32_WGSL: &str = include_str!("../shaders/storage_f32.wgsl");
/// `shaders/storage_f16.wgsl`: the prelude of f16 kernels (`enable f16;`).
pub const STORAGE_F16_WGSL: &str = include_str!("../shaders/storage_f16.wgsl");
/// `shaders/layer_norm_params.wgsl`: gamma and beta as arrays of values.
pub const LAYER_NORM_PARAMS_WGSL: &str = include_str!("../shaders/layer_norm_params.wgsl");
/// `shaders/layer_norm_params_vec4.wgsl`: gamma and beta as vec4s, for
/// pipelines whose rows are all vec4-aligned.
pub const LAYER_NORM_PARAMS_VEC4_WGSL: &str =
    include_str!("../shaders/layer_norm_params_vec4.wgsl");
/// `shaders/layer_norm_input.wgsl`: the plain forward's loads.
pub const LAYER_NORM_INPUT_WGSL: &str = include_str!("../shaders/layer_norm_input.wgsl");
/// `shaders/layer_norm_input_residual.wgsl`: the fused residual forward's loads.
pub const LAYER_NORM_INPUT_RESIDUAL_WGSL: &str =
    include_str!("../shaders/layer_norm_input_residual.wgsl");
/// `shaders/norm_backward.wgsl`: the backward of LayerNorm and RMSNorm.
pub const NORM_BACKWARD_WGSL: &str = include_str!("../shaders/norm_backward.wgsl");

/// `shaders/layer_norm_common.wgsl`: bindings and helpers of every layer-norm kernel.
pub const LAYER_NORM_COMMON_WGSL: &str = include_str!("../shaders/layer_norm_common.wgsl");
/// `shaders/layer_norm_row_per_lane.wgsl`: one invocation per row.
pub const LAYER_NORM_ROW_PER_LANE_WGSL: &str =
    include_str!("../shaders/layer_norm_row_per_lane.wgsl");
/// `shaders/layer_norm_row_per_subgroup.wgsl`: one subgroup per row.
pub const LAYER_NORM_ROW_PER_SUBGROUP_WGSL: &str =
    include_str!("../shaders/layer_norm_row_per_subgroup.wgsl");
/// `shaders/layer_norm_row_per_workgroup.wgsl`: one workgroup per row.
pub const LAYER_NORM_ROW_PER_WORKGROUP_WGSL: &str =
    include_str!("../shaders/layer_norm_row_per_workgroup.wgsl");
/// `shaders/layer_norm_eight_rows.wgsl`: eight rows in step, shared by the
/// row-per-lane and row-block kernels.
pub const LAYER_NORM_EIGHT_ROWS_WGSL: &str = include_str!("../shaders/layer_norm_eight_rows.wgsl");
/// `shaders/layer_norm_row_block.wgsl`: a workgroup per block of eight rows.
pub const LAYER_NORM_ROW_BLOCK_WGSL: &str = include_str!("../shaders/layer_norm_row_block.wgsl");
/// `shaders/layer_norm_row_block_subgroup.wgsl`: the row block's entry point
/// with subgroups.
pub const LAYER_NORM_ROW_BLOCK_SUBGROUP_WGSL: &str =
    include_str!("../shaders/layer_norm_row_block_subgroup.wgsl");
/// `shaders/layer_norm_row_block_pieces.wgsl`: the row block's entry points
/// without subgroups.
pub const LAYER_NORM_ROW_BLOCK_PIECES_WGSL: &str =
    include_str!("../shaders/layer_norm_row_block_pieces.wgsl");
/// `shaders/layer_norm_pieces.wgsl`: pieces of rows and their combination.
pub const LAYER_NORM_PIECES_WGSL: &str = include_str!("../shaders/layer_norm_pieces.wgsl");
/// `shaders/layer_norm_split_row.wgsl`: long rows cut into pieces.
pub const LAYER_NORM_SPLIT_ROW_WGSL: &str = include_str!("../shaders/layer_norm_split_row.wgsl");
/// `shaders/copy.wgsl`: the copy kernel benchmarks compare against.
pub const COPY_WGSL: &str = include_str!("../shaders/copy.wgsl");
/// `shaders/reduce_workgroup.wgsl`: workgroup-memory tree sum.
pub const REDUCE_WORKGROUP_WGSL: &str = include_str!("../shaders/reduce_workgroup.wgsl");
/// `shaders/reduce_subgroup.wgsl`: subgroup sum.
pub const REDUCE_SUBGROUP_WGSL: &str = include_str!("../shaders/reduce_subgroup.wgsl");

/// How a forward pipeline is specialised: the normalisation, the storage
/// type, and which optional bindings it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LayerNormVariant {
    /// RMSNorm instead of LayerNorm.
    pub rms: bool,
    /// The storage type of x, y, gamma, beta, residual and sum.
    pub dtype: DType,
    /// Add a residual to x before normalising.
    pub residual: bool,
    /// Add a bias (one value per column) with the residual.
    pub residual_bias: bool,
    /// Write the sum x + residual (+ bias).
    pub sum: bool,
    /// Compute the statistics only: y is not written.
    pub stats_only: bool,
    /// Multiply by gamma.
    pub gamma: bool,
    /// Add beta.
    pub beta: bool,
    /// Write the per-row mean.
    pub mean: bool,
    /// Write the per-row rstd.
    pub rstd: bool,
    /// Every row of x and y, and gamma and beta, start on a vec4 boundary
    /// (dim % 4 == 0 and vec4-aligned tensors): gamma and beta are bound as
    /// vec4s, and the row-per-lane kernel reads and writes rows as vec4s.
    pub vec4_rows: bool,
}

/// The entry points of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
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
    /// `layer_norm_forward` of the row-per-* kernels.
    Forward,
    /// `split_stats` of the split-row kernel.
    SplitStats,
    /// `split_combine` of the split-row kernel.
    SplitCombine,
    /// `split_apply` of the split-row kernel.
    SplitApply,
    /// `row_block_moments` of the row-block kernel without subgroups.
    RowBlockMoments,
    /// `row_block_apply` of the row-block kernel without subgroups.
    RowBlockApply,
}

impl Entry {
    /// The bindings the entry point uses (with the fused residual's or
    /// without); its bind group layout holds these.
    pub(crate) fn bindings(self, residual: bool) -> &'static [u32] {
        match (self, residual) {
            (Entry::Forward, false) => &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            (Entry::Forward, true) => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13],
            (Entry::SplitStats, false) => &[0, 1, 8, 9],
            (Entry::SplitStats, true) => &[0, 1, 8, 9, 11, 12],
            (Entry::SplitCombine, false) => &[0, 6, 7, 8, 9, 10],
            (Entry::SplitCombine, true) => &[0, 6, 7, 8, 9, 10, 11, 12],
            (Entry::SplitApply, false) => &[0, 1, 2, 3, 4, 5, 8, 10],
            (Entry::SplitApply, true) => &[0, 1, 2, 3, 4, 5, 8, 10, 11, 12, 13],
            (Entry::RowBlockMoments, false) => &[0, 1, 8, 9],
            (Entry::RowBlockMoments, true) => &[0, 1, 8, 9, 11, 12],
            (Entry::RowBlockApply, false) => &[0, 1, 2, 3, 4, 5, 8, 10],
            (Entry::RowBlockApply, true) => &[0, 1, 2, 3, 4, 5, 8, 10, 11, 12, 13],
            (Entry::DxFourRowsPerLane, _) => &[0, 1, 2, 3, 4, 5, 6, 9],
            (Entry::DxRowPerWorkgroup, _) => &[0, 1, 2, 3, 4, 5, 9, 10],
            (Entry::DxSplitSums, _) => &[0, 1, 2, 3, 4, 9, 11],
            (Entry::DxSplitCombine, _) => &[9, 10, 11, 12],
            (Entry::DxSplitApply, _) => &[0, 1, 2, 3, 4, 5, 9, 10, 12],
            (Entry::ParamPartials, _) => &[0, 1, 3, 4, 6, 9, 10],
            (Entry::ParamSums, _) => &[6, 7, 8, 9],
        }
    }

    /// Storage buffers the entry point binds.
    pub(crate) fn storage_buffers(self, residual: bool) -> u32 {
        self.bindings(residual)
            .iter()
            .filter(|&&b| {
                !matches!(
                    self.layout_entry(b).ty,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        ..
                    }
                )
            })
            .count() as u32
    }

    fn is_backward(self) -> bool {
        matches!(
            self,
            Entry::DxFourRowsPerLane
                | Entry::DxRowPerWorkgroup
                | Entry::DxSplitSums
                | Entry::DxSplitCombine
                | Entry::DxSplitApply
                | Entry::ParamPartials
                | Entry::ParamSums
        )
    }

    /// The layout entry of `binding` as the entry point's file declares it.
    fn layout_entry(self, binding: u32) -> wgpu::BindGroupLayoutEntry {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let ty = if self.is_backward() {
            // shaders/norm_backward.wgsl: x, dy, gamma, mean, rstd are read;
            // dx, partials, dgamma, dbeta, row_centre, piece_sums, row_sums written;
            // 9 is params.
            match binding {
                0..=4 => Storage { read_only: true },
                9 => Uniform,
                _ => Storage { read_only: false },
            }
        } else {
            // shaders/layer_norm_common.wgsl (0-8), the gamma/beta view
            // (4, 5), layer_norm_pieces.wgsl (9, 10) and
            // layer_norm_input_residual.wgsl (11-13).
            match binding {
                // x, x4, gamma, beta, residual, residual_bias
                0 | 1 | 4 | 5 | 11 | 12 => Storage { read_only: true },
                8 => Uniform,
                // y, y4, mean_out, rstd_out, piece_moments, row_stats, sum_out
                _ => Storage { read_only: false },
            }
        };
        wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Entry::DxFourRowsPerLane => "dx_four_rows_per_lane",
            Entry::DxRowPerWorkgroup => "dx_row_per_workgroup",
            Entry::DxSplitSums => "dx_split_sums",
            Entry::DxSplitCombine => "dx_split_combine",
            Entry::DxSplitApply => "dx_split_apply",
            Entry::ParamPartials => "param_partials",
            Entry::ParamSums => "param_sums",
            Entry::Forward => "layer_norm_forward",
            Entry::SplitStats => "split_stats",
            Entry::SplitCombine => "split_combine",
            Entry::SplitApply => "split_apply",
            Entry::RowBlockMoments => "row_block_moments",
            Entry::RowBlockApply => "row_block_apply",
        }
    }
}

/// Which optional parts a backward pipeline has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct BackwardVariant {
    pub(crate) rms: bool,
    pub(crate) dtype: DType,
    pub(crate) gamma: bool,
    pub(crate) dgamma: bool,
    pub(crate) dbeta: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PipelineKey {
    Forward {
        plan: LayerNormPlan,
        variant: LayerNormVariant,
        entry: Entry,
    },
    Backward {
        plan: BackwardPlan,
        variant: BackwardVariant,
        entry: Entry,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ModuleKey {
    /// A forward kernel, its storage type, whether it is fused with the
    /// residual, and whether gamma and beta are read as vec4s.
    Forward(Kernel, DType, bool, bool),
    Backward(Reduction, DType),
}

fn prelude(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => STORAGE_F32_WGSL,
        DType::F16 => STORAGE_F16_WGSL,
    }
}

fn reduction_file(reduction: Reduction) -> &'static str {
    match reduction {
        Reduction::Subgroup => REDUCE_SUBGROUP_WGSL,
        Reduction::Workgroup => REDUCE_WORKGROUP_WGSL,
    }
}

/// The WGSL source of a plain f32 forward kernel for any alignment: see
/// [`layer_norm_source_as`].
pub fn layer_norm_source(kernel: Kernel) -> String {
    layer_norm_source_as(kernel, DType::F32, false, false)
}

/// The WGSL source of the backward kernels, for f32 or f16 storage: the
/// storage prelude, `norm_backward.wgsl`, and the reduction file.
pub fn norm_backward_source(reduction: Reduction, dtype: DType) -> String {
    [
        prelude(dtype),
        NORM_BACKWARD_WGSL,
        reduction_file(reduction),
    ]
    .join("\n")
}

/// The WGSL source of a forward kernel (LayerNorm and RMSNorm alike) for f32
/// or f16 storage, fused with a residual add or not, with gamma and beta
/// read as vec4s (`vec4_rows`, see [`LayerNormVariant::vec4_rows`]) or value
/// by value: the storage prelude, the common file, the gamma/beta view, the
/// input file, the kernel file, and (where lanes reduce together) the
/// reduction file.
pub fn layer_norm_source_as(
    kernel: Kernel,
    dtype: DType,
    residual: bool,
    vec4_rows: bool,
) -> String {
    let params = match vec4_rows {
        false => LAYER_NORM_PARAMS_WGSL,
        true => LAYER_NORM_PARAMS_VEC4_WGSL,
    };
    let input = match residual {
        false => LAYER_NORM_INPUT_WGSL,
        true => LAYER_NORM_INPUT_RESIDUAL_WGSL,
    };
    let parts: &[&str] = match kernel {
        Kernel::RowPerLane => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_EIGHT_ROWS_WGSL,
            LAYER_NORM_ROW_PER_LANE_WGSL,
        ],
        Kernel::RowBlock(Reduction::Subgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_EIGHT_ROWS_WGSL,
            LAYER_NORM_ROW_BLOCK_WGSL,
            LAYER_NORM_ROW_BLOCK_SUBGROUP_WGSL,
        ],
        Kernel::RowBlock(Reduction::Workgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_EIGHT_ROWS_WGSL,
            LAYER_NORM_ROW_BLOCK_WGSL,
            LAYER_NORM_PIECES_WGSL,
            LAYER_NORM_ROW_BLOCK_PIECES_WGSL,
        ],
        Kernel::RowPerSubgroup => &[LAYER_NORM_COMMON_WGSL, LAYER_NORM_ROW_PER_SUBGROUP_WGSL],
        Kernel::RowPerWorkgroup(Reduction::Subgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_ROW_PER_WORKGROUP_WGSL,
            REDUCE_SUBGROUP_WGSL,
        ],
        Kernel::RowPerWorkgroup(Reduction::Workgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_ROW_PER_WORKGROUP_WGSL,
            REDUCE_WORKGROUP_WGSL,
        ],
        Kernel::SplitRow(Reduction::Subgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_PIECES_WGSL,
            LAYER_NORM_SPLIT_ROW_WGSL,
            REDUCE_SUBGROUP_WGSL,
        ],
        Kernel::SplitRow(Reduction::Workgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_PIECES_WGSL,
            LAYER_NORM_SPLIT_ROW_WGSL,
            REDUCE_WORKGROUP_WGSL,
        ],
    };
    // The gamma/beta view and the input file go right after the common file.
    [prelude(dtype), parts[0], params, input]
        .into_iter()
        .chain(parts[1..].iter().copied())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Shader modules, layouts and pipelines of one device.
pub(crate) struct Kernels {
    /// The bind group and pipeline layouts of each entry point (with the
    /// residual's bindings or without), built on first use.
    layouts: Mutex<HashMap<(Entry, bool), (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    copy: Mutex<Option<wgpu::ComputePipeline>>,
    /// Bound where an optional input is absent (never read).
    pub(crate) dummy_input: wgpu::Buffer,
    /// Bound where an optional output is absent (never written). Separate from
    /// `dummy_input`: one buffer may not be read-only and read-write in one dispatch.
    pub(crate) dummy_output: wgpu::Buffer,
}

fn layouts(
    device: &wgpu::Device,
    label: &str,
    entries: &[wgpu::BindGroupLayoutEntry],
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries,
    });
    let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&group)],
        immediate_size: 0,
    });
    (group, pipeline)
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Kernels {
            layouts: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            copy: Mutex::new(None),
            dummy_input: dummy("wgpu-norm unused input"),
            dummy_output: dummy("wgpu-norm unused output"),
        }
    }

    pub(crate) fn pipeline_count(&self) -> usize {
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The copy pipeline (`shaders/copy.wgsl`), built on first use.
    pub(crate) fn copy(&self, ctx: &Context) -> Result<wgpu::ComputePipeline> {
        let mut slot = self.copy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let pipeline = ctx.scoped("building the copy pipeline", || {
            let module = ctx
                .device()
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("copy"),
                    source: wgpu::ShaderSource::Wgsl(COPY_WGSL.into()),
                });
            ctx.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("copy"),
                    layout: None,
                    module: &module,
                    entry_point: Some("copy"),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        *slot = Some(pipeline.clone());
        Ok(pipeline)
    }

    /// The bind group and pipeline layouts of an entry point, built on first
    /// use (inside an error scope: a device whose limits are too low for
    /// them gives an error, not a panic).
    pub(crate) fn layouts(
        &self,
        ctx: &Context,
        entry: Entry,
        residual: bool,
    ) -> Result<(wgpu::BindGroupLayout, wgpu::PipelineLayout)> {
        let mut cache = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = cache.get(&(entry, residual)) {
            return Ok(l.clone());
        }
        let entries: Vec<_> = entry
            .bindings(residual)
            .iter()
            .map(|&b| entry.layout_entry(b))
            .collect();
        let made = ctx.scoped("creating a bind group layout", || {
            layouts(ctx.device(), entry.name(), &entries)
        })?;
        cache.insert((entry, residual), made.clone());
        Ok(made)
    }

    /// The bind group layout of an entry point.
    pub(crate) fn layout(
        &self,
        ctx: &Context,
        entry: Entry,
        residual: bool,
    ) -> Result<wgpu::BindGroupLayout> {
        Ok(self.layouts(ctx, entry, residual)?.0)
    }

    /// The pipeline of one entry point of the plan's forward kernel,
    /// specialised for `variant`, built on first use.
    pub(crate) fn layer_norm_pipeline(
        &self,
        ctx: &Context,
        plan: LayerNormPlan,
        variant: LayerNormVariant,
        entry: Entry,
    ) -> Result<wgpu::ComputePipeline> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let key = PipelineKey::Forward {
            plan,
            variant,
            entry,
        };
        let module = ModuleKey::Forward(
            plan.kernel,
            variant.dtype,
            variant.residual,
            variant.vec4_rows,
        );
        self.pipeline(ctx, key, module, entry, variant.residual, || {
            let mut constants = vec![
                ("WG", plan.workgroup_size as f64),
                ("HAS_GAMMA", flag(variant.gamma)),
                ("HAS_BETA", flag(variant.beta)),
                ("WRITE_MEAN", flag(variant.mean)),
                ("WRITE_RSTD", flag(variant.rstd)),
                ("RMS", flag(variant.rms)),
                ("WRITE_Y", flag(!variant.stats_only)),
                ("VEC4_ROWS", flag(variant.vec4_rows)),
            ];
            if variant.residual {
                // Declared by layer_norm_input_residual.wgsl only.
                constants.push(("HAS_RESIDUAL_BIAS", flag(variant.residual_bias)));
                constants.push(("WRITE_SUM", flag(variant.sum)));
            }
            match plan.kernel {
                Kernel::RowPerSubgroup => {
                    constants.push(("ROWS_PER_WG", plan.rows_per_workgroup as f64))
                }
                Kernel::SplitRow(_) | Kernel::RowBlock(Reduction::Workgroup) => {
                    constants.push(("SPLITS", plan.splits as f64))
                }
                _ => {}
            }
            constants
        })
    }

    /// The pipeline of one entry point of the backward kernels, built on
    /// first use. The dgamma/dbeta stages always run [`PARAM_LANES`] lanes.
    pub(crate) fn backward_pipeline(
        &self,
        ctx: &Context,
        plan: BackwardPlan,
        variant: BackwardVariant,
        entry: Entry,
    ) -> Result<wgpu::ComputePipeline> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let reduction = match plan.kernel {
            BackwardKernel::RowPerWorkgroup(r) | BackwardKernel::SplitRow(r) => r,
            // The row-per-lane entry reduces nothing: the tree file compiles anywhere.
            BackwardKernel::RowPerLane => Reduction::Workgroup,
        };
        let lanes = match entry {
            Entry::ParamPartials | Entry::ParamSums => PARAM_LANES,
            // Declares its own 64.
            Entry::DxSplitCombine => 64,
            _ => plan.workgroup_size,
        };
        let key = PipelineKey::Backward {
            plan,
            variant,
            entry,
        };
        let module = ModuleKey::Backward(reduction, variant.dtype);
        self.pipeline(ctx, key, module, entry, false, || {
            vec![
                ("WG", lanes as f64),
                ("RMS", flag(variant.rms)),
                ("HAS_GAMMA", flag(variant.gamma)),
                ("WRITE_DGAMMA", flag(variant.dgamma)),
                ("WRITE_DBETA", flag(variant.dbeta)),
                ("SPLITS", plan.splits as f64),
            ]
        })
    }

    /// The cached pipeline of `key`, or a new one of `entry` in the module of
    /// `module_key` specialised with `constants`.
    fn pipeline(
        &self,
        ctx: &Context,
        key: PipelineKey,
        module_key: ModuleKey,
        entry: Entry,
        residual: bool,
        constants: impl FnOnce() -> Vec<(&'static str, f64)>,
    ) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(ctx, module_key)?;
        let (_, layout) = self.layouts(ctx, entry, residual)?;
        let constants = constants();
        let pipeline = ctx.scoped("building a pipeline", || {
            ctx.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry.name()),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry.name()),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        // Every workgroup variable is written before it is read.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        // Two threads may have built the same pipeline; either copy is fine.
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, ctx: &Context, key: ModuleKey) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let (source, dtype) = match key {
            ModuleKey::Forward(kernel, dtype, residual, vec4_rows) => (
                layer_norm_source_as(kernel, dtype, residual, vec4_rows),
                dtype,
            ),
            ModuleKey::Backward(reduction, dtype) => {
                (norm_backward_source(reduction, dtype), dtype)
            }
        };
        dtype.check_supported(ctx)?;
        let module = ctx.scoped("compiling a kernel", || {
            ctx.device()
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("wgpu-norm kernel"),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })?;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }
}

/// Lanes of the dgamma/dbeta stages (one column each).
pub(crate) const PARAM_LANES: u32 = 256;

/// A storage binding of `w` in `buffer`.
pub(crate) fn bind(buffer: &wgpu::Buffer, w: BindingWindow) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: w.offset,
        size: std::num::NonZeroU64::new(w.size),
    })
}

/// The vec4 view of a window of `dtype` values: whole vec4s only (16 bytes
/// of f32, 8 of f16). A window under one vec4 has no vec4 body to read, so a
/// dummy stands in.
pub(crate) fn bind_vec4<'a>(
    buffer: &'a wgpu::Buffer,
    w: BindingWindow,
    dtype: DType,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    let vec4 = 4 * dtype.size_bytes();
    if w.size >= vec4 {
        bind(
            buffer,
            BindingWindow {
                size: w.size / vec4 * vec4,
                ..w
            },
        )
    } else {
        dummy.as_entire_binding()
    }
}

/// An optional tensor's window, or a dummy the pipeline never touches.
pub(crate) fn bind_optional<'a>(
    t: Option<(&'a wgpu::Buffer, BindingWindow)>,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    match t {
        Some((buffer, w)) => bind(buffer, w),
        None => dummy.as_entire_binding(),
    }
}
