//! Binding slots: which `@binding` each entry point reads or writes under a
//! pipeline's views, and how each slot is declared. The bind group layout of
//! an entry holds exactly these, so that a pipeline stays within the
//! device's storage-buffer limit.

use crate::kernels::sources::Views;
use crate::plan::Entry;

/// Forward slots (`shaders/layer_norm_*.wgsl`).
pub mod slot {
    /// x as values.
    pub const X: u32 = 0;
    /// x as vec4s.
    pub const X4: u32 = 1;
    /// y as values.
    pub const Y: u32 = 2;
    /// y as vec4s.
    pub const Y4: u32 = 3;
    /// gamma (values or vec4s).
    pub const GAMMA: u32 = 4;
    /// beta (values or vec4s).
    pub const BETA: u32 = 5;
    /// The mean output, or the packed (mean, rstd) scratch.
    pub const MEAN: u32 = 6;
    /// The rstd output (or, packed, the mean output of `unpack_stats`).
    pub const RSTD: u32 = 7;
    /// The uniform block.
    pub const PARAMS: u32 = 8;
    /// The pieces' moments.
    pub const PIECES: u32 = 9;
    /// The rows' combined statistics.
    pub const ROW_STATS: u32 = 10;
    /// The residual.
    pub const RESIDUAL: u32 = 11;
    /// The residual's bias.
    pub const RESIDUAL_BIAS: u32 = 12;
    /// The sum x + residual (+ bias).
    pub const SUM: u32 = 13;
    /// The rstd output of `unpack_stats`.
    pub const UNPACKED_RSTD: u32 = 14;
    /// Slots in all (one past the largest; the backward's go to 15).
    pub const COUNT: usize = 16;
}

/// The slots a forward `entry` uses under `views`, ascending.
pub fn forward_slots(entry: Entry, views: Views) -> Vec<u32> {
    let roles = entry.roles();
    let mut slots = vec![slot::PARAMS];
    if roles.x {
        match (views.vec4_rows, views.residual) {
            (true, _) => slots.push(slot::X4),
            (false, true) => slots.push(slot::X),
            (false, false) => slots.extend([slot::X, slot::X4]),
        }
        if views.residual {
            slots.extend([slot::RESIDUAL, slot::RESIDUAL_BIAS]);
        }
    }
    if roles.y {
        slots.push(if views.vec4_rows { slot::Y4 } else { slot::Y });
        if views.residual {
            slots.push(slot::SUM);
        }
    }
    if roles.params {
        slots.extend([slot::GAMMA, slot::BETA]);
    }
    if roles.stats {
        match (views.packed_stats(), entry == Entry::UnpackStats) {
            (true, true) => slots.extend([slot::MEAN, slot::RSTD, slot::UNPACKED_RSTD]),
            (true, false) => slots.push(slot::MEAN),
            (false, _) => slots.extend([slot::MEAN, slot::RSTD]),
        }
    }
    if roles.pieces {
        slots.push(slot::PIECES);
    }
    if roles.row_stats {
        slots.push(slot::ROW_STATS);
    }
    slots.sort_unstable();
    slots
}

/// The slots of `entry` (forward under `views`, or backward).
pub fn slots(entry: Entry, views: Views) -> Vec<u32> {
    if entry.is_backward() {
        entry.backward_bindings().to_vec()
    } else {
        forward_slots(entry, views)
    }
}

/// How `slot` of `entry`'s module is declared.
pub fn binding_type(entry: Entry, slot: u32) -> wgpu::BufferBindingType {
    use wgpu::BufferBindingType::{Storage, Uniform};
    if entry.is_backward() {
        // shaders/norm_backward.wgsl: x, dy, gamma, mean, rstd are read; 9 is
        // params; the rest written.
        return match slot {
            0..=4 | 13 | 14 => Storage { read_only: true },
            9 => Uniform,
            _ => Storage { read_only: false },
        };
    }
    match slot {
        slot::X | slot::X4 | slot::GAMMA | slot::BETA | slot::RESIDUAL | slot::RESIDUAL_BIAS => {
            Storage { read_only: true }
        }
        slot::PARAMS => Uniform,
        _ => Storage { read_only: false },
    }
}

/// Storage buffers (not uniforms) among `entry`'s slots.
pub fn storage_buffers(entry: Entry, views: Views) -> u32 {
    slots(entry, views)
        .into_iter()
        .filter(|&s| binding_type(entry, s) != wgpu::BufferBindingType::Uniform)
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forward_entry_fits_webgpu_default_storage_buffers() {
        let entries = [
            Entry::Forward,
            Entry::SplitStats,
            Entry::SplitCombine,
            Entry::SplitApply,
            Entry::RowBlockMoments,
            Entry::RowBlockApply,
            Entry::UnpackStats,
            Entry::DxFourRowsPerLane,
            Entry::DxRowPerWorkgroup,
            Entry::DxSplitSums,
            Entry::DxSplitCombine,
            Entry::DxSplitApply,
            Entry::ParamPartials,
            Entry::ParamSums,
            Entry::DxRowsCached,
        ];
        for entry in entries {
            for vec4_rows in [false, true] {
                for residual in [false, true] {
                    let views = Views {
                        vec4_rows,
                        residual,
                    };
                    let n = storage_buffers(entry, views);
                    assert!(
                        n <= 8,
                        "{entry:?} under {views:?} binds {n} storage buffers"
                    );
                }
            }
        }
    }

    #[test]
    fn no_entry_binds_two_views_of_an_output() {
        for entry in [Entry::Forward, Entry::SplitApply, Entry::RowBlockApply] {
            for vec4_rows in [false, true] {
                for residual in [false, true] {
                    let s = forward_slots(
                        entry,
                        Views {
                            vec4_rows,
                            residual,
                        },
                    );
                    assert!(
                        !(s.contains(&slot::Y) && s.contains(&slot::Y4)),
                        "{entry:?}: y bound twice: {s:?}"
                    );
                }
            }
        }
    }
}
