//! Ticks: GPU timestamp profiling of compute passes.
//!
//! - [`Ticks`] (the profiler): timestamp writes for passes and dispatches,
//!   pooled query sets, results read without stalling;
//! - [`TickRecord`]: one timed pass, with its label, scope, step and source;
//! - [`Report`]: per-label statistics as a table or JSON;
//! - [`Ticks::chrome_trace`]: a trace file for Perfetto / chrome://tracing;
//! - [`TickScope`]: a named scope that closes when dropped;
//! - [`ticked_steps`]: warm-up and timed steps of several passes, interleaved.

mod chrome;
mod pool;
mod profiler;
mod record;
mod report;
mod steps;

pub use pool::PoolStats;
pub use profiler::{DispatchToken, TickScope, Ticks, TicksSettings};
pub use record::{RecordKind, TickRecord, TimingSource};
pub use report::{LabelStats, Report};
pub use steps::{TickedPass, ticked_steps};
