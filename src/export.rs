//! Exported plans: everything an op runs, as plain data (JSON), so that any
//! WebGPU (a browser's, through `web/runner.js`) can run the library's own
//! kernels with the library's own plan, and the runner holds no
//! normalisation logic.
//!
//! The plan is made for a [`Target`] (a browser's features, limits and
//! subgroup sizes, or WebGPU's defaults) on wgpu's noop backend
//! ([`Context::for_planning`]): the op validates, chooses, builds (every
//! module is compiled by naga there) and records exactly as on that device,
//! and the recording is written out:
//!
//! - `buffers`: the op's tensors by their ONNX names (`X`, `Scale`, `B`, `Y`,
//!   `Mean`, `InvStdDev`, `dY`, `dX`, `dScale`, `dB`; the fused residual's
//!   `R`, `RB` and sum `S`) with their role, shape
//!   and storage type; its scratch and the per-slot placeholders by size;
//!   its uniform buffers with their bytes (as little-endian u32 words);
//! - `modules`: the WGSL of each module as a browser takes it (`enable
//!   subgroups;` first where it uses subgroup operations: Tint needs it,
//!   naga refuses it);
//! - `passes`: in order, each a list of dispatches: module, entry point,
//!   override constants, bindings (binding number, type, buffer, byte offset
//!   and size) and the workgroup grid.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::config::NormConfig;
use crate::ops::layer_norm::LayerNorm;
use crate::ops::named::NamedTensors;
use crate::ops::op::NormOp;
use crate::ops::record::Recording;
use crate::ops::rms_norm::RmsNorm;
use crate::plan::{BackwardKernel, CopyKernel, Kernel};
use crate::shape::DType;
use crate::tensor::GpuTensor;

/// The device a plan is made for.
#[derive(Clone, Debug)]
pub struct Target {
    /// How the target calls itself (the browser's adapter, or `webgpu`).
    pub name: String,
    /// GPU or CPU (a software adapter such as SwiftShader): the plan's first key.
    pub device_type: wgpu::DeviceType,
    /// Its optional features (subgroups, shader-f16, timestamps).
    pub features: wgpu::Features,
    /// Its limits.
    pub limits: wgpu::Limits,
    /// Subgroup sizes, where it has subgroups.
    pub subgroup_min_size: u32,
    /// Largest subgroup size.
    pub subgroup_max_size: u32,
}

impl Target {
    /// A WebGPU device with nothing asked for: WebGPU's default limits, no
    /// optional feature, a GPU.
    pub fn webgpu() -> Self {
        Target {
            name: "webgpu".into(),
            device_type: wgpu::DeviceType::DiscreteGpu,
            features: wgpu::Features::empty(),
            limits: wgpu::Limits::default(),
            subgroup_min_size: 0,
            subgroup_max_size: 0,
        }
    }

    /// From a browser's description of its adapter, as `web/runner.js`'s
    /// `describeAdapter` writes it: `features` (WebGPU feature names),
    /// `limits` (WebGPU limit names; those absent keep WebGPU's defaults) and
    /// `info` (`subgroupMinSize`, `subgroupMaxSize`, `isFallbackAdapter`,
    /// `vendor`, `architecture`, `description`).
    pub fn from_json(v: &Value) -> Result<Self> {
        let bad = |why: String| Error::InvalidTarget(why);
        let obj = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let mut t = Target::webgpu();
        if let Some(features) = obj.get("features") {
            let list = features
                .as_array()
                .ok_or_else(|| bad("`features` is not a list".into()))?;
            for f in list {
                match f.as_str() {
                    Some("subgroups") => t.features |= wgpu::Features::SUBGROUP,
                    Some("shader-f16") => t.features |= wgpu::Features::SHADER_F16,
                    Some("timestamp-query") => t.features |= wgpu::Features::TIMESTAMP_QUERY,
                    Some(_) => {}
                    None => return Err(bad(format!("feature {f} is not a name"))),
                }
            }
        }
        if let Some(limits) = obj.get("limits") {
            let limits = limits
                .as_object()
                .ok_or_else(|| bad("`limits` is not an object".into()))?;
            let get = |name: &str| -> Result<Option<u64>> {
                match limits.get(name) {
                    None => Ok(None),
                    Some(v) => v
                        .as_u64()
                        .map(Some)
                        .ok_or_else(|| bad(format!("limit {name} = {v} is not a count"))),
                }
            };
            let l = &mut t.limits;
            for (name, field) in [
                (
                    "maxStorageBufferBindingSize",
                    &mut l.max_storage_buffer_binding_size,
                ),
                ("maxBufferSize", &mut l.max_buffer_size),
            ] {
                if let Some(v) = get(name)? {
                    *field = v;
                }
            }
            for (name, field) in [
                (
                    "maxStorageBuffersPerShaderStage",
                    &mut l.max_storage_buffers_per_shader_stage,
                ),
                (
                    "maxComputeWorkgroupsPerDimension",
                    &mut l.max_compute_workgroups_per_dimension,
                ),
                (
                    "maxComputeInvocationsPerWorkgroup",
                    &mut l.max_compute_invocations_per_workgroup,
                ),
                (
                    "maxComputeWorkgroupSizeX",
                    &mut l.max_compute_workgroup_size_x,
                ),
                (
                    "maxComputeWorkgroupStorageSize",
                    &mut l.max_compute_workgroup_storage_size,
                ),
                (
                    "minStorageBufferOffsetAlignment",
                    &mut l.min_storage_buffer_offset_alignment,
                ),
                (
                    "minUniformBufferOffsetAlignment",
                    &mut l.min_uniform_buffer_offset_alignment,
                ),
            ] {
                if let Some(v) = get(name)? {
                    *field = v.min(u32::MAX as u64) as u32;
                }
            }
        }
        if let Some(info) = obj.get("info").and_then(Value::as_object) {
            let size = |k: &str| info.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
            t.subgroup_min_size = size("subgroupMinSize");
            t.subgroup_max_size = size("subgroupMaxSize");
            if info.get("isFallbackAdapter").and_then(Value::as_bool) == Some(true) {
                t.device_type = wgpu::DeviceType::Cpu;
            }
            let text: Vec<&str> = ["vendor", "architecture", "description"]
                .iter()
                .filter_map(|k| info.get(*k).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .collect();
            if !text.is_empty() {
                t.name = text.join(" ");
            }
            // SwiftShader calls itself so; it runs shaders on the CPU.
            if t.name.to_lowercase().contains("swiftshader") {
                t.device_type = wgpu::DeviceType::Cpu;
            }
        }
        if t.features.contains(wgpu::Features::SUBGROUP)
            && (t.subgroup_min_size == 0 || t.subgroup_max_size < t.subgroup_min_size)
        {
            // Without reported sizes, the subgroup kernels cannot be planned.
            t.features.remove(wgpu::Features::SUBGROUP);
        }
        Ok(t)
    }

    /// The context that plans for this target.
    pub fn context(&self) -> Result<Context> {
        let info = wgpu::AdapterInfo {
            name: self.name.clone(),
            device_type: self.device_type,
            subgroup_min_size: self.subgroup_min_size,
            subgroup_max_size: self.subgroup_max_size,
            ..wgpu::AdapterInfo::new(self.device_type, wgpu::Backend::Noop)
        };
        Context::for_planning(self.features, self.limits.clone(), info)
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "cpu": self.device_type == wgpu::DeviceType::Cpu,
            "subgroups": self.features.contains(wgpu::Features::SUBGROUP)
                .then_some([self.subgroup_min_size, self.subgroup_max_size]),
            "shader_f16": self.features.contains(wgpu::Features::SHADER_F16),
            "max_storage_buffers_per_shader_stage": self.limits.max_storage_buffers_per_shader_stage,
            "max_storage_buffer_binding_size": self.limits.max_storage_buffer_binding_size,
        })
    }
}

/// What to export: an op of [`EXPORT_OPS`] on a shape, with its options.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// `layer-norm`, `rms-norm`, `layer-norm-backward`, `rms-norm-backward`.
    pub op: String,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// Storage type of the tensors (the statistics are f32).
    pub dtype: DType,
    /// Axis, epsilon and forced kernels.
    pub config: NormConfig,
    /// With a scale (gamma); the backward then writes dScale.
    pub scale: bool,
    /// With a bias (LayerNorm); the backward then writes dB.
    pub bias: bool,
    /// Forward: write the statistics too.
    pub stats: bool,
    /// Forward: add a residual `R` and its bias `RB` first (the fused
    /// pre-norm block), and write the sum `S`.
    pub residual: bool,
    /// `copy`: the copy kernel (default `grid-stride/1024`).
    pub copy_kernel: Option<CopyKernel>,
}

impl ExportRequest {
    /// `op` on `shape`, f32, ONNX's defaults, with scale and bias.
    pub fn new(op: &str, shape: &[usize]) -> Self {
        ExportRequest {
            op: op.to_string(),
            shape: shape.to_vec(),
            dtype: DType::F32,
            config: LayerNorm::new().config(),
            scale: true,
            bias: true,
            stats: false,
            residual: false,
            copy_kernel: None,
        }
    }
}

/// An op that can be exported: its name and how it is recorded.
#[derive(Clone, Copy)]
pub struct ExportOp {
    /// The name `--op` takes.
    pub name: &'static str,
    backward: bool,
    record: fn(NormConfig, &Context, &NamedTensors<'_>, bool) -> Result<()>,
}

fn record_op<O: NormOp + From<NormConfig>>(
    cfg: NormConfig,
    ctx: &Context,
    t: &NamedTensors<'_>,
    backward: bool,
) -> Result<()> {
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let op = O::from(cfg);
    if backward {
        op.encode_backward(ctx, &mut encoder, &O::named_grad_io(t)?)
    } else {
        op.encode(ctx, &mut encoder, &O::named_io(t)?)
    }
}

/// Every op `export` takes.
pub const EXPORT_OPS: &[ExportOp] = &[
    ExportOp {
        name: "layer-norm",
        backward: false,
        record: record_op::<LayerNorm>,
    },
    ExportOp {
        name: "rms-norm",
        backward: false,
        record: record_op::<RmsNorm>,
    },
    ExportOp {
        name: "layer-norm-backward",
        backward: true,
        record: record_op::<LayerNorm>,
    },
    ExportOp {
        name: "rms-norm-backward",
        backward: true,
        record: record_op::<RmsNorm>,
    },
];

/// The plan of `req` on `target`, as JSON (see the module's docs). `req.op`
/// is an op of [`EXPORT_OPS`], or `copy`: X copied into Y (f32) by a copy
/// kernel of `shaders/copy.wgsl`, the floor the bench measures ops against.
pub fn export(req: &ExportRequest, target: &Target) -> Result<Value> {
    if req.op == "copy" {
        return export_copy(req, target);
    }
    let op = EXPORT_OPS
        .iter()
        .find(|o| o.name == req.op)
        .ok_or_else(|| Error::InvalidTarget(format!("unknown op {:?}", req.op)))?;
    let rms = req.op.starts_with("rms");
    let ctx = target.context()?;
    let cfg = req.config;
    let rc = cfg.rows_cols(&req.shape)?;
    let norm_shape = cfg.norm_shape(&req.shape)?;
    let stats_shape = cfg.stats_shape(&req.shape)?;
    let dtype = req.dtype;
    // The op's tensors, each in a buffer of its own, by ONNX name.
    let mut named: Vec<(&'static str, &'static str, GpuTensor)> = Vec::new();
    let mut add = |name, role, shape: &[usize], dtype| -> Result<()> {
        named.push((name, role, GpuTensor::zeros_as(&ctx, shape, dtype)?));
        Ok(())
    };
    add("X", "input", &req.shape, dtype)?;
    if req.scale {
        add("Scale", "input", &norm_shape, dtype)?;
    }
    let bias = req.bias && !rms;
    if op.backward {
        add("dY", "input", &req.shape, dtype)?;
        add("dX", "output", &req.shape, dtype)?;
        if req.scale {
            add("dScale", "output", &norm_shape, dtype)?;
        }
        if bias {
            add("dB", "output", &norm_shape, dtype)?;
        }
    } else {
        if bias {
            add("B", "input", &norm_shape, dtype)?;
        }
        if req.residual {
            add("R", "input", &req.shape, dtype)?;
            add("RB", "input", &norm_shape, dtype)?;
            add("S", "output", &req.shape, dtype)?;
        }
        add("Y", "output", &req.shape, dtype)?;
        if req.stats {
            if !rms {
                add("Mean", "output", &stats_shape, DType::F32)?;
            }
            add("InvStdDev", "output", &stats_shape, DType::F32)?;
        }
    }
    let get = |n: &str| named.iter().find(|t| t.0 == n).map(|t| &t.2);
    let x = get("X").expect("added above");
    let t = NamedTensors {
        scale: get("Scale"),
        bias: get("B"),
        y: get("Y"),
        mean: get("Mean"),
        inv_std_dev: get("InvStdDev"),
        dy: get("dY"),
        dx: get("dX"),
        dscale: get("dScale"),
        dbias: get("dB"),
        residual: get("R").map(|r| crate::ops::io::ResidualAdd {
            residual: r,
            bias: get("RB"),
            sum: get("S"),
        }),
        ..NamedTensors::new(x)
    };
    let recordings = recorded(&ctx, || (op.record)(cfg, &ctx, &t, op.backward))?;
    let (buffers, modules, passes) = plan_json(&named, &recordings);
    // The op's own pass is the last (a backward may record a statistics pass first).
    let kernel = recordings
        .last()
        .and_then(|r| r.args.iter().find(|(k, _)| *k == "kernel"))
        .map_or_else(String::new, |(_, v)| v.clone());
    Ok(json!({
        "format": "wgpu-norm-plan/1",
        "op": req.op,
        "shape": req.shape,
        "dtype": dtype.to_string(),
        "axis": cfg.axis,
        "epsilon": cfg.epsilon,
        "rows": rc.rows,
        "cols": rc.cols,
        "kernel": kernel,
        "target": target.to_json(),
        "buffers": buffers,
        "modules": modules,
        "passes": passes,
    }))
}

/// What `encode` records on `ctx`, in order.
fn recorded(ctx: &Context, encode: impl FnOnce() -> Result<()>) -> Result<Vec<Arc<Recording>>> {
    ctx.start_tap();
    let done = encode();
    let recordings = ctx
        .take_recordings()
        .into_iter()
        .filter_map(|r| r.downcast::<Recording>().ok())
        .collect();
    done.map(|()| recordings)
}

/// The buffers, modules and passes of `recordings`, the named tensors first.
fn plan_json(
    named: &[(&'static str, &'static str, GpuTensor)],
    recordings: &[Arc<Recording>],
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    // Buffers: the named tensors first, then uniforms and scratch as met.
    // (A list, not a map: wgpu's buffers hash by identity but hold interior state.)
    let mut index: Vec<wgpu::Buffer> = Vec::new();
    let mut buffers: Vec<Value> = Vec::new();
    for (name, role, tensor) in named {
        index.push(tensor.buffer().clone());
        buffers.push(json!({
            "name": name,
            "role": role,
            "dtype": tensor.dtype().to_string(),
            "shape": tensor.shape(),
            "size": tensor.buffer().size(),
        }));
    }
    let uniform_bytes: Vec<(&wgpu::Buffer, &Vec<u8>)> = recordings
        .iter()
        .flat_map(|r| r.uniforms.iter().map(|(b, bytes)| (b, bytes)))
        .collect();
    let mut modules: Vec<Value> = Vec::new();
    let mut module_index = HashMap::new();
    let mut passes = Vec::new();
    for rec in recordings {
        let mut dispatches = Vec::new();
        for d in &rec.dispatches {
            let m = *module_index.entry(d.desc.module).or_insert_with(|| {
                modules.push(json!({ "wgsl": browser_source(&d.desc.module.source()) }));
                modules.len() - 1
            });
            let mut bindings = Vec::new();
            for b in &d.desc.bindings {
                let known = index.iter().position(|x| x == &b.buffer);
                let i = known.unwrap_or(buffers.len());
                if known.is_none() {
                    index.push(b.buffer.clone());
                    let bytes = uniform_bytes
                        .iter()
                        .find(|(u, _)| *u == &b.buffer)
                        .map(|u| u.1);
                    buffers.push(match bytes {
                        Some(bytes) => json!({
                            "name": format!("uniforms {i}"),
                            "role": "uniform",
                            "size": b.buffer.size(),
                            "words": bytes
                                .chunks(4)
                                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                                .collect::<Vec<_>>(),
                        }),
                        None => json!({
                            "name": format!("scratch {i}"),
                            "role": "scratch",
                            "size": b.buffer.size(),
                        }),
                    });
                }
                bindings.push(json!({
                    "binding": b.binding,
                    "type": match b.ty {
                        wgpu::BufferBindingType::Uniform => "uniform",
                        wgpu::BufferBindingType::Storage { read_only: true } => "read-only-storage",
                        wgpu::BufferBindingType::Storage { read_only: false } => "storage",
                    },
                    "buffer": i,
                    "offset": b.offset,
                    "size": b.size,
                }));
            }
            let (gx, gy) = crate::plan::grid(d.workgroups);
            let constants: serde_json::Map<String, Value> = d
                .desc
                .constants
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            dispatches.push(json!({
                "name": d.name,
                "module": m,
                "entry": d.desc.entry,
                "constants": constants,
                "bindings": bindings,
                "workgroups": [gx, gy, 1],
            }));
        }
        passes.push(json!({ "label": rec.label, "dispatches": dispatches }));
    }
    (buffers, modules, passes)
}

/// `copy`: X into Y with `req.copy_kernel`.
fn export_copy(req: &ExportRequest, target: &Target) -> Result<Value> {
    let ctx = target.context()?;
    let kernel = req.copy_kernel.unwrap_or(CopyKernel::GridStride {
        groups: 1024,
        unroll: 1,
    });
    let named = vec![
        ("X", "input", GpuTensor::zeros(&ctx, &req.shape)?),
        ("Y", "output", GpuTensor::zeros(&ctx, &req.shape)?),
    ];
    let recordings = recorded(&ctx, || {
        let mut encoder = ctx.device().create_command_encoder(&Default::default());
        let (x, y) = (&named[0].2, &named[1].2);
        crate::ops::copy::encode_copy_with(&ctx, &mut encoder, kernel, x, y, None)
    })?;
    let (buffers, modules, passes) = plan_json(&named, &recordings);
    Ok(json!({
        "format": "wgpu-norm-plan/1",
        "op": "copy",
        "shape": req.shape,
        "dtype": "f32",
        "kernel": kernel.name(),
        "target": target.to_json(),
        "buffers": buffers,
        "modules": modules,
        "passes": passes,
    }))
}

/// The forward kernels and dx kernels a target can run for rows of `cols`
/// values, by name (what a browser check loops over).
pub fn kernels_for(target: &Target, cols: usize) -> Result<(Vec<Kernel>, Vec<BackwardKernel>)> {
    let ctx = target.context()?;
    let caps = ctx.capabilities();
    let (info, limits) = (ctx.adapter_info(), ctx.limits());
    let forward = Kernel::ALL
        .into_iter()
        .filter(|k| crate::plan::LayerNormPlan::forced(*k, 1, cols, caps, info, limits).is_ok())
        .collect();
    let backward = BackwardKernel::ALL
        .into_iter()
        .filter(|k| crate::plan::BackwardPlan::with_kernel(*k, 1, cols, caps, info, limits).is_ok())
        .collect();
    Ok((forward, backward))
}

/// A module's WGSL as a browser's WebGPU takes it: Tint needs `enable
/// subgroups;` where subgroup operations are used (naga refuses it).
fn browser_source(naga_source: &str) -> String {
    let code: String = naga_source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    if code.contains("subgroupAdd(") || code.contains("@builtin(subgroup_") {
        // Subgroup operations under non-uniform control flow (a lane's
        // rows, a row's decision) are what the kernels mean: every lane of
        // the subgroup takes the same path there.
        format!("enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n{naga_source}")
    } else {
        naga_source.to_string()
    }
}
