//! GPU tests: every kernel against the f64 reference, on whichever adapter
//! `WGPU_BACKEND` selects (CI runs this suite on lavapipe and on llvmpipe GL).
//!
//! Tolerances: `wgpu_norm::reference::layer_norm_tolerance`, i.e.
//! 4e-6 · (max|gamma| · (1 + max|x̂|) + max|beta|), about 34 f32 ulps of the
//! output's scale (its doc says why). Each check prints its measured maximum
//! error as `[max-error]` (visible with `--nocapture`).

mod common;

mod cli;
mod context;
mod default_limits;
mod errors;
mod fuzz;
mod grouped;
mod hostile_api;
mod layer_norm;
mod outputs;
mod soak;
mod ticks;
mod training;
mod warm_calls;
