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
//! [`LayerNorm::encode`] — and compare with the f64 [`reference`](mod@reference).
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
//! [`Ticks`] times every compute pass with GPU timestamps (the library's and
//! your own), and reports per-label statistics and Chrome traces;
//! [`bench_op`] measures an op against a copy of the bytes it must move.
//!
//! Where things live: the kernels are `shaders/*.wgsl` (the reduction scheme
//! is explained at the top of each); which kernel runs and how rows are cut
//! into dispatches is decided in one place, [`plan`] (or by the autotuner,
//! [`Autotune`]); the tick collection is [`Ticks`]; errors are one enum,
//! [`Error`].
#![warn(missing_docs)]

mod autotune;
mod bench;
mod context;
mod error;
mod kernels;
mod ops;
pub mod plan;
pub mod reference;
pub mod synthetic;
mod tensor;
mod ticks;

pub use autotune::Autotune;
pub use bench::{BenchOp, BenchRow, DEFAULT_SHAPES, bench_layer_norm, bench_op};
pub use context::{
    Capabilities, Context, ContextOptions, OPTIONAL_FEATURES, SubgroupSizes, parse_backend,
};
pub use error::{Error, Result};
pub use kernels::{
    LayerNormVariant, layer_norm_source, layer_norm_source_as, norm_backward_source,
};
pub use ops::copy::encode_copy;
pub use ops::forward::ResidualAdd;
pub use ops::layer_norm::{
    LayerNorm, LayerNormGradIo, LayerNormGrads, LayerNormIo, LayerNormOutput, ResidualOutput,
    shape_string,
};
pub use ops::rms_norm::{RmsNorm, RmsNormGradIo, RmsNormGrads, RmsNormIo};
pub use plan::{BackwardKernel, BackwardPlan, Kernel, LayerNormPlan, Reduction};
pub use tensor::{DType, GpuTensor, TENSOR_USAGES};
pub use ticks::{
    DispatchToken, LabelStats, PoolStats, RecordKind, Report, TickRecord, Ticks, TicksSettings,
    TimingSource,
};
pub use wgpu;
