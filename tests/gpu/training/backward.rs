//! Both backwards against analytic gradients: every dx kernel and dim,
//! shape classes, NaN rows, tensors over one binding.

use wgpu_norm::{
    BackwardKernel, Context, ContextOptions, DType, GpuTensor, LayerNorm, reference, synthetic,
};

use crate::common::{ctx, gl_serial};

use super::*;

#[test]
fn backward_every_kernel_and_dim_matches_analytic_gradients() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in backward_kernels(ctx) {
        for op in [Op::layer(), Op::rms()] {
            let op = op.with_backward_kernel(kernel);
            for (i, &dim) in [1usize, 2, 3, 5, 7, 33, 255, 256, 1025, 4097, 16_384]
                .iter()
                .enumerate()
            {
                let rows = 3;
                let seed = 3000 + i as u64;
                let x = synthetic::normal(seed, rows * dim, 0.5, 2.0);
                let dy = synthetic::normal(seed + 1, rows * dim, 0.0, 1.0);
                let g = synthetic::normal(seed + 2, dim, 1.0, 0.5);
                let gamma = (i % 2 == 0).then_some(&g[..]);
                check_backward(
                    "dims",
                    ctx,
                    op,
                    &[rows, dim],
                    &x,
                    &dy,
                    gamma,
                    i % 3 == 0,
                    DType::F32,
                );
            }
            // Rows of several pieces for the split-row kernels (8,192 values a piece).
            if matches!(kernel, BackwardKernel::SplitRow(_)) {
                for dim in [20_000usize, 65_537] {
                    let x = synthetic::normal(dim as u64, 2 * dim, 0.5, 2.0);
                    let dy = synthetic::normal(dim as u64 + 1, 2 * dim, 0.3, 1.0);
                    let shape = [2, dim];
                    check_backward("pieces", ctx, op, &shape, &x, &dy, None, false, DType::F32);
                }
            }
        }
    }
}

#[test]
fn backward_shape_classes() {
    let _serial = gl_serial();
    let ctx = ctx();
    for op in [Op::layer(), Op::rms()] {
        // More than 65,535 rows (dgamma over 70,000 rows in two stages).
        for dim in [3usize, 33] {
            let rows = 70_000;
            let x = synthetic::normal(51, rows * dim, 0.0, 1.0);
            let dy = synthetic::normal(52, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(53, dim, 1.0, 0.5);
            check_backward(
                "70000 rows",
                ctx,
                op,
                &[rows, dim],
                &x,
                &dy,
                Some(&g),
                true,
                DType::F32,
            );
        }
        // A huge row.
        let dim = (1 << 21) + 3;
        let x = synthetic::normal(54, dim, 0.0, 1.0);
        let dy = synthetic::normal(55, dim, 0.0, 1.0);
        check_backward(
            "huge row",
            ctx,
            op,
            &[1, dim],
            &x,
            &dy,
            None,
            false,
            DType::F32,
        );
        // 10000 + N(0, 1), with saved and with recomputed statistics.
        let (rows, dim) = (4usize, 1027usize);
        let x: Vec<f32> = synthetic::normal(56, rows * dim, 0.0, 1.0)
            .iter()
            .map(|v| v + 10_000.0)
            .collect();
        // dy with a mean of 1: a saved mean that is off shifts dx by about
        // that error times mean(g), which the re-centring removes.
        let dy = synthetic::normal(57, rows * dim, 1.0, 1.0);
        for saved in [true, false] {
            check_backward(
                "offset 10000",
                ctx,
                op,
                &[rows, dim],
                &x,
                &dy,
                None,
                saved,
                DType::F32,
            );
        }
        // Constant rows.
        let mut x = synthetic::normal(58, rows * dim, 0.0, 1.0);
        x[..2 * dim].fill(-2.25);
        check_backward(
            "constant rows",
            ctx,
            op,
            &[rows, dim],
            &x,
            &dy,
            None,
            false,
            DType::F32,
        );
    }
}

#[test]
fn backward_nan_stays_in_its_row() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (4usize, 37usize);
    let mut x = synthetic::normal(61, rows * dim, 0.0, 1.0);
    x[dim + 3] = f32::NAN;
    x[2 * dim + 7] = f32::INFINITY;
    let dy = synthetic::normal(62, rows * dim, 0.0, 1.0);
    let xg = GpuTensor::from_slice(ctx, &x, &[rows, dim]).unwrap();
    let dyg = GpuTensor::from_slice(ctx, &dy, &[rows, dim]).unwrap();
    let want = reference::norm_backward(&x, &dy, dim, None, 1e-5, false);
    let dx = LayerNorm::new()
        .backward(ctx, &xg, &dyg, None, None)
        .unwrap()
        .dx
        .read(ctx)
        .unwrap();
    for r in [0, 3] {
        let row = r * dim..(r + 1) * dim;
        let err = reference::max_abs_error(&dx[row.clone()], &want.dx[row]);
        assert!(err < 1e-4, "finite row {r}: dx error {err:.3e}");
    }
    for r in [1, 2] {
        assert!(
            dx[r * dim..(r + 1) * dim].iter().all(|v| !v.is_finite()),
            "row {r} holds a NaN/Inf: its dx must not be finite"
        );
    }
}

#[test]
fn backward_over_the_binding_limit_is_chunked() {
    // A device limited to 256 KiB bindings: 300 x 515 f32 (618 KB) needs
    // three chunks for x, dy and dx, and the dgamma parts span them.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = 256 << 10;
    let small = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let (rows, dim) = (300usize, 515usize);
    let x = synthetic::normal(91, rows * dim, 1.0, 1.0);
    let dy = synthetic::normal(92, rows * dim, 0.0, 1.0);
    let g = synthetic::normal(93, dim, 1.0, 0.3);
    let r = synthetic::normal(94, rows * dim, 0.0, 1.0);
    for op in [Op::layer(), Op::rms()] {
        check_backward(
            "over the binding limit",
            &small,
            op,
            &[rows, dim],
            &x,
            &dy,
            Some(&g),
            false,
            DType::F32,
        );
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: Some(&g),
            beta: None,
            residual: None,
        };
        check_forward("over the binding limit", &small, op, &inp, DType::F32);
        let inp = Inputs {
            residual: Some((&r, Some(&g))),
            ..inp
        };
        check_forward("over the binding limit", &small, op, &inp, DType::F32);
    }
}
