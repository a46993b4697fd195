//! LpNorm forward and backward against `lp_norm_f64` and
//! `lp_norm_backward_f64`: p 1 and 2, every axis, zero vectors (0, not NaN),
//! vectors past one dispatch, 10,000 + N(0, 1), magnitudes from 1e-30 to
//! 3e38, NaN kept in its vector, f16, and a bit-identical backward.

use wgpu_norm::reference::{lp_norm_backward_f64, lp_norm_f64};
use wgpu_norm::{Context, DType, GroupedNorm, LpNorm, LpNormGradIo, LpNormIo};

use super::*;
use crate::common::{ctx, gl_serial};

fn check(ctx: &Context, shape: &[usize], axis: isize, p: u32, x: &[f32], dtype: DType) {
    let len = x.len();
    let dy = data(41, len, 0.0, 1.0, dtype);
    let (tx, tdy) = (upload(ctx, x, shape, dtype), upload(ctx, &dy, shape, dtype));
    let (ty, tdx) = (zeros(ctx, shape, dtype), zeros(ctx, shape, dtype));
    let op = LpNorm::new().with_p(p).with_axis(axis);
    op.forward_into(ctx, &LpNormIo { x: &tx, y: &ty }).unwrap();
    let ax = axis.rem_euclid(shape.len() as isize) as usize;
    let name = format!("lp_norm {shape:?} axis {axis} p {p} {dtype}");
    let t = tol(dtype);
    assert_close(
        &format!("{name} y"),
        &ty.read(ctx).unwrap(),
        &lp_norm_f64(&f64s(x), shape, ax, p),
        t,
    );
    let gio = LpNormGradIo {
        x: &tx,
        dy: &tdy,
        dx: &tdx,
    };
    op.backward_into(ctx, &gio).unwrap();
    let want = lp_norm_backward_f64(&f64s(x), &f64s(&dy), shape, ax, p);
    let dx = tdx.read(ctx).unwrap();
    assert_close(&format!("{name} dx"), &dx, &want, t * 4.0);
    op.backward_into(ctx, &gio).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&tdx.read(ctx).unwrap()),
        bits(&dx),
        "{name}: dx differs run to run"
    );
}

#[test]
fn lp_norm_matches_the_reference_on_every_axis() {
    let _serial = gl_serial();
    let ctx = ctx();
    for p in [1, 2] {
        for (shape, axes) in [
            (&[3usize, 5, 7][..], &[0isize, 1, 2, -1][..]),
            (&[1, 1][..], &[0, 1][..]),
            (&[2, 4099][..], &[-1, 0][..]),
            (&[64, 768][..], &[-1][..]),
            (&[5][..], &[0][..]),
        ] {
            let x = data(42, shape.iter().product(), 0.3, 1.0, DType::F32);
            for &axis in axes {
                check(ctx, shape, axis, p, &x, DType::F32);
            }
        }
        let offset = data(43, 4 * 300, 10_000.0, 1.0, DType::F32);
        check(ctx, &[4, 300], -1, p, &offset, DType::F32);
    }
}

#[test]
fn lp_norm_gives_zero_for_zero_vectors_and_keeps_nan_in_its_vector() {
    let _serial = gl_serial();
    let ctx = ctx();
    let mut x = data(44, 4 * 6, 0.0, 1.0, DType::F32);
    x[6..12].iter_mut().for_each(|v| *v = 0.0); // row 1 is zero
    x[14] = f32::NAN; // row 2 holds NaN
    for p in [1, 2] {
        check(ctx, &[4, 6], -1, p, &x, DType::F32);
        let y = {
            let tx = upload(ctx, &x, &[4, 6], DType::F32);
            let ty = zeros(ctx, &[4, 6], DType::F32);
            LpNorm::new()
                .with_p(p)
                .forward_into(ctx, &LpNormIo { x: &tx, y: &ty })
                .unwrap();
            ty.read(ctx).unwrap()
        };
        assert!(
            y[6..12].iter().all(|&v| v == 0.0),
            "zero vector: {:?}",
            &y[6..12]
        );
        assert!(y[12..18].iter().all(|v| v.is_nan()) && y[18..].iter().all(|v| v.is_finite()));
    }
}

#[test]
fn lp_norm_handles_magnitudes_from_1e_minus_30_to_3e38() {
    let _serial = gl_serial();
    let ctx = ctx();
    // Pieces whose sums each fit f32 but whose total does not: 16 pieces of
    // 512 values of N(0, 1) * 4e17 (sum of squares about 8e37 each).
    let x: Vec<f32> = data(48, 2 * 8192, 0.0, 1.0, DType::F32)
        .iter()
        .map(|v| v * 4e17)
        .collect();
    for p in [1, 2] {
        check(ctx, &[2, 8192], -1, p, &x, DType::F32);
    }
    // 257 values (value by value) and 256 (cells of 4) along the last axis.
    for len in [257usize, 256] {
        for scale in [1e-30f32, 1e-20, 1e20, 1e30, 1e38] {
            let x: Vec<f32> = data(45, 3 * len, 0.0, 1.0, DType::F32)
                .iter()
                .map(|v| (v * scale).clamp(-f32::MAX, f32::MAX))
                .collect();
            for p in [1, 2] {
                check(ctx, &[3, len], -1, p, &x, DType::F32);
                check(ctx, &[3, len], 0, p, &x, DType::F32);
            }
        }
    }
}

#[test]
fn lp_norm_over_more_vectors_than_one_dispatch_addresses() {
    let _serial = gl_serial();
    let ctx = ctx();
    // 4,200,000 vectors: 65,625 workgroups of 64 lanes per per-vector pass.
    let x = data(46, 4_200_000 * 3, 0.0, 1.0, DType::F32);
    check(ctx, &[4_200_000, 3], -1, 2, &x, DType::F32);
}

#[test]
fn lp_norm_in_f16_where_offered_and_refuses_other_p() {
    let _serial = gl_serial();
    let ctx = ctx();
    let tx = upload(ctx, &[1.0; 4], &[2, 2], DType::F32);
    let ty = zeros(ctx, &[2, 2], DType::F32);
    let e = LpNorm::new()
        .with_p(3)
        .forward_into(ctx, &LpNormIo { x: &tx, y: &ty })
        .unwrap_err();
    assert!(e.to_string().contains("p is 3"), "{e}");
    let e = LpNorm::new()
        .with_axis(2)
        .forward_into(ctx, &LpNormIo { x: &tx, y: &ty })
        .unwrap_err();
    assert!(matches!(e, wgpu_norm::Error::AxisOutOfRange { .. }), "{e}");
    if !ctx.capabilities().shader_f16 {
        assert!(wgpu_norm::GpuTensor::from_slice_as(ctx, &[0.0], &[1], DType::F16).is_err());
        return;
    }
    let x = data(47, 6 * 130, 0.0, 1.0, DType::F16);
    for p in [1, 2] {
        check(ctx, &[6, 130], -1, p, &x, DType::F16);
        check(ctx, &[6, 130], 0, p, &x, DType::F16);
    }
    // Rows of 256: cells of 4 f16, a workgroup of 8 lanes per few runs.
    let x = data(49, 5 * 256, 0.0, 1.0, DType::F16);
    for p in [1, 2] {
        check(ctx, &[5, 256], -1, p, &x, DType::F16);
    }
}
