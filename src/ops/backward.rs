//! The backward of LayerNorm and RMSNorm (`shaders/norm_backward.wgsl`),
//! shared by both ops: validation, the statistics recomputation, the chunked
//! dx dispatches and the two deterministic dgamma/dbeta stages.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{BackwardVariant, Entry, PARAM_LANES, bind, bind_optional};
use crate::ops::encoding::{
    Uniforms, begin_pass, bind_group, column_window, dispatch, pass_label, row_window,
};
use crate::ops::forward::{
    ForwardIo, Norm, check_aliasing, check_dtype, check_len, encode_forward,
};
use crate::ops::layer_norm::{LayerNorm, shape_string};
use crate::plan::{self, BackwardKernel, BackwardPlan, BindingWindow};
use crate::tensor::{DType, GpuTensor};
use crate::ticks::Ticks;

/// Every tensor a backward may touch (RMSNorm has no mean and no dbeta).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackwardIo<'a> {
    pub(crate) x: &'a GpuTensor,
    pub(crate) dy: &'a GpuTensor,
    pub(crate) gamma: Option<&'a GpuTensor>,
    pub(crate) mean: Option<&'a GpuTensor>,
    pub(crate) rstd: Option<&'a GpuTensor>,
    pub(crate) dx: &'a GpuTensor,
    pub(crate) dgamma: Option<&'a GpuTensor>,
    pub(crate) dbeta: Option<&'a GpuTensor>,
}

/// The uniform block of `shaders/norm_backward.wgsl` (`struct Params`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    x_base: u32,
    dy_base: u32,
    dx_base: u32,
    gamma_base: u32,
    mean_base: u32,
    rstd_base: u32,
    dgamma_base: u32,
    dbeta_base: u32,
    part_base: u32,
    parts: u32,
    rows_per_part: u32,
    _pad: [u32; 3],
}

/// Checks shapes, element types, statistics and buffer sharing; `(rows, cols)`.
fn validate(
    cfg: &LayerNorm,
    norm: Norm,
    ctx: &Context,
    io: &BackwardIo<'_>,
) -> Result<(usize, usize)> {
    cfg.validate_params(io.x.shape())?;
    let (rows, cols) = cfg.rows_cols(io.x.shape())?;
    let dtype = io.x.dtype();
    dtype.check_supported(ctx)?;
    let shape = io.x.shape();
    let norm_shape = &cfg.norm_shape(shape)?;
    let stats_shape = cfg.stats_shape(shape)?;
    for (what, t) in [("dy", io.dy), ("dx", io.dx)] {
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
            });
        }
        check_dtype(what, t, dtype)?;
    }
    for (what, t) in [
        ("gamma", io.gamma),
        ("dgamma", io.dgamma),
        ("dbeta", io.dbeta),
    ] {
        if let Some(t) = t {
            check_len(what, t, cols, norm_shape)?;
            check_dtype(what, t, dtype)?;
        }
    }
    for (what, t) in [("mean", io.mean), ("rstd", io.rstd)] {
        if let Some(t) = t {
            check_len(what, t, rows, &stats_shape)?;
            check_dtype(what, t, DType::F32)?;
        }
    }
    if norm == Norm::Layer && io.mean.is_some() != io.rstd.is_some() {
        return Err(Error::IncompleteStats {
            given: if io.mean.is_some() { "mean" } else { "rstd" },
            missing: if io.mean.is_some() { "rstd" } else { "mean" },
        });
    }
    check_aliasing(
        &[
            Some(("x", io.x)),
            Some(("dy", io.dy)),
            io.gamma.map(|t| ("gamma", t)),
            io.mean.map(|t| ("mean", t)),
            io.rstd.map(|t| ("rstd", t)),
        ],
        &[
            Some(("dx", io.dx)),
            io.dgamma.map(|t| ("dgamma", t)),
            io.dbeta.map(|t| ("dbeta", t)),
        ],
    )?;
    Ok((rows, cols))
}

/// Encodes a backward into `encoder`: when the statistics are not given, a
/// statistics-only forward pass into scratch; then one compute pass with,
/// per chunk of rows, the dx dispatch and the first dgamma/dbeta stage, and
/// after every chunk the second stage.
pub(crate) fn encode_backward(
    cfg: &LayerNorm,
    norm: Norm,
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    io: &BackwardIo<'_>,
    mut ticks: Option<&mut Ticks>,
) -> Result<()> {
    let (rows, cols) = validate(cfg, norm, ctx, io)?;
    let dtype = io.x.dtype();

    // The forward's statistics: the caller's, or recomputed (f32 scratch).
    let scratch_stats;
    let (mean, rstd) = match (io.mean, io.rstd) {
        (mean, Some(rstd)) => (mean, rstd),
        _ => {
            scratch_stats = (
                (norm == Norm::Layer)
                    .then(|| GpuTensor::zeros(ctx, &[rows]))
                    .transpose()?,
                GpuTensor::zeros(ctx, &[rows])?,
            );
            let stats_io = ForwardIo {
                x: io.x,
                y: None,
                gamma: None,
                beta: None,
                mean: scratch_stats.0.as_ref(),
                rstd: Some(&scratch_stats.1),
                residual: None,
            };
            encode_forward(cfg, norm, ctx, encoder, &stats_io, ticks.as_deref_mut())?;
            (scratch_stats.0.as_ref(), &scratch_stats.1)
        }
    };

    let mut plan = cfg.backward_plan(ctx, io.x.shape())?;
    let limits = ctx.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let max_binding = limits.max_storage_buffer_binding_size;
    let max_rows = match plan.kernel {
        BackwardKernel::RowPerLane => {
            plan::MAX_WORKGROUPS_PER_DISPATCH * 4 * plan.workgroup_size as u64
        }
        BackwardKernel::RowPerWorkgroup(_) => plan::MAX_WORKGROUPS_PER_DISPATCH,
        BackwardKernel::SplitRow(_) => plan::MAX_WORKGROUPS_PER_DISPATCH / plan.splits as u64,
    };
    let chunks = plan::chunk_rows(
        rows as u64,
        cols,
        cols as u64 * dtype.size_bytes(),
        max_binding,
        align,
        max_rows,
    )?;
    let wants_params = io.dgamma.is_some() || io.dbeta.is_some();
    // The partial sums (two f32 per column and part) must fit one binding.
    let parts_of = |plan: &BackwardPlan| -> u64 {
        chunks
            .iter()
            .map(|c| c.rows.div_ceil(plan.rows_per_part as u64))
            .sum()
    };
    // The four-rows kernel's parts are fixed at four rows: where their sums
    // would not fit one binding, the workgroup-per-row kernel takes over.
    if plan.kernel == BackwardKernel::RowPerLane
        && wants_params
        && 2 * parts_of(&plan) * cols as u64 * 4 > max_binding
    {
        if cfg.backward_kernel.is_some() {
            return Err(Error::KernelUnsuitable {
                kernel: plan.kernel.name(),
                reason: format!(
                    "its dgamma/dbeta parts for {rows} rows of {cols} exceed one binding"
                ),
            });
        }
        let reduction = match ctx.capabilities().subgroups {
            Some(_) => plan::Reduction::Subgroup,
            None => plan::Reduction::Workgroup,
        };
        let fallback = cfg.with_backward_kernel(BackwardKernel::RowPerWorkgroup(reduction));
        plan = fallback.backward_plan(ctx, io.x.shape())?;
    }
    // The four-rows kernel writes its dgamma/dbeta parts itself.
    let fused = plan.kernel == BackwardKernel::RowPerLane;
    while wants_params && 2 * parts_of(&plan) * cols as u64 * 4 > max_binding {
        plan.rows_per_part *= 2;
    }
    let parts = parts_of(&plan);
    let variant = BackwardVariant {
        rms: norm == Norm::Rms,
        dtype,
        gamma: io.gamma.is_some(),
        dgamma: io.dgamma.is_some(),
        dbeta: io.dbeta.is_some(),
    };
    // The dx dispatches of one chunk, in order.
    let dx_steps: &[Entry] = match plan.kernel {
        BackwardKernel::RowPerLane => &[Entry::DxFourRowsPerLane],
        BackwardKernel::RowPerWorkgroup(_) => &[Entry::DxRowPerWorkgroup],
        BackwardKernel::SplitRow(_) => &[
            Entry::DxSplitSums,
            Entry::DxSplitCombine,
            Entry::DxSplitApply,
        ],
    };
    let kernels = ctx.kernels();
    let pipeline = |entry| kernels.backward_pipeline(ctx, plan, variant, entry);
    let layout = |entry| kernels.layout(ctx, entry, false);
    let dx_pipelines = dx_steps
        .iter()
        .map(|&e| Ok((e, pipeline(e)?, layout(e)?)))
        .collect::<Result<Vec<_>>>()?;
    // The dgamma/dbeta stages that run: the first only without the fused kernel.
    let stage = |run: bool, entry| -> Result<_> {
        Ok(if run {
            Some((pipeline(entry)?, layout(entry)?))
        } else {
            None
        })
    };
    let partials_stage = stage(wants_params && !fused, Entry::ParamPartials)?;
    let sums_stage = stage(wants_params, Entry::ParamSums)?;

    ctx.scoped("encoding a normalisation backward", || {
        let column_window = |t: &GpuTensor| column_window(t, cols, align);
        let gamma = io.gamma.map(|t| (t.buffer(), column_window(t)));
        let dgamma = io.dgamma.map(|t| (t.buffer(), column_window(t)));
        let dbeta = io.dbeta.map(|t| (t.buffer(), column_window(t)));
        let partials = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("dgamma/dbeta partial sums"),
            size: if wants_params {
                2 * parts * cols as u64 * 4
            } else {
                16
            },
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });

        // mean(x̃) per row of a chunk, from the dx kernel to the first
        // dgamma stage of the same chunk (reused chunk after chunk).
        let most_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
        let row_centre = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("backward row centres"),
            size: most_rows.max(4) * 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });

        // Params: one block per chunk, then one for the second stage.
        let mut params = Vec::with_capacity(chunks.len() + 1);
        let mut windows = Vec::with_capacity(chunks.len());
        let mut part_base = 0u64;
        let base = |w: Option<BindingWindow>| w.map_or(0, |w| w.base);
        for chunk in &chunks {
            let row_window = |t: &GpuTensor, per_row| row_window(t, chunk, per_row, align);
            let w = (
                row_window(io.x, cols as u64),
                row_window(io.dy, cols as u64),
                row_window(io.dx, cols as u64),
                mean.map(|t| row_window(t, 1)),
                row_window(rstd, 1),
            );
            params.push(Params {
                rows: chunk.rows as u32,
                dim: cols as u32,
                x_base: w.0.base,
                dy_base: w.1.base,
                dx_base: w.2.base,
                gamma_base: gamma.map_or(0, |(_, w)| w.base),
                mean_base: base(w.3),
                rstd_base: w.4.base,
                part_base: part_base as u32,
                parts: parts as u32,
                rows_per_part: plan.rows_per_part,
                ..Params::default()
            });
            part_base += chunk.rows.div_ceil(plan.rows_per_part as u64);
            windows.push(w);
        }
        params.push(Params {
            rows: rows as u32,
            dim: cols as u32,
            dgamma_base: dgamma.map_or(0, |(_, w)| w.base),
            dbeta_base: dbeta.map_or(0, |(_, w)| w.base),
            parts: parts as u32,
            rows_per_part: plan.rows_per_part,
            ..Params::default()
        });
        let uniforms = Uniforms::new(ctx, "normalisation backward params", &params);
        let uniform = |i| uniforms.binding(i);
        let (dummy_in, dummy_out) = (&kernels.dummy_input, &kernels.dummy_output);
        let group =
            |entry, layout, resources: &[_]| bind_group(ctx, entry, false, layout, resources);
        // The split-row kernel's piece and row sums, sized for the largest chunk.
        let vec4s = |label, n: u64| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: n.max(1) * 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let piece_sums = vec4s("backward piece sums", most_rows * plan.splits as u64);
        let row_sums = vec4s("backward row sums", most_rows);
        // Bindings 0-9 of shaders/norm_backward.wgsl, per chunk.
        let chunk_groups: Vec<_> = windows
            .iter()
            .enumerate()
            .map(|(i, (x, dy, dx, m, r))| {
                let resources = [
                    bind(io.x.buffer(), *x),
                    bind(io.dy.buffer(), *dy),
                    bind_optional(gamma, dummy_in),
                    bind_optional(mean.map(|t| t.buffer()).zip(*m), dummy_in),
                    bind(rstd.buffer(), *r),
                    bind(io.dx.buffer(), *dx),
                    partials.as_entire_binding(),
                    dummy_out.as_entire_binding(),
                    dummy_out.as_entire_binding(),
                    uniform(i),
                    row_centre.as_entire_binding(),
                    piece_sums.as_entire_binding(),
                    row_sums.as_entire_binding(),
                ];
                let params = partials_stage
                    .as_ref()
                    .map(|(_, layout)| group(Entry::ParamPartials, layout, &resources));
                let dx_groups: Vec<_> = dx_pipelines
                    .iter()
                    .map(|(entry, _, layout)| group(*entry, layout, &resources))
                    .collect();
                (dx_groups, params)
            })
            .collect();
        let sums_group = sums_stage.as_ref().map(|(_, layout)| {
            let resources = [
                dummy_in.as_entire_binding(),
                dummy_in.as_entire_binding(),
                dummy_in.as_entire_binding(),
                dummy_in.as_entire_binding(),
                dummy_in.as_entire_binding(),
                dummy_out.as_entire_binding(),
                partials.as_entire_binding(),
                bind_optional(dgamma, dummy_out),
                bind_optional(dbeta, dummy_out),
                uniform(chunks.len()),
                dummy_out.as_entire_binding(),
                dummy_out.as_entire_binding(),
                dummy_out.as_entire_binding(),
            ];
            group(Entry::ParamSums, layout, &resources)
        });

        let shape = shape_string(io.x.shape());
        let label = pass_label(norm, "backward", io.x.shape(), dtype, &plan.describe());
        let args = [
            ("shape", shape),
            ("dtype", dtype.to_string()),
            ("kernel", plan.describe()),
            ("chunks", chunks.len().to_string()),
            ("parts", parts.to_string()),
        ];
        let mut pass = begin_pass(encoder, ticks.as_deref_mut(), &label, &args);
        let column_blocks = (cols as u64).div_ceil(PARAM_LANES as u64);
        for (i, (chunk, (dx_groups, params_group))) in chunks.iter().zip(&chunk_groups).enumerate()
        {
            let rows = format!("{}..{}", chunk.first_row, chunk.first_row + chunk.rows);
            for ((entry, pipeline, _), g) in dx_pipelines.iter().zip(dx_groups) {
                let dx_workgroups = match entry {
                    Entry::DxFourRowsPerLane => chunk.rows.div_ceil(4 * plan.workgroup_size as u64),
                    Entry::DxRowPerWorkgroup => chunk.rows,
                    Entry::DxSplitCombine => chunk.rows.div_ceil(64),
                    _ => chunk.rows * plan.splits as u64,
                };
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, g, &[]);
                let name = format!("{label} chunk {i} {}", entry.name());
                let rows = rows.clone();
                dispatch(&mut pass, ticks.as_deref_mut(), &name, dx_workgroups, rows);
            }
            if let (Some((partials_pipeline, _)), Some(g)) = (&partials_stage, params_group) {
                pass.set_pipeline(partials_pipeline);
                pass.set_bind_group(0, g, &[]);
                let chunk_parts = chunk.rows.div_ceil(plan.rows_per_part as u64);
                let name = format!("{label} chunk {i} param_partials");
                let workgroups = column_blocks * chunk_parts;
                dispatch(&mut pass, ticks.as_deref_mut(), &name, workgroups, rows);
            }
        }
        if let (Some((sums_pipeline, _)), Some(g)) = (&sums_stage, &sums_group) {
            pass.set_pipeline(sums_pipeline);
            pass.set_bind_group(0, g, &[]);
            let name = format!("{label} param_sums");
            let all_rows = format!("0..{rows}");
            dispatch(&mut pass, ticks, &name, column_blocks, all_rows);
        }
    })
}
