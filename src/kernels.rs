//! The WGSL kernels and the cache of pipelines built from them.
//!
//! Sources are the `.wgsl` files in `shaders/`, compiled into the crate. An op
//! file is completed by one reduction file (see the comment at the top of
//! `shaders/layer_norm.wgsl`), and specialised with override constants
//! (workgroup size, which optional inputs and outputs exist). Every
//! (kernel, reduction, overrides) combination is compiled once per
//! [`Context`](crate::Context) and reused.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::context::Context;
use crate::error::Result;
use crate::plan::Reduction;

/// `shaders/layer_norm.wgsl`: layer-norm forward, one workgroup per row.
pub const LAYER_NORM_WGSL: &str = include_str!("../shaders/layer_norm.wgsl");
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    reduction: Reduction,
    workgroup_size: u32,
    variant: LayerNormVariant,
}

/// Shader modules, layouts and pipelines of one device.
pub(crate) struct Kernels {
    layer_norm_layout: wgpu::BindGroupLayout,
    layer_norm_pipeline_layout: wgpu::PipelineLayout,
    modules: Mutex<HashMap<Reduction, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Bound where an optional input is absent (never read).
    pub(crate) dummy_input: wgpu::Buffer,
    /// Bound where an optional output is absent (never written). Separate from
    /// `dummy_input`: one buffer may not be read-only and read-write in one dispatch.
    pub(crate) dummy_output: wgpu::Buffer,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        // The layout mirrors the bindings declared in shaders/layer_norm.wgsl.
        let layer_norm_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("layer_norm"),
            entries: &[
                storage_entry(0, true),  // x
                storage_entry(1, true),  // x4
                storage_entry(2, false), // y
                storage_entry(3, false), // y4
                storage_entry(4, true),  // gamma
                storage_entry(5, true),  // beta
                storage_entry(6, false), // mean_out
                storage_entry(7, false), // rstd_out
                wgpu::BindGroupLayoutEntry {
                    binding: 8,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let layer_norm_pipeline_layout =
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("layer_norm"),
                bind_group_layouts: &[Some(&layer_norm_layout)],
                immediate_size: 0,
            });
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
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
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

    pub(crate) fn layer_norm_layout(&self) -> &wgpu::BindGroupLayout {
        &self.layer_norm_layout
    }

    /// The layer-norm forward pipeline for a plan and variant, built on first use.
    pub(crate) fn layer_norm_forward(
        &self,
        ctx: &Context,
        reduction: Reduction,
        workgroup_size: u32,
        variant: LayerNormVariant,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey {
            reduction,
            workgroup_size,
            variant,
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(ctx, reduction)?;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("WG", workgroup_size as f64),
            ("HAS_GAMMA", flag(variant.gamma)),
            ("HAS_BETA", flag(variant.beta)),
            ("WRITE_MEAN", flag(variant.mean)),
            ("WRITE_RSTD", flag(variant.rstd)),
        ];
        let pipeline = ctx.scoped("building the layer-norm pipeline", || {
            ctx.device()
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("layer_norm_forward"),
                    layout: Some(&self.layer_norm_pipeline_layout),
                    module: &module,
                    entry_point: Some("layer_norm_forward"),
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

    fn module(&self, ctx: &Context, reduction: Reduction) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&reduction)
        {
            return Ok(m.clone());
        }
        let reduce = match reduction {
            Reduction::Subgroup => REDUCE_SUBGROUP_WGSL,
            Reduction::Workgroup => REDUCE_WORKGROUP_WGSL,
        };
        let source = format!("{LAYER_NORM_WGSL}\n{reduce}");
        let module = ctx.scoped("compiling shaders/layer_norm.wgsl", || {
            ctx.device()
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("layer_norm"),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })?;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reduction, module.clone());
        Ok(module)
    }
}
