//! Kernels on a device: the WGSL sources ([`sources`]), the binding slots of
//! every entry point under each view ([`bindings`]), and the cache of shader
//! modules, layouts and pipelines built from the plan's kernel descriptors
//! ([`crate::plan::specs`]) — each (module, entry point, override constants)
//! compiled once per [`Context`](crate::Context) and reused.

pub mod bindings;
pub mod cache;
pub mod sources;

pub use cache::{BackwardVariant, GroupedVariant, LayerNormVariant, PipelineCache};
pub use sources::{Views, backward_source, forward_source, grouped_source};

/// Lanes of the dgamma/dbeta stages (one column each).
pub const PARAM_LANES: u32 = 256;
