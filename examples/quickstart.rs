//! Layer-norm of a [batch, time_step, dim] tensor, checked against the f64 reference.
//!
//! `cargo run --release --example quickstart` (pick an adapter with WGPU_BACKEND=vulkan|gl).

use wgpu_norm::{Context, GpuTensor, LayerNorm, reference};

fn main() -> Result<(), wgpu_norm::Error> {
    // Opens the best adapter (WGPU_BACKEND / WGPU_ADAPTER_NAME are honoured).
    let ctx = Context::new()?;
    println!(
        "adapter: {} ({:?})",
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    );

    let (batch, time_step, dim) = (2, 3, 10);
    let x: Vec<f32> = (0..batch * time_step * dim)
        .map(|i| (i as f32 * 0.37).sin() * 4.0 + 100.0)
        .collect();
    let gamma: Vec<f32> = (0..dim).map(|c| 1.0 + c as f32 / dim as f32).collect();
    let beta = vec![0.5f32; dim];

    let x_gpu = GpuTensor::from_slice(&ctx, &x, &[batch, time_step, dim])?;
    let gamma_gpu = GpuTensor::from_slice(&ctx, &gamma, &[dim])?;
    let beta_gpu = GpuTensor::from_slice(&ctx, &beta, &[dim])?;

    // Submits, waits, and hands back y together with the per-row mean and rstd.
    let out =
        LayerNorm::new().forward_with_stats(&ctx, &x_gpu, Some(&gamma_gpu), Some(&beta_gpu))?;
    let y = out.y.read(&ctx)?;
    let mean = out.mean.read(&ctx)?;

    let want = reference::layer_norm(&x, dim, Some(&gamma), Some(&beta), 1e-5);
    let max_err = y
        .iter()
        .zip(&want.y)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    println!("y[0..4] = {:?}", &y[..4]);
    println!("mean of row 0 = {} (reference {})", mean[0], want.mean[0]);
    println!("max |y - reference| = {max_err:.3e}");
    Ok(())
}
