//! `wgpu-norm export`: an op's plan as JSON for any WebGPU (see
//! `wgpu_norm::export`): the WGSL of each pass, entry points, override
//! constants, bindings, uniform bytes, workgroup counts and buffers, made by
//! the library's own plan for given capabilities.

use std::path::PathBuf;

use wgpu_norm::export::{EXPORT_OPS, ExportRequest, Target, export};
use wgpu_norm::{BackwardKernel, CopyKernel, DType, Kernel, NormConfig};

use crate::common::{CliError, CliResult, Shape};
use crate::output::Outputs;

#[derive(clap::Args)]
pub struct Args {
    /// layer-norm, rms-norm, layer-norm-backward, rms-norm-backward, or copy
    /// (X into Y by a copy kernel: the bench's floor).
    #[arg(long)]
    op: String,
    /// The input's shape, e.g. 4x33x1025.
    #[arg(long)]
    shape: Shape,
    /// f32 or f16 storage.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// First normalised axis; negative counts from the end.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    axis: isize,
    /// Added to the variance inside the square root.
    #[arg(long, default_value_t = 1e-5, allow_hyphen_values = true)]
    epsilon: f32,
    /// With a scale (gamma); backward ops then write dScale.
    #[arg(long)]
    scale: bool,
    /// With a bias (layer-norm); backward ops then write dB.
    #[arg(long)]
    bias: bool,
    /// Forward ops: write Mean and InvStdDev too.
    #[arg(long)]
    stats: bool,
    /// Forward ops: add a residual R and its bias RB first, and write the sum S.
    #[arg(long)]
    residual: bool,
    /// Force a forward kernel (by name, as `bench --all-kernels` prints it).
    #[arg(long)]
    kernel: Option<String>,
    /// Force a backward dx kernel (by name).
    #[arg(long)]
    backward_kernel: Option<String>,
    /// `--op copy`: the copy kernel (by name: grid-stride/1024, vec4-per-lane, …).
    #[arg(long)]
    copy_kernel: Option<String>,
    /// `webgpu` (WebGPU's default limits, no optional feature) or a JSON file
    /// describing a browser's adapter (`web/runner.js`'s `describeAdapter`).
    #[arg(long, default_value = "webgpu")]
    capabilities: String,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write --output into a FIFO or a device if it names one.
    #[arg(long)]
    allow_special_output: bool,
}

/// The target `--capabilities` names.
pub fn target(spec: &str) -> CliResult<Target> {
    if spec == "webgpu" {
        return Ok(Target::webgpu());
    }
    let text = std::fs::read_to_string(spec)
        .map_err(|e| CliError::Input(format!("--capabilities {spec}: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("--capabilities {spec}: not JSON ({e})")))?;
    Target::from_json(&v).map_err(|e| CliError::Input(format!("--capabilities {spec}: {e}")))
}

pub fn main(args: Args) -> CliResult {
    let mut files = Outputs::new(args.allow_special_output);
    let out = args
        .output
        .as_ref()
        .map(|p| files.add("--output", p))
        .transpose()?;
    if args.op != "copy" && !EXPORT_OPS.iter().any(|o| o.name == args.op) {
        let mut names: Vec<_> = EXPORT_OPS.iter().map(|o| o.name).collect();
        names.push("copy");
        return Err(CliError::Input(format!(
            "unknown op {:?}: expected one of {}",
            args.op,
            names.join(", ")
        )));
    }
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        other => {
            return Err(CliError::Input(format!(
                "--dtype {other}: expected f32 or f16"
            )));
        }
    };
    let kernel = args
        .kernel
        .as_deref()
        .map(|n| {
            Kernel::by_name(n)
                .ok_or_else(|| CliError::Input(format!("--kernel {n}: no such kernel")))
        })
        .transpose()?;
    let backward_kernel = args
        .backward_kernel
        .as_deref()
        .map(|n| {
            BackwardKernel::ALL
                .into_iter()
                .find(|k| k.name() == n)
                .ok_or_else(|| CliError::Input(format!("--backward-kernel {n}: no such kernel")))
        })
        .transpose()?;
    let req = ExportRequest {
        op: args.op.clone(),
        shape: args.shape.0.clone(),
        dtype,
        config: NormConfig {
            axis: args.axis,
            epsilon: args.epsilon,
            kernel,
            backward_kernel,
        },
        scale: args.scale,
        bias: args.bias,
        stats: args.stats,
        residual: args.residual,
        copy_kernel: args
            .copy_kernel
            .as_deref()
            .map(|n| {
                CopyKernel::ALL
                    .into_iter()
                    .find(|k| k.name() == n)
                    .ok_or_else(|| CliError::Input(format!("--copy-kernel {n}: no such kernel")))
            })
            .transpose()?,
    };
    let plan = export(&req, &target(&args.capabilities)?)?;
    let text = serde_json::to_string(&plan).expect("plain data serialises");
    match out {
        Some(id) => {
            files.write_bytes(id, text.as_bytes())?;
            files.commit()
        }
        None => {
            println!("{text}");
            Ok(())
        }
    }
}
