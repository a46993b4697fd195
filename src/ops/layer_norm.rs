//! Layer normalisation (PyTorch `F.layer_norm`, ONNX LayerNormalization-17).

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{Entry, LayerNormVariant, bind, bind_optional, bind_vec4};
use crate::plan::{self, Kernel, LayerNormPlan};
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// Layer normalisation over the trailing dimensions of a tensor, from `axis` on:
///
/// `y = (x − mean) / sqrt(var + epsilon) · gamma + beta`, with the biased
/// variance, per row of `cols = prod(shape[axis..])` values
/// (`rows = prod(shape[..axis])`). gamma and beta are optional, each alone too.
///
/// ```
/// use wgpu_norm::{Context, GpuTensor, LayerNorm};
/// let ctx = Context::new()?;
/// let x = GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 10.0, 10.0, 10.0], &[2, 3])?;
/// let y = LayerNorm::new().forward(&ctx, &x, None, None)?.read(&ctx)?;
/// assert!((y[0] + 1.2247).abs() < 1e-3 && y[3..].iter().all(|v| *v == 0.0));
/// # Ok::<(), wgpu_norm::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNorm {
    /// First normalised dimension; negative counts from the end. Default −1.
    pub axis: isize,
    /// Added to the variance inside the square root. Default 1e-5.
    pub epsilon: f32,
    /// Forces a kernel instead of the plan's choice (tests, benchmarks).
    pub kernel: Option<Kernel>,
}

impl Default for LayerNorm {
    fn default() -> Self {
        LayerNorm {
            axis: -1,
            epsilon: 1e-5,
            kernel: None,
        }
    }
}

/// The tensors of one layer-norm forward, for [`LayerNorm::encode`].
#[derive(Clone, Copy, Debug)]
pub struct LayerNormIo<'a> {
    /// Input.
    pub x: &'a GpuTensor,
    /// Output, same shape as `x`, in another buffer.
    pub y: &'a GpuTensor,
    /// Scale, `cols` values.
    pub gamma: Option<&'a GpuTensor>,
    /// Bias, `cols` values.
    pub beta: Option<&'a GpuTensor>,
    /// Per-row mean output, `rows` values.
    pub mean: Option<&'a GpuTensor>,
    /// Per-row 1/sqrt(var + epsilon) output, `rows` values.
    pub rstd: Option<&'a GpuTensor>,
}

/// What [`LayerNorm::forward_with_stats`] returns.
#[derive(Clone, Debug)]
pub struct LayerNormOutput {
    /// The normalised tensor.
    pub y: GpuTensor,
    /// Per-row mean, shaped `[d0 … d(axis−1), 1, …, 1]` (ONNX's Mean).
    pub mean: GpuTensor,
    /// Per-row 1/sqrt(var + epsilon), shaped like `mean` (ONNX's InvStdDev).
    pub rstd: GpuTensor,
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
    _pad: [u32; 2],
}

impl LayerNorm {
    /// axis −1, epsilon 1e-5.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the first normalised dimension (negative counts from the end).
    pub fn with_axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    /// Sets epsilon.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Forces a kernel instead of the plan's choice. A kernel that needs
    /// subgroups fails with `Error::MissingFeature` on an adapter without
    /// them, and one that cannot take the row length with
    /// `Error::KernelUnsuitable`.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// `(rows, cols)` of a tensor of `shape`: the product of the dimensions
    /// before `axis`, and of those from `axis` on.
    pub fn rows_cols(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let axis = normalized_axis(self.axis, shape.len())?;
        crate::tensor::element_count(shape)?;
        Ok((
            shape[..axis].iter().product(),
            shape[axis..].iter().product(),
        ))
    }

    /// The shape of the mean and rstd outputs: `[d0 … d(axis−1), 1, …, 1]`.
    pub fn stats_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let axis = normalized_axis(self.axis, shape.len())?;
        Ok(shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < axis { d } else { 1 })
            .collect())
    }

    /// The kernel for a tensor of `shape` on `ctx`: the forced one if any,
    /// else the autotuner's pick where the context tunes (timing the
    /// candidates on first use of the shape class), else the plan's ladder.
    /// An error for a bad shape, or when a forced kernel cannot run there.
    pub fn plan(&self, ctx: &Context, shape: &[usize]) -> Result<LayerNormPlan> {
        let (rows, cols) = self.rows_cols(shape)?;
        let (caps, info, limits) = (ctx.capabilities(), ctx.adapter_info(), ctx.limits());
        if let Some(k) = self.kernel {
            return LayerNormPlan::forced(k, cols, caps, info, limits);
        }
        if let Some(tuned) = crate::autotune::tuned_plan(ctx, self, rows, cols)? {
            return Ok(tuned);
        }
        Ok(LayerNormPlan::new(rows, cols, caps, info, limits))
    }

    /// Normalises `x`, submits, waits, and returns y.
    pub fn forward(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        self.validate_params(x.shape())?;
        let y = GpuTensor::zeros(ctx, x.shape())?;
        self.run(
            ctx,
            &LayerNormIo {
                x,
                y: &y,
                gamma,
                beta,
                mean: None,
                rstd: None,
            },
        )?;
        Ok(y)
    }

    /// Like [`LayerNorm::forward`], also returning the per-row mean and rstd.
    pub fn forward_with_stats(
        &self,
        ctx: &Context,
        x: &GpuTensor,
        gamma: Option<&GpuTensor>,
        beta: Option<&GpuTensor>,
    ) -> Result<LayerNormOutput> {
        let stats_shape = self.stats_shape(x.shape())?;
        self.validate_params(x.shape())?;
        let out = LayerNormOutput {
            y: GpuTensor::zeros(ctx, x.shape())?,
            mean: GpuTensor::zeros(ctx, &stats_shape)?,
            rstd: GpuTensor::zeros(ctx, &stats_shape)?,
        };
        self.run(
            ctx,
            &LayerNormIo {
                x,
                y: &out.y,
                gamma,
                beta,
                mean: Some(&out.mean),
                rstd: Some(&out.rstd),
            },
        )?;
        Ok(out)
    }

    /// Encodes, submits and waits, with every wgpu error captured.
    fn run(&self, ctx: &Context, io: &LayerNormIo<'_>) -> Result<()> {
        let mut encoder = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-norm layer_norm"),
            });
        self.encode(ctx, &mut encoder, io)?;
        ctx.scoped("submitting layer_norm", || {
            ctx.queue().submit([encoder.finish()])
        })?;
        ctx.wait()
    }

    fn validate_params(&self, shape: &[usize]) -> Result<()> {
        if !self.epsilon.is_finite() || self.epsilon < 0.0 {
            return Err(Error::InvalidEpsilon(self.epsilon));
        }
        self.rows_cols(shape).map(|_| ())
    }

    /// Checks shapes, sizes and buffer sharing of `io` before anything is encoded.
    fn validate(&self, io: &LayerNormIo<'_>) -> Result<(usize, usize)> {
        self.validate_params(io.x.shape())?;
        let (rows, cols) = self.rows_cols(io.x.shape())?;
        if io.y.shape() != io.x.shape() {
            return Err(Error::ShapeMismatch {
                what: "y",
                expected: io.x.shape().to_vec(),
                actual: io.y.shape().to_vec(),
            });
        }
        let axis = normalized_axis(self.axis, io.x.shape().len())?;
        let norm_shape = io.x.shape()[axis..].to_vec();
        for (what, t) in [("gamma", io.gamma), ("beta", io.beta)] {
            if let Some(t) = t
                && t.len() != cols
            {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: norm_shape.clone(),
                    actual: t.shape().to_vec(),
                });
            }
        }
        let stats_shape = self.stats_shape(io.x.shape())?;
        for (what, t) in [("mean", io.mean), ("rstd", io.rstd)] {
            if let Some(t) = t
                && t.len() != rows
            {
                return Err(Error::ShapeMismatch {
                    what,
                    expected: stats_shape.clone(),
                    actual: t.shape().to_vec(),
                });
            }
        }
        // wgpu forbids a buffer bound read-only and read-write in one dispatch,
        // and outputs that overlap would race.
        let inputs = [
            Some(("x", io.x)),
            io.gamma.map(|t| ("gamma", t)),
            io.beta.map(|t| ("beta", t)),
        ];
        let outputs = [
            Some(("y", io.y)),
            io.mean.map(|t| ("mean", t)),
            io.rstd.map(|t| ("rstd", t)),
        ];
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
        Ok((rows, cols))
    }

    /// Encodes the forward into the caller's `encoder`: one compute pass with
    /// one dispatch per chunk of rows (a single chunk unless the tensor is
    /// larger than one storage binding). Nothing is submitted.
    ///
    /// Bad input is rejected before anything is encoded; wgpu errors raised
    /// while creating the bind groups are returned. Errors wgpu defers to
    /// `encoder.finish()` surface there, in the caller's error handling.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
    ) -> Result<()> {
        self.encode_inner(ctx, encoder, io, None)
    }

    /// [`LayerNorm::encode`] with the pass timed by `ticks`, labelled
    /// `layer_norm_forward <shape> (<kernel>, <lanes> lanes)`, with the
    /// shape, kernel and chunk count in its args (and each chunk's dispatch
    /// timed too when `ticks` times dispatches).
    pub fn encode_ticked(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
        ticks: &mut Ticks,
    ) -> Result<()> {
        self.encode_inner(ctx, encoder, io, Some(ticks))
    }

    fn encode_inner(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        io: &LayerNormIo<'_>,
        mut ticks: Option<&mut Ticks>,
    ) -> Result<()> {
        let (rows, cols) = self.validate(io)?;
        let plan = self.plan(ctx, io.x.shape())?;
        let limits = ctx.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let row_bytes = cols as u64 * 4;
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
        let variant = LayerNormVariant {
            gamma: io.gamma.is_some(),
            beta: io.beta.is_some(),
            mean: io.mean.is_some(),
            rstd: io.rstd.is_some(),
        };
        // The dispatches of one chunk, in order.
        let steps: &[Entry] = match plan.kernel {
            Kernel::SplitRow(_) => &[Entry::SplitStats, Entry::SplitCombine, Entry::SplitApply],
            _ => &[Entry::Forward],
        };
        let kernels = ctx.kernels();
        let pipelines = steps
            .iter()
            .map(|entry| kernels.layer_norm_pipeline(ctx, plan, variant, *entry))
            .collect::<Result<Vec<_>>>()?;

        ctx.scoped("encoding layer_norm", || {
            // gamma and beta are bound whole; absent ones get a dummy that the
            // specialised pipeline never reads.
            let param_window = |t: &GpuTensor| plan::binding_window(t.offset(), cols as u64, align);
            let gamma = io.gamma.map(|t| (t.buffer(), param_window(t)));
            let beta = io.beta.map(|t| (t.buffer(), param_window(t)));
            // Scratch of the split-row kernel, sized for the largest chunk and
            // reused chunk after chunk (dispatches in a pass run in order).
            let most_rows = chunks.iter().map(|c| c.rows).max().unwrap_or(1);
            let scratch = |label, vec4s: u64| {
                ctx.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: vec4s.max(1) * 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            };
            let split_scratch = matches!(plan.kernel, Kernel::SplitRow(_)).then(|| {
                (
                    scratch("layer_norm piece moments", most_rows * plan.splits as u64),
                    scratch("layer_norm row stats", most_rows),
                )
            });

            // One uniform slot per chunk, each at an offset the device accepts.
            let slot = (std::mem::size_of::<Params>() as u64)
                .next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
            let mut uniform_bytes = vec![0u8; (slot * chunks.len() as u64) as usize];
            let mut windows = Vec::with_capacity(chunks.len());
            for (i, chunk) in chunks.iter().enumerate() {
                let row_window = |t: &GpuTensor, per_row: u64| {
                    plan::binding_window(
                        t.offset() + chunk.first_row * per_row * 4,
                        chunk.rows * per_row,
                        align,
                    )
                };
                let x = row_window(io.x, cols as u64);
                let y = row_window(io.y, cols as u64);
                let mean = io.mean.map(|t| row_window(t, 1));
                let rstd = io.rstd.map(|t| row_window(t, 1));
                let params = Params {
                    rows: chunk.rows as u32,
                    dim: cols as u32,
                    x_base: x.base,
                    y_base: y.base,
                    mean_base: mean.map_or(0, |w| w.base),
                    rstd_base: rstd.map_or(0, |w| w.base),
                    gamma_base: gamma.map_or(0, |(_, w)| w.base),
                    beta_base: beta.map_or(0, |(_, w)| w.base),
                    epsilon: self.epsilon,
                    y_vec4: u32::from(x.base % 4 == y.base % 4),
                    _pad: [0; 2],
                };
                let at = (i as u64 * slot) as usize;
                uniform_bytes[at..at + std::mem::size_of::<Params>()]
                    .copy_from_slice(bytemuck::bytes_of(&params));
                windows.push((x, y, mean, rstd));
            }
            let uniforms = ctx
                .device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("layer_norm params"),
                    contents: &uniform_bytes,
                    usage: wgpu::BufferUsages::UNIFORM,
                });

            // Per chunk, one bind group per step: every binding of
            // shaders/layer_norm_common.wgsl (0-8) and of the split-row
            // scratch (9, 10), of which each entry point's layout takes its own.
            let mut bind_groups = Vec::with_capacity(chunks.len());
            for (i, (x, y, mean, rstd)) in windows.iter().enumerate() {
                let mut resources = vec![
                    bind(io.x.buffer(), *x),
                    bind_vec4(io.x.buffer(), *x, &kernels.dummy_input),
                    bind(io.y.buffer(), *y),
                    bind_vec4(io.y.buffer(), *y, &kernels.dummy_output),
                    bind_optional(gamma, &kernels.dummy_input),
                    bind_optional(beta, &kernels.dummy_input),
                    bind_optional(
                        io.mean.map(|t| t.buffer()).zip(*mean),
                        &kernels.dummy_output,
                    ),
                    bind_optional(
                        io.rstd.map(|t| t.buffer()).zip(*rstd),
                        &kernels.dummy_output,
                    ),
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: i as u64 * slot,
                        size: std::num::NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                    }),
                ];
                if let Some((moments, stats)) = &split_scratch {
                    resources.push(moments.as_entire_binding());
                    resources.push(stats.as_entire_binding());
                }
                let groups: Vec<_> = steps
                    .iter()
                    .map(|entry| {
                        let entries: Vec<_> = entry
                            .bindings()
                            .iter()
                            .map(|&b| wgpu::BindGroupEntry {
                                binding: b,
                                resource: resources[b as usize].clone(),
                            })
                            .collect();
                        ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("layer_norm"),
                            layout: kernels.layout(*entry),
                            entries: &entries,
                        })
                    })
                    .collect();
                bind_groups.push(groups);
            }

            let shape = shape_string(io.x.shape());
            let label = format!("layer_norm_forward {shape} ({})", plan.describe());
            let args = [
                ("shape", shape.clone()),
                ("kernel", plan.describe()),
                ("chunks", chunks.len().to_string()),
            ];
            let mut pass = match ticks.as_deref_mut() {
                Some(t) => t.begin_compute_pass(encoder, &label, &args),
                None => encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&label),
                    timestamp_writes: None,
                }),
            };
            for (i, (chunk, groups)) in chunks.iter().zip(&bind_groups).enumerate() {
                for ((pipeline, bind_group), entry) in pipelines.iter().zip(groups).zip(steps) {
                    let (gx, gy) = plan::grid(workgroups(*entry, &plan, chunk.rows));
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    let token = ticks.as_deref_mut().and_then(|t| {
                        let rows = format!("{}..{}", chunk.first_row, chunk.first_row + chunk.rows);
                        let name = format!("{label} chunk {i} {}", entry.name());
                        t.begin_dispatch(&mut pass, &name, &[("rows", rows)])
                    });
                    pass.dispatch_workgroups(gx, gy, 1);
                    if let Some(t) = ticks.as_deref_mut() {
                        t.end_dispatch(&mut pass, token);
                    }
                }
            }
        })
    }
}

/// Workgroups of one dispatch of `entry` over `rows` rows.
fn workgroups(entry: Entry, plan: &LayerNormPlan, rows: u64) -> u64 {
    match entry {
        Entry::Forward => rows.div_ceil(plan.rows_per_workgroup as u64),
        Entry::SplitStats | Entry::SplitApply => rows * plan.splits as u64,
        // split_combine: 64 lanes, one row each.
        Entry::SplitCombine => rows.div_ceil(64),
    }
}

/// A shape as the CLI and the labels spell it: `[8, 512, 768]` → `8x512x768`.
pub fn shape_string(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// `axis` in `0..rank`, from ONNX's `-rank..rank`.
pub(crate) fn normalized_axis(axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    if rank == 0 || axis < -r || axis >= r {
        return Err(Error::AxisOutOfRange { axis, rank });
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}
