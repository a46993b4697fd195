//! BatchNorm against `batch_norm_inference_f64`, `batch_norm_training_f64`
//! and `batch_norm_backward_f64`: inference and training (running
//! statistics biased and unbiased, any momentum), spatial 1, C not a
//! multiple of 4, channels past one dispatch, 10,000 + N(0, 1), constant
//! channels, f16, and a bit-identical backward.

use wgpu_norm::reference::{
    batch_norm_backward_f64, batch_norm_inference_f64, batch_norm_training_f64,
};
use wgpu_norm::{
    BatchNorm, BatchNormGradIo, BatchNormIo, ChannelNormGradIo, Context, DType, GroupedNorm,
    RunningVariance,
};

use super::*;
use crate::common::{ctx, gl_serial};

#[derive(Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    spatial: usize,
    training: bool,
    unbiased: bool,
    momentum: f32,
    offset: f32,
    constant: bool,
    dtype: DType,
}

fn case(n: usize, c: usize, spatial: usize, training: bool) -> Case {
    Case {
        n,
        c,
        spatial,
        training,
        unbiased: false,
        momentum: 0.9,
        offset: 0.5,
        constant: false,
        dtype: DType::F32,
    }
}

fn check(ctx: &Context, k: Case) {
    let dt = k.dtype;
    let shape = match k.spatial {
        1 => vec![k.n, k.c],
        s => vec![k.n, k.c, s],
    };
    let len = k.n * k.c * k.spatial;
    let mut x = data(31, len, k.offset, 1.5, dt);
    if k.constant {
        x.iter_mut().for_each(|v| *v = k.offset);
    }
    let (gamma, beta, dy) = (
        data(32, k.c, 1.0, 0.5, dt),
        data(33, k.c, 0.0, 0.5, dt),
        data(34, len, 0.0, 1.0, dt),
    );
    let mean = data(35, k.c, k.offset, 0.5, DType::F32);
    let var: Vec<f32> = data(36, k.c, 1.0, 0.5, DType::F32)
        .iter()
        .map(|v| v.abs() + 0.1)
        .collect();
    let t = |v: &[f32], s: &[usize]| upload(ctx, v, s, dt);
    let (tx, tg, tb, tdy) = (
        t(&x, &shape),
        t(&gamma, &[k.c]),
        t(&beta, &[k.c]),
        t(&dy, &shape),
    );
    let f32s = |v: &[f32]| upload(ctx, v, &[k.c], DType::F32);
    let (tm, tv) = (f32s(&mean), f32s(&var));
    let (rm, rv) = (
        zeros(ctx, &[k.c], DType::F32),
        zeros(ctx, &[k.c], DType::F32),
    );
    let ty = zeros(ctx, &shape, dt);
    let op = BatchNorm {
        training: k.training,
        momentum: k.momentum,
        running_variance: match k.unbiased {
            true => RunningVariance::Unbiased,
            false => RunningVariance::Biased,
        },
        ..BatchNorm::new()
    };
    let mut io = BatchNormIo::new(&tx, &ty, &tm, &tv).with_params(Some(&tg), Some(&tb));
    if k.training {
        io = io.with_running(&rm, &rv);
    }
    op.forward_into(ctx, &io).unwrap();
    let name = format!("batch_norm {shape:?} training={} {dt}", k.training);
    let tl = tol(dt);
    let (xf, mf, vf) = (f64s(&x), f64s(&mean), f64s(&var));
    let eps = 1e-5;
    let (g, b) = (Some(&gamma[..]), Some(&beta[..]));
    let mut variances = vf.clone();
    if k.training {
        let r = batch_norm_training_f64(
            &xf,
            k.n,
            k.c,
            k.spatial,
            g,
            b,
            eps,
            k.momentum as f64,
            &mf,
            &vf,
            k.unbiased,
        );
        assert_close(&format!("{name} y"), &ty.read(ctx).unwrap(), &r.y, tl);
        variances = r.batch_var.clone();
        assert_close(
            &format!("{name} running_mean"),
            &rm.read(ctx).unwrap(),
            &r.running_mean,
            F32_TOL,
        );
        assert_close(
            &format!("{name} running_var"),
            &rv.read(ctx).unwrap(),
            &r.running_var,
            F32_TOL * 4.0,
        );
    } else {
        let y = batch_norm_inference_f64(&xf, k.n, k.c, k.spatial, &mf, &vf, g, b, eps);
        assert_close(&format!("{name} y"), &ty.read(ctx).unwrap(), &y, tl);
    }

    let (tdx, tds, tdb) = (
        zeros(ctx, &shape, dt),
        zeros(ctx, &[k.c], dt),
        zeros(ctx, &[k.c], dt),
    );
    let grads = ChannelNormGradIo::new(&tx, &tdy, &tdx)
        .with_params(Some(&tg), Some(&tb))
        .with_grads(Some(&tds), Some(&tdb));
    let gio = BatchNormGradIo {
        grads,
        input_mean: Some(&tm),
        input_var: Some(&tv),
    };
    op.backward_into(ctx, &gio).unwrap();
    let stats = (!k.training).then_some((&mf[..], &vf[..]));
    let want = batch_norm_backward_f64(&xf, &f64s(&dy), k.n, k.c, k.spatial, g, eps, stats);
    let dx = tdx.read(ctx).unwrap();
    let max_rstd = variances
        .iter()
        .fold(0.0f64, |m, v| m.max(1.0 / (v + eps).sqrt()));
    let floor = (max_rstd * max_abs(&dy) * max_abs(&gamma)).max(DX_FLOOR);
    assert_close_to(&format!("{name} dx"), &dx, &want.dx, tl * 4.0, floor);
    assert_close(
        &format!("{name} dscale"),
        &tds.read(ctx).unwrap(),
        &want.dscale,
        tl * 4.0,
    );
    assert_close(
        &format!("{name} dbias"),
        &tdb.read(ctx).unwrap(),
        &want.dbias,
        tl * 4.0,
    );
    op.backward_into(ctx, &gio).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&tdx.read(ctx).unwrap()),
        bits(&dx),
        "{name}: dx differs run to run"
    );
}

#[test]
fn batch_norm_inference_and_training_match_the_reference() {
    let _serial = gl_serial();
    let ctx = ctx();
    for training in [false, true] {
        for base in [
            case(4, 3, 5, training),
            case(7, 5, 1, training),     // spatial 1, C odd
            case(32, 16, 196, training), // 6,272 values per channel: 49 pieces
            case(1, 4, 9, training),     // one sample
        ] {
            check(ctx, base);
        }
        check(
            ctx,
            Case {
                offset: 10_000.0,
                ..case(6, 5, 40, training)
            },
        );
        check(
            ctx,
            Case {
                constant: true,
                offset: 2.5,
                ..case(3, 2, 4, training)
            },
        );
    }
    check(
        ctx,
        Case {
            unbiased: true,
            momentum: 0.25,
            ..case(5, 3, 7, true)
        },
    );
    check(
        ctx,
        Case {
            unbiased: true,
            ..case(1, 3, 1, true)
        },
    ); // one value per channel
}

#[test]
fn batch_norm_over_more_channels_than_one_dispatch_addresses() {
    let _serial = gl_serial();
    let ctx = ctx();
    // 4,194,300 channels: 65,536 workgroups of 64 lanes per per-channel pass
    // (and the backward's coefficients just inside lavapipe's 128 MiB binding).
    check(ctx, case(2, 4_194_300, 1, true));
    check(ctx, case(2, 4_194_300, 1, false));
}

#[test]
fn batch_norm_in_f16_where_offered() {
    let _serial = gl_serial();
    let ctx = ctx();
    if !ctx.capabilities().shader_f16 {
        let e = wgpu_norm::GpuTensor::from_slice_as(ctx, &[0.0; 4], &[2, 2], DType::F16);
        assert!(e.is_err(), "f16 tensors without SHADER_F16");
        return;
    }
    for training in [false, true] {
        check(
            ctx,
            Case {
                dtype: DType::F16,
                ..case(6, 5, 11, training)
            },
        );
    }
}

#[test]
fn batch_norm_refuses_what_onnx_does_not_define() {
    let ctx = ctx();
    let x = upload(ctx, &[1.0; 6], &[2, 3], DType::F32);
    let y = zeros(ctx, &[2, 3], DType::F32);
    let m = upload(ctx, &[0.0; 2], &[2], DType::F32);
    let e = BatchNorm::new()
        .forward_into(ctx, &BatchNormIo::new(&x, &y, &m, &m))
        .unwrap_err();
    assert!(
        e.to_string().contains("input_mean") && e.to_string().contains("[3]"),
        "{e}"
    );
    let m3 = upload(ctx, &[0.0; 3], &[3], DType::F32);
    let e = BatchNorm::new()
        .with_momentum(f32::NAN)
        .forward_into(ctx, &BatchNormIo::new(&x, &y, &m3, &m3))
        .unwrap_err();
    assert!(e.to_string().contains("momentum"), "{e}");
}

#[test]
fn batch_norm_keeps_nan_and_inf_in_their_channel() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (n, c, s) = (3usize, 4usize, 5usize);
    let mut x = data(37, n * c * s, 0.0, 1.0, DType::F32);
    x[(c + 1) * s + 2] = f32::NAN; // n 1, channel 1
    x[(2 * c + 3) * s] = f32::INFINITY; // n 2, channel 3
    let f = DType::F32;
    let (tx, ty) = (upload(ctx, &x, &[n, c, s], f), zeros(ctx, &[n, c, s], f));
    let (m, v) = (zeros(ctx, &[c], f), upload(ctx, &[1.0; 4], &[c], f));
    BatchNorm::training()
        .forward_into(ctx, &BatchNormIo::new(&tx, &ty, &m, &v))
        .unwrap();
    let y = ty.read(ctx).unwrap();
    let want = batch_norm_training_f64(
        &f64s(&x),
        n,
        c,
        s,
        None,
        None,
        1e-5,
        0.9,
        &[0.0; 4],
        &[1.0; 4],
        false,
    );
    assert_close("batch_norm NaN/Inf y", &y, &want.y, F32_TOL);
    for (i, v) in y.iter().enumerate() {
        let channel = (i / s) % c;
        assert_eq!(
            v.is_nan(),
            channel == 1 || channel == 3,
            "y[{i}] = {v} (channel {channel})"
        );
    }
}
