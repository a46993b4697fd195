//! RMSNorm and the fused residual forward, every kernel, dim and shape class.

use wgpu_norm::{DType, synthetic};

use crate::common::{ctx, gl_serial, kernels};

use super::*;

#[test]
fn rms_norm_every_kernel_and_dim() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        for (i, &dim) in [1usize, 2, 3, 5, 7, 33, 64, 257, 1025, 2048, 4097]
            .iter()
            .enumerate()
        {
            if dim > kernel.max_dim() {
                continue;
            }
            for rows in [1usize, 3, 13] {
                let seed = 1000 + (i * 10 + rows) as u64;
                let x = synthetic::normal(seed, rows * dim, 0.5, 2.0);
                let g = synthetic::normal(seed + 1, dim, 1.0, 0.5);
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: (rows == 1).then_some(&g[..]),
                    beta: None,
                    residual: None,
                };
                check_forward("rms", ctx, Op::rms().with_kernel(kernel), &inp, DType::F32);
            }
        }
    }
}

#[test]
fn fused_residual_every_kernel_both_norms() {
    let _serial = gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        for op in [Op::layer(), Op::rms()] {
            // 64 and 2048 are whole vec4s: the vec4 paths (VEC4_ROWS), with
            // 11 rows for a block of 3 at the end.
            for (i, &dim) in [1usize, 3, 33, 257, 1025, 4097, 64, 2048]
                .iter()
                .enumerate()
            {
                if dim > kernel.max_dim() {
                    continue;
                }
                let rows = if dim % 4 == 0 { 11 } else { 3 };
                let seed = 2000 + i as u64;
                let x = synthetic::normal(seed, rows * dim, 0.0, 1.0);
                let r = synthetic::normal(seed + 1, rows * dim, 1.0, 2.0);
                let bias = synthetic::normal(seed + 2, dim, 0.0, 0.5);
                let g = synthetic::normal(seed + 3, dim, 1.0, 0.5);
                let b = synthetic::normal(seed + 4, dim, 0.0, 0.5);
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: Some(&g),
                    beta: (!op.is_rms()).then_some(&b[..]),
                    residual: Some((&r, (i % 2 == 0).then_some(&bias[..]))),
                };
                check_forward("residual", ctx, op.with_kernel(kernel), &inp, DType::F32);
            }
        }
    }
}

#[test]
fn forward_family_shape_classes() {
    // More than 65,535 rows, a huge row, a large offset, constant rows, and
    // NaN/Inf confined to their rows: RMSNorm, and the fused residual of both.
    let _serial = gl_serial();
    let ctx = ctx();
    for op in [Op::layer(), Op::rms()] {
        for (class, rows, dim) in [
            ("70000 rows", 70_000usize, 3usize),
            ("huge row", 1, (1 << 21) + 3),
        ] {
            let x = synthetic::normal(31, rows * dim, 0.5, 1.0);
            let r = synthetic::normal(32, rows * dim, 0.0, 1.0);
            let g = synthetic::normal(33, dim, 1.0, 0.5);
            let residual = Some((&r[..], Some(&g[..])));
            for residual in [None, residual] {
                let inp = Inputs {
                    shape: &[rows, dim],
                    x: &x,
                    gamma: Some(&g),
                    beta: None,
                    residual,
                };
                check_forward(class, ctx, op, &inp, DType::F32);
            }
        }
        // 10000 + N(0, 1): accurate like centred data (RMSNorm's mean square
        // is dominated by the offset; its rows are nearly constant).
        let (rows, dim) = (4usize, 1027usize);
        let x: Vec<f32> = synthetic::normal(41, rows * dim, 0.0, 1.0)
            .iter()
            .map(|v| v + 10_000.0)
            .collect();
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: None,
            beta: None,
            residual: None,
        };
        check_forward("offset 10000", ctx, op, &inp, DType::F32);
        // Constant rows, and NaN / Inf rows among finite ones.
        let mut x = synthetic::normal(42, rows * dim, 0.0, 1.0);
        x[..dim].fill(3.5);
        x[dim + 5] = f32::NAN;
        x[2 * dim + 9] = f32::INFINITY;
        let inp = Inputs {
            shape: &[rows, dim],
            x: &x,
            gamma: None,
            beta: None,
            residual: None,
        };
        check_forward("constant/NaN/Inf rows", ctx, op, &inp, DType::F32);
    }
}
