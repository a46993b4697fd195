//! `wgpu-norm apply`: an op on NPY files (C order), ONNX semantics.
//!
//! Forward ops read X (and scale, bias, a residual) and write Y (and the
//! statistics, the residual sum); backward ops read X and dY (and scale, the
//! saved statistics) and write the gradients. Arrays are f32 or f16 NPY;
//! `--dtype f16` computes with f16 storage and writes f16, `--dtype f32`
//! (the default) f32. The statistics are always f32.
//!
//! Every output target is checked before anything is read or computed, and
//! written through [`Outputs`](crate::output::Outputs): to a temporary file
//! beside its destination, renamed into place only once all of them are
//! complete, so a failure leaves no half-written output.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use wgpu_norm::{
    Context, DType, GpuTensor, LayerNorm, NamedTensors, NormConfig, NormOp, ResidualAdd, RmsNorm,
    Signature,
};

use crate::apply_grouped::{self, GroupedOp};
use crate::common::{CliError, CliResult, open};
use crate::output::{OutputId, Outputs};

/// An op `apply` runs: its name, direction, which named tensors it has, and
/// how it runs on them. One entry per op and direction in [`APPLY_OPS`].
#[derive(Clone, Copy)]
pub struct ApplyOp {
    name: &'static str,
    backward: bool,
    signature: Signature,
    run: fn(NormConfig, &Context, &NamedTensors<'_>) -> wgpu_norm::Result<()>,
}

fn run_forward<O: NormOp + From<NormConfig>>(
    cfg: NormConfig,
    ctx: &Context,
    t: &NamedTensors<'_>,
) -> wgpu_norm::Result<()> {
    O::from(cfg).forward_into(ctx, &O::named_io(t)?)
}

fn run_backward<O: NormOp + From<NormConfig>>(
    cfg: NormConfig,
    ctx: &Context,
    t: &NamedTensors<'_>,
) -> wgpu_norm::Result<()> {
    O::from(cfg).backward_into(ctx, &O::named_grad_io(t)?)
}

impl ApplyOp {
    const fn forward<O: NormOp + From<NormConfig>>(name: &'static str) -> Self {
        ApplyOp {
            name,
            backward: false,
            signature: O::SIGNATURE,
            run: run_forward::<O>,
        }
    }

    const fn backward<O: NormOp + From<NormConfig>>(name: &'static str) -> Self {
        ApplyOp {
            name,
            backward: true,
            signature: O::SIGNATURE,
            run: run_backward::<O>,
        }
    }

    pub fn is_backward(self) -> bool {
        self.backward
    }

    pub fn name(self) -> &'static str {
        self.name
    }
}

/// Every op `--op` names (a new op adds its lines here).
pub const APPLY_OPS: &[ApplyOp] = &[
    ApplyOp::forward::<LayerNorm>("layer-norm"),
    ApplyOp::forward::<RmsNorm>("rms-norm"),
    ApplyOp::backward::<LayerNorm>("layer-norm-backward"),
    ApplyOp::backward::<RmsNorm>("rms-norm-backward"),
];

/// What `--op` names: a row normalisation of [`APPLY_OPS`] or a grouped one
/// of [`GROUPED_OPS`](crate::apply_grouped::GROUPED_OPS).
#[derive(Clone, Copy)]
pub enum OpChoice {
    Row(ApplyOp),
    Grouped(GroupedOp),
}

/// An op of [`APPLY_OPS`] or `GROUPED_OPS` by its name.
fn parse_op(name: &str) -> Result<OpChoice, String> {
    if let Some(op) = APPLY_OPS.iter().copied().find(|o| o.name == name) {
        return Ok(OpChoice::Row(op));
    }
    if let Some(op) = GroupedOp::by_name(name) {
        return Ok(OpChoice::Grouped(op));
    }
    let names: Vec<_> = APPLY_OPS
        .iter()
        .map(|o| o.name.to_string())
        .chain(GroupedOp::names())
        .collect();
    Err(format!(
        "unknown op {name:?}: expected one of {}",
        names.join(", ")
    ))
}

/// The storage type `--dtype` names.
#[derive(Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// 32-bit floats.
    #[default]
    F32,
    /// 16-bit floats (needs an adapter with shader-f16).
    F16,
}

#[derive(clap::Args)]
pub struct Args {
    /// The operation: layer-norm (ONNX LayerNormalization-17), rms-norm (ONNX
    /// RMSNormalization-23), group-norm (GroupNormalization-21),
    /// instance-norm (InstanceNormalization-6), batch-norm
    /// (BatchNormalization-15), lp-norm (LpNormalization-1), and each one's
    /// `-backward`.
    #[arg(long, value_parser = parse_op)]
    pub(crate) op: OpChoice,
    /// Input X (.npy, f32 or f16, C order).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Scale (gamma), shaped like the normalised dims.
    #[arg(long)]
    pub(crate) scale: Option<PathBuf>,
    /// Bias (beta), shaped like the normalised dims (layer-norm only).
    #[arg(long)]
    pub(crate) bias: Option<PathBuf>,
    /// First normalised axis; negative counts from the end.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub(crate) axis: isize,
    /// Added to the variance (mean square for rms-norm) inside the square root.
    #[arg(long, default_value_t = 1e-5, allow_hyphen_values = true)]
    pub(crate) epsilon: f32,
    /// Forward ops: a residual R shaped like X; the op normalises X + R.
    #[arg(long)]
    pub(crate) residual: Option<PathBuf>,
    /// Forward ops with --residual: a bias added with it, shaped like the normalised dims.
    #[arg(long)]
    pub(crate) residual_bias: Option<PathBuf>,
    /// Forward ops with --residual: output of the sum X + R (+ residual bias).
    #[arg(long)]
    pub(crate) sum_output: Option<PathBuf>,
    /// Forward ops: output Y (.npy).
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// layer-norm: optional output of the per-row mean, shaped [d0 … d(axis-1), 1, …, 1].
    /// layer-norm-backward: the forward's saved mean (input; with --inv-std-dev).
    #[arg(long)]
    pub(crate) mean: Option<PathBuf>,
    /// Forward ops: optional output of the per-row 1/sqrt(var + epsilon), shaped like --mean.
    /// Backward ops: the forward's saved value (input).
    #[arg(long)]
    pub(crate) inv_std_dev: Option<PathBuf>,
    /// Backward ops: dY, the gradient of the loss with respect to Y, shaped like X.
    #[arg(long)]
    pub(crate) grad: Option<PathBuf>,
    /// Backward ops: output dX.
    #[arg(long)]
    pub(crate) grad_input: Option<PathBuf>,
    /// Backward ops: optional output dScale, shaped like the normalised dims.
    #[arg(long)]
    pub(crate) grad_scale: Option<PathBuf>,
    /// layer-norm-backward: optional output dBias, shaped like the normalised dims.
    #[arg(long)]
    pub(crate) grad_bias: Option<PathBuf>,
    /// group-norm: G, the number of groups (it must divide the channels).
    #[arg(long)]
    pub(crate) num_groups: Option<usize>,
    /// group-norm: what follows the affine: none or silu (y · sigmoid(y)).
    #[arg(long, value_enum)]
    pub(crate) activation: Option<ActivationArg>,
    /// group-norm, instance-norm: X is [N, spatial..., C] instead of [N, C, spatial...].
    #[arg(long)]
    pub(crate) channels_last: bool,
    /// batch-norm: the running mean, [C] (inference: the mean used).
    #[arg(long)]
    pub(crate) input_mean: Option<PathBuf>,
    /// batch-norm: the running variance, [C] (inference: the variance used).
    #[arg(long)]
    pub(crate) input_var: Option<PathBuf>,
    /// batch-norm: normalise with the batch's statistics and update the
    /// running ones (and, for the backward, differentiate through them).
    #[arg(long)]
    pub(crate) training_mode: bool,
    /// batch-norm --training-mode: weight of the old running statistics.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) momentum: Option<f32>,
    /// batch-norm --training-mode: output of the updated running mean, [C].
    #[arg(long)]
    pub(crate) running_mean: Option<PathBuf>,
    /// batch-norm --training-mode: output of the updated running variance, [C].
    #[arg(long)]
    pub(crate) running_var: Option<PathBuf>,
    /// batch-norm --training-mode: update the running variance with the
    /// unbiased batch variance (PyTorch) instead of the biased one (ONNX).
    #[arg(long)]
    pub(crate) unbiased_running_var: bool,
    /// lp-norm: p, 1 or 2.
    #[arg(long)]
    pub(crate) p: Option<u32>,
    /// Storage type of the computation and of the outputs (inputs may be f32 or f16).
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) dtype: Dtype,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Write outputs that name a FIFO or a device (/dev/null, /dev/stdout) into
    /// it; without this they are refused.
    #[arg(long)]
    pub(crate) allow_special_output: bool,
}

/// `--activation`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActivationArg {
    /// y = z.
    None,
    /// y = z · sigmoid(z).
    Silu,
}

/// An array read from an NPY file (f16 values widened to f32 exactly).
pub(crate) struct Array {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f32>,
}

/// Refuses a header whose shape's product overflows 64 bits, before npyz
/// (which multiplies the dims unchecked) sees it. Reads the header through
/// `fill_buf`, so nothing is consumed. Anything it cannot make out is left
/// for npyz to judge.
fn header_shape_fits(file: &mut BufReader<File>) -> Result<(), String> {
    use std::io::BufRead;
    let head = file.fill_buf().map_err(|e| e.to_string())?;
    let Some(text) = head.get(8..).map(String::from_utf8_lossy) else {
        return Ok(());
    };
    let Some(start) = text.find("'shape'") else {
        return Ok(());
    };
    let rest = &text[start..];
    let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
        return Ok(());
    };
    if close < open {
        return Ok(());
    }
    let mut product: u128 = 1;
    for dim in rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let dim = dim.trim_end_matches('L');
        let d: u128 = dim
            .parse()
            .unwrap_or(if dim.bytes().all(|b| b.is_ascii_digit()) {
                u128::MAX // more digits than u128 holds
            } else {
                0 // not a count: npyz says what is wrong with it
            });
        product = product.saturating_mul(d);
    }
    if product > u64::MAX as u128 / 8 {
        return Err(format!(
            "the header's shape {} holds more values than can be counted",
            &rest[open..=close]
        ));
    }
    Ok(())
}

pub(crate) fn read_npy(path: &Path) -> CliResult<Array> {
    let bad = |why: String| CliError::Input(format!("{}: {why}", path.display()));
    let mut file = BufReader::new(File::open(path).map_err(|e| bad(e.to_string()))?);
    header_shape_fits(&mut file).map_err(bad)?;
    let npy = npyz::NpyFile::new(file).map_err(|e| bad(format!("not a valid NPY file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad(
            "Fortran-order arrays are not supported; save it in C order".into(),
        ));
    }
    let dtype = npy.dtype();
    let float_size = match &dtype {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => t.size_field(),
        _ => 0,
    };
    // The header's shape, checked before its data is read: a lying header
    // must not make the reader allocate what the file does not hold.
    let values = npy
        .shape()
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| usize::try_from(n).is_ok() && n.checked_mul(8).is_some())
        .ok_or_else(|| {
            bad(format!(
                "the header's shape {:?} holds more values than can be counted",
                npy.shape()
            ))
        })?;
    let data_bytes = values * float_size.max(1);
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_file() && data_bytes > meta.len() {
            return Err(bad(format!(
                "the header's shape {:?} needs {data_bytes} bytes of data, but the file is {} bytes long",
                npy.shape(),
                meta.len()
            )));
        }
    }
    let shape_usize: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    crate::common::fit_host(&shape_usize, 4 + float_size.max(1)).map_err(|e| bad(e.to_string()))?;
    let shape = shape_usize;
    let read_failed = |e: std::io::Error| bad(format!("reading the data failed: {e}"));
    let data: Vec<f32> = match float_size {
        4 => npy.into_vec().map_err(read_failed)?,
        2 => npy
            .into_vec::<half::f16>()
            .map_err(read_failed)?
            .into_iter()
            .map(f32::from)
            .collect(),
        _ => {
            return Err(bad(format!(
                "dtype {} is neither f32 ('<f4') nor f16 ('<f2')",
                dtype.descr()
            )));
        }
    };
    Ok(Array { shape, data })
}

/// Writes `data` shaped `shape` as `dtype` as NPY to output `id`.
pub(crate) fn write_npy(
    outputs: &mut Outputs,
    id: OutputId,
    shape: &[usize],
    data: &[f32],
    dtype: DType,
) -> CliResult {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    outputs.write(id, |out| {
        match dtype {
            DType::F32 => {
                let mut w = npyz::WriteOptions::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(out)
                    .begin_nd()?;
                w.extend(data.iter().copied())?;
                w.finish()?;
            }
            DType::F16 => {
                let mut w = npyz::WriteOptions::<half::f16>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(out)
                    .begin_nd()?;
                w.extend(data.iter().map(|&v| half::f16::from_f32(v)))?;
                w.finish()?;
            }
        }
        Ok(())
    })
}

/// Refuses a flag the op does not take, naming both.
pub(crate) fn refuse(op: &str, flag: &str, given: bool, why: &str) -> CliResult {
    if given {
        return Err(CliError::Input(format!(
            "--op {op} does not take {flag}: {why}"
        )));
    }
    Ok(())
}

/// Insists on a flag the op needs.
pub(crate) fn need<'a>(op: &str, flag: &str, path: &'a Option<PathBuf>) -> CliResult<&'a Path> {
    path.as_deref()
        .ok_or_else(|| CliError::Input(format!("--op {op} needs {flag}")))
}

/// The grouped ops' flags, as (flag, given): a row normalisation refuses them.
pub(crate) fn grouped_flags(a: &Args) -> [(&'static str, bool); 11] {
    [
        ("--num-groups", a.num_groups.is_some()),
        ("--activation", a.activation.is_some()),
        ("--channels-last", a.channels_last),
        ("--input-mean", a.input_mean.is_some()),
        ("--input-var", a.input_var.is_some()),
        ("--training-mode", a.training_mode),
        ("--momentum", a.momentum.is_some()),
        ("--running-mean", a.running_mean.is_some()),
        ("--running-var", a.running_var.is_some()),
        ("--unbiased-running-var", a.unbiased_running_var),
        ("--p", a.p.is_some()),
    ]
}

/// The flags that do not fit the op, before anything is read.
fn check_flags(a: &Args, op: ApplyOp) -> CliResult {
    for (flag, given) in grouped_flags(a) {
        refuse(
            op.name(),
            flag,
            given,
            "it belongs to the grouped normalisations (group-norm, instance-norm, batch-norm, lp-norm)",
        )?;
    }
    let sig = op.signature;
    refuse(
        op.name(),
        "--bias",
        !sig.bias && a.bias.is_some(),
        &format!("{} has no bias", sig.title),
    )?;
    refuse(
        op.name(),
        "--mean",
        !sig.mean && a.mean.is_some(),
        &format!("{} has no mean", sig.title),
    )?;
    if op.is_backward() {
        let forward_only = "it belongs to the forward ops";
        for (flag, given) in [
            ("--output", a.output.is_some()),
            ("--residual", a.residual.is_some()),
            ("--residual-bias", a.residual_bias.is_some()),
            ("--sum-output", a.sum_output.is_some()),
            ("--bias", a.bias.is_some()),
        ] {
            refuse(op.name(), flag, given, forward_only)?;
        }
        need(op.name(), "--grad", &a.grad)?;
        need(op.name(), "--grad-input", &a.grad_input)?;
        refuse(
            op.name(),
            "--grad-bias",
            !sig.bias && a.grad_bias.is_some(),
            &format!("{} has no bias", sig.title),
        )?;
        if sig.mean && a.mean.is_some() != a.inv_std_dev.is_some() {
            return Err(CliError::Input(
                "--mean and --inv-std-dev go together: pass both saved statistics, or neither to recompute them".into(),
            ));
        }
    } else {
        let backward_only = "it belongs to the backward ops";
        for (flag, given) in [
            ("--grad", a.grad.is_some()),
            ("--grad-input", a.grad_input.is_some()),
            ("--grad-scale", a.grad_scale.is_some()),
            ("--grad-bias", a.grad_bias.is_some()),
        ] {
            refuse(op.name(), flag, given, backward_only)?;
        }
        need(op.name(), "--output", &a.output)?;
        refuse(
            op.name(),
            "--residual",
            !sig.residual && a.residual.is_some(),
            &format!("{} takes no residual", sig.title),
        )?;
        let no_residual = "it needs --residual";
        refuse(
            op.name(),
            "--residual-bias",
            a.residual.is_none() && a.residual_bias.is_some(),
            no_residual,
        )?;
        refuse(
            op.name(),
            "--sum-output",
            a.residual.is_none() && a.sum_output.is_some(),
            no_residual,
        )?;
    }
    if !a.epsilon.is_finite() || a.epsilon < 0.0 {
        return Err(wgpu_norm::Error::InvalidEpsilon(a.epsilon).into());
    }
    Ok(())
}

/// Every output the command will write, checked and reserved in flag order.
fn reserve_outputs(a: &Args, op: ApplyOp) -> CliResult<(Outputs, Vec<OutputId>)> {
    let mut outputs = Outputs::new(a.allow_special_output);
    let named: Vec<(&str, &Option<PathBuf>)> = if op.is_backward() {
        vec![
            ("--grad-input", &a.grad_input),
            ("--grad-scale", &a.grad_scale),
            ("--grad-bias", &a.grad_bias),
        ]
    } else {
        vec![
            ("--output", &a.output),
            ("--mean", &a.mean),
            ("--inv-std-dev", &a.inv_std_dev),
            ("--sum-output", &a.sum_output),
        ]
    };
    let mut ids = Vec::new();
    for (flag, path) in named {
        if let Some(p) = path {
            ids.push(outputs.add(flag, p)?);
        }
    }
    Ok((outputs, ids))
}

pub fn main(args: Args) -> CliResult {
    let op = match args.op {
        OpChoice::Row(op) => op,
        OpChoice::Grouped(op) => return apply_grouped::main(&args, op),
    };
    check_flags(&args, op)?;
    let (mut files, ids) = reserve_outputs(&args, op)?;
    let dtype = match args.dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
    };
    let x = read_npy(&args.input)?;
    let config = NormConfig {
        axis: args.axis,
        epsilon: args.epsilon,
        kernel: None,
        backward_kernel: None,
    };
    let rows = config.rows_cols(&x.shape)?.rows;
    let stats_shape = config.stats_shape(&x.shape)?;
    let norm_shape = config.norm_shape(&x.shape)?;
    let load_shaped = |path: &Option<PathBuf>, what: &str, shape: &[usize], like: &str| {
        let Some(path) = path else { return Ok(None) };
        let a = read_npy(path)?;
        if a.shape != shape {
            return Err(CliError::Input(format!(
                "{}: {what} has shape {:?} but must be shaped like {like} {shape:?} (input {:?}, axis {})",
                path.display(),
                a.shape,
                x.shape,
                args.axis
            )));
        }
        Ok(Some(a))
    };
    let param = |path, what| load_shaped(path, what, &norm_shape, "the normalised dims");
    let like_x = |path, what| load_shaped(path, what, &x.shape, "X");
    let stat = |path: &Option<PathBuf>, what: &str| -> CliResult<Option<Array>> {
        let Some(p) = path else { return Ok(None) };
        let a = read_npy(p)?;
        if a.data.len() != rows {
            return Err(CliError::Input(format!(
                "{}: {what} holds {} values but X has {rows} rows (expected shape {stats_shape:?})",
                p.display(),
                a.data.len()
            )));
        }
        Ok(Some(a))
    };
    let scale = param(&args.scale, "scale")?;
    let bias = param(&args.bias, "bias")?;
    let residual = like_x(&args.residual, "residual")?;
    let residual_bias = param(&args.residual_bias, "residual bias")?;
    let grad = like_x(&args.grad, "grad")?;
    let (saved_mean, saved_rstd) = if op.is_backward() {
        (
            stat(&args.mean, "mean")?,
            stat(&args.inv_std_dev, "inv-std-dev")?,
        )
    } else {
        (None, None)
    };

    let ctx = open(args.backend.as_deref())?;
    let up = |a: &Option<Array>, dtype| -> CliResult<Option<GpuTensor>> {
        Ok(a.as_ref()
            .map(|a| GpuTensor::from_slice_as(&ctx, &a.data, &a.shape, dtype))
            .transpose()?)
    };
    let xg = GpuTensor::from_slice_as(&ctx, &x.data, &x.shape, dtype)?;
    let (scale, bias) = (up(&scale, dtype)?, up(&bias, dtype)?);
    // (path, tensor, file dtype) of every output, all read back before any is written.
    let mut outputs: Vec<(PathBuf, GpuTensor)> = Vec::new();
    if op.is_backward() {
        let dy = up(&grad, dtype)?.expect("checked: backward ops have --grad");
        let (mean, rstd) = (up(&saved_mean, DType::F32)?, up(&saved_rstd, DType::F32)?);
        let zeros = |shape: &[usize]| GpuTensor::zeros_as(&ctx, shape, dtype);
        let dx = zeros(&x.shape)?;
        let dscale = args
            .grad_scale
            .as_ref()
            .map(|_| zeros(&norm_shape))
            .transpose()?;
        let dbias = args
            .grad_bias
            .as_ref()
            .map(|_| zeros(&norm_shape))
            .transpose()?;
        let named = NamedTensors {
            scale: scale.as_ref(),
            mean: mean.as_ref(),
            inv_std_dev: rstd.as_ref(),
            dy: Some(&dy),
            dx: Some(&dx),
            dscale: dscale.as_ref(),
            dbias: dbias.as_ref(),
            ..NamedTensors::new(&xg)
        };
        (op.run)(config, &ctx, &named)?;
        outputs.push((args.grad_input.clone().expect("checked"), dx));
        for (path, t) in [(&args.grad_scale, dscale), (&args.grad_bias, dbias)] {
            if let (Some(p), Some(t)) = (path, t) {
                outputs.push((p.clone(), t));
            }
        }
    } else {
        let y = GpuTensor::zeros_as(&ctx, &x.shape, dtype)?;
        let stat_out = |p: &Option<PathBuf>| -> CliResult<Option<GpuTensor>> {
            Ok(p.as_ref()
                .map(|_| GpuTensor::zeros(&ctx, &stats_shape))
                .transpose()?)
        };
        let (mean, rstd) = (stat_out(&args.mean)?, stat_out(&args.inv_std_dev)?);
        let r = up(&residual, dtype)?;
        let rb = up(&residual_bias, dtype)?;
        let sum = args
            .sum_output
            .as_ref()
            .map(|_| GpuTensor::zeros_as(&ctx, &x.shape, dtype))
            .transpose()?;
        let residual = r.as_ref().map(|r| ResidualAdd {
            residual: r,
            bias: rb.as_ref(),
            sum: sum.as_ref(),
        });
        let named = NamedTensors {
            scale: scale.as_ref(),
            bias: bias.as_ref(),
            residual,
            mean: mean.as_ref(),
            inv_std_dev: rstd.as_ref(),
            y: Some(&y),
            ..NamedTensors::new(&xg)
        };
        (op.run)(config, &ctx, &named)?;
        outputs.push((args.output.clone().expect("checked"), y));
        for (path, t) in [
            (&args.mean, mean),
            (&args.inv_std_dev, rstd),
            (&args.sum_output, sum),
        ] {
            if let (Some(p), Some(t)) = (path, t) {
                outputs.push((p.clone(), t));
            }
        }
    }

    // Everything is computed and read back before the first file is written;
    // `outputs` is in the order `reserve_outputs` reserved them.
    assert_eq!(outputs.len(), ids.len(), "one reserved file per output");
    let mut host = Vec::with_capacity(outputs.len());
    for (_, t) in &outputs {
        host.push(t.read(&ctx)?);
    }
    for ((id, (_, t)), data) in ids.iter().zip(&outputs).zip(&host) {
        write_npy(&mut files, *id, t.shape(), data, t.dtype())?;
    }
    files.commit()
}
