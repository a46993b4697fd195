//! Ticks: GPU timestamp profiling of compute passes.
//!
//! - [`Ticks`] (the profiler): timestamp writes for passes and dispatches,
//!   pooled query sets, results read without stalling;
//! - [`TickRecord`]: one timed pass, with its label, scope, step and source;
//! - [`Report`]: per-label statistics as a table or JSON;
//! - [`Ticks::chrome_trace`]: a trace file for Perfetto / chrome://tracing.

mod chrome;
mod pool;
mod profiler;
mod record;
mod report;

pub use pool::PoolStats;
pub use profiler::{DispatchToken, Ticks, TicksSettings};
pub use record::{RecordKind, TickRecord, TimingSource};
pub use report::{LabelStats, Report};
