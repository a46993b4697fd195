//! `wgpu-norm apply`: an op on NPY files (f32, C order), ONNX semantics.
//!
//! Every output is written to a temporary file beside its destination and
//! renamed into place only once all of them are complete, so a failure leaves
//! no half-written output.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use wgpu_norm::{GpuTensor, LayerNorm};

use crate::common::{CliError, CliResult, open};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Op {
    /// ONNX LayerNormalization-17 / PyTorch F.layer_norm.
    LayerNorm,
}

#[derive(clap::Args)]
pub struct Args {
    /// The operation.
    #[arg(long, value_enum)]
    op: Op,
    /// Input X (.npy, f32, C order).
    #[arg(long)]
    input: PathBuf,
    /// Scale (gamma), shaped like the normalised dims.
    #[arg(long)]
    scale: Option<PathBuf>,
    /// Bias (beta), shaped like the normalised dims.
    #[arg(long)]
    bias: Option<PathBuf>,
    /// First normalised axis; negative counts from the end.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    axis: isize,
    /// Added to the variance inside the square root.
    #[arg(long, default_value_t = 1e-5, allow_hyphen_values = true)]
    epsilon: f32,
    /// Output Y (.npy).
    #[arg(long)]
    output: PathBuf,
    /// Optional output: per-row mean, shaped [d0 … d(axis-1), 1, …, 1].
    #[arg(long)]
    mean: Option<PathBuf>,
    /// Optional output: per-row 1/sqrt(var + epsilon), shaped like --mean.
    #[arg(long)]
    inv_std_dev: Option<PathBuf>,
    /// vulkan, gl, metal or dx12 (default: WGPU_BACKEND, else the best adapter).
    #[arg(long)]
    backend: Option<String>,
}

/// An f32 array read from an NPY file.
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
    let is_f32 = matches!(&dtype, npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4);
    if !is_f32 {
        return Err(bad(format!("dtype {} is not f32 ('<f4')", dtype.descr())));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = npy
        .into_vec()
        .map_err(|e| bad(format!("reading the data failed: {e}")))?;
    Ok(Array { shape, data })
}

/// Writes `data` shaped `shape` to a temporary file beside `path`; `persist`
/// later moves it into place.
fn write_npy_temp(
    path: &Path,
    shape: &[usize],
    data: &[f32],
) -> CliResult<tempfile::NamedTempFile> {
    let fail = |e: std::io::Error| CliError::Failed(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(BufWriter::new(tmp.as_file_mut()))
            .begin_nd()
            .map_err(fail)?;
        writer.extend(data.iter().copied()).map_err(fail)?;
        writer.finish().map_err(fail)?;
    }
    tmp.as_file_mut().flush().map_err(fail)?;
    Ok(tmp)
}

pub fn main(args: Args) -> CliResult {
    let Op::LayerNorm = args.op;
    let x = read_npy(&args.input)?;
    let op = LayerNorm::new()
        .with_axis(args.axis)
        .with_epsilon(args.epsilon);
    let (_rows, _cols) = op.rows_cols(&x.shape)?;
    let axis = if args.axis < 0 {
        args.axis + x.shape.len() as isize
    } else {
        args.axis
    } as usize;
    let norm_shape = &x.shape[axis..];
    let load_param = |path: &Option<PathBuf>, what: &str| -> CliResult<Option<Array>> {
        let Some(path) = path else { return Ok(None) };
        let a = read_npy(path)?;
        if a.shape != norm_shape {
            return Err(CliError::Input(format!(
                "{}: {what} has shape {:?} but must be shaped like the normalised dims {:?} (input {:?}, axis {})",
                path.display(),
                a.shape,
                norm_shape,
                x.shape,
                args.axis
            )));
        }
        Ok(Some(a))
    };
    let scale = load_param(&args.scale, "scale")?;
    let bias = load_param(&args.bias, "bias")?;
    if !args.epsilon.is_finite() || args.epsilon < 0.0 {
        return Err(wgpu_norm::Error::InvalidEpsilon(args.epsilon).into());
    }

    let ctx = open(args.backend.as_deref())?;
    let xg = GpuTensor::from_slice(&ctx, &x.data, &x.shape)?;
    let upload = |a: &Option<Array>| {
        a.as_ref()
            .map(|a| GpuTensor::from_slice(&ctx, &a.data, &a.shape))
            .transpose()
    };
    let (sg, bg) = (upload(&scale)?, upload(&bias)?);
    let out = op.forward_with_stats(&ctx, &xg, sg.as_ref(), bg.as_ref())?;

    // Everything is computed and read back before the first file is written.
    let mut pending = vec![(
        args.output.clone(),
        write_npy_temp(&args.output, &x.shape, &out.y.read(&ctx)?)?,
    )];
    for (path, t) in [(&args.mean, &out.mean), (&args.inv_std_dev, &out.rstd)] {
        if let Some(path) = path {
            pending.push((
                path.clone(),
                write_npy_temp(path, t.shape(), &t.read(&ctx)?)?,
            ));
        }
    }
    for (path, tmp) in pending {
        tmp.persist(&path)
            .map_err(|e| CliError::Failed(format!("{}: {}", path.display(), e.error)))?;
    }
    Ok(())
}
