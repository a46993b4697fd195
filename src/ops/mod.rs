//! The operations, one file each.

pub mod layer_norm;
