//! `wgpu-norm check`: the same inputs on every adapter, each compared with the
//! f64 reference and with each other, for any of the ops.

use wgpu_norm::{Context, ContextOptions, GpuTensor, LayerNorm, RmsNorm, reference, synthetic};

use crate::common::{CliError, CliResult, Shape, shape_string};

#[derive(clap::Args)]
pub struct Args {
    /// Tensor shape; the last dimension is normalised.
    #[arg(long, default_value = "4x33x1025")]
    shape: Shape,
    /// Seed of the random data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The op: layer-norm (default), rms-norm, layer-norm-backward or
    /// rms-norm-backward (dx compared, after the forward's saved statistics).
    #[arg(long, value_enum, default_value = "layer-norm")]
    op: Op,
}

/// The ops `check` compares: each with its f64 reference and tolerance.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// LayerNorm forward.
    LayerNorm,
    /// RMSNorm forward.
    RmsNorm,
    /// LayerNorm backward (dx).
    LayerNormBackward,
    /// RMSNorm backward (dx).
    RmsNormBackward,
}

impl Op {
    fn is_backward(self) -> bool {
        matches!(self, Op::LayerNormBackward | Op::RmsNormBackward)
    }

    fn name(self) -> &'static str {
        match self {
            Op::LayerNorm => "layer-norm",
            Op::RmsNorm => "rms-norm",
            Op::LayerNormBackward => "layer-norm-backward",
            Op::RmsNormBackward => "rms-norm-backward",
        }
    }
}

struct Outcome {
    name: String,
    y: Option<Vec<f32>>,
    detail: String,
}

pub fn main(args: Args) -> CliResult {
    let shape = &args.shape.0;
    // x, dy, the f64 reference and every adapter's result on the host,
    // checked before anything is allocated (each adapter checks its own
    // limits, and reports a refusal as its outcome).
    crate::common::fit_host(shape, 40)?;
    let cols = *shape.last().expect("Shape gives at least one dim");
    let n: usize = shape.iter().product();
    // A large mean offset makes the check sensitive to cancellation.
    let x = synthetic::normal(args.seed, n, 1000.0, 1.0);
    let gamma = synthetic::normal(args.seed + 1, cols, 1.0, 0.1);
    let beta = synthetic::normal(args.seed + 2, cols, 0.0, 0.1);
    let dy = synthetic::normal(args.seed + 3, n, 0.0, 1.0);
    let op = args.op;
    // The reference output and its stated tolerance (see `wgpu_norm::reference`).
    let (want, tol): (Vec<f64>, f64) = match op {
        Op::LayerNorm => {
            let r = reference::layer_norm(&x, cols, Some(&gamma), Some(&beta), 1e-5);
            let tol = reference::layer_norm_tolerance(&x, &r, Some(&gamma), Some(&beta));
            (r.y, tol)
        }
        Op::RmsNorm => {
            // RMSNorm's x̂ is x·rstd, at most about 1 here.
            let r = reference::rms_norm(&x, cols, Some(&gamma), 1e-5);
            let gamma_max = gamma.iter().fold(0.0f64, |m, &g| m.max((g as f64).abs()));
            (r.y, 4e-6 * gamma_max * 2.0)
        }
        Op::LayerNormBackward | Op::RmsNormBackward => {
            let rms = op == Op::RmsNormBackward;
            let r = reference::norm_backward(&x, &dy, cols, Some(&gamma), 1e-5, rms);
            let (tol, _, _) = reference::norm_backward_tolerance(&dy, &r, Some(&gamma));
            (r.dx, tol)
        }
    };

    let adapters = pollster::block_on(Context::adapters(Some(wgpu::Backends::all())));
    if adapters.is_empty() {
        return Err(CliError::Failed(
            wgpu_norm::Error::NoAdapter {
                wanted: "any backend".into(),
            }
            .to_string(),
        ));
    }
    let mut outcomes = Vec::new();
    for adapter in &adapters {
        let info = adapter.get_info();
        let name = format!("{} ({:?})", info.name, info.backend);
        let result = (|| -> wgpu_norm::Result<(Vec<f32>, String)> {
            let ctx =
                pollster::block_on(Context::from_adapter(adapter, &ContextOptions::default()))?;
            let (ln, rms) = (LayerNorm::new(), RmsNorm::new());
            let xg = GpuTensor::from_slice(&ctx, &x, shape)?;
            let gg = GpuTensor::from_slice(&ctx, &gamma, &[cols])?;
            let bg = GpuTensor::from_slice(&ctx, &beta, &[cols])?;
            let dyg = GpuTensor::from_slice(&ctx, &dy, shape)?;
            let (out, plan) = match op {
                Op::LayerNorm => (
                    ln.forward(&ctx, &xg, Some(&gg), Some(&bg))?,
                    ln.plan(&ctx, shape)?.describe(),
                ),
                Op::RmsNorm => (
                    rms.forward(&ctx, &xg, Some(&gg))?,
                    rms.plan(&ctx, shape)?.describe(),
                ),
                Op::LayerNormBackward => {
                    let s = ln.forward_with_stats(&ctx, &xg, Some(&gg), Some(&bg))?;
                    let stats = Some((&s.mean, &s.rstd));
                    let grads = ln.backward(&ctx, &xg, &dyg, Some(&gg), stats)?;
                    (grads.dx, ln.backward_plan(&ctx, shape)?.describe())
                }
                Op::RmsNormBackward => {
                    let (_, rstd) = rms.forward_with_rstd(&ctx, &xg, Some(&gg))?;
                    let grads = rms.backward(&ctx, &xg, &dyg, Some(&gg), Some(&rstd))?;
                    (grads.dx, ln.backward_plan(&ctx, shape)?.describe())
                }
            };
            Ok((out.read(&ctx)?, plan))
        })();
        outcomes.push(match result {
            Ok((y, kernel)) => Outcome {
                name,
                y: Some(y),
                detail: kernel,
            },
            Err(e) => Outcome {
                name,
                y: None,
                detail: format!("error: {e}"),
            },
        });
    }

    let output = if op.is_backward() { "dx" } else { "y" };
    println!(
        "{} of {} (mean offset 1000) on {} adapter(s): {output} against the f64 reference, tolerance {tol:.3e}",
        op.name(),
        shape_string(shape),
        outcomes.len()
    );
    println!(
        "{:<48} {:>14}  {:<6} kernel",
        "adapter",
        format!("max |{output} - ref|"),
        "result"
    );
    let mut failed = 0;
    for o in &outcomes {
        match &o.y {
            Some(y) => {
                let err = reference::max_abs_error(y, &want);
                let ok = err <= tol;
                failed += usize::from(!ok);
                println!(
                    "{:<48} {:>14.3e}  {:<6} {}",
                    o.name,
                    err,
                    if ok { "ok" } else { "FAILED" },
                    o.detail
                );
            }
            None => {
                failed += 1;
                println!("{:<48} {:>14}  {:<6} {}", o.name, "-", "FAILED", o.detail);
            }
        }
    }
    let ran: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.y.as_ref().map(|y| (&o.name, y)))
        .collect();
    for (i, (a, ya)) in ran.iter().enumerate() {
        for (b, yb) in ran.iter().skip(i + 1) {
            let yb64: Vec<f64> = yb.iter().map(|&v| v as f64).collect();
            let diff = reference::max_abs_error(ya, &yb64);
            let ok = diff <= 2.0 * tol;
            failed += usize::from(!ok);
            println!(
                "{a} vs {b}: max |difference| {diff:.3e} {}",
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    if failed > 0 {
        return Err(CliError::Failed(format!("{failed} comparison(s) failed")));
    }
    Ok(())
}
