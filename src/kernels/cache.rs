//! The cache of shader modules, bind group layouts and pipelines of one
//! device, and the small buffers bound where an optional tensor is absent.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::PARAM_LANES;
use crate::kernels::bindings::{self, slot};
use crate::kernels::sources::{self, Views};
use crate::plan::{
    BackwardPlan, COMBINE_LANES, COPY_LANES, CopyKernel, Entry, GROUPED_LANES, GroupedEntry,
    Kernel, LayerNormPlan, Reduction,
};
use crate::shape::DType;

/// How a forward pipeline is specialised: the normalisation, the storage
/// type, the views, and which optional bindings it uses. With the plan and
/// the entry point it is the pipeline's compile key: every input the
/// compiled pipeline depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LayerNormVariant {
    /// RMSNorm instead of LayerNorm.
    pub rms: bool,
    /// The storage type of x, y, gamma, beta, residual and sum.
    pub dtype: DType,
    /// The views of x, y, gamma, beta and the statistics (and whether a
    /// residual is added).
    pub views: Views,
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
}

/// Which optional parts a backward pipeline has: with the plan and the
/// entry point, its compile key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BackwardVariant {
    /// RMSNorm instead of LayerNorm.
    pub rms: bool,
    /// The storage type of x, dy, gamma, dx, dgamma and dbeta.
    pub dtype: DType,
    /// Multiply dy by gamma.
    pub gamma: bool,
    /// Write dgamma.
    pub dgamma: bool,
    /// Write dbeta.
    pub dbeta: bool,
}

/// How a grouped-normalisation pipeline is specialised: with the entry
/// point, its compile key (every override constant comes from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GroupedVariant {
    /// The storage type of x, y, dy, dx, the scale and bias and their gradients.
    pub dtype: DType,
    /// `Some(p)` for LpNorm (p 1 or 2); `None` for mean and variance.
    pub lp: Option<u32>,
    /// LpNorm's backward.
    pub lp_grad: bool,
    /// Multiply by a per-channel scale.
    pub scale: bool,
    /// Add a per-channel bias.
    pub bias: bool,
    /// SiLU after the affine.
    pub silu: bool,
    /// Write BatchNorm's running statistics.
    pub running: bool,
    /// The statistics are inputs (BatchNorm inference).
    pub const_stats: bool,
    /// Cells of 4 values (the plan's `vec4`).
    pub vec4: bool,
    /// The given statistics are a forward's saved (mean, rstd).
    pub saved: bool,
    /// Invocations per workgroup of `apply_runs` and `grad_apply_runs`
    /// (the plan's `run_lanes`; 0 reads as [`GROUPED_LANES`]).
    pub run_lanes: u32,
}

/// The override constants of a grouped pipeline of `entry`.
pub fn grouped_constants(variant: GroupedVariant, entry: GroupedEntry) -> Vec<(&'static str, f64)> {
    let lanes = match entry {
        GroupedEntry::ApplyRuns | GroupedEntry::GradApplyRuns if variant.run_lanes > 0 => {
            variant.run_lanes
        }
        _ => GROUPED_LANES,
    };
    vec![
        ("WG", lanes as f64),
        ("MODE", flag(variant.lp.is_some())),
        ("P_NORM", variant.lp.unwrap_or(2) as f64),
        ("LP_GRAD", flag(variant.lp_grad)),
        ("HAS_SCALE", flag(variant.scale)),
        ("HAS_BIAS", flag(variant.bias)),
        ("SILU", flag(variant.silu)),
        ("RUNNING", flag(variant.running)),
        ("CONST_STATS", flag(variant.const_stats)),
        ("VEC4", flag(variant.vec4)),
        ("SAVED", flag(variant.saved)),
    ]
}

/// The binding type of slot `binding` of `grouped_norm.wgsl`.
pub fn grouped_binding_type(binding: u32) -> wgpu::BufferBindingType {
    match binding {
        0..=5 | 16 | 17 => wgpu::BufferBindingType::Storage { read_only: true },
        15 => wgpu::BufferBindingType::Uniform,
        _ => wgpu::BufferBindingType::Storage { read_only: false },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PipelineKey {
    Forward(LayerNormPlan, LayerNormVariant, Entry),
    Backward(BackwardPlan, BackwardVariant, Entry),
    /// The copy, by its unroll factor and whether it copies stretches.
    Copy(u32, bool),
    Grouped(GroupedEntry, GroupedVariant),
}

/// Which shader module a pipeline comes from: every input its joined
/// source depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKey {
    /// A forward kernel's module for a storage type and views.
    Forward(Kernel, DType, Views),
    /// The backward module for a reduction and a storage type.
    Backward(Reduction, DType),
    /// `copy.wgsl`.
    Copy,
    /// `grouped_norm.wgsl` for a storage type.
    Grouped(DType),
}

impl ModuleKey {
    /// The module's WGSL, as naga takes it.
    pub fn source(self) -> String {
        match self {
            ModuleKey::Forward(kernel, dtype, views) => {
                sources::forward_source(kernel, dtype, views)
            }
            ModuleKey::Backward(reduction, dtype) => sources::backward_source(reduction, dtype),
            ModuleKey::Copy => sources::file("copy.wgsl").to_string(),
            ModuleKey::Grouped(dtype) => sources::grouped_source(dtype),
        }
    }
}

/// The override constants of a forward pipeline: with the module and the
/// entry point, everything it is compiled from.
pub fn forward_constants(
    plan: LayerNormPlan,
    variant: LayerNormVariant,
) -> Vec<(&'static str, f64)> {
    let mut constants = vec![
        ("WG", plan.workgroup_size as f64),
        ("COMBINE_WG", COMBINE_LANES as f64),
        ("HAS_GAMMA", flag(variant.gamma)),
        ("HAS_BETA", flag(variant.beta)),
        ("WRITE_MEAN", flag(variant.mean)),
        ("WRITE_RSTD", flag(variant.rstd)),
        ("RMS", flag(variant.rms)),
        ("WRITE_Y", flag(!variant.stats_only)),
        ("VEC4_ROWS", flag(variant.views.vec4_rows)),
    ];
    if variant.views.residual {
        // Declared by layer_norm_input_residual.wgsl only.
        constants.push(("HAS_RESIDUAL_BIAS", flag(variant.residual_bias)));
        constants.push(("WRITE_SUM", flag(variant.sum)));
    }
    for &name in plan.kernel.spec().overrides {
        let value = match name {
            "ROWS_PER_WG" => plan.rows_per_workgroup,
            "SPLITS" => plan.splits,
            other => unreachable!("no value for override {other}"),
        };
        constants.push((name, value as f64));
    }
    constants
}

/// The override constants of a copy kernel's pipeline.
pub fn copy_constants(kernel: CopyKernel) -> Vec<(&'static str, f64)> {
    vec![
        ("WG", COPY_LANES as f64),
        ("UNROLL", kernel.unroll() as f64),
        ("STRETCH", flag(kernel.stretch())),
    ]
}

/// The override constants of a backward pipeline of `entry`. The
/// dgamma/dbeta stages always run [`PARAM_LANES`] lanes.
pub fn backward_constants(
    plan: BackwardPlan,
    variant: BackwardVariant,
    entry: Entry,
) -> Vec<(&'static str, f64)> {
    let lanes = match entry {
        Entry::ParamPartials | Entry::ParamSums => PARAM_LANES,
        _ => plan.workgroup_size,
    };
    vec![
        ("WG", lanes as f64),
        ("COMBINE_WG", COMBINE_LANES as f64),
        ("RMS", flag(variant.rms)),
        ("HAS_GAMMA", flag(variant.gamma)),
        ("WRITE_DGAMMA", flag(variant.dgamma)),
        ("WRITE_DBETA", flag(variant.dbeta)),
        ("SPLITS", plan.splits as f64),
    ]
}

/// Shader modules, layouts and pipelines of one device, built on first use.
pub struct PipelineCache {
    layouts: Mutex<HashMap<(Entry, Views), wgpu::BindGroupLayout>>,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// One small buffer per binding slot, bound where an optional tensor or
    /// scratch is absent (never read or written there). One each, so that
    /// no two writable bindings of a dispatch share a buffer.
    dummies: Vec<wgpu::Buffer>,
}

/// Layout entries of compute-visible buffer bindings, typed by `ty`.
fn layout_entries(
    bindings: impl IntoIterator<Item = u32>,
    ty: impl Fn(u32) -> wgpu::BufferBindingType,
) -> Vec<wgpu::BindGroupLayoutEntry> {
    bindings
        .into_iter()
        .map(|binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: ty(binding),
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

/// The pipeline of entry point `entry` of `module` over one bind group of
/// layout `group`, specialised with `constants` (call inside an error scope).
fn compute_pipeline(
    gpu: &Gpu,
    entry: &str,
    group: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let layout = gpu
        .device()
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(group)],
            immediate_size: 0,
        });
    gpu.device()
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every workgroup variable is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

impl PipelineCache {
    /// An empty cache for `device`.
    pub fn new(device: &wgpu::Device) -> Self {
        let dummies = (0..slot::COUNT)
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-norm absent binding"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        PipelineCache {
            layouts: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            dummies,
        }
    }

    /// Pipelines built so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The buffer bound at `slot` where nothing else is.
    pub fn dummy(&self, slot: u32) -> &wgpu::Buffer {
        &self.dummies[slot as usize]
    }

    /// The bind group layout of `entry` under `views` (`Views::default()`
    /// for backward entries), built on first use inside an error scope: a
    /// device whose limits are too low for it gives an error, not a panic.
    pub fn layout(&self, gpu: &Gpu, entry: Entry, views: Views) -> Result<wgpu::BindGroupLayout> {
        let key = (entry, views);
        if let Some(l) = self.lock_layouts().get(&key) {
            return Ok(l.clone());
        }
        let entries = layout_entries(bindings::slots(entry, views), |binding| {
            bindings::binding_type(entry, binding)
        });
        let layout = gpu.scoped("creating a bind group layout", || {
            gpu.device()
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(entry.name()),
                    entries: &entries,
                })
        })?;
        self.lock_layouts().insert(key, layout.clone());
        Ok(layout)
    }

    fn lock_layouts(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(Entry, Views), wgpu::BindGroupLayout>> {
        self.layouts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pipeline of one entry point of the plan's forward kernel,
    /// specialised for `variant`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        plan: LayerNormPlan,
        variant: LayerNormVariant,
        entry: Entry,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey::Forward(plan, variant, entry);
        let module = ModuleKey::Forward(plan.kernel, variant.dtype, variant.views);
        self.pipeline(gpu, key, module, entry, variant.views, || {
            forward_constants(plan, variant)
        })
    }

    /// The pipeline of one entry point of the backward kernels. The
    /// dgamma/dbeta stages always run [`PARAM_LANES`] lanes.
    pub fn backward(
        &self,
        gpu: &Gpu,
        plan: BackwardPlan,
        variant: BackwardVariant,
        entry: Entry,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey::Backward(plan, variant, entry);
        let module = ModuleKey::Backward(plan.kernel.reduction(), variant.dtype);
        self.pipeline(gpu, key, module, entry, Views::default(), || {
            backward_constants(plan, variant, entry)
        })
    }

    /// The pipeline of a copy kernel (`shaders/copy.wgsl`), with wgpu's own layout.
    pub fn copy(&self, gpu: &Gpu, kernel: CopyKernel) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey::Copy(kernel.unroll(), kernel.stretch());
        if let Some(p) = self.lock_pipelines().get(&key) {
            return Ok(p.clone());
        }
        let constants = copy_constants(kernel);
        let module = self.module(gpu, ModuleKey::Copy)?;
        let pipeline = gpu.scoped("building the copy pipeline", || {
            gpu.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("copy"),
                    layout: None,
                    module: &module,
                    entry_point: Some("copy"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })?;
        self.lock_pipelines().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The pipeline of a grouped-normalisation entry (`grouped_norm.wgsl`),
    /// with its layout: the entry's [`GroupedEntry::bindings`].
    pub fn grouped(
        &self,
        gpu: &Gpu,
        entry: GroupedEntry,
        variant: GroupedVariant,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey::Grouped(entry, variant);
        if let Some(p) = self.lock_pipelines().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(gpu, ModuleKey::Grouped(variant.dtype))?;
        let constants = grouped_constants(variant, entry);
        let entries = layout_entries(entry.bindings().iter().copied(), grouped_binding_type);
        let pipeline = gpu.scoped("building a grouped pipeline", || {
            let group = gpu
                .device()
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(entry.name()),
                    entries: &entries,
                });
            compute_pipeline(gpu, entry.name(), &group, &module, &constants)
        })?;
        self.lock_pipelines().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn lock_pipelines(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PipelineKey, wgpu::ComputePipeline>> {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached pipeline of `key`, or a new one of `entry` in the module of
    /// `module_key` specialised with `constants`.
    fn pipeline(
        &self,
        gpu: &Gpu,
        key: PipelineKey,
        module_key: ModuleKey,
        entry: Entry,
        views: Views,
        constants: impl FnOnce() -> Vec<(&'static str, f64)>,
    ) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.lock_pipelines().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(gpu, module_key)?;
        let group = self.layout(gpu, entry, views)?;
        let constants = constants();
        let pipeline = gpu.scoped("building a pipeline", || {
            compute_pipeline(gpu, entry.name(), &group, &module, &constants)
        })?;
        // Two threads may have built the same pipeline; either copy is fine.
        self.lock_pipelines().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, gpu: &Gpu, key: ModuleKey) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        if let ModuleKey::Forward(_, dtype, _)
        | ModuleKey::Backward(_, dtype)
        | ModuleKey::Grouped(dtype) = key
        {
            gpu.check_dtype_supported(dtype)?;
        }
        let source = key.source();
        let module = gpu.scoped("compiling a kernel", || {
            gpu.device()
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
