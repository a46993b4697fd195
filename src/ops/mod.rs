//! The operations, one file each.

pub mod copy;
pub mod layer_norm;
pub mod rms_norm;

pub(crate) mod backward;
pub(crate) mod forward;
