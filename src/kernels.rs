//! The WGSL kernels and the cache of pipelines built from them.
//!
//! Sources are the `.wgsl` files in `shaders/`, compiled into the crate. A
//! kernel file is preceded by `layer_norm_common.wgsl` and, for a workgroup per
//! row, followed by one reduction file (see the comment at the top of each), and
//! specialised with override constants
//! (workgroup size, which optional inputs and outputs exist). Every
//! (kernel, reduction, overrides) combination is compiled once per
//! [`Context`](crate::Context) and reused.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::context::Context;
use crate::error::Result;
use crate::plan::{BindingWindow, Kernel, LayerNormPlan, Reduction};

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
/// `shaders/layer_norm_split_row.wgsl`: long rows cut into pieces.
pub const LAYER_NORM_SPLIT_ROW_WGSL: &str = include_str!("../shaders/layer_norm_split_row.wgsl");
/// `shaders/copy.wgsl`: the copy kernel benchmarks compare against.
pub const COPY_WGSL: &str = include_str!("../shaders/copy.wgsl");
/// `shaders/reduce_workgroup.wgsl`: workgroup-memory tree sum.
pub const REDUCE_WORKGROUP_WGSL: &str = include_str!("../shaders/reduce_workgroup.wgsl");
/// `shaders/reduce_subgroup.wgsl`: subgroup sum.
pub const REDUCE_SUBGROUP_WGSL: &str = include_str!("../shaders/reduce_subgroup.wgsl");

/// Which optional bindings a layer-norm pipeline uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LayerNormVariant {
    /// Multiply by gamma.
    pub gamma: bool,
    /// Add beta.
    pub beta: bool,
    /// Write the per-row mean.
    pub mean: bool,
    /// Write the per-row rstd.
    pub rstd: bool,
}

/// The entry points of the layer-norm kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
    /// `layer_norm_forward` of the row-per-* kernels.
    Forward,
    /// `split_stats` of the split-row kernel.
    SplitStats,
    /// `split_combine` of the split-row kernel.
    SplitCombine,
    /// `split_apply` of the split-row kernel.
    SplitApply,
}

impl Entry {
    /// The bindings the entry point uses; its bind group layout holds these.
    pub(crate) fn bindings(self) -> &'static [u32] {
        match self {
            Entry::Forward => &[0, 1, 2, 3, 4, 5, 6, 7, 8],
            Entry::SplitStats => &[0, 1, 8, 9],
            Entry::SplitCombine => &[0, 6, 7, 8, 9, 10],
            Entry::SplitApply => &[0, 1, 2, 3, 4, 5, 8, 10],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Entry::Forward => "layer_norm_forward",
            Entry::SplitStats => "split_stats",
            Entry::SplitCombine => "split_combine",
            Entry::SplitApply => "split_apply",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    plan: LayerNormPlan,
    variant: LayerNormVariant,
    entry: Entry,
}

/// The WGSL source of a layer-norm kernel: the common file, the kernel file,
/// and (for a workgroup per row) the reduction file.
pub fn layer_norm_source(kernel: Kernel) -> String {
    let parts: &[&str] = match kernel {
        Kernel::RowPerLane => &[LAYER_NORM_COMMON_WGSL, LAYER_NORM_ROW_PER_LANE_WGSL],
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
            LAYER_NORM_SPLIT_ROW_WGSL,
            REDUCE_SUBGROUP_WGSL,
        ],
        Kernel::SplitRow(Reduction::Workgroup) => &[
            LAYER_NORM_COMMON_WGSL,
            LAYER_NORM_SPLIT_ROW_WGSL,
            REDUCE_WORKGROUP_WGSL,
        ],
    };
    parts.join("\n")
}

/// Shader modules, layouts and pipelines of one device.
pub(crate) struct Kernels {
    layer_norm_layout: wgpu::BindGroupLayout,
    layer_norm_pipeline_layout: wgpu::PipelineLayout,
    /// Layouts of the split-row entries: stats, combine, apply.
    split_layouts: [(wgpu::BindGroupLayout, wgpu::PipelineLayout); 3],
    modules: Mutex<HashMap<Kernel, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    copy: Mutex<Option<wgpu::ComputePipeline>>,
    /// Bound where an optional input is absent (never read).
    pub(crate) dummy_input: wgpu::Buffer,
    /// Bound where an optional output is absent (never written). Separate from
    /// `dummy_input`: one buffer may not be read-only and read-write in one dispatch.
    pub(crate) dummy_output: wgpu::Buffer,
}

/// The layout entry of a binding of the layer-norm kernels, as declared in
/// shaders/layer_norm_common.wgsl (0-8) and layer_norm_split_row.wgsl (9, 10).
fn layout_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    let ty = match binding {
        // x, x4, gamma, beta
        0 | 1 | 4 | 5 => wgpu::BufferBindingType::Storage { read_only: true },
        // params
        8 => wgpu::BufferBindingType::Uniform,
        // y, y4, mean_out, rstd_out, piece_moments, row_stats
        _ => wgpu::BufferBindingType::Storage { read_only: false },
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
        let [forward, split_stats, split_combine, split_apply] = [
            Entry::Forward,
            Entry::SplitStats,
            Entry::SplitCombine,
            Entry::SplitApply,
        ]
        .map(|entry| {
            let entries: Vec<_> = entry.bindings().iter().map(|&b| layout_entry(b)).collect();
            layouts(device, entry.name(), &entries)
        });
        let (layer_norm_layout, layer_norm_pipeline_layout) = forward;
        let split_layouts = [split_stats, split_combine, split_apply];
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Kernels {
            layer_norm_layout,
            layer_norm_pipeline_layout,
            split_layouts,
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

    /// The bind group layout of an entry point.
    pub(crate) fn layout(&self, entry: Entry) -> &wgpu::BindGroupLayout {
        match entry {
            Entry::Forward => &self.layer_norm_layout,
            Entry::SplitStats => &self.split_layouts[0].0,
            Entry::SplitCombine => &self.split_layouts[1].0,
            Entry::SplitApply => &self.split_layouts[2].0,
        }
    }

    fn pipeline_layout(&self, entry: Entry) -> &wgpu::PipelineLayout {
        match entry {
            Entry::Forward => &self.layer_norm_pipeline_layout,
            Entry::SplitStats => &self.split_layouts[0].1,
            Entry::SplitCombine => &self.split_layouts[1].1,
            Entry::SplitApply => &self.split_layouts[2].1,
        }
    }

    /// The pipeline of one entry point of the plan's kernel, specialised for
    /// `variant`, built on first use.
    pub(crate) fn layer_norm_pipeline(
        &self,
        ctx: &Context,
        plan: LayerNormPlan,
        variant: LayerNormVariant,
        entry: Entry,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            plan,
            variant,
            entry,
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(ctx, plan.kernel)?;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut constants = vec![
            ("WG", plan.workgroup_size as f64),
            ("HAS_GAMMA", flag(variant.gamma)),
            ("HAS_BETA", flag(variant.beta)),
            ("WRITE_MEAN", flag(variant.mean)),
            ("WRITE_RSTD", flag(variant.rstd)),
        ];
        match plan.kernel {
            Kernel::RowPerSubgroup => {
                constants.push(("ROWS_PER_WG", plan.rows_per_workgroup as f64))
            }
            Kernel::SplitRow(_) => constants.push(("SPLITS", plan.splits as f64)),
            _ => {}
        }
        let pipeline = ctx.scoped("building the layer-norm pipeline", || {
            ctx.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry.name()),
                    layout: Some(self.pipeline_layout(entry)),
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

    fn module(&self, ctx: &Context, kernel: Kernel) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&kernel)
        {
            return Ok(m.clone());
        }
        let source = layer_norm_source(kernel);
        let module = ctx.scoped("compiling a layer-norm kernel", || {
            ctx.device()
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("layer_norm"),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })?;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kernel, module.clone());
        Ok(module)
    }
}

/// A storage binding of `w` in `buffer`.
pub(crate) fn bind(buffer: &wgpu::Buffer, w: BindingWindow) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: w.offset,
        size: std::num::NonZeroU64::new(w.size),
    })
}

/// The vec4 view of a window: whole 16-byte words only. A window under 16
/// bytes has no vec4 body to read, so a dummy stands in.
pub(crate) fn bind_vec4<'a>(
    buffer: &'a wgpu::Buffer,
    w: BindingWindow,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    if w.size >= 16 {
        bind(
            buffer,
            BindingWindow {
                size: w.size & !15,
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
