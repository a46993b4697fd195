//! `wgpu-norm apply`: an op on NPY files (C order), ONNX semantics.
//!
//! Forward ops read X (and scale, bias, a residual) and write Y (and the
//! statistics, the residual sum); backward ops read X and dY (and scale, the
//! saved statistics) and write the gradients. Arrays are f32 or f16 NPY;
//! `--dtype f16` computes with f16 storage and writes f16, `--dtype f32`
//! (the default) f32. The statistics are always f32.
//!
//! Every output is written to a temporary file beside its destination and
//! renamed into place only once all of them are complete, so a failure leaves
//! no half-written output.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use wgpu_norm::{
    Context, DType, GpuTensor, LayerNorm, LayerNormIo, NormOp, ResidualAdd, RmsNorm, RmsNormIo,
};

use crate::common::{CliError, CliResult, open};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// ONNX LayerNormalization-17 / PyTorch F.layer_norm.
    LayerNorm,
    /// ONNX RMSNormalization-23 (scale optional, no bias).
    RmsNorm,
    /// Gradients of layer-norm: dX, dScale, dBias from X and dY.
    LayerNormBackward,
    /// Gradients of RMS-norm: dX, dScale from X and dY.
    RmsNormBackward,
}

impl Op {
    pub fn is_backward(self) -> bool {
        matches!(self, Op::LayerNormBackward | Op::RmsNormBackward)
    }
    fn is_rms(self) -> bool {
        matches!(self, Op::RmsNorm | Op::RmsNormBackward)
    }
    pub fn name(self) -> &'static str {
        match self {
            Op::LayerNorm => "layer-norm",
            Op::RmsNorm => "rms-norm",
            Op::LayerNormBackward => "layer-norm-backward",
            Op::RmsNormBackward => "rms-norm-backward",
        }
    }
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
    /// The operation.
    #[arg(long, value_enum)]
    op: Op,
    /// Input X (.npy, f32 or f16, C order).
    #[arg(long)]
    input: PathBuf,
    /// Scale (gamma), shaped like the normalised dims.
    #[arg(long)]
    scale: Option<PathBuf>,
    /// Bias (beta), shaped like the normalised dims (layer-norm only).
    #[arg(long)]
    bias: Option<PathBuf>,
    /// First normalised axis; negative counts from the end.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    axis: isize,
    /// Added to the variance (mean square for rms-norm) inside the square root.
    #[arg(long, default_value_t = 1e-5, allow_hyphen_values = true)]
    epsilon: f32,
    /// Forward ops: a residual R shaped like X; the op normalises X + R.
    #[arg(long)]
    residual: Option<PathBuf>,
    /// Forward ops with --residual: a bias added with it, shaped like the normalised dims.
    #[arg(long)]
    residual_bias: Option<PathBuf>,
    /// Forward ops with --residual: output of the sum X + R (+ residual bias).
    #[arg(long)]
    sum_output: Option<PathBuf>,
    /// Forward ops: output Y (.npy).
    #[arg(long)]
    output: Option<PathBuf>,
    /// layer-norm: optional output of the per-row mean, shaped [d0 … d(axis-1), 1, …, 1].
    /// layer-norm-backward: the forward's saved mean (input; with --inv-std-dev).
    #[arg(long)]
    mean: Option<PathBuf>,
    /// Forward ops: optional output of the per-row 1/sqrt(var + epsilon), shaped like --mean.
    /// Backward ops: the forward's saved value (input).
    #[arg(long)]
    inv_std_dev: Option<PathBuf>,
    /// Backward ops: dY, the gradient of the loss with respect to Y, shaped like X.
    #[arg(long)]
    grad: Option<PathBuf>,
    /// Backward ops: output dX.
    #[arg(long)]
    grad_input: Option<PathBuf>,
    /// Backward ops: optional output dScale, shaped like the normalised dims.
    #[arg(long)]
    grad_scale: Option<PathBuf>,
    /// layer-norm-backward: optional output dBias, shaped like the normalised dims.
    #[arg(long)]
    grad_bias: Option<PathBuf>,
    /// Storage type of the computation and of the outputs (inputs may be f32 or f16).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    backend: Option<String>,
}

/// An array read from an NPY file (f16 values widened to f32 exactly).
struct Array {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn read_npy(path: &Path) -> CliResult<Array> {
    let bad = |why: String| CliError::Input(format!("{}: {why}", path.display()));
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| bad(format!("not a valid NPY file: {e}")))?;
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
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
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

/// Writes `data` shaped `shape` as `dtype` to a temporary file beside
/// `path`; `persist` later moves it into place.
fn write_npy_temp(
    path: &Path,
    shape: &[usize],
    data: &[f32],
    dtype: DType,
) -> CliResult<tempfile::NamedTempFile> {
    let fail = |e: std::io::Error| CliError::Failed(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let out = BufWriter::new(tmp.as_file_mut());
        match dtype {
            DType::F32 => {
                let mut w = npyz::WriteOptions::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(out)
                    .begin_nd()
                    .map_err(fail)?;
                w.extend(data.iter().copied()).map_err(fail)?;
                w.finish().map_err(fail)?;
            }
            DType::F16 => {
                let mut w = npyz::WriteOptions::<half::f16>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(out)
                    .begin_nd()
                    .map_err(fail)?;
                w.extend(data.iter().map(|&v| half::f16::from_f32(v)))
                    .map_err(fail)?;
                w.finish().map_err(fail)?;
            }
        }
    }
    tmp.as_file_mut().flush().map_err(fail)?;
    Ok(tmp)
}

/// Refuses a flag the op does not take, naming both.
fn refuse(op: Op, flag: &str, given: bool, why: &str) -> CliResult {
    if given {
        return Err(CliError::Input(format!(
            "--op {} does not take {flag}: {why}",
            op.name()
        )));
    }
    Ok(())
}

/// Insists on a flag the op needs.
fn need<'a>(op: Op, flag: &str, path: &'a Option<PathBuf>) -> CliResult<&'a Path> {
    path.as_deref()
        .ok_or_else(|| CliError::Input(format!("--op {} needs {flag}", op.name())))
}

/// The flags that do not fit the op, before anything is read.
fn check_flags(a: &Args) -> CliResult {
    let op = a.op;
    refuse(
        op,
        "--bias",
        op.is_rms() && a.bias.is_some(),
        "RMSNorm has no bias",
    )?;
    refuse(
        op,
        "--mean",
        op.is_rms() && a.mean.is_some(),
        "RMSNorm has no mean",
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
            refuse(op, flag, given, forward_only)?;
        }
        need(op, "--grad", &a.grad)?;
        need(op, "--grad-input", &a.grad_input)?;
        refuse(
            op,
            "--grad-bias",
            op.is_rms() && a.grad_bias.is_some(),
            "RMSNorm has no bias",
        )?;
        if !op.is_rms() && a.mean.is_some() != a.inv_std_dev.is_some() {
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
            refuse(op, flag, given, backward_only)?;
        }
        need(op, "--output", &a.output)?;
        let no_residual = "it needs --residual";
        refuse(
            op,
            "--residual-bias",
            a.residual.is_none() && a.residual_bias.is_some(),
            no_residual,
        )?;
        refuse(
            op,
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

pub fn main(args: Args) -> CliResult {
    check_flags(&args)?;
    let op = args.op;
    let dtype = match args.dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
    };
    let x = read_npy(&args.input)?;
    let config = LayerNorm::new()
        .with_axis(args.axis)
        .with_epsilon(args.epsilon);
    let (rows, _cols) = config.rows_cols(&x.shape)?;
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
        run(&ctx, |encoder| match op {
            Op::LayerNormBackward => config.encode_backward(
                &ctx,
                encoder,
                &wgpu_norm::LayerNormGradIo {
                    x: &xg,
                    dy: &dy,
                    gamma: scale.as_ref(),
                    mean: mean.as_ref(),
                    rstd: rstd.as_ref(),
                    dx: &dx,
                    dgamma: dscale.as_ref(),
                    dbeta: dbias.as_ref(),
                },
            ),
            _ => rms(&config).encode_backward(
                &ctx,
                encoder,
                &wgpu_norm::RmsNormGradIo {
                    x: &xg,
                    dy: &dy,
                    gamma: scale.as_ref(),
                    rstd: rstd.as_ref(),
                    dx: &dx,
                    dgamma: dscale.as_ref(),
                },
            ),
        })?;
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
        run(&ctx, |encoder| match op {
            Op::LayerNorm => config.encode(
                &ctx,
                encoder,
                &LayerNormIo {
                    gamma: scale.as_ref(),
                    beta: bias.as_ref(),
                    mean: mean.as_ref(),
                    rstd: rstd.as_ref(),
                    residual,
                    ..LayerNormIo::new(&xg, &y)
                },
            ),
            _ => rms(&config).encode(
                &ctx,
                encoder,
                &RmsNormIo {
                    gamma: scale.as_ref(),
                    rstd: rstd.as_ref(),
                    residual,
                    ..RmsNormIo::new(&xg, &y)
                },
            ),
        })?;
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

    // Everything is computed and read back before the first file is written.
    let mut pending = Vec::with_capacity(outputs.len());
    for (path, t) in &outputs {
        let tmp = write_npy_temp(path, t.shape(), &t.read(&ctx)?, t.dtype())?;
        pending.push((path, tmp));
    }
    for (path, tmp) in pending {
        tmp.persist(path)
            .map_err(|e| CliError::Failed(format!("{}: {}", path.display(), e.error)))?;
    }
    Ok(())
}

/// The RMSNorm of the same axis and epsilon.
fn rms(config: &LayerNorm) -> RmsNorm {
    RmsNorm::new()
        .with_axis(config.axis)
        .with_epsilon(config.epsilon)
}

/// Encodes with `encode`, submits, and waits.
fn run(
    ctx: &Context,
    encode: impl FnOnce(&mut wgpu::CommandEncoder) -> wgpu_norm::Result<()>,
) -> CliResult {
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    encode(&mut encoder)?;
    Ok(ctx.submit_and_wait(encoder)?)
}
