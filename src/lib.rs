//! # wgpu-norm
//!
//! Layer normalisation and its family as WGSL compute kernels, run through
//! [`wgpu`] on any GPU (Vulkan, Metal, DX12, GL) — and on Mesa's software
//! adapters where there is none: [`LayerNorm`] and [`RmsNorm`], forward and
//! backward, optionally fused with a residual add ([`ResidualAdd`]), in f32 or
//! f16 storage ([`DType`]).
//!
//! Bring your own device ([`Context::from_device`]) or let the crate open one
//! ([`Context::new`], honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`). Put
//! data in a [`GpuTensor`], run a [`LayerNorm`] — either as a call that
//! submits and waits, or encoded into your own `CommandEncoder` with
//! [`NormOp::encode`] — and compare with the f64 [`reference`](mod@reference).
//!
//! ```
//! use wgpu_norm::{Context, GpuTensor, LayerNorm, reference};
//!
//! let ctx = Context::new()?;
//! let (rows, dim) = (4, 768);
//! let data: Vec<f32> = (0..rows * dim).map(|i| (i % 97) as f32 * 0.5 + 1000.0).collect();
//! let gamma = vec![1.5f32; dim];
//! let beta = vec![-0.25f32; dim];
//!
//! let x = GpuTensor::from_slice(&ctx, &data, &[1, rows, dim])?;
//! let g = GpuTensor::from_slice(&ctx, &gamma, &[dim])?;
//! let b = GpuTensor::from_slice(&ctx, &beta, &[dim])?;
//! let y = LayerNorm::new().forward(&ctx, &x, Some(&g), Some(&b))?.read(&ctx)?;
//!
//! let want = reference::layer_norm(&data, dim, Some(&gamma), Some(&beta), 1e-5);
//! let max_err = y.iter().zip(&want.y).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
//! assert!(max_err < 1e-4, "max error {max_err}");
//! # Ok::<(), wgpu_norm::Error>(())
//! ```
//!
//! Training: the backward gives dx, dgamma and dbeta from dy and the saved
//! statistics, with dgamma/dbeta bit-identical from run to run.
//!
//! ```
//! use wgpu_norm::{Context, GpuTensor, RmsNorm, reference};
//!
//! let ctx = Context::new()?;
//! let x: Vec<f32> = (0..3 * 5).map(|i| (i as f32 * 0.37).sin()).collect();
//! let dy: Vec<f32> = (0..3 * 5).map(|i| (i as f32 * 0.11).cos()).collect();
//! let (xg, dyg) = (GpuTensor::from_slice(&ctx, &x, &[3, 5])?, GpuTensor::from_slice(&ctx, &dy, &[3, 5])?);
//! let grads = RmsNorm::new().backward(&ctx, &xg, &dyg, None, None)?;
//! let want = reference::norm_backward(&x, &dy, 5, None, 1e-5, true);
//! assert!(reference::max_abs_error(&grads.dx.read(&ctx)?, &want.dx) < 1e-5);
//! # Ok::<(), wgpu_norm::Error>(())
//! ```
//!
//! The rest of the family — [`GroupNorm`] (with a fused SiLU, channels first
//! or last), [`InstanceNorm`], [`BatchNorm`] (inference and training) and
//! [`LpNorm`] — implements [`GroupedNorm`], with ONNX's semantics and
//! deterministic backwards:
//!
//! ```
//! use wgpu_norm::{Context, GpuTensor, GroupedNorm, LpNorm, LpNormIo, reference};
//!
//! let ctx = Context::new()?;
//! let x = [3.0f32, 4.0, 0.0, 0.0, 1.0, -1.0];
//! let xg = GpuTensor::from_slice(&ctx, &x, &[3, 2])?;
//! let yg = GpuTensor::zeros(&ctx, &[3, 2])?;
//! LpNorm::new().forward_into(&ctx, &LpNormIo { x: &xg, y: &yg })?; // zero vector → 0
//! let want = reference::lp_norm_f64(&x.map(f64::from), &[3, 2], 1, 2);
//! assert!(reference::max_abs_error(&yg.read(&ctx)?, &want) < 1e-6);
//! # Ok::<(), wgpu_norm::Error>(())
//! ```
//!
//! [`Ticks`] times every compute pass with GPU timestamps (the library's and
//! your own), and reports per-label statistics and Chrome traces;
//! [`bench_norm`] measures an op against a copy of the bytes it must move.
//!
//! # Internals
//!
//! The crate is layers that only look down — a module uses only those
//! below it, and `tests/layers.rs` fails on any `use crate::` that looks up
//! or closes a cycle:
//!
//! ```text
//! dtype ← error ← shape (rows × cols), caps (Capabilities)    leaves
//!   ← plan      pure: shape + capabilities + limits + tuned table → a plan;
//!               the kernel descriptors (plan::specs) the ladders name
//!   ← gpu       device, queue, limits; wgpu errors caught in error scopes
//!   ← kernels   WGSL sources, binding slots, the pipeline cache
//!   ← bind_cache  what a call built, kept for the next call with the same tensors
//!   ← context   Gpu + pipelines + bind cache + tuned table + autotuner hook
//!   ← tensor, ticks
//!   ← ops       NormOp; each op: validate → choose → build (on a cache miss) → record;
//!               GroupedNorm: each op maps its shape onto one engine (ops::grouped)
//!   ← autotune  fills the tuned table (explicitly, or through the context's hook)
//!     export    an op's recording as plain data (JSON), planned for another
//!               device (a browser's WebGPU) on wgpu's noop backend
//!   ← bench     ops against the copy floor
//!   ← the CLI (src/bin, behind the `cli` feature)
//! ```
//!
//! - The kernels are `shaders/*.wgsl`; [`plan::specs`] lists every variant
//!   (files, entry points, needs, longest row, rows per workgroup, override
//!   constants), and [`plan::LADDER`] picks among them. The grouped ops'
//!   entry points are indexed in [`plan::grouped`].
//! - Every buffer has one binding per dispatch where it is written, and no
//!   pipeline binds more than WebGPU's default 8 storage buffers: the
//!   pipelines' views of x, y and the statistics are chosen per call for that.
//! - A warm call (same tensors, same shape) finds its bind groups, uniforms
//!   and scratch in the context's [`BindCache`]:
//!   it allocates nothing and opens no error scope.
#![warn(missing_docs)]

mod autotune;
pub mod bind_cache;
pub use bind_cache::{BindCache, BindCacheStats};
mod bench;
mod caps;
mod context;
mod dtype;
mod error;
pub mod export;
mod gpu;
pub mod kernels;
mod ops;
pub mod plan;
pub mod reference;
mod shape;
pub mod synthetic;
mod tensor;
mod ticks;

pub use autotune::{Autotune, tune};
pub use bench::{
    BENCH_OPS, BenchOp, BenchRow, DEFAULT_SHAPES, GROUPED_SHAPES, Grouped, bench_grouped,
    bench_norm, driver_copy_us, fastest_copy, time_copies,
};
pub use caps::{AdapterClass, Capabilities, OPTIONAL_FEATURES, SubgroupSizes};
pub use context::{Context, ContextOptions, TuneHook, backends_from_env, parse_backend};
pub use error::{Error, Result};
pub use gpu::Gpu;
pub use kernels::{
    GroupedVariant, LayerNormVariant, Views, backward_source, forward_source, grouped_source,
};
pub use ops::batch_norm::{BatchNorm, BatchNormGradIo, BatchNormIo, RunningVariance};
pub use ops::config::{NormConfig, NormKind};
pub use ops::copy::{encode_copy, encode_copy_with, encode_driver_copy};
pub use ops::group_norm::GroupNorm;
pub use ops::grouped_op::{Activation, ChannelNormGradIo, ChannelNormIo, GroupedNorm};
pub use ops::instance_norm::InstanceNorm;
pub use ops::io::{ResidualAdd, ResidualOutput};
pub use ops::layer_norm::{
    LayerNorm, LayerNormGradIo, LayerNormGrads, LayerNormIo, LayerNormOutput,
};
pub use ops::lp_norm::{LpNorm, LpNormGradIo, LpNormIo};
pub use ops::named::{NamedTensors, Signature};
pub use ops::op::{BackwardOutputs, ForwardOutputs, NormOp};
pub use ops::rms_norm::{RmsNorm, RmsNormGradIo, RmsNormGrads, RmsNormIo};
pub use ops::tensors::OpTensors;
pub use plan::{BackwardKernel, BackwardPlan, CopyKernel, Kernel, LayerNormPlan, Reduction};
pub use shape::{DType, RowsCols, shape_string};
pub use tensor::{GpuTensor, TENSOR_USAGES};
pub use ticks::{
    DispatchToken, LabelStats, PoolStats, RecordKind, Report, TickRecord, TickScope, TickedPass,
    Ticks, TicksSettings, TimingSource, ticked_steps,
};
pub use wgpu;
