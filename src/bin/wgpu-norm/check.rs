//! `wgpu-norm check`: the same inputs on every adapter, each compared with the
//! f64 reference and with each other, for any of the ops.

use wgpu_norm::{
    BatchNorm, BatchNormGradIo, BatchNormIo, ChannelNormGradIo, ChannelNormIo, Context,
    ContextOptions, GpuTensor, GroupNorm, GroupedNorm, InstanceNorm, LayerNorm, LpNorm,
    LpNormGradIo, LpNormIo, RmsNorm, reference, synthetic,
};

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
    /// rms-norm-backward (dx compared, after the forward's saved statistics);
    /// group-norm, instance-norm, batch-norm (training mode: the batch's
    /// statistics), lp-norm (p 2, last axis) and their -backward (dx). The
    /// grouped ops read the shape as [N, C, spatial...].
    #[arg(long, value_enum, default_value = "layer-norm")]
    op: Op,
    /// group-norm: the number of groups (default: the largest divisor of C
    /// that is at most 32).
    #[arg(long)]
    num_groups: Option<usize>,
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
    /// GroupNorm forward.
    GroupNorm,
    /// GroupNorm backward (dx).
    GroupNormBackward,
    /// InstanceNorm forward.
    InstanceNorm,
    /// InstanceNorm backward (dx).
    InstanceNormBackward,
    /// BatchNorm forward, training mode.
    BatchNorm,
    /// BatchNorm backward, training mode (dx).
    BatchNormBackward,
    /// LpNorm forward, p 2, last axis.
    LpNorm,
    /// LpNorm backward (dx).
    LpNormBackward,
}

impl Op {
    fn is_backward(self) -> bool {
        self.name().ends_with("-backward")
    }

    fn name(self) -> &'static str {
        match self {
            Op::LayerNorm => "layer-norm",
            Op::RmsNorm => "rms-norm",
            Op::LayerNormBackward => "layer-norm-backward",
            Op::RmsNormBackward => "rms-norm-backward",
            Op::GroupNorm => "group-norm",
            Op::GroupNormBackward => "group-norm-backward",
            Op::InstanceNorm => "instance-norm",
            Op::InstanceNormBackward => "instance-norm-backward",
            Op::BatchNorm => "batch-norm",
            Op::BatchNormBackward => "batch-norm-backward",
            Op::LpNorm => "lp-norm",
            Op::LpNormBackward => "lp-norm-backward",
        }
    }

    /// Whether it is one of the grouped normalisations.
    fn is_grouped(self) -> bool {
        !matches!(
            self,
            Op::LayerNorm | Op::RmsNorm | Op::LayerNormBackward | Op::RmsNormBackward
        )
    }
}

/// The grouped ops' data as the oracles see it: `[n, c, spatial]`.
struct Grouped {
    n: usize,
    c: usize,
    spatial: usize,
    groups: usize,
}

impl Grouped {
    fn of(shape: &[usize], groups: Option<usize>) -> CliResult<Self> {
        if shape.len() < 2 {
            return Err(CliError::Input(format!(
                "the grouped ops need a shape [N, C, spatial...], got {}",
                shape_string(shape)
            )));
        }
        let (n, c) = (shape[0], shape[1]);
        let groups =
            groups.unwrap_or_else(|| (1..=c.min(32)).rev().find(|g| c % g == 0).unwrap_or(1));
        if groups == 0 || c % groups != 0 {
            return Err(wgpu_norm::Error::InvalidParameter {
                op: "group_norm",
                what: "num_groups",
                value: groups.to_string(),
                expected: format!("a divisor of the {c} channels"),
            }
            .into());
        }
        Ok(Grouped {
            n,
            c,
            spatial: shape[2..].iter().product(),
            groups,
        })
    }
}

/// The f64 reference and its absolute tolerance of a grouped op: 2e-6 of
/// the output's scale for a forward, 8e-6 for dx, whose scale is at least
/// max(rstd) · max|dy| · max|scale| (`tests/gpu/grouped/mod.rs` says why).
fn grouped_reference(
    op: Op,
    g: &Grouped,
    shape: &[usize],
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f64>, f64) {
    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (xf, dyf) = (f(x), f(dy));
    let (sp, bp) = (Some(gamma), Some(beta));
    let max = |v: &[f64]| {
        v.iter()
            .filter(|a| a.is_finite())
            .fold(1.0f64, |m, a| m.max(a.abs()))
    };
    let groups = match op {
        Op::InstanceNorm | Op::InstanceNormBackward => g.c,
        _ => g.groups,
    };
    let gn =
        || reference::group_norm_f64(&xf, g.n, g.c, g.spatial, groups, sp, bp, 1e-5, false, false);
    let grad_scale = |rstd: f64| {
        rstd * dy.iter().fold(0.0f64, |m, &a| m.max((a as f64).abs()))
            * gamma.iter().fold(0.0f64, |m, &a| m.max((a as f64).abs()))
    };
    let max_of = |v: &[f64]| {
        v.iter()
            .filter(|a| a.is_finite())
            .fold(0.0f64, |m, &a| m.max(a))
    };
    match op {
        Op::GroupNorm | Op::InstanceNorm => {
            let y = gn().y;
            let tol = 2e-6 * max(&y);
            (y, tol)
        }
        Op::GroupNormBackward | Op::InstanceNormBackward => {
            let rstd = max_of(&gn().rstd);
            let dx = reference::group_norm_backward_f64(
                &xf, &dyf, g.n, g.c, g.spatial, groups, sp, bp, 1e-5, false, false,
            )
            .dx;
            let tol = 8e-6 * max(&dx).max(grad_scale(rstd));
            (dx, tol)
        }
        Op::BatchNorm | Op::BatchNormBackward => {
            let zeros = vec![0.0; g.c];
            let r = reference::batch_norm_training_f64(
                &xf, g.n, g.c, g.spatial, sp, bp, 1e-5, 0.9, &zeros, &zeros, false,
            );
            if op == Op::BatchNorm {
                let tol = 2e-6 * max(&r.y);
                return (r.y, tol);
            }
            let rstd = r
                .batch_var
                .iter()
                .fold(0.0f64, |m, v| m.max(1.0 / (v + 1e-5).sqrt()));
            let dx =
                reference::batch_norm_backward_f64(&xf, &dyf, g.n, g.c, g.spatial, sp, 1e-5, None)
                    .dx;
            let tol = 8e-6 * max(&dx).max(grad_scale(rstd));
            (dx, tol)
        }
        _ => {
            let axis = shape.len() - 1;
            match op {
                Op::LpNorm => {
                    let y = reference::lp_norm_f64(&xf, shape, axis, 2);
                    (y, 2e-6)
                }
                _ => {
                    let dx = reference::lp_norm_backward_f64(&xf, &dyf, shape, axis, 2);
                    let tol = 8e-6 * max(&dx);
                    (dx, tol)
                }
            }
        }
    }
}

/// Runs a grouped op on `ctx` and returns its y (or dx) and a description.
fn run_grouped(
    ctx: &Context,
    op: Op,
    g: &Grouped,
    t: [&GpuTensor; 4],
) -> wgpu_norm::Result<(GpuTensor, String)> {
    let [x, dy, gamma, beta] = t;
    let out = GpuTensor::zeros(ctx, x.shape())?;
    let fwd = ChannelNormIo::new(x, &out)
        .with_scale(gamma)
        .with_bias(beta);
    let grads = ChannelNormGradIo::new(x, dy, &out).with_params(Some(gamma), Some(beta));
    match op {
        Op::GroupNorm => GroupNorm::new(g.groups).forward_into(ctx, &fwd)?,
        Op::GroupNormBackward => GroupNorm::new(g.groups).backward_into(ctx, &grads)?,
        Op::InstanceNorm => InstanceNorm::new().forward_into(ctx, &fwd)?,
        Op::InstanceNormBackward => InstanceNorm::new().backward_into(ctx, &grads)?,
        Op::BatchNorm => {
            let zeros = GpuTensor::zeros(ctx, &[g.c])?;
            let io = BatchNormIo::new(x, &out, &zeros, &zeros).with_params(Some(gamma), Some(beta));
            BatchNorm::training().forward_into(ctx, &io)?
        }
        Op::BatchNormBackward => {
            let io = BatchNormGradIo {
                grads,
                input_mean: None,
                input_var: None,
            };
            BatchNorm::training().backward_into(ctx, &io)?
        }
        Op::LpNorm => LpNorm::new().forward_into(ctx, &LpNormIo { x, y: &out })?,
        _ => LpNorm::new().backward_into(ctx, &LpNormGradIo { x, dy, dx: &out })?,
    }
    let what = match op {
        Op::GroupNorm | Op::GroupNormBackward => format!("{} groups", g.groups),
        Op::InstanceNorm | Op::InstanceNormBackward => "a group per channel".to_string(),
        Op::BatchNorm | Op::BatchNormBackward => "training mode".to_string(),
        _ => "p 2, last axis".to_string(),
    };
    Ok((out, what))
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
    let op = args.op;
    let grouped = op
        .is_grouped()
        .then(|| Grouped::of(shape, args.num_groups))
        .transpose()?;
    if args.num_groups.is_some() && !matches!(op, Op::GroupNorm | Op::GroupNormBackward) {
        return Err(CliError::Input(format!(
            "--num-groups is a parameter of group-norm, not of {}",
            op.name()
        )));
    }
    let cols = match &grouped {
        Some(g) if op != Op::LpNorm && op != Op::LpNormBackward => g.c,
        _ => *shape.last().expect("Shape gives at least one dim"),
    };
    let n: usize = shape.iter().product();
    // A large mean offset makes the check sensitive to cancellation.
    let x = synthetic::normal(args.seed, n, 1000.0, 1.0);
    let gamma = synthetic::normal(args.seed + 1, cols, 1.0, 0.1);
    let beta = synthetic::normal(args.seed + 2, cols, 0.0, 0.1);
    let dy = synthetic::normal(args.seed + 3, n, 0.0, 1.0);
    // The reference output and its stated tolerance (see `wgpu_norm::reference`).
    let (want, tol): (Vec<f64>, f64) = match op {
        _ if grouped.is_some() => {
            let g = grouped.as_ref().expect("checked");
            grouped_reference(op, g, shape, &x, &dy, &gamma, &beta)
        }
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
        _ => {
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
                _ if grouped.is_some() => {
                    let g = grouped.as_ref().expect("checked");
                    run_grouped(&ctx, op, g, [&xg, &dyg, &gg, &bg])?
                }
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
                _ => {
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
