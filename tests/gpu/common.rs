//! Shared contexts and the comparison every test uses.

use std::sync::LazyLock;

use wgpu_norm::{Context, Error, GpuTensor, Kernel, LayerNorm, reference};

const HOW_TO_GET_AN_ADAPTER: &str = "no wgpu adapter: install Mesa's software adapters \
(`apt-get install -y mesa-vulkan-drivers` brings lavapipe; llvmpipe GL comes with libgl1-mesa-dri / libegl-mesa0) \
and pick one with WGPU_BACKEND=vulkan or WGPU_BACKEND=gl; SwiftShader comes with Debian's chromium package \
(`apt-get install -y chromium`, then VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json WGPU_BACKEND=vulkan)";

/// Held by every in-process GPU test on the GL backend, so that they run one
/// at a time there: wgpu's GL backend keeps one context lock per device for
/// the whole of a submission (llvmpipe runs the kernel inside it) and panics
/// when another thread waits more than a second for it ("Could not lock
/// adapter context", gfx-rs/wgpu#5299). On other backends tests run in
/// parallel. Reentrant, so helpers may take it again.
pub fn gl_serial() -> Option<parking_lot::ReentrantMutexGuard<'static, ()>> {
    static SERIAL: parking_lot::ReentrantMutex<()> = parking_lot::ReentrantMutex::new(());
    (ctx().adapter_info().backend == wgpu::Backend::Gl).then(|| SERIAL.lock())
}

/// The context every test shares (several threads use it at once).
pub fn ctx() -> &'static Context {
    static CTX: LazyLock<Context> =
        LazyLock::new(|| Context::new().unwrap_or_else(|e| panic!("{e}\n{HOW_TO_GET_AN_ADAPTER}")));
    &CTX
}

/// Every kernel this adapter can run: all of them where it has subgroups,
/// the others elsewhere (the refusal of the subgroup kernels there is tested
/// in `context.rs`).
pub fn kernels(ctx: &Context) -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| !k.needs_subgroups() || ctx.capabilities().subgroups.is_some())
        .collect()
}

/// Whether `op` takes rows of `cols` values. A forced kernel refuses rows
/// longer than its maximum with `KernelUnsuitable` (asserted here), and the
/// default plan takes any length.
pub fn takes(ctx: &Context, op: LayerNorm, cols: usize) -> bool {
    if op.kernel.is_none() {
        return true;
    }
    match op.with_axis(-1).plan(ctx, &[1, cols]) {
        Ok(_) => true,
        Err(Error::KernelUnsuitable { .. })
            if cols > op.kernel.map_or(usize::MAX, |k| k.max_dim()) =>
        {
            false
        }
        Err(e) => panic!("{:?} cannot plan rows of {cols}: {e}", op.kernel),
    }
}

pub fn backend(ctx: &Context) -> String {
    format!("{:?}", ctx.adapter_info().backend)
}

/// The GPU's y, mean and rstd for one forward.
pub struct Forward {
    pub y: Vec<f32>,
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

pub fn forward(
    ctx: &Context,
    op: LayerNorm,
    shape: &[usize],
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> Forward {
    let cols = op.rows_cols(shape).unwrap().1;
    let xg = GpuTensor::from_slice(ctx, x, shape).unwrap();
    let gg = gamma.map(|g| GpuTensor::from_slice(ctx, g, &[cols]).unwrap());
    let bg = beta.map(|b| GpuTensor::from_slice(ctx, b, &[cols]).unwrap());
    let out = op
        .forward_with_stats(ctx, &xg, gg.as_ref(), bg.as_ref())
        .unwrap();
    Forward {
        y: out.y.read(ctx).unwrap(),
        mean: out.mean.read(ctx).unwrap(),
        rstd: out.rstd.read(ctx).unwrap(),
    }
}

/// Runs one forward and asserts y, mean and rstd against the f64 reference.
/// Returns y's max error.
///
/// Tolerances: y as `reference::layer_norm_tolerance`; mean within
/// 4 f32 ulps of |mean| plus 1e-5 of the row's standard deviation; rstd within
/// a relative 2e-5 (f32 sums over up to 2^21 values plus an approximate
/// `inverseSqrt`). Rows whose reference is not finite must match as NaN/Inf.
#[allow(clippy::too_many_arguments)]
pub fn check(
    class: &str,
    ctx: &Context,
    op: LayerNorm,
    shape: &[usize],
    x: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
) -> f64 {
    let (_, cols) = op.rows_cols(shape).unwrap();
    if !takes(ctx, op, cols) {
        return 0.0;
    }
    let got = forward(ctx, op, shape, x, gamma, beta);
    let want = reference::layer_norm(x, cols, gamma, beta, op.epsilon as f64);
    let tol = reference::layer_norm_tolerance(x, &want, gamma, beta);
    let err = reference::max_abs_error(&got.y, &want.y);
    eprintln!(
        "[max-error] {} {class} {shape:?} {:?}: y {err:.3e} (tolerance {tol:.3e})",
        backend(ctx),
        op.kernel
    );
    assert!(
        err <= tol,
        "{class} {shape:?} {:?}: max |y - ref| {err:.3e} > {tol:.3e}",
        op.kernel
    );
    for (r, ((&m, &s), (&wm, &ws))) in got
        .mean
        .iter()
        .zip(&got.rstd)
        .zip(want.mean.iter().zip(&want.rstd))
        .enumerate()
    {
        if !wm.is_finite() || !ws.is_finite() {
            // A row holding NaN or Inf: both statistics are NaN (or Inf),
            // as ONNX and PyTorch give them.
            assert!(
                !m.is_finite() && !s.is_finite(),
                "{class} row {r}: mean {m} and rstd {s}, the reference's {wm} {ws}: both must be non-finite"
            );
            continue;
        }
        let mean_tol = 4.0 * f32::EPSILON as f64 * wm.abs() + 1e-5 / ws;
        assert!(
            (m as f64 - wm).abs() <= mean_tol,
            "{class} row {r}: mean {m} vs {wm} (tolerance {mean_tol:.3e})"
        );
        let rel = (s as f64 - ws).abs() / ws;
        assert!(
            rel <= 2e-5,
            "{class} row {r}: rstd {s} vs {ws} (relative error {rel:.3e})"
        );
    }
    err
}
