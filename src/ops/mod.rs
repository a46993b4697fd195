//! The operations: the [`NormOp`](op::NormOp) trait, one file per op, and
//! the shared row-normalisation encoders they use.
//!
//! Files only look down: `layer_norm.rs` and `rms_norm.rs` use `forward.rs`
//! and `backward.rs` (the phases), which use `validate.rs`, `record.rs`,
//! `config.rs` and `io.rs`; nothing here uses an op file. The grouped
//! normalisations — `group_norm.rs`, `instance_norm.rs` (on GroupNorm),
//! `batch_norm.rs`, `lp_norm.rs` — implement `grouped_op.rs`'s trait on the
//! engine `grouped.rs`.

/// `Default` (axis −1, epsilon 1e-5, the plan's kernels) and the builder
/// methods of a normalisation's configuration: [`LayerNorm`](crate::LayerNorm)
/// and [`RmsNorm`](crate::RmsNorm) are both an axis, an epsilon and optional
/// forced kernels.
macro_rules! norm_config {
    ($ty:ident) => {
        impl Default for $ty {
            fn default() -> Self {
                $ty {
                    axis: -1,
                    epsilon: 1e-5,
                    kernel: None,
                    backward_kernel: None,
                }
            }
        }

        impl $ty {
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

            /// Forces a forward kernel instead of the plan's choice. A kernel
            /// that needs subgroups fails with `Error::MissingFeature` on an
            /// adapter without them, and one that cannot take the row length
            /// with `Error::KernelUnsuitable`.
            pub fn with_kernel(mut self, kernel: crate::plan::Kernel) -> Self {
                self.kernel = Some(kernel);
                self
            }

            /// Forces the backward's dx kernel instead of the plan's choice:
            /// `MissingFeature` where it needs subgroups the adapter lacks,
            /// `KernelUnsuitable` where its rows are too long for it.
            pub fn with_backward_kernel(mut self, kernel: crate::plan::BackwardKernel) -> Self {
                self.backward_kernel = Some(kernel);
                self
            }
        }
    };
}

pub(crate) mod backward;
pub(crate) mod batch_norm;
pub(crate) mod config;
pub(crate) mod copy;
pub(crate) mod forward;
pub(crate) mod group_norm;
pub(crate) mod grouped;
pub(crate) mod grouped_op;
pub(crate) mod instance_norm;
pub(crate) mod io;
pub(crate) mod layer_norm;
pub(crate) mod lp_norm;
pub(crate) mod named;
pub(crate) mod op;
pub(crate) mod record;
pub(crate) mod rms_norm;
pub(crate) mod tensors;
pub(crate) mod validate;
