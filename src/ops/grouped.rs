//! The engine of the grouped normalisations — GroupNorm, InstanceNorm,
//! BatchNorm and LpNorm, whose statistics span sets of values that need not
//! be one row. Each op file maps its shape onto a [`GroupedView`] and its
//! options onto a [`GroupedVariant`]; this file checks the tensors, chooses
//! the steps, builds (once per tensors and shape: the bind cache) and
//! records them as one compute pass. The kernels are `grouped_norm.wgsl`;
//! the grids are [`GroupedPlan`]'s.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::cache::{GroupedVariant, ModuleKey, grouped_binding_type, grouped_constants};
use crate::ops::record::{
    Dispatch, DispatchDesc, Recording, Uniforms, bind, bind_vec4, cache_identity, pass_label,
    scratch,
};
use crate::ops::validate::{check_aliasing, check_dtype};
use crate::plan::{self, GroupedEntry, GroupedPlan, GroupedView};
use crate::shape::{DType, shape_string};
use crate::tensor::GpuTensor;
use crate::ticks::Ticks;

/// The tensors of one call, by role. `out` is y for a forward, dx for a
/// backward.
#[derive(Clone, Copy)]
pub(crate) struct GroupedTensors<'a> {
    pub(crate) x: &'a GpuTensor,
    pub(crate) dy: Option<&'a GpuTensor>,
    pub(crate) scale: Option<&'a GpuTensor>,
    pub(crate) bias: Option<&'a GpuTensor>,
    pub(crate) input_mean: Option<&'a GpuTensor>,
    pub(crate) input_var: Option<&'a GpuTensor>,
    pub(crate) out: &'a GpuTensor,
    pub(crate) running_mean: Option<&'a GpuTensor>,
    pub(crate) running_var: Option<&'a GpuTensor>,
    pub(crate) dscale: Option<&'a GpuTensor>,
    pub(crate) dbias: Option<&'a GpuTensor>,
    /// Forward: the statistics written out (mean, rstd per statistic set).
    pub(crate) saved_mean: Option<&'a GpuTensor>,
    pub(crate) saved_rstd: Option<&'a GpuTensor>,
}

impl<'a> GroupedTensors<'a> {
    /// x and the output; nothing else.
    pub(crate) fn new(x: &'a GpuTensor, out: &'a GpuTensor) -> Self {
        GroupedTensors {
            x,
            dy: None,
            scale: None,
            bias: None,
            input_mean: None,
            input_var: None,
            out,
            running_mean: None,
            running_var: None,
            dscale: None,
            dbias: None,
            saved_mean: None,
            saved_rstd: None,
        }
    }

    /// The tensor bound at `slot` (see [`GroupedEntry::bindings`]), with its
    /// name and element type, where the call has one.
    fn at(&self, slot: u32) -> Option<(&'static str, &'a GpuTensor)> {
        let t = match slot {
            0 => Some(self.x),
            1 => self.dy,
            2 => self.scale,
            3 => self.bias,
            4 => self.input_mean,
            5 => self.input_var,
            10 => Some(self.out),
            11 => self.running_mean,
            12 => self.running_var,
            13 => self.dscale,
            14 => self.dbias,
            19 => self.saved_mean,
            20 => self.saved_rstd,
            _ => None,
        }?;
        Some((SLOT_NAMES[slot as usize], t))
    }
}

const SLOT_NAMES: [&str; 21] = [
    "X",
    "dY",
    "Scale",
    "B",
    "input_mean",
    "input_var",
    "partials",
    "stats",
    "coefficients",
    "fine sums",
    "output",
    "running_mean",
    "running_var",
    "dScale",
    "dB",
    "params",
    "X",
    "dY",
    "output",
    "Mean",
    "InvStdDev",
];

/// One call of a grouped op.
pub(crate) struct GroupedCall<'a> {
    /// `group_norm`: the pass label's prefix.
    pub(crate) op: &'static str,
    pub(crate) backward: bool,
    pub(crate) view: GroupedView,
    /// The dtype is taken from x.
    pub(crate) variant: GroupedVariant,
    pub(crate) epsilon: f32,
    pub(crate) momentum: f32,
    pub(crate) unbiased: bool,
    pub(crate) tensors: GroupedTensors<'a>,
}

/// The uniform block of `grouped_norm.wgsl` (its `Params`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    cg: u32,
    stat_pieces: u32,
    fine_pieces: u32,
    lanes: u32,
    n: u32,
    epsilon: f32,
    momentum: f32,
    unbiased: u32,
    /// Element offsets inside the bindings of slots 0-5, 10-14, 19 and 20.
    bases: [u32; 13],
    /// `apply_runs`, `grad_apply_runs`: consecutive runs a workgroup takes.
    runs_per_group: u32,
    pad: [u32; 2],
}

/// Where slot `s` keeps its base in `Params::bases`.
fn base_index(slot: u32) -> Option<usize> {
    match slot {
        0 => Some(0),
        1 => Some(1),
        2 => Some(2),
        3 => Some(3),
        10 => Some(4),
        13 => Some(5),
        14 => Some(6),
        4 => Some(7),
        5 => Some(8),
        11 => Some(9),
        12 => Some(10),
        19 => Some(11),
        20 => Some(12),
        _ => None,
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupedKey {
    op: &'static str,
    backward: bool,
    plan: GroupedPlan,
    variant: GroupedVariant,
    epsilon: u32,
    momentum: u32,
    unbiased: bool,
    tensors: [crate::ops::record::TensorId; 13],
}

/// The steps of a call, in order.
fn steps(call: &GroupedCall<'_>, v: GroupedVariant, plan: &GroupedPlan) -> Vec<GroupedEntry> {
    use GroupedEntry::*;
    let stats = match v.const_stats || v.saved {
        true => vec![GivenStats],
        false => vec![StatPartials, StatCombine],
    };
    let (apply, grad_apply) = match (plan.runs, v.vec4) {
        (true, _) => (ApplyRuns, GradApplyRuns),
        (false, true) => (Apply4, GradApply4),
        (false, false) => (Apply, GradApply),
    };
    match (v.lp.is_some(), call.backward) {
        (true, false) => vec![StatPartials, StatCombine, apply],
        (true, true) => vec![StatPartials, StatCombine, grad_apply],
        // BatchNorm inference: the coefficients read the statistics given.
        (false, false) if v.const_stats => vec![Coefficients, apply],
        (false, false) => {
            let save = call.tensors.saved_mean.is_some() || call.tensors.saved_rstd.is_some();
            let save = save.then_some(SaveStats);
            [stats, save.into_iter().collect(), vec![Coefficients, apply]].concat()
        }
        // One lane per channel does the small steps at once (BatchNorm).
        (false, true) if plan.view.a == 1 && plan.view.cg == 1 => {
            [stats, vec![GradPartials, GradFinish, grad_apply]].concat()
        }
        (false, true) => {
            let mut s = [stats, vec![GradPartials, GradCombine, GradSets]].concat();
            if call.tensors.dscale.is_some() || call.tensors.dbias.is_some() {
                s.push(GradParams);
            }
            s.push(grad_apply);
            s
        }
    }
}

/// Lanes (one item each) of `entry`.
fn lanes(plan: &GroupedPlan, entry: GroupedEntry) -> u64 {
    let v = plan.view;
    match entry {
        GroupedEntry::StatPartials => v.stat_sets() * plan.stat_pieces,
        GroupedEntry::StatCombine
        | GroupedEntry::GradSets
        | GroupedEntry::GivenStats
        | GroupedEntry::SaveStats => v.stat_sets(),
        GroupedEntry::GradParams | GroupedEntry::GradFinish => v.c,
        GroupedEntry::Coefficients | GroupedEntry::GradCombine => v.fine_sets(),
        GroupedEntry::GradPartials => v.fine_sets() * plan.fine_pieces,
        GroupedEntry::Apply
        | GroupedEntry::GradApply
        | GroupedEntry::Apply4
        | GroupedEntry::GradApply4 => plan.apply_lanes(),
        // A workgroup per run.
        GroupedEntry::ApplyRuns | GroupedEntry::GradApplyRuns => {
            (v.len() / v.d).div_ceil(plan.runs_per_group)
        }
    }
}

/// Checks the call's tensors: element types, sizes against one binding,
/// and buffer sharing. Shapes are the op file's to check.
fn check(ctx: &Context, call: &GroupedCall<'_>) -> Result<GroupedPlan> {
    let t = &call.tensors;
    let dtype = t.x.dtype();
    for slot in [1, 2, 3, 10, 13, 14] {
        if let Some((what, tensor)) = t.at(slot) {
            check_dtype(what, tensor, dtype)?;
        }
    }
    for slot in [4, 5, 11, 12, 19, 20] {
        if let Some((what, tensor)) = t.at(slot) {
            check_dtype(what, tensor, DType::F32)?;
        }
    }
    if t.saved_mean.is_some() != t.saved_rstd.is_some() {
        return Err(Error::IncompleteStats {
            given: if t.saved_mean.is_some() {
                "Mean"
            } else {
                "InvStdDev"
            },
            missing: if t.saved_mean.is_some() {
                "InvStdDev"
            } else {
                "Mean"
            },
        });
    }
    let inputs: Vec<_> = [0, 1, 2, 3, 4, 5].map(|s| t.at(s)).to_vec();
    let outputs: Vec<_> = [10, 11, 12, 13, 14, 19, 20].map(|s| t.at(s)).to_vec();
    check_aliasing(ctx, &inputs, &outputs)?;
    // Cells of 4 need x, dy and the output to start on a whole vec4.
    let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
    let aligned = [Some(t.x), t.dy, Some(t.out)]
        .into_iter()
        .flatten()
        .all(|t| {
            plan::binding_window_of(t.offset(), t.len() as u64, t.dtype(), align).base % 4 == 0
        });
    let plan = GroupedPlan::new(call.view, aligned).map_err(|longest| Error::RowTooLarge {
        dim: longest as usize,
        row_bytes: longest * dtype.size_bytes(),
        max_binding: plan::MAX_LANE_LOOP * dtype.size_bytes(),
    })?;
    if call.backward && call.variant.lp.is_none() {
        plan.check_backward()
            .map_err(|longest| Error::InvalidParameter {
                op: call.op,
                what: "the batch (or channels per group) of a backward",
                value: longest.to_string(),
                expected: format!("at most {}", plan::MAX_LANE_LOOP),
            })?;
    }
    Ok(plan)
}

/// Validates, plans, builds (or finds in the bind cache) and records `call`.
pub(crate) fn encode_grouped(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    call: &GroupedCall<'_>,
    ticks: Option<&mut Ticks>,
) -> Result<()> {
    let plan = check(ctx, call)?;
    let t = &call.tensors;
    let (tensors, tokens) = cache_identity([
        Some(t.x),
        t.dy,
        t.scale,
        t.bias,
        t.input_mean,
        t.input_var,
        Some(t.out),
        t.running_mean,
        t.running_var,
        t.dscale,
        t.dbias,
        t.saved_mean,
        t.saved_rstd,
    ]);
    let key = GroupedKey {
        op: call.op,
        backward: call.backward,
        plan,
        variant: GroupedVariant {
            dtype: t.x.dtype(),
            vec4: plan.vec4,
            run_lanes: if plan.runs { plan.run_lanes } else { 0 },
            ..call.variant
        },
        epsilon: call.epsilon.to_bits(),
        momentum: call.momentum.to_bits(),
        unbiased: call.unbiased,
        tensors,
    };
    let recording = match ctx.bind_cache().get::<_, Recording>(&key, &tokens) {
        Some(rec) => rec,
        None => {
            let rec = Arc::new(build(ctx, call, &plan, key.variant)?);
            ctx.bind_cache().insert(key, rec.clone(), &tokens);
            rec
        }
    };
    recording.record(encoder, ticks);
    ctx.tap(&recording);
    Ok(())
}

/// The plan as a pass label shows it: `32 sets x 512 pieces`.
fn describe(plan: &GroupedPlan) -> String {
    format!(
        "{} sets x {} pieces{}",
        plan.view.stat_sets(),
        plan.stat_pieces,
        if plan.vec4 { ", vec4" } else { "" }
    )
}

fn build(
    ctx: &Context,
    call: &GroupedCall<'_>,
    plan: &GroupedPlan,
    variant: GroupedVariant,
) -> Result<Recording> {
    let t = &call.tensors;
    let steps = steps(call, variant, plan);
    let pipelines = steps
        .iter()
        .map(|&e| ctx.pipelines().grouped(ctx, e, variant))
        .collect::<Result<Vec<_>>>()?;
    let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
    let max_binding = plan::max_binding(ctx.limits());
    let fits = |what: &'static str, bytes: u64| match bytes <= max_binding {
        true => Ok(()),
        false => Err(Error::BindingTooLarge {
            op: call.op,
            what,
            bytes,
            max_binding,
        }),
    };
    // Windows and bases of the tensors.
    let mut params = Params {
        a: plan.view.a as u32,
        b: plan.view.b as u32,
        c: plan.view.c as u32,
        d: plan.view.d as u32,
        cg: plan.view.cg as u32,
        stat_pieces: plan.stat_pieces as u32,
        fine_pieces: plan.fine_pieces as u32,
        lanes: plan.apply_lanes() as u32,
        n: plan.view.len() as u32,
        epsilon: call.epsilon,
        momentum: call.momentum,
        unbiased: call.unbiased as u32,
        runs_per_group: plan.runs_per_group as u32,
        ..Params::default()
    };
    let mut windows = Vec::new();
    for slot in (0..15u32).chain([19, 20]) {
        if let Some((what, tensor)) = t.at(slot) {
            let w = plan::binding_window_of(
                tensor.offset(),
                tensor.len() as u64,
                tensor.dtype(),
                align,
            );
            fits(what, w.size)?;
            if w.offset + w.size > tensor.buffer().size() {
                return Err(Error::BufferTooSmall {
                    what,
                    offset: tensor.offset(),
                    end: w.offset + w.size,
                    buffer_size: tensor.buffer().size(),
                });
            }
            if let Some(i) = base_index(slot) {
                params.bases[i] = w.base;
            }
            windows.push((slot, tensor, w));
        }
    }
    let v = plan.view;
    let lp_or_backward = variant.lp.is_none() && call.backward;
    // The statistics' pieces are merged before the gradients' are written
    // (dispatches of a pass run in order): one scratch serves both.
    let partial_vec4s = (v.stat_sets() * plan.stat_pieces).max(match lp_or_backward {
        true => v.fine_sets() * plan.fine_pieces,
        false => 0,
    });
    let coef_vec4s = v.fine_sets() * if lp_or_backward { 2 } else { 1 };
    let sizes = [
        ("partials", partial_vec4s),
        ("stats", v.stat_sets().max(v.c)),
        ("coefficients", coef_vec4s),
        ("fine sums", v.fine_sets().div_ceil(2)),
    ];
    for (what, vec4s) in sizes {
        fits(what, vec4s * 16)?;
    }
    let label = pass_label(
        call.op,
        if call.backward { "backward" } else { "forward" },
        t.x.shape(),
        t.x.dtype(),
        &describe(plan),
    );
    let args = vec![
        ("shape", shape_string(t.x.shape())),
        ("dtype", t.x.dtype().to_string()),
        ("kernel", describe(plan)),
    ];
    ctx.scoped("encoding a grouped normalisation", || {
        let scratches: Vec<wgpu::Buffer> = sizes
            .iter()
            .map(|&(what, vec4s)| scratch(ctx, what, vec4s))
            .collect();
        let uniforms = Uniforms::new(ctx, "grouped params", &[params]);
        let resource = |slot: u32| -> wgpu::BindingResource<'_> {
            if let Some((_, tensor, w)) = windows.iter().find(|(s, _, _)| *s == slot) {
                return bind(tensor.buffer(), *w);
            }
            // The vec4 views of x, dy and the output (a dummy where the
            // tensor holds no whole vec4: the entry then never reads it).
            let vec4 = |of: u32, dummy: u32| {
                windows
                    .iter()
                    .find(|(s, _, _)| *s == of)
                    .and_then(|(_, t, w)| bind_vec4(t.buffer(), *w, t.dtype()))
                    .unwrap_or_else(|| ctx.pipelines().dummy(dummy).as_entire_binding())
            };
            match slot {
                6..=9 => scratches[slot as usize - 6].as_entire_binding(),
                15 => uniforms.binding(0),
                16 => vec4(0, 0),
                17 => vec4(1, 1),
                18 => vec4(10, 10),
                // Slots past the cache's dummies (19, 20) are only bound
                // where given (both or neither: `check`).
                s => ctx.pipelines().dummy(s % 16).as_entire_binding(),
            }
        };
        let dispatches = steps
            .iter()
            .zip(&pipelines)
            .map(|(&entry, pipeline)| {
                let entries: Vec<_> = entry
                    .bindings()
                    .iter()
                    .map(|&binding| wgpu::BindGroupEntry {
                        binding,
                        resource: resource(binding),
                    })
                    .collect();
                let group = ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(entry.name()),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                let bindings = entries
                    .iter()
                    .filter_map(|e| {
                        crate::ops::record::binding_desc(e, grouped_binding_type(e.binding))
                    })
                    .collect();
                let items = lanes(plan, entry);
                let workgroups = match entry {
                    // A workgroup per runs_per_group runs.
                    GroupedEntry::ApplyRuns | GroupedEntry::GradApplyRuns => items,
                    _ => GroupedPlan::groups_for(items),
                };
                Dispatch {
                    pipeline: pipeline.clone(),
                    group,
                    workgroups,
                    name: format!("{label} {}", entry.name()),
                    rows: format!("0..{items}"),
                    desc: DispatchDesc {
                        module: ModuleKey::Grouped(variant.dtype),
                        entry: entry.name(),
                        constants: grouped_constants(variant, entry),
                        bindings,
                    },
                }
            })
            .collect();
        Recording {
            label: label.clone(),
            args,
            dispatches,
            uniforms: vec![(uniforms.buffer.clone(), uniforms.bytes.clone())],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_the_wgsl_block() {
        // 28 scalars: the WGSL struct's size, a multiple of 16.
        assert_eq!(std::mem::size_of::<Params>(), 112);
        let mut seen = std::collections::BTreeSet::new();
        for slot in 0..21 {
            if let Some(i) = base_index(slot) {
                assert!(seen.insert(i), "two slots share base {i}");
            }
        }
        assert_eq!(seen.len(), 13);
    }
}
