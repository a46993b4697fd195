//! The forward of the normalisation family, shared by [`LayerNorm`] and
//! [`RmsNorm`](crate::RmsNorm): validation, the chunked dispatch plan, the
//! bind groups and the (ticked) compute pass. The ops only say which
//! normalisation and which tensors.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{Entry, LayerNormVariant, bind, bind_optional, bind_vec4};
use crate::ops::encoding::{
    Uniforms, begin_pass, bind_group, column_window, dispatch, pass_label, row_window,
};
use crate::ops::layer_norm::{LayerNorm, shape_string};
use crate::plan::{self, Kernel, LayerNormPlan, Reduction};
use crate::tensor::{DType, GpuTensor};
use crate::ticks::Ticks;

/// A residual added to the input before normalising (the pre-LN transformer
/// block): `s = x + residual (+ bias)`, then `y = norm(s)`, in one pass over
/// memory. `s` is also written to `sum` when given.
#[derive(Clone, Copy, Debug)]
pub struct ResidualAdd<'a> {
    /// Same shape and type as x.
    pub residual: &'a GpuTensor,
    /// Optional bias, one value per normalised column (shaped like gamma).
    pub bias: Option<&'a GpuTensor>,
    /// Optional output of s, same shape and type as x, in its own buffer.
    pub sum: Option<&'a GpuTensor>,
}

/// Which normalisation a forward computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Norm {
    Layer,
    Rms,
}

/// Every tensor a forward may touch. `y: None` computes the statistics only.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardIo<'a> {
    pub(crate) x: &'a GpuTensor,
    pub(crate) y: Option<&'a GpuTensor>,
    pub(crate) gamma: Option<&'a GpuTensor>,
    pub(crate) beta: Option<&'a GpuTensor>,
    pub(crate) mean: Option<&'a GpuTensor>,
    pub(crate) rstd: Option<&'a GpuTensor>,
    pub(crate) residual: Option<ResidualAdd<'a>>,
}

/// The uniform block of `shaders/layer_norm_common.wgsl` (`struct Params`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
    y_vec4: u32,
    residual_base: u32,
    residual_bias_base: u32,
    sum_base: u32,
    _pad: [u32; 3],
}

/// `what` must have x's element type (`expected`); statistics are f32.
pub(crate) fn check_dtype(what: &'static str, t: &GpuTensor, expected: DType) -> Result<()> {
    if t.dtype() != expected {
        return Err(Error::DTypeMismatch {
            what,
            expected,
            actual: t.dtype(),
        });
    }
    Ok(())
}

/// Refuses buffer sharing wgpu forbids: an output in the buffer of an input,
/// or two outputs that overlap.
pub(crate) fn check_aliasing(
    inputs: &[Option<(&'static str, &GpuTensor)>],
    outputs: &[Option<(&'static str, &GpuTensor)>],
) -> Result<()> {
    for (a, ta) in outputs.iter().flatten() {
        for (b, tb) in inputs.iter().flatten() {
            if ta.buffer() == tb.buffer() {
                return Err(Error::AliasedBuffers { a, b });
            }
        }
    }
    for (i, (a, ta)) in outputs.iter().flatten().enumerate() {
        for (b, tb) in outputs.iter().flatten().skip(i + 1) {
            let overlap = ta.offset() < tb.offset() + tb.size_bytes()
                && tb.offset() < ta.offset() + ta.size_bytes();
            if ta.buffer() == tb.buffer() && overlap {
                return Err(Error::AliasedBuffers { a, b });
            }
        }
    }
    Ok(())
}

/// Checks that `t` holds `expected_len` values, or names its expected shape.
pub(crate) fn check_len(
    what: &'static str,
    t: &GpuTensor,
    expected_len: usize,
    expected_shape: &[usize],
) -> Result<()> {
    if t.len() != expected_len {
        return Err(Error::ShapeMismatch {
            what,
            expected: expected_shape.to_vec(),
            actual: t.shape().to_vec(),
        });
    }
    Ok(())
}

/// Checks shapes, element types and buffer sharing of `io`; `(rows, cols)`.
fn validate(cfg: &LayerNorm, ctx: &Context, io: &ForwardIo<'_>) -> Result<(usize, usize)> {
    cfg.validate_params(io.x.shape())?;
    let (rows, cols) = cfg.rows_cols(io.x.shape())?;
    let dtype = io.x.dtype();
    dtype.check_supported(ctx)?;
    let shape = io.x.shape();
    let norm_shape = &cfg.norm_shape(shape)?;
    let stats_shape = cfg.stats_shape(shape)?;
    let residual = io.residual.map(|r| r.residual);
    let bias = io.residual.and_then(|r| r.bias);
    let sum = io.residual.and_then(|r| r.sum);
    for (what, t) in [("y", io.y), ("residual", residual), ("sum", sum)] {
        if let Some(t) = t {
            if t.shape() != shape {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: shape.to_vec(),
                    actual: t.shape().to_vec(),
                });
            }
            check_dtype(what, t, dtype)?;
        }
    }
    for (what, t) in [("gamma", io.gamma), ("beta", io.beta), ("bias", bias)] {
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
    check_aliasing(
        &[
            Some(("x", io.x)),
            io.gamma.map(|t| ("gamma", t)),
            io.beta.map(|t| ("beta", t)),
            residual.map(|t| ("residual", t)),
            bias.map(|t| ("bias", t)),
        ],
        &[
            io.y.map(|t| ("y", t)),
            io.mean.map(|t| ("mean", t)),
            io.rstd.map(|t| ("rstd", t)),
            sum.map(|t| ("sum", t)),
        ],
    )?;
    Ok((rows, cols))
}

/// Encodes one forward into `encoder`: one compute pass with one dispatch
/// per chunk of rows (per step of the split-row kernel), a single chunk
/// unless the tensor is larger than one storage binding.
pub(crate) fn encode_forward(
    cfg: &LayerNorm,
    norm: Norm,
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    io: &ForwardIo<'_>,
    mut ticks: Option<&mut Ticks>,
) -> Result<()> {
    let (rows, cols) = validate(cfg, ctx, io)?;
    let dtype = io.x.dtype();
    let plan = cfg.plan(ctx, io.x.shape())?;
    let limits = ctx.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let row_bytes = cols as u64 * dtype.size_bytes();
    let rows_per_workgroup = plan.rows_per_workgroup as u64;
    // A dispatch holds at most 65,535² workgroups: rows per workgroup for
    // the row-per-* kernels, pieces per row for the split-row kernel.
    let max_rows = match plan.kernel {
        Kernel::SplitRow(_) => plan::MAX_WORKGROUPS_PER_DISPATCH / plan.splits as u64,
        _ => plan::MAX_WORKGROUPS_PER_DISPATCH * rows_per_workgroup,
    };
    let chunks = plan::chunk_rows(
        rows as u64,
        cols,
        row_bytes,
        limits.max_storage_buffer_binding_size,
        align,
        max_rows,
    )?;
    let residual = io.residual;
    // Whether every row of x and y, and gamma and beta, start on a vec4
    // boundary of their bindings: then gamma and beta are read as vec4s, and
    // the row-per-lane kernel reads and writes whole vec4s.
    let vec4_rows = cols % 4 == 0
        && [io.gamma, io.beta]
            .into_iter()
            .flatten()
            .all(|t| column_window(t, cols, align).base % 4 == 0)
        && chunks.iter().all(|chunk| {
            [Some(io.x), io.y]
                .into_iter()
                .flatten()
                .all(|t| row_window(t, chunk, cols as u64, align).base % 4 == 0)
        });
    let variant = LayerNormVariant {
        rms: norm == Norm::Rms,
        dtype,
        gamma: io.gamma.is_some(),
        beta: io.beta.is_some(),
        mean: io.mean.is_some(),
        rstd: io.rstd.is_some(),
        residual: residual.is_some(),
        residual_bias: residual.is_some_and(|r| r.bias.is_some()),
        sum: residual.is_some_and(|r| r.sum.is_some()),
        stats_only: io.y.is_none(),
        vec4_rows,
    };
    // The dispatches of one chunk, in order.
    let steps: &[Entry] = match (plan.kernel, variant.stats_only) {
        (Kernel::SplitRow(_), false) => {
            &[Entry::SplitStats, Entry::SplitCombine, Entry::SplitApply]
        }
        (Kernel::SplitRow(_), true) => &[Entry::SplitStats, Entry::SplitCombine],
        (Kernel::RowBlock(Reduction::Workgroup), false) => &[
            Entry::RowBlockMoments,
            Entry::SplitCombine,
            Entry::RowBlockApply,
        ],
        (Kernel::RowBlock(Reduction::Workgroup), true) => {
            &[Entry::RowBlockMoments, Entry::SplitCombine]
        }
        _ => &[Entry::Forward],
    };
    let kernels = ctx.kernels();
    // The fused bindings need more storage buffers than WebGPU's default 8.
    let needed = steps
        .iter()
        .map(|e| e.storage_buffers(variant.residual))
        .max()
        .unwrap_or(0);
    let available = limits.max_storage_buffers_per_shader_stage;
    if needed > available {
        return Err(Error::LimitTooLow {
            what: "the fused residual forward",
            limit: "max_storage_buffers_per_shader_stage",
            needed: needed as u64,
            actual: available as u64,
        });
    }
    let layouts = steps
        .iter()
        .map(|entry| kernels.layout(ctx, *entry, variant.residual))
        .collect::<Result<Vec<_>>>()?;
    let pipelines = steps
        .iter()
        .map(|entry| kernels.layer_norm_pipeline(ctx, plan, variant, *entry))
        .collect::<Result<Vec<_>>>()?;

    ctx.scoped("encoding a normalisation forward", || {
        // Per-column tensors are bound whole; absent ones get a dummy that
        // the specialised pipeline never reads.
        let column_window = |t: &GpuTensor| column_window(t, cols, align);
        let gamma = io.gamma.map(|t| (t.buffer(), column_window(t)));
        let beta = io.beta.map(|t| (t.buffer(), column_window(t)));
        let bias = residual
            .and_then(|r| r.bias)
            .map(|t| (t.buffer(), column_window(t)));
        // Scratch of the kernels that combine pieces of rows (split-row, the
        // row block without subgroups), sized for the largest chunk and reused
        // chunk after chunk (dispatches in a pass run in order).
        let most_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
        let scratch = |label, vec4s: u64| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: vec4s.max(1) * 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let piece_scratch = steps.contains(&Entry::SplitCombine).then(|| {
            (
                scratch("piece moments", most_rows * plan.splits as u64),
                scratch("row stats", most_rows),
            )
        });

        // Per chunk: the windows of the row-indexed tensors, and the params.
        let mut windows = Vec::with_capacity(chunks.len());
        let mut params = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let row_window = |t: &GpuTensor, per_row| row_window(t, chunk, per_row, align);
            let rows_of = |t: Option<&GpuTensor>, per_row| t.map(|t| row_window(t, per_row));
            let x = row_window(io.x, cols as u64);
            let y = rows_of(io.y, cols as u64);
            let mean = rows_of(io.mean, 1);
            let rstd = rows_of(io.rstd, 1);
            let res = rows_of(residual.map(|r| r.residual), cols as u64);
            let sum = rows_of(residual.and_then(|r| r.sum), cols as u64);
            let base = |w: Option<plan::BindingWindow>| w.map_or(0, |w| w.base);
            params.push(Params {
                rows: chunk.rows as u32,
                dim: cols as u32,
                x_base: x.base,
                y_base: base(y),
                mean_base: base(mean),
                rstd_base: base(rstd),
                gamma_base: gamma.map_or(0, |(_, w)| w.base),
                beta_base: beta.map_or(0, |(_, w)| w.base),
                epsilon: cfg.epsilon,
                y_vec4: u32::from(y.is_some_and(|y| x.base % 4 == y.base % 4)),
                residual_base: base(res),
                residual_bias_base: bias.map_or(0, |(_, w)| w.base),
                sum_base: base(sum),
                _pad: [0; 3],
            });
            windows.push((x, y, mean, rstd, res, sum));
        }
        let uniforms = Uniforms::new(ctx, "normalisation params", &params);

        // Per chunk, one bind group per step: every binding of
        // shaders/layer_norm_common.wgsl (0-8, 11-13) and of the split-row
        // scratch (9, 10), of which each entry point's layout takes its own.
        let dummy_in = &kernels.dummy_input;
        let dummy_out = &kernels.dummy_output;
        let mut bind_groups = Vec::with_capacity(chunks.len());
        for (i, (x, y, mean, rstd, res, sum)) in windows.iter().enumerate() {
            let y_buffer = io.y.map(|t| t.buffer());
            let (moments, stats) = match &piece_scratch {
                Some((m, s)) => (m.as_entire_binding(), s.as_entire_binding()),
                None => (dummy_out.as_entire_binding(), dummy_out.as_entire_binding()),
            };
            let resources = [
                bind(io.x.buffer(), *x),
                bind_vec4(io.x.buffer(), *x, dtype, dummy_in),
                bind_optional(y_buffer.zip(*y), dummy_out),
                match y_buffer.zip(*y) {
                    Some((b, w)) => bind_vec4(b, w, dtype, dummy_out),
                    None => dummy_out.as_entire_binding(),
                },
                bind_param(gamma, vec4_rows, dtype, dummy_in),
                bind_param(beta, vec4_rows, dtype, dummy_in),
                bind_optional(io.mean.map(|t| t.buffer()).zip(*mean), dummy_out),
                bind_optional(io.rstd.map(|t| t.buffer()).zip(*rstd), dummy_out),
                uniforms.binding(i),
                moments,
                stats,
                bind_optional(residual.map(|r| r.residual.buffer()).zip(*res), dummy_in),
                bind_optional(bias, dummy_in),
                bind_optional(
                    residual.and_then(|r| r.sum).map(|t| t.buffer()).zip(*sum),
                    dummy_out,
                ),
            ];
            let groups: Vec<_> = steps
                .iter()
                .zip(&layouts)
                .map(|(entry, layout)| {
                    bind_group(ctx, *entry, variant.residual, layout, &resources)
                })
                .collect();
            bind_groups.push(groups);
        }

        let kind = match (io.y.is_none(), io.residual.is_some()) {
            (true, _) => "stats",
            (false, true) => "residual_forward",
            (false, false) => "forward",
        };
        let label = pass_label(norm, kind, io.x.shape(), dtype, &plan.describe());
        let args = [
            ("shape", shape_string(io.x.shape())),
            ("dtype", dtype.to_string()),
            ("kernel", plan.describe()),
            ("chunks", chunks.len().to_string()),
        ];
        let mut pass = begin_pass(encoder, ticks.as_deref_mut(), &label, &args);
        for (i, (chunk, groups)) in chunks.iter().zip(&bind_groups).enumerate() {
            for ((pipeline, group), entry) in pipelines.iter().zip(groups).zip(steps) {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                let rows = format!("{}..{}", chunk.first_row, chunk.first_row + chunk.rows);
                let name = format!("{label} chunk {i} {}", entry.name());
                let workgroups = workgroups(*entry, &plan, chunk.rows);
                dispatch(&mut pass, ticks.as_deref_mut(), &name, workgroups, rows);
            }
        }
    })
}

/// A binding of gamma or beta: as values, or as vec4s where the pipeline
/// reads them so (`vec4_rows`, layer_norm_params_vec4.wgsl).
fn bind_param<'a>(
    param: Option<(&'a wgpu::Buffer, plan::BindingWindow)>,
    vec4_rows: bool,
    dtype: DType,
    dummy: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    match param {
        Some((buffer, w)) if vec4_rows => bind_vec4(buffer, w, dtype, dummy),
        param => bind_optional(param, dummy),
    }
}

/// Workgroups of one dispatch of `entry` over `rows` rows.
fn workgroups(entry: Entry, plan: &LayerNormPlan, rows: u64) -> u64 {
    match entry {
        Entry::SplitStats | Entry::SplitApply => rows * plan.splits as u64,
        // split_combine: 64 lanes, one row each.
        Entry::SplitCombine => rows.div_ceil(64),
        // The row-per-* kernels and the row block's two passes.
        _ => rows.div_ceil(plan.rows_per_workgroup as u64),
    }
}

/// Encodes with `encode`, submits and waits, with every wgpu error captured.
pub(crate) fn run(
    ctx: &Context,
    what: &'static str,
    encode: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<()> {
    let mut encoder = ctx
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
    encode(&mut encoder)?;
    ctx.submit_and_wait(encoder)
}
