//! Layer-norm forward against the f64 reference, on data that hurts.

use wgpu_norm::NormOp;
use wgpu_norm::{Context, ContextOptions, GpuTensor, Kernel, LayerNorm, reference, synthetic};

use crate::common::{check, ctx, forward, kernels};

/// The dims the issue names: tiny, odd, around powers of two, and long.
const DIMS: &[usize] = &[
    1, 2, 3, 4, 5, 7, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097,
    65537,
];

fn params(seed: u64, cols: usize) -> (Vec<f32>, Vec<f32>) {
    (
        synthetic::normal(seed, cols, 1.0, 0.5),
        synthetic::normal(seed + 1, cols, 0.0, 0.5),
    )
}

#[test]
fn every_dim_and_small_row_count_matches_the_reference() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        for (i, &dim) in DIMS.iter().enumerate() {
            // 7, 12 and 14 rows end in blocks of 7, 4 and 6 of the kernels
            // that take eight rows at a time.
            let row_counts: &[usize] = if dim < 65_536 {
                &[1, 2, 3, 7, 12, 14]
            } else {
                &[1, 2, 3]
            };
            for &rows in row_counts {
                let seed = (i * 10 + rows) as u64;
                let x = synthetic::normal(seed, rows * dim, 0.5, 2.0);
                let (g, b) = params(seed + 100, dim);
                check("normal", ctx, op, &[rows, dim], &x, Some(&g), Some(&b));
            }
        }
    }
}

#[test]
fn more_than_65535_rows() {
    // The grid's x dimension holds 65,535 workgroups; the rest go to y. The
    // kernels with a workgroup per row (or per piece) cost a few seconds per
    // 70,000 rows on the software adapters, so they check one dim here; the
    // barrier-free kernels check four.
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        let dims: &[usize] = match kernel {
            Kernel::RowPerLane | Kernel::RowPerSubgroup => &[1, 3, 33, 257],
            _ => &[3],
        };
        for &dim in dims {
            let rows = 70_000;
            let x = synthetic::normal(dim as u64, rows * dim, -1.0, 3.0);
            let (g, b) = params(7, dim);
            check("70000 rows", ctx, op, &[rows, dim], &x, Some(&g), Some(&b));
        }
    }
}

#[test]
fn huge_rows() {
    let _serial = crate::common::gl_serial();
    // 2^21 values per row: 2,048 vec4 per lane per pass at 256 lanes, far from
    // llvmpipe's 65,535-iteration cap on an invocation's loops.
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        for (rows, dim) in [(2usize, 1usize << 21), (1, (1 << 21) + 3)] {
            let x = synthetic::normal(3, rows * dim, 0.0, 1.0);
            let (g, b) = params(5, dim);
            check("huge row", ctx, op, &[rows, dim], &x, Some(&g), Some(&b));
        }
    }
}

#[test]
fn large_mean_offset_keeps_the_accuracy_of_centred_data() {
    let _serial = crate::common::gl_serial();
    // 10000 + N(0,1): E[x²] − E[x]² in f32 would lose every digit here. The
    // same tolerance as for centred data applies, and the error must stay
    // within a small factor of the centred data's.
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        for dim in [768usize, 4097, 65537] {
            let noise = synthetic::normal(11, 4 * dim, 0.0, 1.0);
            let offset: Vec<f32> = noise.iter().map(|v| v + 10_000.0).collect();
            let centred = check("centred", ctx, op, &[4, dim], &noise, None, None);
            let shifted = check("offset 10000", ctx, op, &[4, dim], &offset, None, None);
            assert!(
                shifted <= 10.0 * centred.max(1e-6),
                "dim {dim}: offset error {shifted:.3e} vs centred {centred:.3e}"
            );
        }
    }
}

#[test]
fn constant_rows_give_beta_exactly() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        for dim in [1usize, 5, 768, 4097] {
            let values = [0.0f32, -3.5, 0.1, 12345.678, 1e-20];
            let x: Vec<f32> = values
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, dim))
                .collect();
            let (g, b) = params(dim as u64, dim);
            let got = forward(ctx, op, &[values.len(), dim], &x, Some(&g), Some(&b));
            for (r, row) in got.y.chunks(dim).enumerate() {
                assert_eq!(row, &b[..], "dim {dim} row {r} (constant {})", values[r]);
                assert_eq!(got.mean[r], values[r], "dim {dim} row {r}: mean");
                let want_rstd = 1.0 / (op.epsilon as f64).sqrt();
                assert!(
                    (got.rstd[r] as f64 - want_rstd).abs() / want_rstd < 1e-5,
                    "rstd {}",
                    got.rstd[r]
                );
            }
        }
    }
}

#[test]
fn nan_and_inf_stay_in_their_row() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        for dim in [1usize, 7, 1025] {
            let rows = 5;
            let mut x = synthetic::normal(dim as u64, rows * dim, 0.0, 1.0);
            x[dim + dim / 2] = f32::NAN; // row 1
            x[3 * dim] = f32::INFINITY; // row 3, first value (the pivot)
            let got = forward(ctx, op, &[rows, dim], &x, None, None);
            let want = reference::layer_norm(&x, dim, None, None, 1e-5);
            // The statistics of those rows are NaN too (ONNX, PyTorch), not
            // an rstd of 1/sqrt(epsilon); the other rows' are finite.
            for r in 0..rows {
                let bad = r == 1 || r == 3;
                assert_eq!(
                    (got.mean[r].is_finite(), got.rstd[r].is_finite()),
                    (!bad, !bad),
                    "{kernel:?} dim {dim} row {r}: mean {} rstd {}",
                    got.mean[r],
                    got.rstd[r]
                );
            }
            let xg = GpuTensor::from_slice(ctx, &x, &[rows, dim]).unwrap();
            let (_, rstd) = wgpu_norm::RmsNorm::new()
                .with_kernel(kernel)
                .forward_with_rstd(ctx, &xg, None)
                .unwrap();
            for (r, s) in rstd.read(ctx).unwrap().into_iter().enumerate() {
                let bad = r == 1 || r == 3;
                assert_eq!(
                    s.is_finite(),
                    !bad,
                    "RMSNorm {kernel:?} dim {dim} row {r}: rstd {s}"
                );
            }
            for r in 0..rows {
                let (g, w) = (
                    &got.y[r * dim..(r + 1) * dim],
                    &want.y[r * dim..(r + 1) * dim],
                );
                if r == 1 || r == 3 {
                    assert!(
                        g.iter().all(|v| v.is_nan()),
                        "dim {dim}: row {r} should be all NaN: {:?}",
                        &g[..g.len().min(4)]
                    );
                } else {
                    let err = reference::max_abs_error(g, w);
                    assert!(
                        err < 1e-4,
                        "dim {dim}: row {r} was disturbed by its neighbours: {err:.3e}"
                    );
                }
            }
            check("NaN/Inf rows", ctx, op, &[rows, dim], &x, None, None);
        }
    }
}

#[test]
fn gamma_and_beta_are_optional_each_alone() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for kernel in kernels(ctx) {
        let op = LayerNorm::new().with_kernel(kernel);
        let (rows, dim) = (3, 257);
        let x = synthetic::normal(21, rows * dim, 2.0, 0.5);
        let (g, b) = params(22, dim);
        for (gamma, beta) in [
            (None, None),
            (Some(&g[..]), None),
            (None, Some(&b[..])),
            (Some(&g[..]), Some(&b[..])),
        ] {
            check(
                "gamma/beta optional",
                ctx,
                op,
                &[rows, dim],
                &x,
                gamma,
                beta,
            );
        }
    }
}

#[test]
fn axis_normalises_trailing_dims() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let shape = [2usize, 3, 5, 7];
    let x = synthetic::normal(31, shape.iter().product(), 0.0, 1.0);
    for (axis, cols) in [(-1isize, 7usize), (-2, 35), (1, 105), (0, 210), (3, 7)] {
        let op = LayerNorm::new().with_axis(axis);
        assert_eq!(op.rows_cols(&shape).unwrap(), (210 / cols, cols));
        let (g, b) = params(32, cols);
        check("axis", ctx, op, &shape, &x, Some(&g), Some(&b));
        let stats = op.stats_shape(&shape).unwrap();
        assert_eq!(stats.iter().product::<usize>(), 210 / cols);
        assert!(stats[shape.len() - 1] == 1);
    }
}

#[test]
fn epsilon_is_inside_the_square_root() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    let x = synthetic::normal(41, 4 * 64, 0.0, 0.01);
    for eps in [0.0f32, 1e-5, 0.5, 3.0] {
        check(
            "epsilon",
            ctx,
            LayerNorm::new().with_epsilon(eps),
            &[4, 64],
            &x,
            None,
            None,
        );
    }
}

#[test]
fn tensor_over_the_binding_limit_is_chunked() {
    let _serial = crate::common::gl_serial();
    // 8200 x 4097 f32 = 134.4 MB > 128 MiB of max_storage_buffer_binding_size
    // (lavapipe's and llvmpipe GL's own; SwiftShader's 1 GiB is lowered to it
    // here): two dispatches, one per chunk.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(128 << 20);
    let limited = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let ctx = &limited;
    let (rows, dim) = (8200usize, 4097usize);
    let bytes = (rows * dim * 4) as u64;
    assert!(
        bytes > ctx.limits().max_storage_buffer_binding_size,
        "the test must exceed the binding limit"
    );
    let x = synthetic::normal(51, rows * dim, 3.0, 1.0);
    let (g, b) = params(52, dim);
    check(
        "over the binding limit",
        ctx,
        LayerNorm::new(),
        &[rows, dim],
        &x,
        Some(&g),
        Some(&b),
    );
}

#[test]
fn a_row_of_exactly_one_binding_runs_forward_and_backward() {
    let _serial = crate::common::gl_serial();
    // Bindings of 64 KiB, rows of 16,384 f32 (64 KiB): one row a chunk.
    let mut limits = ctx().limits().clone();
    limits.max_storage_buffer_binding_size = 64 << 10;
    let small = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let (rows, dim) = (3usize, 16_384usize);
    let x = synthetic::normal(61, rows * dim, 2.0, 1.5);
    let dy = synthetic::normal(62, rows * dim, 0.0, 1.0);
    let (g, b) = params(63, dim);
    check(
        "one binding a row",
        &small,
        LayerNorm::new(),
        &[rows, dim],
        &x,
        Some(&g),
        Some(&b),
    );
    let xg = GpuTensor::from_slice(&small, &x, &[rows, dim]).unwrap();
    let dyg = GpuTensor::from_slice(&small, &dy, &[rows, dim]).unwrap();
    let gg = GpuTensor::from_slice(&small, &g, &[dim]).unwrap();
    // dx alone: every row in a chunk of its own.
    let dx = GpuTensor::zeros(&small, &[rows, dim]).unwrap();
    let io = wgpu_norm::LayerNormGradIo {
        x: &xg,
        dy: &dyg,
        gamma: Some(&gg),
        mean: None,
        rstd: None,
        dx: &dx,
        dgamma: None,
        dbeta: None,
    };
    LayerNorm::new().backward_into(&small, &io).unwrap();
    let want = reference::norm_backward(&x, &dy, dim, Some(&g), 1e-5, false);
    let (tol_dx, _, _) = reference::norm_backward_tolerance(&dy, &want, Some(&g));
    let err = reference::max_abs_error(&dx.read(&small).unwrap(), &want.dx);
    assert!(err <= tol_dx, "dx error {err:.3e} > {tol_dx:.3e}");
    // With dgamma and dbeta: their partial sums (two f32 per column and
    // chunk: 384 KiB) do not fit one 64 KiB binding, so the columns are
    // summed in blocks (seven of 2,688 columns here).
    let grads = LayerNorm::new()
        .backward(&small, &xg, &dyg, Some(&gg), None)
        .unwrap();
    let (_, tol_dg, tol_db) = reference::norm_backward_tolerance(&dy, &want, Some(&g));
    let err = reference::max_abs_error(&grads.dx.read(&small).unwrap(), &want.dx);
    assert!(err <= tol_dx, "dx error {err:.3e} > {tol_dx:.3e}");
    let err = reference::max_abs_error(&grads.dgamma.read(&small).unwrap(), &want.dgamma);
    assert!(err <= tol_dg, "dgamma error {err:.3e} > {tol_dg:.3e}");
    let err = reference::max_abs_error(&grads.dbeta.read(&small).unwrap(), &want.dbeta);
    assert!(err <= tol_db, "dbeta error {err:.3e} > {tol_db:.3e}");
    // One value more is one binding too many: refused, naming the limit.
    let x1 = GpuTensor::zeros(&small, &[1, dim + 1]).unwrap();
    let e = LayerNorm::new()
        .forward(&small, &x1, None, None)
        .unwrap_err();
    assert!(
        matches!(e, wgpu_norm::Error::RowTooLarge { .. })
            && e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}

#[test]
fn caller_buffers_at_odd_offsets() {
    let _serial = crate::common::gl_serial();
    // Tensors wrapped in a caller's buffer at offsets that are not 16-byte
    // (nor 256-byte) aligned: the kernels' head/vec4/tail split and the
    // binding windows must cope, also when x and y differ in phase. With a
    // dim of whole vec4s, a misaligned x, y, gamma or beta turns the vec4
    // paths (VEC4_ROWS) off; the aligned cases (16, 32, 0 or 16) keep them
    // on. On a device whose storage bindings must start at multiples of 256
    // bytes, a tensor then starts inside its binding window (a non-zero base).
    let mut limits = ctx().limits().clone();
    limits.min_storage_buffer_offset_alignment = 256;
    let strict = pollster::block_on(Context::with_options(ContextOptions {
        limits: Some(limits),
        ..Default::default()
    }))
    .unwrap();
    let rows = 9usize;
    for ctx in [ctx(), &strict] {
        let make = |len: usize| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 2048 + len as u64 * 4,
                usage: wgpu_norm::TENSOR_USAGES,
                mapped_at_creation: false,
            })
        };
        let upload = |values: &[f32], offset: u64, shape: &[usize]| {
            let buffer = make(values.len());
            ctx.queue()
                .write_buffer(&buffer, offset, bytemuck::cast_slice(values));
            GpuTensor::from_buffer(buffer, offset, shape).unwrap()
        };
        let alignment = ctx.limits().min_storage_buffer_offset_alignment;
        for kernel in kernels(ctx) {
            let op = LayerNorm::new().with_kernel(kernel);
            for dim in [36usize, 37] {
                let x = synthetic::normal(61, rows * dim, 1.0, 1.0);
                let (g, b) = params(62, dim);
                let want = reference::layer_norm(&x, dim, Some(&g), Some(&b), 1e-5);
                let tol = reference::layer_norm_tolerance(&x, &want, Some(&g), Some(&b));
                for (x_off, y_off, param_off) in [
                    (4u64, 4u64, 0u64),
                    (4, 8, 0),
                    (260, 0, 0),
                    (12, 1028, 0),
                    (16, 32, 0),
                    (16, 32, 16),
                    (16, 32, 4),
                ] {
                    let xt = upload(&x, x_off, &[rows, dim]);
                    let yt = GpuTensor::from_buffer(make(x.len()), y_off, &[rows, dim]).unwrap();
                    let gt = upload(&g, param_off, &[dim]);
                    let bt = upload(&b, 2 * param_off, &[dim]);
                    let mut encoder = ctx.device().create_command_encoder(&Default::default());
                    let io = wgpu_norm::LayerNormIo {
                        gamma: Some(&gt),
                        beta: Some(&bt),
                        ..wgpu_norm::LayerNormIo::new(&xt, &yt)
                    };
                    op.encode(ctx, &mut encoder, &io).unwrap();
                    ctx.queue().submit([encoder.finish()]);
                    let err = reference::max_abs_error(&yt.read(ctx).unwrap(), &want.y);
                    assert!(
                        err <= tol,
                        "{} dim {dim}, offsets x {x_off} y {y_off} gamma/beta {param_off}, \
                         binding alignment {alignment}: {err:.3e} > {tol:.3e}",
                        kernel.name()
                    );
                }
            }
        }
    }
}

mod properties {
    use proptest::prelude::*;
    use wgpu_norm::{LayerNorm, synthetic};

    use crate::common::{check, ctx, kernels};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Random shapes, offsets and scales match the reference.
        #[test]
        fn random_shapes_match_the_reference(
            rows in 1usize..40,
            dim in 1usize..3000,
            mean in -1e4f32..1e4,
            std in 1e-3f32..1e3,
            seed in any::<u64>(),
            pick in 0usize..4,
        ) {
            let _serial = crate::common::gl_serial();
            let ctx = ctx();
            let all = kernels(ctx);
            let kernel = all[pick % all.len()];
            let x = synthetic::normal(seed, rows * dim, mean, std);
            let g = synthetic::normal(seed ^ 1, dim, 1.0, 1.0);
            let b = synthetic::normal(seed ^ 2, dim, 0.0, 1.0);
            check("proptest", ctx, LayerNorm::new().with_kernel(kernel), &[rows, dim], &x, Some(&g), Some(&b));
        }
    }
}
