//! The WGSL files, compiled into the crate, and how a module's source is
//! joined from them: whole files, never edited; everything else is
//! specialised with override constants.

use crate::plan::{Kernel, Reduction};
use crate::shape::DType;

/// Every file in `shaders/`, by name.
pub const FILES: &[(&str, &str)] = &[
    (
        "storage_f32.wgsl",
        include_str!("../../shaders/storage_f32.wgsl"),
    ),
    (
        "storage_f16.wgsl",
        include_str!("../../shaders/storage_f16.wgsl"),
    ),
    (
        "layer_norm_common.wgsl",
        include_str!("../../shaders/layer_norm_common.wgsl"),
    ),
    (
        "layer_norm_x.wgsl",
        include_str!("../../shaders/layer_norm_x.wgsl"),
    ),
    (
        "layer_norm_x_scalar.wgsl",
        include_str!("../../shaders/layer_norm_x_scalar.wgsl"),
    ),
    (
        "layer_norm_x_vec4.wgsl",
        include_str!("../../shaders/layer_norm_x_vec4.wgsl"),
    ),
    (
        "layer_norm_out.wgsl",
        include_str!("../../shaders/layer_norm_out.wgsl"),
    ),
    (
        "layer_norm_out_vec4.wgsl",
        include_str!("../../shaders/layer_norm_out_vec4.wgsl"),
    ),
    (
        "layer_norm_stats.wgsl",
        include_str!("../../shaders/layer_norm_stats.wgsl"),
    ),
    (
        "layer_norm_stats_packed.wgsl",
        include_str!("../../shaders/layer_norm_stats_packed.wgsl"),
    ),
    (
        "layer_norm_input.wgsl",
        include_str!("../../shaders/layer_norm_input.wgsl"),
    ),
    (
        "layer_norm_input_residual.wgsl",
        include_str!("../../shaders/layer_norm_input_residual.wgsl"),
    ),
    (
        "layer_norm_eight_rows.wgsl",
        include_str!("../../shaders/layer_norm_eight_rows.wgsl"),
    ),
    (
        "layer_norm_row_per_lane.wgsl",
        include_str!("../../shaders/layer_norm_row_per_lane.wgsl"),
    ),
    (
        "layer_norm_row_per_subgroup.wgsl",
        include_str!("../../shaders/layer_norm_row_per_subgroup.wgsl"),
    ),
    (
        "layer_norm_row_per_workgroup.wgsl",
        include_str!("../../shaders/layer_norm_row_per_workgroup.wgsl"),
    ),
    (
        "layer_norm_row_block.wgsl",
        include_str!("../../shaders/layer_norm_row_block.wgsl"),
    ),
    (
        "layer_norm_row_block_subgroup.wgsl",
        include_str!("../../shaders/layer_norm_row_block_subgroup.wgsl"),
    ),
    (
        "layer_norm_row_block_pieces.wgsl",
        include_str!("../../shaders/layer_norm_row_block_pieces.wgsl"),
    ),
    (
        "layer_norm_pieces.wgsl",
        include_str!("../../shaders/layer_norm_pieces.wgsl"),
    ),
    (
        "layer_norm_split_row.wgsl",
        include_str!("../../shaders/layer_norm_split_row.wgsl"),
    ),
    (
        "layer_norm_row_cached.wgsl",
        include_str!("../../shaders/layer_norm_row_cached.wgsl"),
    ),
    (
        "norm_backward.wgsl",
        include_str!("../../shaders/norm_backward.wgsl"),
    ),
    (
        "reduce_subgroup.wgsl",
        include_str!("../../shaders/reduce_subgroup.wgsl"),
    ),
    (
        "reduce_workgroup.wgsl",
        include_str!("../../shaders/reduce_workgroup.wgsl"),
    ),
    ("copy.wgsl", include_str!("../../shaders/copy.wgsl")),
    (
        "grouped_norm.wgsl",
        include_str!("../../shaders/grouped_norm.wgsl"),
    ),
];

/// The text of `shaders/<name>`.
pub fn file(name: &str) -> &'static str {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("shaders/{name} is not in kernels::sources::FILES"))
}

/// The storage prelude of `dtype`.
pub fn prelude(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "storage_f32.wgsl",
        DType::F16 => "storage_f16.wgsl",
    }
}

/// How a forward module sees its buffers: chosen per call so that no buffer
/// has two writable bindings and no pipeline binds more than 8 storage
/// buffers (WebGPU's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Views {
    /// Every row of x and y, and gamma and beta, start on a vec4 boundary:
    /// x, y, gamma and beta are bound as vec4s only.
    pub vec4_rows: bool,
    /// Fused with a residual add (x alone where not vec4; packed statistics).
    pub residual: bool,
}

impl Views {
    /// The view files, in order: x, outputs, statistics, input.
    pub fn files(self) -> [&'static str; 4] {
        [
            match (self.vec4_rows, self.residual) {
                (true, _) => "layer_norm_x_vec4.wgsl",
                (false, true) => "layer_norm_x_scalar.wgsl",
                (false, false) => "layer_norm_x.wgsl",
            },
            if self.vec4_rows {
                "layer_norm_out_vec4.wgsl"
            } else {
                "layer_norm_out.wgsl"
            },
            if self.packed_stats() {
                "layer_norm_stats_packed.wgsl"
            } else {
                "layer_norm_stats.wgsl"
            },
            if self.residual {
                "layer_norm_input_residual.wgsl"
            } else {
                "layer_norm_input.wgsl"
            },
        ]
    }

    /// The statistics go through one packed scratch binding (and a dispatch
    /// of `unpack_stats`): the fused residual pipelines have no binding to spare.
    pub fn packed_stats(self) -> bool {
        self.residual
    }
}

/// The WGSL source of a forward kernel (LayerNorm and RMSNorm alike) for
/// `dtype` storage and the given views.
pub fn forward_source(kernel: Kernel, dtype: DType, views: Views) -> String {
    [prelude(dtype), "layer_norm_common.wgsl"]
        .into_iter()
        .chain(views.files())
        .chain(kernel.spec().files.iter().copied())
        .map(file)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The WGSL source of the backward kernels, for f32 or f16 storage: the
/// storage prelude, `norm_backward.wgsl`, and the reduction file.
pub fn backward_source(reduction: Reduction, dtype: DType) -> String {
    let reduce = match reduction {
        Reduction::Subgroup => "reduce_subgroup.wgsl",
        Reduction::Workgroup => "reduce_workgroup.wgsl",
    };
    [prelude(dtype), "norm_backward.wgsl", reduce]
        .map(file)
        .join("\n")
}

/// The WGSL source of the grouped normalisations (GroupNorm, InstanceNorm,
/// BatchNorm, LpNorm) for `dtype` storage.
pub fn grouped_source(dtype: DType) -> String {
    [prelude(dtype), "grouped_norm.wgsl"].map(file).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::KERNELS;

    #[test]
    fn every_file_a_kernel_names_is_compiled_in() {
        for spec in KERNELS {
            for f in spec.files {
                assert!(FILES.iter().any(|(n, _)| n == f), "{}: {f}", spec.name);
            }
        }
    }
}
