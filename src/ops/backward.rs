//! The backward of LayerNorm and RMSNorm (`shaders/norm_backward.wgsl`), in
//! the forward's phases: **validate**, **choose** (the dx kernel, chunks,
//! dgamma/dbeta parts), **build** on a bind-cache miss (scratch statistics
//! when the caller has none, partial sums, params, bind groups), **record**
//! (a statistics-only forward first where the statistics are recomputed,
//! then one pass: per chunk the dx dispatches and the first dgamma/dbeta
//! stage, after every chunk the second stage).

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::{ModuleKey, backward_constants};
use crate::kernels::{BackwardVariant, PARAM_LANES, Views};
use crate::ops::config::{NormConfig, NormKind};
use crate::ops::forward::encode_forward;
use crate::ops::io::{BackwardIo, ForwardIo};
use crate::ops::record::{
    Dispatch, DispatchDesc, Recording, Uniforms, bind, bind_group, bind_or, bind_vec4_or,
    cache_identity, columns, pass_label, row_window, scratch,
};
use crate::ops::validate;
use crate::plan::{
    self, BackwardKernel, BackwardPlan, BindingWindow, COMBINE_LANES, Entry, Reduction, RowChunk,
};
use crate::shape::{RowsCols, shape_string};
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

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
    col_base: u32,
    block_cols: u32,
    _pad: u32,
}

/// What phase 2 decides.
struct Choice {
    rc: RowsCols,
    plan: BackwardPlan,
    chunks: Vec<RowChunk>,
    variant: BackwardVariant,
    /// dgamma/dbeta partial sums in all (0 without dgamma and dbeta).
    parts: u64,
    /// The column blocks of the dgamma/dbeta stages, (first column, columns):
    /// one block of every column unless the partial sums of all columns
    /// would not fit one binding.
    blocks: Vec<(u64, u64)>,
}

/// Phase 2: the dx plan, the chunks, and the dgamma/dbeta parts (whose
/// partial sums must fit one binding).
fn choose(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &Context,
    io: &BackwardIo<'_>,
    rc: RowsCols,
) -> Result<Choice> {
    let dtype = io.x.dtype();
    let mut plan = cfg.backward_plan(ctx, rc)?;
    let limits = ctx.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let max_binding = plan::max_binding(limits);
    // The rows-cached kernel reads whole vec4s of rows it holds in registers:
    // where a row is not vec4-aligned in x, dy and dx, or longer than its
    // lanes hold, the workgroup-per-row kernel of the same reduction runs.
    if let BackwardKernel::RowsCached(reduction) = plan.kernel {
        let vec4 = 4 * dtype.size_bytes();
        let aligned = rc.cols % 4 == 0
            && (align % vec4 == 0)
            && [io.x, io.dy, io.dx].iter().all(|t| t.offset() % vec4 == 0);
        if !aligned || rc.cols > plan.workgroup_size as usize * plan::ROW_CACHE_VALUES {
            let fallback = NormConfig {
                backward_kernel: Some(BackwardKernel::RowPerWorkgroup(reduction)),
                ..*cfg
            };
            plan = fallback.backward_plan(ctx, rc)?;
        }
    }
    let lane_rows = plan.kernel.spec().rows_per_lane as u64;
    let max_rows = match plan.kernel {
        BackwardKernel::RowPerLane => {
            plan::MAX_WORKGROUPS_PER_DISPATCH * lane_rows * plan.workgroup_size as u64
        }
        BackwardKernel::RowPerWorkgroup(_) => plan::MAX_WORKGROUPS_PER_DISPATCH,
        BackwardKernel::RowsCached(_) => {
            plan::MAX_WORKGROUPS_PER_DISPATCH * plan.rows_per_part as u64
        }
        BackwardKernel::SplitRow(_) => plan::MAX_WORKGROUPS_PER_DISPATCH / plan.splits as u64,
    };
    let cols = rc.cols as u64;
    let row_bytes = (cols * dtype.size_bytes()).max(4);
    let offsets = [io.x, io.dy, io.dx].map(|t| t.offset());
    let chunks = plan::chunk_rows(
        rc.rows as u64,
        rc.cols,
        row_bytes,
        max_binding,
        plan::start_slack(offsets, row_bytes, align),
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
    if plan.kernel.spec().fused_params
        && wants_params
        && 2 * parts_of(&plan) * cols * 4 > max_binding
    {
        if cfg.backward_kernel.is_some() {
            return Err(Error::KernelUnsuitable {
                kernel: plan.kernel.name(),
                reason: format!(
                    "its dgamma/dbeta parts for {} rows of {} exceed one binding",
                    rc.rows, rc.cols
                ),
            });
        }
        let reduction = match ctx.capabilities().subgroups {
            Some(_) => Reduction::Subgroup,
            None => Reduction::Workgroup,
        };
        let fallback = NormConfig {
            backward_kernel: Some(BackwardKernel::RowPerWorkgroup(reduction)),
            ..*cfg
        };
        plan = fallback.backward_plan(ctx, rc)?;
    }
    // Fewer, longer parts until the partial sums fit, down to one part per
    // chunk; beyond that the columns are cut into blocks whose partial sums
    // fit a binding each (the separate stages can; the fused kernels write
    // every column at once, and gave way above).
    let most_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
    while wants_params
        && 2 * parts_of(&plan) * cols * 4 > max_binding
        && (plan.rows_per_part as u64) < most_rows
    {
        plan.rows_per_part = plan.rows_per_part.saturating_mul(2);
    }
    let parts = if wants_params { parts_of(&plan) } else { 0 };
    let per_col = 2 * parts * 4;
    let blocks = if per_col * cols <= max_binding {
        vec![(0, cols)]
    } else {
        // Whole multiples of 64 columns: every block's bytes stay a
        // multiple of the binding offset alignment (256).
        let block = max_binding / per_col / 64 * 64;
        if block == 0 || plan.kernel.spec().fused_params {
            return Err(Error::LimitTooLow {
                what: "the dgamma/dbeta partial sums of 64 columns (two f32 per column and part of rows, one part per chunk at least)",
                limit: "max_storage_buffer_binding_size",
                needed: per_col * 64,
                actual: max_binding,
            });
        }
        if per_col * cols > limits.max_buffer_size {
            return Err(Error::LimitTooLow {
                what: "the dgamma/dbeta partial sums",
                limit: "max_buffer_size",
                needed: per_col * cols,
                actual: limits.max_buffer_size,
            });
        }
        (0..cols.div_ceil(block))
            .map(|b| (b * block, block.min(cols - b * block)))
            .collect()
    };
    Ok(Choice {
        rc,
        plan,
        chunks,
        variant: BackwardVariant {
            rms: kind == NormKind::Rms,
            dtype,
            gamma: io.gamma.is_some(),
            dgamma: io.dgamma.is_some(),
            dbeta: io.dbeta.is_some(),
        },
        parts,
        blocks,
    })
}

/// Per chunk: the windows of x, dy, dx, the mean (with its tensor) and rstd.
type ChunkWindows<'a> = (
    BindingWindow,
    BindingWindow,
    BindingWindow,
    Option<(&'a GpuTensor, BindingWindow)>,
    BindingWindow,
);

/// What a cached backward depends on.
#[derive(PartialEq, Eq, Hash)]
struct BackwardKey {
    kind: NormKind,
    epsilon: u32,
    axis: isize,
    rc: RowsCols,
    plan: BackwardPlan,
    variant: BackwardVariant,
    tensors: [Option<(wgpu::Buffer, u64)>; 8],
}

/// A built backward: its pass, and the scratch statistics (with the
/// forward that fills them) where the caller gave none.
struct Built {
    stats: Option<(Option<GpuTensor>, GpuTensor)>,
    pass: Arc<Recording>,
}

/// Every binding of `shaders/norm_backward.wgsl`, by name, for one chunk.
struct BackwardBindings<'a> {
    x: wgpu::BindingResource<'a>,
    dy: wgpu::BindingResource<'a>,
    gamma: wgpu::BindingResource<'a>,
    mean: wgpu::BindingResource<'a>,
    rstd: wgpu::BindingResource<'a>,
    dx: wgpu::BindingResource<'a>,
    partials: wgpu::BindingResource<'a>,
    dgamma: wgpu::BindingResource<'a>,
    dbeta: wgpu::BindingResource<'a>,
    params: wgpu::BindingResource<'a>,
    row_centre: wgpu::BindingResource<'a>,
    piece_sums: wgpu::BindingResource<'a>,
    row_sums: wgpu::BindingResource<'a>,
    x4: wgpu::BindingResource<'a>,
    dy4: wgpu::BindingResource<'a>,
    dx4: wgpu::BindingResource<'a>,
}

impl<'a> BackwardBindings<'a> {
    fn at(&self, slot: u32) -> wgpu::BindingResource<'a> {
        match slot {
            0 => self.x.clone(),
            1 => self.dy.clone(),
            2 => self.gamma.clone(),
            3 => self.mean.clone(),
            4 => self.rstd.clone(),
            5 => self.dx.clone(),
            6 => self.partials.clone(),
            7 => self.dgamma.clone(),
            8 => self.dbeta.clone(),
            9 => self.params.clone(),
            10 => self.row_centre.clone(),
            11 => self.piece_sums.clone(),
            12 => self.row_sums.clone(),
            13 => self.x4.clone(),
            14 => self.dy4.clone(),
            15 => self.dx4.clone(),
            other => unreachable!("no backward binding {other}"),
        }
    }
}

/// Encodes a backward into `encoder`.
pub(crate) fn encode_backward(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    io: &BackwardIo<'_>,
    mut ticks: Option<&mut Ticks>,
) -> Result<()> {
    let rc = validate::backward(cfg, kind, ctx, io)?;
    let choice = choose(cfg, kind, ctx, io, rc)?;
    let (tensors, tokens) = cache_identity([
        Some(io.x),
        Some(io.dy),
        io.gamma,
        io.mean,
        io.rstd,
        Some(io.dx),
        io.dgamma,
        io.dbeta,
    ]);
    let key = BackwardKey {
        kind,
        epsilon: cfg.epsilon.to_bits(),
        axis: cfg.axis,
        rc,
        plan: choice.plan,
        variant: choice.variant,
        tensors,
    };
    let built = match ctx.bind_cache().get::<_, Built>(&key, &tokens) {
        Some(b) => b,
        None => {
            let b = Arc::new(build(kind, ctx, io, &choice)?);
            ctx.bind_cache().insert(key, b.clone(), &tokens);
            b
        }
    };
    if let Some((mean, rstd)) = &built.stats {
        let stats_io = ForwardIo {
            x: io.x,
            y: None,
            gamma: None,
            beta: None,
            mean: mean.as_ref(),
            rstd: Some(rstd),
            residual: None,
        };
        encode_forward(cfg, kind, ctx, encoder, &stats_io, ticks.as_deref_mut())?;
    }
    built.pass.record(encoder, ticks);
    ctx.tap(&built.pass);
    Ok(())
}

/// Phase 3: scratch statistics, pipelines, partial sums, params and bind groups.
fn build(kind: NormKind, ctx: &Context, io: &BackwardIo<'_>, c: &Choice) -> Result<Built> {
    let rows = c.rc.rows;
    let stats = match (io.mean, io.rstd) {
        (_, Some(_)) => None,
        _ => Some((
            (kind == NormKind::Layer)
                .then(|| GpuTensor::zeros(ctx, &[rows]))
                .transpose()?,
            GpuTensor::zeros(ctx, &[rows])?,
        )),
    };
    let (mean, rstd) = match (&stats, io.rstd) {
        (Some((m, r)), _) => (m.as_ref(), r),
        (None, Some(r)) => (io.mean, r),
        (None, None) => unreachable!("statistics are given or recomputed"),
    };
    let pass = build_pass(kind, ctx, io, c, mean, rstd)?;
    Ok(Built {
        stats,
        pass: Arc::new(pass),
    })
}

fn build_pass<'a>(
    kind: NormKind,
    ctx: &'a Context,
    io: &BackwardIo<'a>,
    c: &Choice,
    mean: Option<&'a GpuTensor>,
    rstd: &'a GpuTensor,
) -> Result<Recording> {
    let cache = ctx.pipelines();
    let none = Views::default();
    let plan = c.plan;
    let spec = plan.kernel.spec();
    let wants_params = c.parts > 0;
    let stage = |entry: Entry| -> Result<_> {
        Ok((
            entry,
            cache.backward(ctx, plan, c.variant, entry)?,
            cache.layout(ctx, entry, none)?,
        ))
    };
    let dx_steps = spec
        .steps
        .iter()
        .map(|&e| stage(e))
        .collect::<Result<Vec<_>>>()?;
    let partials_stage = (wants_params && !spec.fused_params)
        .then(|| stage(Entry::ParamPartials))
        .transpose()?;
    let sums_stage = wants_params.then(|| stage(Entry::ParamSums)).transpose()?;
    let dtype = io.x.dtype();
    let cols = c.rc.cols;
    let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
    let label = pass_label(
        kind.name(),
        "backward",
        io.x.shape(),
        dtype,
        &plan.describe(),
    );
    let args = vec![
        ("shape", shape_string(io.x.shape())),
        ("dtype", dtype.to_string()),
        ("kernel", plan.describe()),
        ("chunks", c.chunks.len().to_string()),
        ("parts", c.parts.to_string()),
    ];

    ctx.scoped("encoding a normalisation backward", || {
        let dummy = |s: u32| cache.dummy(s).as_entire_binding();
        let (gamma, dgamma, dbeta) = (
            columns(io.gamma, cols, align),
            columns(io.dgamma, cols, align),
            columns(io.dbeta, cols, align),
        );
        let opt = |p, s: u32| bind_or(p, cache.dummy(s));
        let partials = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("dgamma/dbeta partial sums"),
            size: (2 * c.parts * cols as u64 * 4).max(16),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        // (mean(x̃), r) per row of a chunk, from the dx kernel to the first
        // dgamma stage of the same chunk; the split-row kernel's piece and
        // row sums; all sized for the largest chunk, reused chunk after chunk.
        let most_rows = c.chunks.iter().map(|ch| ch.rows).max().unwrap_or(1);
        let row_centre = scratch(ctx, "backward row centres", most_rows.div_ceil(2));
        let piece_sums = scratch(ctx, "backward piece sums", most_rows * plan.splits as u64);
        let row_sums = scratch(ctx, "backward row sums", most_rows);

        let (windows, params) = chunk_windows(io, c, mean, rstd, align);
        let uniforms = Uniforms::new(ctx, "normalisation backward params", &params);
        let group = |entry: Entry, layout: &wgpu::BindGroupLayout, b: &BackwardBindings<'_>| {
            let entries: Vec<_> = entry
                .backward_bindings()
                .iter()
                .map(|&s| wgpu::BindGroupEntry {
                    binding: s,
                    resource: b.at(s),
                })
                .collect();
            let (group, bound) = bind_group(ctx, entry, layout, &entries);
            let desc = DispatchDesc {
                module: ModuleKey::Backward(plan.kernel.reduction(), dtype),
                entry: entry.name(),
                constants: backward_constants(plan, c.variant, entry),
                bindings: bound,
            };
            (group, desc)
        };
        let bindings = |i: usize, w: Option<&ChunkWindows<'a>>| BackwardBindings {
            x: w.map_or_else(|| dummy(0), |w| bind(io.x.buffer(), w.0)),
            dy: w.map_or_else(|| dummy(1), |w| bind(io.dy.buffer(), w.1)),
            gamma: opt(gamma.filter(|_| w.is_some()), 2),
            mean: opt(w.and_then(|w| w.3), 3),
            rstd: w.map_or_else(|| dummy(4), |w| bind(rstd.buffer(), w.4)),
            dx: w.map_or_else(|| dummy(5), |w| bind(io.dx.buffer(), w.2)),
            partials: partials.as_entire_binding(),
            dgamma: opt(dgamma.filter(|_| w.is_none()), 7),
            dbeta: opt(dbeta.filter(|_| w.is_none()), 8),
            params: uniforms.binding(i),
            row_centre: row_centre.as_entire_binding(),
            piece_sums: piece_sums.as_entire_binding(),
            row_sums: row_sums.as_entire_binding(),
            x4: bind_vec4_or(w.map(|w| (io.x, w.0)), cache.dummy(13)),
            dy4: bind_vec4_or(w.map(|w| (io.dy, w.1)), cache.dummy(14)),
            dx4: bind_vec4_or(w.map(|w| (io.dx, w.2)), cache.dummy(15)),
        };
        // Block k's partial sums: 2 parts values per column, from its first column on.
        let per_col = 2 * c.parts * 4;
        let block_window = |&(col_base, block_cols): &(u64, u64)| {
            bind(
                &partials,
                BindingWindow {
                    offset: per_col * col_base,
                    size: (per_col * block_cols).max(16),
                    base: 0,
                },
            )
        };
        let (n_chunks, n_blocks) = (c.chunks.len(), c.blocks.len());
        let mut dispatches = Vec::new();
        for (i, (chunk, w)) in c.chunks.iter().zip(&windows).enumerate() {
            let b = bindings(i, Some(w));
            let rows = format!("{}..{}", chunk.first_row, chunk.first_row + chunk.rows);
            for (entry, pipeline, layout) in &dx_steps {
                let workgroups = match entry {
                    Entry::DxFourRowsPerLane => chunk
                        .rows
                        .div_ceil(spec.rows_per_lane as u64 * plan.workgroup_size as u64),
                    Entry::DxRowPerWorkgroup => chunk.rows,
                    Entry::DxRowsCached => chunk.rows.div_ceil(plan.rows_per_part as u64),
                    Entry::DxSplitCombine => chunk.rows.div_ceil(COMBINE_LANES as u64),
                    _ => chunk.rows * plan.splits as u64,
                };
                let (group, desc) = group(*entry, layout, &b);
                dispatches.push(Dispatch {
                    pipeline: pipeline.clone(),
                    group,
                    desc,
                    workgroups,
                    name: format!("{label} chunk {i} {}", entry.name()),
                    rows: rows.clone(),
                });
            }
            if let Some((entry, pipeline, layout)) = &partials_stage {
                let chunk_parts = chunk.rows.div_ceil(plan.rows_per_part as u64);
                for (k, block) in c.blocks.iter().enumerate() {
                    let mut b = bindings(n_chunks + i * n_blocks + k, Some(w));
                    b.partials = block_window(block);
                    let (group, desc) = group(*entry, layout, &b);
                    dispatches.push(Dispatch {
                        pipeline: pipeline.clone(),
                        group,
                        desc,
                        workgroups: block.1.div_ceil(PARAM_LANES as u64) * chunk_parts,
                        name: format!("{label} chunk {i} block {k} param_partials"),
                        rows: rows.clone(),
                    });
                }
            }
        }
        if let Some((entry, pipeline, layout)) = &sums_stage {
            for (k, block) in c.blocks.iter().enumerate() {
                let mut b = bindings(n_chunks * (1 + n_blocks) + k, None);
                b.partials = block_window(block);
                let (group, desc) = group(*entry, layout, &b);
                dispatches.push(Dispatch {
                    pipeline: pipeline.clone(),
                    group,
                    desc,
                    workgroups: block.1.div_ceil(PARAM_LANES as u64),
                    name: format!("{label} block {k} param_sums"),
                    rows: format!("0..{}", c.rc.rows),
                });
            }
        }
        Recording {
            label,
            args,
            dispatches,
            uniforms: vec![(uniforms.buffer.clone(), uniforms.bytes.clone())],
        }
    })
}

/// Phase 3b (no GPU work): per chunk the windows of x, dy, dx, the mean and
/// rstd, and the uniform blocks: one per chunk (the dx pass), one per chunk
/// and column block (the first dgamma/dbeta stage), then one per column
/// block (the second).
fn chunk_windows<'a>(
    io: &BackwardIo<'a>,
    c: &Choice,
    mean: Option<&'a GpuTensor>,
    rstd: &'a GpuTensor,
    align: u64,
) -> (Vec<ChunkWindows<'a>>, Vec<Params>) {
    let (plan, cols) = (c.plan, c.rc.cols);
    let gamma = columns(io.gamma, cols, align);
    let (dgamma, dbeta) = (
        columns(io.dgamma, cols, align),
        columns(io.dbeta, cols, align),
    );
    let mut params = Vec::with_capacity(c.chunks.len() + 1);
    let mut windows = Vec::with_capacity(c.chunks.len());
    let mut part_base = 0u64;
    for chunk in &c.chunks {
        let rows = |t: &GpuTensor, per_row| row_window(t, chunk, per_row, align);
        let w = (
            rows(io.x, cols as u64),
            rows(io.dy, cols as u64),
            rows(io.dx, cols as u64),
            mean.map(|t| (t, rows(t, 1))),
            rows(rstd, 1),
        );
        params.push(Params {
            rows: chunk.rows as u32,
            dim: cols as u32,
            x_base: w.0.base,
            dy_base: w.1.base,
            dx_base: w.2.base,
            gamma_base: gamma.map_or(0, |(_, w)| w.base),
            mean_base: w.3.map_or(0, |(_, w)| w.base),
            rstd_base: w.4.base,
            part_base: part_base as u32,
            parts: c.parts as u32,
            rows_per_part: plan.rows_per_part,
            col_base: 0,
            block_cols: cols as u32,
            ..Params::default()
        });
        part_base += chunk.rows.div_ceil(plan.rows_per_part as u64);
        windows.push(w);
    }
    // Per chunk and column block: the first stage's params; per block: the
    // second stage's.
    let chunk_params = params.clone();
    for p in &chunk_params {
        for &(col_base, block_cols) in &c.blocks {
            params.push(Params {
                col_base: col_base as u32,
                block_cols: block_cols as u32,
                ..*p
            });
        }
    }
    for &(col_base, block_cols) in &c.blocks {
        params.push(Params {
            rows: c.rc.rows as u32,
            dim: cols as u32,
            dgamma_base: dgamma.map_or(0, |(_, w)| w.base),
            dbeta_base: dbeta.map_or(0, |(_, w)| w.base),
            parts: c.parts as u32,
            rows_per_part: plan.rows_per_part,
            col_base: col_base as u32,
            block_cols: block_cols as u32,
            ..Params::default()
        });
    }
    (windows, params)
}
