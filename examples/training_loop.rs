//! A training-style loop with ticks: every step runs a pre-LN block's
//! normalisation on a batch of [batch, time_step, dim] activations (the
//! residual add fused with the layer norm, saving mean and rstd) and then its
//! backward (dx, and dgamma/dbeta by the deterministic two-stage reduction).
//! The step counter is stamped on each record, a summary is printed at the
//! end of every epoch, and a Chrome trace (open it in https://ui.perfetto.dev
//! or chrome://tracing) is written at the end.
//!
//! `cargo run --release --example training_loop [TRACE.json]`

use wgpu_norm::{
    Context, GpuTensor, LayerNorm, LayerNormGradIo, LayerNormIo, NormOp, Report, ResidualAdd,
    Ticks, TicksSettings, synthetic,
};

fn main() -> Result<(), wgpu_norm::Error> {
    let ctx = Context::new()?;
    let (batch, time_step, dim) = (4, 128, 768);
    let (epochs, steps_per_epoch) = (3u64, 8u64);
    println!(
        "{} ({:?})",
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    );

    let shape = [batch, time_step, dim];
    let n = batch * time_step * dim;
    let x = GpuTensor::zeros(&ctx, &shape)?;
    let residual = GpuTensor::from_slice(&ctx, &synthetic::normal(3, n, 0.0, 1.0), &shape)?;
    let sum = GpuTensor::zeros(&ctx, &shape)?;
    let y = GpuTensor::zeros(&ctx, &shape)?;
    // The upstream gradient a real model's next layer would produce.
    let dy = GpuTensor::from_slice(&ctx, &synthetic::normal(4, n, 0.0, 1.0), &shape)?;
    let dx = GpuTensor::zeros(&ctx, &shape)?;
    let dgamma = GpuTensor::zeros(&ctx, &[dim])?;
    let dbeta = GpuTensor::zeros(&ctx, &[dim])?;
    let gamma = GpuTensor::from_slice(&ctx, &synthetic::normal(1, dim, 1.0, 0.1), &[dim])?;
    let beta = GpuTensor::from_slice(&ctx, &synthetic::normal(2, dim, 0.0, 0.1), &[dim])?;
    let mean = GpuTensor::zeros(&ctx, &[batch, time_step, 1])?;
    let rstd = GpuTensor::zeros(&ctx, &[batch, time_step, 1])?;
    let layer_norm = LayerNorm::new();

    let mut ticks = Ticks::new(&ctx, TicksSettings::default());
    println!("timing source: {}", ticks.timing_source().as_str());
    for epoch in 0..epochs {
        ticks.set_epoch(epoch);
        for step in 0..steps_per_epoch {
            // The tick: the global step index, stamped on every record of this step.
            ticks.set_step(epoch * steps_per_epoch + step);
            // New activations for this step (a real model would produce them on the GPU).
            x.write(&ctx, &synthetic::normal(epoch * 1000 + step, n, 0.0, 1.0))?;
            let mut encoder = ctx.device().create_command_encoder(&Default::default());
            {
                // Scopes close when their guards are dropped.
                let mut step = ticks.scope("step");
                {
                    let mut forward = step.scope("forward");
                    // s = x + residual, y = layer_norm(s), in one pass.
                    let io = LayerNormIo {
                        gamma: Some(&gamma),
                        beta: Some(&beta),
                        mean: Some(&mean),
                        rstd: Some(&rstd),
                        residual: Some(ResidualAdd {
                            residual: &residual,
                            bias: None,
                            sum: Some(&sum),
                        }),
                        ..LayerNormIo::new(&x, &y)
                    };
                    layer_norm.encode_ticked(&ctx, &mut encoder, &io, &mut forward)?;
                }
                let mut backward = step.scope("backward");
                // The gradients with respect to the normalised input s,
                // from the statistics the forward saved.
                let io = LayerNormGradIo {
                    x: &sum,
                    dy: &dy,
                    gamma: Some(&gamma),
                    mean: Some(&mean),
                    rstd: Some(&rstd),
                    dx: &dx,
                    dgamma: Some(&dgamma),
                    dbeta: Some(&dbeta),
                };
                layer_norm.encode_backward_ticked(&ctx, &mut encoder, &io, &mut backward)?;
            }
            // Resolves this step's timestamps, submits, and moves on without
            // waiting: results are read back a few steps later.
            ticks.submit(encoder)?;
        }
        // End of epoch: wait for its last steps, then summarise them.
        ticks.flush()?;
        let epoch_records: Vec<_> = ticks
            .records()
            .into_iter()
            .filter(|r| r.epoch == epoch)
            .collect();
        for pass in Report::new(&epoch_records).passes {
            println!(
                "epoch {epoch}: {} x {}  median {:.1} us  p95 {:.1} us  min {:.1} us",
                pass.count, pass.label, pass.median_us, pass.p95_us, pass.min_us
            );
        }
    }
    println!("\n{}", ticks.report().table());
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("wgpu-norm-training-trace.json"));
    std::fs::write(&path, ticks.chrome_trace()).expect("the trace file can be written");
    println!("trace written to {}", path.display());
    Ok(())
}
