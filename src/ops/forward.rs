//! The forward of the row normalisations ([`LayerNorm`](crate::LayerNorm),
//! [`RmsNorm`](crate::RmsNorm)) in named phases:
//!
//! 1. **validate** the tensors ([`validate::forward`]);
//! 2. **choose** the plan, the chunks of rows, the pipeline variant and views,
//!    and the dispatches ([`choose`]);
//! 3. look the call up in the context's bind cache; on a miss **build** it:
//!    per chunk the binding windows and params ([`ForwardBindings`]), then the
//!    bind groups of each step — inside one error scope;
//! 4. **record** the pass into the caller's encoder.
//!
//! A warm call (the same tensors and shape) runs 1, 2 and 4 only: it
//! allocates nothing and opens no error scope.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::bindings::{self, slot};
use crate::kernels::cache::{ModuleKey, forward_constants};
use crate::kernels::{LayerNormVariant, Views};
use crate::ops::config::{NormConfig, NormKind};
use crate::ops::io::ForwardIo;
use crate::ops::record::{
    Dispatch, DispatchDesc, Recording, Uniforms, bind, bind_group, bind_or, bind_vec4_or,
    cache_identity, column_window, columns, pass_label, row_window, scratch,
};
use crate::ops::validate;
use crate::plan::{self, BindingWindow, COMBINE_LANES, Entry, LayerNormPlan, RowChunk, Rows};
use crate::shape::{RowsCols, shape_string};
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// The uniform block of `shaders/layer_norm_common.wgsl` (`struct Params`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    x_base: u32,
    y_base: u32,
    mean_base: u32,
    rstd_base: u32,
    gamma_base: u32,
    beta_base: u32,
    epsilon: f32,
    residual_base: u32,
    residual_bias_base: u32,
    sum_base: u32,
}

/// What phase 2 decides.
pub(crate) struct Choice {
    pub(crate) rc: RowsCols,
    pub(crate) plan: LayerNormPlan,
    pub(crate) chunks: Vec<RowChunk>,
    pub(crate) variant: LayerNormVariant,
    /// The dispatches of one chunk, in order.
    pub(crate) steps: Vec<Entry>,
}

/// Phase 2: the plan, the chunks (each within one storage binding and one
/// dispatch's workgroups), the views (vec4 where every row is aligned), the
/// variant, and the steps.
pub(crate) fn choose(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &Context,
    io: &ForwardIo<'_>,
    rc: RowsCols,
) -> Result<Choice> {
    let dtype = io.x.dtype();
    let plan = cfg.plan(ctx, rc)?;
    let limits = ctx.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let spec = plan.kernel.spec();
    // A dispatch holds at most 65,535² workgroups: rows per workgroup for
    // the row-per-* kernels, pieces per row for the split-row kernel.
    let max_rows = match spec.rows {
        Rows::Pieces => plan::MAX_WORKGROUPS_PER_DISPATCH / plan.splits as u64,
        _ => plan::MAX_WORKGROUPS_PER_DISPATCH * plan.rows_per_workgroup as u64,
    };
    // A row's bytes in the widest row-indexed tensor (mean and rstd take 4).
    let row_bytes = (rc.cols as u64 * dtype.size_bytes()).max(4);
    let residual_tensors = io
        .residual
        .map(|r| r.residual)
        .into_iter()
        .chain(io.residual.and_then(|r| r.sum));
    let offsets = [Some(io.x), io.y]
        .into_iter()
        .flatten()
        .chain(residual_tensors)
        .map(|t| t.offset());
    let chunks = plan::chunk_rows(
        rc.rows as u64,
        rc.cols,
        row_bytes,
        plan::max_binding(limits),
        plan::start_slack(offsets, row_bytes, align),
        max_rows,
    )?;
    let cols = rc.cols as u64;
    // Every row of x and y, and gamma and beta, start on a vec4 boundary of
    // their bindings: then they are bound as vec4s only.
    let vec4_rows = cols % 4 == 0
        && [io.gamma, io.beta]
            .into_iter()
            .flatten()
            .all(|t| column_window(t, rc.cols, align).base % 4 == 0)
        && chunks.iter().all(|chunk| {
            [Some(io.x), io.y]
                .into_iter()
                .flatten()
                .all(|t| row_window(t, chunk, cols, align).base % 4 == 0)
        });
    let residual = io.residual;
    let views = Views {
        vec4_rows,
        residual: residual.is_some(),
    };
    let variant = LayerNormVariant {
        rms: kind == NormKind::Rms,
        dtype,
        views,
        gamma: io.gamma.is_some(),
        beta: io.beta.is_some(),
        mean: io.mean.is_some(),
        rstd: io.rstd.is_some(),
        residual_bias: residual.is_some_and(|r| r.bias.is_some()),
        sum: residual.is_some_and(|r| r.sum.is_some()),
        stats_only: io.y.is_none(),
    };
    let mut steps = match variant.stats_only {
        false => spec.steps.to_vec(),
        true => spec.stats_steps.to_vec(),
    };
    if views.packed_stats() && (variant.mean || variant.rstd) {
        steps.push(Entry::UnpackStats);
    }
    Ok(Choice {
        rc,
        plan,
        chunks,
        variant,
        steps,
    })
}

/// What a cached forward depends on: the choice and the tensors' buffers
/// and offsets.
#[derive(PartialEq, Eq, Hash)]
struct ForwardKey {
    kind: NormKind,
    epsilon: u32,
    rc: RowsCols,
    plan: LayerNormPlan,
    variant: LayerNormVariant,
    tensors: [Option<(wgpu::Buffer, u64)>; 9],
}

/// Every binding of the forward's modules, by name, for one chunk. Absent
/// ones are the pipeline cache's per-slot buffers.
struct ForwardBindings<'a> {
    x: wgpu::BindingResource<'a>,
    x4: wgpu::BindingResource<'a>,
    y: wgpu::BindingResource<'a>,
    y4: wgpu::BindingResource<'a>,
    gamma: wgpu::BindingResource<'a>,
    beta: wgpu::BindingResource<'a>,
    /// The mean output, or the packed statistics scratch.
    mean: wgpu::BindingResource<'a>,
    /// The rstd output, or (packed) the mean output of `unpack_stats`.
    rstd: wgpu::BindingResource<'a>,
    params: wgpu::BindingResource<'a>,
    pieces: wgpu::BindingResource<'a>,
    row_stats: wgpu::BindingResource<'a>,
    residual: wgpu::BindingResource<'a>,
    residual_bias: wgpu::BindingResource<'a>,
    sum: wgpu::BindingResource<'a>,
    unpacked_rstd: wgpu::BindingResource<'a>,
}

impl<'a> ForwardBindings<'a> {
    fn at(&self, s: u32) -> wgpu::BindingResource<'a> {
        match s {
            slot::X => self.x.clone(),
            slot::X4 => self.x4.clone(),
            slot::Y => self.y.clone(),
            slot::Y4 => self.y4.clone(),
            slot::GAMMA => self.gamma.clone(),
            slot::BETA => self.beta.clone(),
            slot::MEAN => self.mean.clone(),
            slot::RSTD => self.rstd.clone(),
            slot::PARAMS => self.params.clone(),
            slot::PIECES => self.pieces.clone(),
            slot::ROW_STATS => self.row_stats.clone(),
            slot::RESIDUAL => self.residual.clone(),
            slot::RESIDUAL_BIAS => self.residual_bias.clone(),
            slot::SUM => self.sum.clone(),
            slot::UNPACKED_RSTD => self.unpacked_rstd.clone(),
            other => unreachable!("no forward binding {other}"),
        }
    }
}

/// Encodes one forward into `encoder`: one compute pass with the steps of
/// each chunk of rows (a single chunk unless the tensor is larger than one
/// storage binding).
pub(crate) fn encode_forward(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    io: &ForwardIo<'_>,
    ticks: Option<&mut Ticks>,
) -> Result<()> {
    let rc = validate::forward(cfg, ctx, io)?;
    let choice = choose(cfg, kind, ctx, io, rc)?;
    let r = io.residual;
    let (tensors, tokens) = cache_identity([
        Some(io.x),
        io.y,
        io.gamma,
        io.beta,
        io.mean,
        io.rstd,
        r.map(|r| r.residual),
        r.and_then(|r| r.bias),
        r.and_then(|r| r.sum),
    ]);
    let key = ForwardKey {
        kind,
        epsilon: cfg.epsilon.to_bits(),
        rc,
        plan: choice.plan,
        variant: choice.variant,
        tensors,
    };
    let recording = match ctx.bind_cache().get::<_, Recording>(&key, &tokens) {
        Some(rec) => rec,
        None => {
            let rec = Arc::new(build(cfg, kind, ctx, io, &choice)?);
            ctx.bind_cache().insert(key, rec.clone(), &tokens);
            rec
        }
    };
    recording.record(encoder, ticks);
    ctx.tap(&recording);
    Ok(())
}

/// Phase 3: pipelines, scratch, params, windows and bind groups of every
/// chunk and step.
fn build<'a>(
    cfg: &NormConfig,
    kind: NormKind,
    ctx: &'a Context,
    io: &ForwardIo<'a>,
    c: &Choice,
) -> Result<Recording> {
    let views = c.variant.views;
    let cache = ctx.pipelines();
    let steps = pipelines(ctx, c)?;
    let dtype = io.x.dtype();
    let (cols, align) = (
        c.rc.cols,
        ctx.limits().min_storage_buffer_offset_alignment as u64,
    );
    let label = pass_label(
        kind.name(),
        match (io.y.is_none(), io.residual.is_some()) {
            (true, _) => "stats",
            (false, true) => "residual_forward",
            (false, false) => "forward",
        },
        io.x.shape(),
        dtype,
        &c.plan.describe(),
    );
    let args = vec![
        ("shape", shape_string(io.x.shape())),
        ("dtype", dtype.to_string()),
        ("kernel", c.plan.describe()),
        ("chunks", c.chunks.len().to_string()),
    ];
    ctx.scoped("encoding a normalisation forward", || {
        let dummy = |s: u32| cache.dummy(s).as_entire_binding();
        // Scratch, sized for the largest chunk and reused chunk after chunk
        // (dispatches in a pass run in order).
        let most_rows = c.chunks.iter().map(|ch| ch.rows).max().unwrap_or(1);
        let pieces = c.steps.contains(&Entry::SplitCombine).then(|| {
            (
                scratch(ctx, "piece moments", most_rows * c.plan.splits as u64),
                scratch(ctx, "row stats", most_rows),
            )
        });
        let packed = c
            .steps
            .contains(&Entry::UnpackStats)
            .then(|| scratch(ctx, "packed statistics", most_rows.div_ceil(2)));
        let gamma = columns(io.gamma, cols, align);
        let beta = columns(io.beta, cols, align);
        let bias = columns(io.residual.and_then(|r| r.bias), cols, align);

        let (windows, params) = chunk_windows(cfg, io, c, align);
        let residual = io.residual.map(|r| r.residual);
        let sum = io.residual.and_then(|r| r.sum);
        let uniforms = Uniforms::new(ctx, "normalisation params", &params);

        let constants = forward_constants(c.plan, c.variant);
        let mut dispatches = Vec::with_capacity(c.chunks.len() * steps.len());
        for (i, (chunk, w)) in c.chunks.iter().zip(&windows).enumerate() {
            let d = |s: u32| cache.dummy(s);
            let opt = |t: Option<&'a GpuTensor>, w: Option<BindingWindow>, s: u32| {
                bind_or(t.zip(w), d(s))
            };
            // gamma and beta in the pipeline's view.
            let param = |p, s: u32| match views.vec4_rows {
                true => bind_vec4_or(p, d(s)),
                false => bind_or(p, d(s)),
            };
            let (mean, rstd, unpacked_rstd) = match &packed {
                Some(p) => (
                    p.as_entire_binding(),
                    opt(io.mean, w.mean, slot::RSTD),
                    opt(io.rstd, w.rstd, slot::UNPACKED_RSTD),
                ),
                None => (
                    opt(io.mean, w.mean, slot::MEAN),
                    opt(io.rstd, w.rstd, slot::RSTD),
                    dummy(slot::UNPACKED_RSTD),
                ),
            };
            let b = ForwardBindings {
                x: bind(io.x.buffer(), w.x),
                x4: bind_vec4_or(Some((io.x, w.x)), d(slot::X4)),
                y: opt(io.y, w.y, slot::Y),
                y4: bind_vec4_or(io.y.zip(w.y), d(slot::Y4)),
                gamma: param(gamma, slot::GAMMA),
                beta: param(beta, slot::BETA),
                mean,
                rstd,
                params: uniforms.binding(i),
                pieces: pieces
                    .as_ref()
                    .map_or_else(|| dummy(slot::PIECES), |p| p.0.as_entire_binding()),
                row_stats: pieces
                    .as_ref()
                    .map_or_else(|| dummy(slot::ROW_STATS), |p| p.1.as_entire_binding()),
                residual: opt(residual, w.residual, slot::RESIDUAL),
                residual_bias: bind_or(bias, d(slot::RESIDUAL_BIAS)),
                sum: opt(sum, w.sum, slot::SUM),
                unpacked_rstd,
            };
            let rows = format!("{}..{}", chunk.first_row, chunk.first_row + chunk.rows);
            for (entry, pipeline, layout) in &steps {
                let entries: Vec<_> = bindings::forward_slots(*entry, views)
                    .into_iter()
                    .map(|s| wgpu::BindGroupEntry {
                        binding: s,
                        resource: b.at(s),
                    })
                    .collect();
                let (group, bound) = bind_group(ctx, *entry, layout, &entries);
                dispatches.push(Dispatch {
                    pipeline: pipeline.clone(),
                    group,
                    workgroups: workgroups(*entry, &c.plan, chunk.rows),
                    name: format!("{label} chunk {i} {}", entry.name()),
                    rows: rows.clone(),
                    desc: DispatchDesc {
                        module: ModuleKey::Forward(c.plan.kernel, dtype, views),
                        entry: entry.name(),
                        constants: constants.clone(),
                        bindings: bound,
                    },
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

/// Phase 3a: the pipeline and bind group layout of each step, after
/// checking that each fits the device's storage-buffer limit (every one fits
/// WebGPU's default 8; a device created with fewer is told so).
fn pipelines(
    ctx: &Context,
    c: &Choice,
) -> Result<Vec<(Entry, wgpu::ComputePipeline, wgpu::BindGroupLayout)>> {
    let views = c.variant.views;
    let available = ctx.limits().max_storage_buffers_per_shader_stage;
    for &entry in &c.steps {
        let needed = bindings::storage_buffers(entry, views);
        if needed > available {
            return Err(Error::LimitTooLow {
                what: "a normalisation forward",
                limit: "max_storage_buffers_per_shader_stage",
                needed: needed as u64,
                actual: available as u64,
            });
        }
    }
    let cache = ctx.pipelines();
    c.steps
        .iter()
        .map(|&e| {
            Ok((
                e,
                cache.forward(ctx, c.plan, c.variant, e)?,
                cache.layout(ctx, e, views)?,
            ))
        })
        .collect()
}

/// The row-indexed windows of one chunk.
struct Windows {
    x: BindingWindow,
    y: Option<BindingWindow>,
    mean: Option<BindingWindow>,
    rstd: Option<BindingWindow>,
    residual: Option<BindingWindow>,
    sum: Option<BindingWindow>,
}

/// Phase 3b (no GPU work): per chunk, the windows of the row-indexed
/// tensors and the uniform block.
fn chunk_windows(
    cfg: &NormConfig,
    io: &ForwardIo<'_>,
    c: &Choice,
    align: u64,
) -> (Vec<Windows>, Vec<Params>) {
    let cols = c.rc.cols;
    let gamma = columns(io.gamma, cols, align);
    let beta = columns(io.beta, cols, align);
    let bias = columns(io.residual.and_then(|r| r.bias), cols, align);
    let residual = io.residual.map(|r| r.residual);
    let sum = io.residual.and_then(|r| r.sum);
    let mut windows = Vec::with_capacity(c.chunks.len());
    let mut params = Vec::with_capacity(c.chunks.len());
    for chunk in &c.chunks {
        let rows_of =
            |t: Option<&GpuTensor>, per_row| t.map(|t| row_window(t, chunk, per_row, align));
        let w = Windows {
            x: row_window(io.x, chunk, cols as u64, align),
            y: rows_of(io.y, cols as u64),
            mean: rows_of(io.mean, 1),
            rstd: rows_of(io.rstd, 1),
            residual: rows_of(residual, cols as u64),
            sum: rows_of(sum, cols as u64),
        };
        let base = |w: Option<BindingWindow>| w.map_or(0, |w| w.base);
        params.push(Params {
            rows: chunk.rows as u32,
            dim: cols as u32,
            x_base: w.x.base,
            y_base: base(w.y),
            mean_base: base(w.mean),
            rstd_base: base(w.rstd),
            gamma_base: gamma.map_or(0, |(_, w)| w.base),
            beta_base: beta.map_or(0, |(_, w)| w.base),
            epsilon: cfg.epsilon,
            residual_base: base(w.residual),
            residual_bias_base: bias.map_or(0, |(_, w)| w.base),
            sum_base: base(w.sum),
        });
        windows.push(w);
    }
    (windows, params)
}

/// Workgroups of one dispatch of `entry` over `rows` rows.
fn workgroups(entry: Entry, plan: &LayerNormPlan, rows: u64) -> u64 {
    match entry {
        Entry::SplitStats | Entry::SplitApply => rows * plan.splits as u64,
        Entry::SplitCombine | Entry::UnpackStats => rows.div_ceil(COMBINE_LANES as u64),
        // The row-per-* kernels and the row block's two passes.
        _ => rows.div_ceil(plan.rows_per_workgroup as u64),
    }
}
