//! The operations, one file each.

pub mod copy;
pub mod layer_norm;
