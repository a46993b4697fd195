//! `wgpu-norm apply` for the grouped normalisations: GroupNorm, InstanceNorm,
//! BatchNorm and LpNorm and their backwards, with ONNX's inputs and outputs.
//! The same NPY reading, output safety and exit codes as the row ops.

use std::path::PathBuf;

use wgpu_norm::{
    Activation, BatchNorm, BatchNormGradIo, BatchNormIo, ChannelNormGradIo, ChannelNormIo, Context,
    DType, GpuTensor, GroupNorm, GroupedNorm, InstanceNorm, LpNorm, LpNormGradIo, LpNormIo,
    RunningVariance,
};

use crate::apply::{
    ActivationArg, Args, Array, Dtype, grouped_flags, need, read_npy, refuse, write_npy,
};
use crate::common::{CliError, CliResult, open};
use crate::output::Outputs;

/// A grouped op and direction, as `--op` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupedOp {
    kind: Kind,
    backward: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Group,
    Instance,
    Batch,
    Lp,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::Group, "group-norm"),
    (Kind::Instance, "instance-norm"),
    (Kind::Batch, "batch-norm"),
    (Kind::Lp, "lp-norm"),
];

impl GroupedOp {
    /// The op `--op` names `name`.
    pub fn by_name(name: &str) -> Option<Self> {
        let (base, backward) = match name.strip_suffix("-backward") {
            Some(base) => (base, true),
            None => (name, false),
        };
        KINDS
            .iter()
            .find(|(_, n)| *n == base)
            .map(|&(kind, _)| GroupedOp { kind, backward })
    }

    /// Every name, forward then backward.
    pub fn names() -> impl Iterator<Item = String> {
        KINDS
            .iter()
            .map(|(_, n)| n.to_string())
            .chain(KINDS.iter().map(|(_, n)| format!("{n}-backward")))
    }

    fn name(self) -> String {
        let base = KINDS.iter().find(|(k, _)| *k == self.kind).map(|k| k.1);
        format!(
            "{}{}",
            base.unwrap_or("?"),
            if self.backward { "-backward" } else { "" }
        )
    }

    /// The grouped flags this op takes.
    fn takes(self, flag: &str) -> bool {
        match self.kind {
            Kind::Group => {
                matches!(flag, "--num-groups" | "--activation" | "--channels-last")
            }
            Kind::Instance => flag == "--channels-last",
            Kind::Batch => matches!(
                (flag, self.backward),
                ("--input-mean" | "--input-var" | "--training-mode", _)
                    | (
                        "--momentum"
                            | "--running-mean"
                            | "--running-var"
                            | "--unbiased-running-var",
                        false
                    )
            ),
            Kind::Lp => flag == "--p",
        }
    }
}

/// The flags that do not fit the op, before anything is read.
fn check_flags(a: &Args, op: GroupedOp) -> CliResult {
    let name = op.name();
    for (flag, given) in grouped_flags(a) {
        refuse(
            &name,
            flag,
            given && !op.takes(flag),
            "it is not a parameter of this op",
        )?;
    }
    let row_only = "it belongs to layer-norm and rms-norm";
    for (flag, given) in [
        ("--residual", a.residual.is_some()),
        ("--residual-bias", a.residual_bias.is_some()),
        ("--sum-output", a.sum_output.is_some()),
    ] {
        refuse(&name, flag, given, row_only)?;
    }
    // The statistics: written by a forward, read by a backward.
    let stats = match op.kind {
        Kind::Group | Kind::Instance => "",
        Kind::Batch if a.training_mode => "",
        Kind::Batch => "inference takes --input-mean and --input-var",
        Kind::Lp => "LpNorm has no mean or variance",
    };
    for (flag, given) in [
        ("--mean", a.mean.is_some()),
        ("--inv-std-dev", a.inv_std_dev.is_some()),
    ] {
        refuse(&name, flag, given && !stats.is_empty(), stats)?;
    }
    if a.mean.is_some() != a.inv_std_dev.is_some() {
        return Err(CliError::Input(format!(
            "--op {name}: --mean and --inv-std-dev go together"
        )));
    }
    refuse(
        &name,
        "--axis",
        a.axis != -1 && op.kind != Kind::Lp,
        "the channels are dimension 1 (or the last with --channels-last)",
    )?;
    let no_params = op.kind == Kind::Lp;
    for (flag, given) in [
        ("--scale", a.scale.is_some()),
        ("--bias", a.bias.is_some()),
        ("--grad-scale", a.grad_scale.is_some()),
        ("--grad-bias", a.grad_bias.is_some()),
    ] {
        refuse(
            &name,
            flag,
            no_params && given,
            "LpNorm has no scale or bias",
        )?;
    }
    refuse(
        &name,
        "--epsilon",
        no_params && a.epsilon != 1e-5,
        "LpNorm has no epsilon",
    )?;
    if op.backward {
        refuse(
            &name,
            "--output",
            a.output.is_some(),
            "it belongs to the forward ops",
        )?;
        need(&name, "--grad", &a.grad)?;
        need(&name, "--grad-input", &a.grad_input)?;
    } else {
        for (flag, given) in [
            ("--grad", a.grad.is_some()),
            ("--grad-input", a.grad_input.is_some()),
            ("--grad-scale", a.grad_scale.is_some()),
            ("--grad-bias", a.grad_bias.is_some()),
        ] {
            refuse(&name, flag, given, "it belongs to the backward ops")?;
        }
        need(&name, "--output", &a.output)?;
    }
    if op.kind == Kind::Group && a.num_groups.is_none() {
        return Err(CliError::Input(format!("--op {name} needs --num-groups")));
    }
    if op.kind == Kind::Batch {
        if !(op.backward && a.training_mode) {
            need(&name, "--input-mean", &a.input_mean)?;
            need(&name, "--input-var", &a.input_var)?;
        } else {
            let unused = "the training-mode backward takes the batch's statistics";
            refuse(&name, "--input-mean", a.input_mean.is_some(), unused)?;
            refuse(&name, "--input-var", a.input_var.is_some(), unused)?;
        }
        if a.running_mean.is_some() != a.running_var.is_some() {
            return Err(CliError::Input(format!(
                "--op {name}: --running-mean and --running-var go together"
            )));
        }
        let training_only = "it needs --training-mode";
        for (flag, given) in [
            ("--momentum", a.momentum.is_some()),
            ("--running-mean", a.running_mean.is_some()),
            ("--running-var", a.running_var.is_some()),
            ("--unbiased-running-var", a.unbiased_running_var),
        ] {
            refuse(&name, flag, given && !a.training_mode, training_only)?;
        }
    }
    if !a.epsilon.is_finite() || a.epsilon < 0.0 {
        return Err(wgpu_norm::Error::InvalidEpsilon(a.epsilon).into());
    }
    Ok(())
}

/// The per-channel count of x of `shape` for the op (None for LpNorm).
fn channels(op: GroupedOp, a: &Args, shape: &[usize]) -> CliResult<Option<usize>> {
    if op.kind == Kind::Lp {
        return Ok(None);
    }
    if shape.len() < 2 {
        return Err(CliError::Input(format!(
            "{}: X has shape {shape:?}, but --op {} needs [N, C, spatial...] (rank 2 at least)",
            a.input.display(),
            op.name()
        )));
    }
    let last = a.channels_last && op.kind != Kind::Batch;
    Ok(Some(if last {
        shape[shape.len() - 1]
    } else {
        shape[1]
    }))
}

pub fn main(a: &Args, op: GroupedOp) -> CliResult {
    check_flags(a, op)?;
    let mut files = Outputs::new(a.allow_special_output);
    // Outputs in flag order: (flag, path).
    let named: Vec<(&str, &Option<PathBuf>)> = match op.backward {
        true => vec![
            ("--grad-input", &a.grad_input),
            ("--grad-scale", &a.grad_scale),
            ("--grad-bias", &a.grad_bias),
        ],
        false => vec![
            ("--output", &a.output),
            ("--running-mean", &a.running_mean),
            ("--running-var", &a.running_var),
            ("--mean", &a.mean),
            ("--inv-std-dev", &a.inv_std_dev),
        ],
    };
    let mut ids = Vec::new();
    for (flag, path) in named {
        if let Some(p) = path {
            ids.push(Some(files.add(flag, p)?));
        } else {
            ids.push(None);
        }
    }
    let dtype = match a.dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
    };
    let x = read_npy(&a.input)?;
    let c = channels(op, a, &x.shape)?;
    let load = |path: &Option<PathBuf>, what: &str, shape: &[usize]| -> CliResult<Option<Array>> {
        let Some(path) = path else { return Ok(None) };
        let arr = read_npy(path)?;
        if arr.shape != shape {
            return Err(CliError::Input(format!(
                "{}: {what} has shape {:?} but must be {shape:?} (X {:?})",
                path.display(),
                arr.shape,
                x.shape
            )));
        }
        Ok(Some(arr))
    };
    let per_channel = [c.unwrap_or(0)];
    let scale = load(&a.scale, "scale", &per_channel)?;
    let bias = load(&a.bias, "bias", &per_channel)?;
    let mean = load(&a.input_mean, "input_mean", &per_channel)?;
    let var = load(&a.input_var, "input_var", &per_channel)?;
    let grad = load(&a.grad, "grad", &x.shape)?;
    // One statistic per (n, group): [N, G]; [C] for BatchNorm.
    let stats_shape = match (op.kind, c) {
        (Kind::Group, Some(c)) => vec![x.shape[0], a.num_groups.unwrap_or(1).min(c)],
        (Kind::Instance, Some(c)) => vec![x.shape[0], c],
        (_, c) => vec![c.unwrap_or(0)],
    };
    let (saved_mean, saved_rstd) = match op.backward {
        true => (
            load(&a.mean, "mean", &stats_shape)?,
            load(&a.inv_std_dev, "inv-std-dev", &stats_shape)?,
        ),
        false => (None, None),
    };

    let ctx = open(a.backend.as_deref())?;
    let up = |arr: &Option<Array>, dtype| -> CliResult<Option<GpuTensor>> {
        Ok(arr
            .as_ref()
            .map(|arr| GpuTensor::from_slice_as(&ctx, &arr.data, &arr.shape, dtype))
            .transpose()?)
    };
    let xg = GpuTensor::from_slice_as(&ctx, &x.data, &x.shape, dtype)?;
    let (scale, bias) = (up(&scale, dtype)?, up(&bias, dtype)?);
    let (mean, var) = (up(&mean, DType::F32)?, up(&var, DType::F32)?);
    let saved_in = (up(&saved_mean, DType::F32)?, up(&saved_rstd, DType::F32)?);
    let zeros = |shape: &[usize], dtype| GpuTensor::zeros_as(&ctx, shape, dtype);
    let out = zeros(&x.shape, dtype)?;
    let wanted =
        |p: &Option<PathBuf>, dtype| p.as_ref().map(|_| zeros(&per_channel, dtype)).transpose();
    let (second, third) = match op.backward {
        true => (wanted(&a.grad_scale, dtype)?, wanted(&a.grad_bias, dtype)?),
        false => (
            wanted(&a.running_mean, DType::F32)?,
            wanted(&a.running_var, DType::F32)?,
        ),
    };
    let dy = up(&grad, dtype)?;
    // The statistics: the forward's outputs, or the backward's inputs.
    let (saved_out_mean, saved_out_rstd) = match op.backward {
        false => (
            a.mean
                .as_ref()
                .map(|_| zeros(&stats_shape, DType::F32))
                .transpose()?,
            a.inv_std_dev
                .as_ref()
                .map(|_| zeros(&stats_shape, DType::F32))
                .transpose()?,
        ),
        true => (None, None),
    };
    let stats = match op.backward {
        true => [&saved_in.0, &saved_in.1],
        false => [&saved_out_mean, &saved_out_rstd],
    };
    run(
        &ctx,
        a,
        op,
        Tensors {
            x: &xg,
            out: &out,
            params: [&scale, &bias, &mean, &var],
            extra: [&second, &third],
            stats,
            dy: dy.as_ref(),
        },
    )?;

    // Everything is read back before the first file is written.
    let results = [
        Some(&out),
        second.as_ref(),
        third.as_ref(),
        saved_out_mean.as_ref(),
        saved_out_rstd.as_ref(),
    ];
    let mut host = Vec::new();
    for t in results.iter().flatten() {
        host.push((t.shape().to_vec(), t.read(&ctx)?, t.dtype()));
    }
    let mut host = host.into_iter();
    for (id, t) in ids.into_iter().zip(results) {
        if let (Some(id), Some(_)) = (id, t) {
            let (shape, data, dtype) = host.next().expect("one result per output");
            write_npy(&mut files, id, &shape, &data, dtype)?;
        }
    }
    files.commit()
}

/// The tensors of a run: `params` are scale, bias, input_mean and
/// input_var; `extra` the running statistics (forward) or dScale and dB
/// (backward); `stats` the mean and rstd written (forward) or read
/// (backward).
struct Tensors<'a> {
    x: &'a GpuTensor,
    out: &'a GpuTensor,
    params: [&'a Option<GpuTensor>; 4],
    extra: [&'a Option<GpuTensor>; 2],
    stats: [&'a Option<GpuTensor>; 2],
    dy: Option<&'a GpuTensor>,
}

/// Runs the op on the tensors.
fn run(ctx: &Context, a: &Args, op: GroupedOp, t: Tensors<'_>) -> wgpu_norm::Result<()> {
    let (x, out, dy) = (t.x, t.out, t.dy);
    let [scale, bias, mean, var] = t.params.map(Option::as_ref);
    let [second, third] = t.extra.map(Option::as_ref);
    let [saved_mean, saved_rstd] = t.stats.map(Option::as_ref);
    let fwd = ChannelNormIo {
        x,
        y: out,
        scale,
        bias,
        mean: saved_mean,
        inv_std_dev: saved_rstd,
    };
    let grads = |dy| ChannelNormGradIo {
        mean: saved_mean,
        inv_std_dev: saved_rstd,
        ..ChannelNormGradIo::new(x, dy, out)
            .with_params(scale, bias)
            .with_grads(second, third)
    };
    let dy = dy.ok_or(wgpu_norm::Error::MissingTensor { what: "dY" });
    match op.kind {
        Kind::Group => {
            let gn = GroupNorm::new(a.num_groups.unwrap_or(0))
                .with_epsilon(a.epsilon)
                .with_channels_last(a.channels_last)
                .with_activation(match a.activation {
                    Some(ActivationArg::Silu) => Activation::Silu,
                    _ => Activation::None,
                });
            match op.backward {
                true => gn.backward_into(ctx, &grads(dy?)),
                false => gn.forward_into(ctx, &fwd),
            }
        }
        Kind::Instance => {
            let inn = InstanceNorm::new()
                .with_epsilon(a.epsilon)
                .with_channels_last(a.channels_last);
            match op.backward {
                true => inn.backward_into(ctx, &grads(dy?)),
                false => inn.forward_into(ctx, &fwd),
            }
        }
        Kind::Batch => {
            let bn = BatchNorm {
                epsilon: a.epsilon,
                momentum: a.momentum.unwrap_or(0.9),
                training: a.training_mode,
                running_variance: match a.unbiased_running_var {
                    true => RunningVariance::Unbiased,
                    false => RunningVariance::Biased,
                },
            };
            if op.backward {
                return bn.backward_into(
                    ctx,
                    &BatchNormGradIo {
                        grads: grads(dy?),
                        input_mean: mean,
                        input_var: var,
                    },
                );
            }
            let missing = |what| wgpu_norm::Error::MissingTensor { what };
            bn.forward_into(
                ctx,
                &BatchNormIo {
                    x,
                    y: out,
                    scale,
                    bias,
                    input_mean: mean.ok_or(missing("input_mean"))?,
                    input_var: var.ok_or(missing("input_var"))?,
                    running_mean: second,
                    running_var: third,
                    saved_mean,
                    saved_inv_std_dev: saved_rstd,
                },
            )
        }
        Kind::Lp => {
            let lp = LpNorm::new().with_p(a.p.unwrap_or(2)).with_axis(a.axis);
            match op.backward {
                true => lp.backward_into(
                    ctx,
                    &LpNormGradIo {
                        x,
                        dy: dy?,
                        dx: out,
                    },
                ),
                false => lp.forward_into(ctx, &LpNormIo { x, y: out }),
            }
        }
    }
}
