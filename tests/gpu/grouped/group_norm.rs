//! GroupNorm forward and backward against `group_norm_f64` and
//! `group_norm_backward_f64`: G = 1, G = C, spatial 1, C not a multiple of
//! 4, channels-last, SiLU, no affine, constant input, 10,000 + N(0, 1), sets
//! cut into many pieces, NaN and Inf kept in their group, f16, determinism.

use wgpu_norm::reference::{group_norm_backward_f64, group_norm_f64};
use wgpu_norm::{
    Activation, ChannelNormGradIo, ChannelNormIo, Context, DType, GroupNorm, GroupedNorm,
};

use super::*;
use crate::common::{ctx, gl_serial};

#[derive(Clone, Copy)]
pub struct Case<'a> {
    pub n: usize,
    pub c: usize,
    pub spatial: &'a [usize],
    pub groups: usize,
    pub silu: bool,
    pub last: bool,
    pub affine: bool,
    pub offset: f32,
    pub std: f32,
    pub dtype: DType,
}

impl Case<'_> {
    pub fn new(n: usize, c: usize, spatial: &[usize], groups: usize) -> Case<'_> {
        Case {
            n,
            c,
            spatial,
            groups,
            silu: false,
            last: false,
            affine: true,
            offset: 0.5,
            std: 2.0,
            dtype: DType::F32,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self.last {
            true => [&[self.n][..], self.spatial, &[self.c]].concat(),
            false => [&[self.n, self.c][..], self.spatial].concat(),
        }
    }
}

/// Runs `op` (GroupNorm or InstanceNorm of `case`) forward and backward and
/// checks both against the oracles; the backward twice, bit-identical.
pub fn check_case<O>(ctx: &Context, op: &O, case: Case<'_>, x_values: Option<Vec<f32>>)
where
    O: for<'a> GroupedNorm<Io<'a> = ChannelNormIo<'a>, GradIo<'a> = ChannelNormGradIo<'a>>,
{
    let shape = case.shape();
    let len: usize = shape.iter().product();
    let s: usize = case.spatial.iter().product();
    let dt = case.dtype;
    let x = x_values.unwrap_or_else(|| data(11, len, case.offset, case.std, dt));
    let gamma = data(12, case.c, 1.0, 0.5, dt);
    let beta = data(13, case.c, 0.0, 0.5, dt);
    let dy = data(14, len, 0.0, 1.0, dt);
    let (scale, bias) = match case.affine {
        true => (Some(&gamma[..]), Some(&beta[..])),
        false => (None, None),
    };
    let tx = upload(ctx, &x, &shape, dt);
    let (tg, tb) = (
        upload(ctx, &gamma, &[case.c], dt),
        upload(ctx, &beta, &[case.c], dt),
    );
    let ty = zeros(ctx, &shape, dt);
    let mut io = ChannelNormIo::new(&tx, &ty);
    if case.affine {
        io = io.with_scale(&tg).with_bias(&tb);
    }
    op.forward_into(ctx, &io).unwrap();
    let name = format!("{} {shape:?} G={} {dt}", O::NAME, case.groups);
    let eps = 1e-5;
    let want = group_norm_f64(
        &f64s(&x),
        case.n,
        case.c,
        s,
        case.groups,
        scale,
        bias,
        eps,
        case.silu,
        case.last,
    );
    let t = tol(dt);
    assert_close(&format!("{name} y"), &ty.read(ctx).unwrap(), &want.y, t);

    let tdy = upload(ctx, &dy, &shape, dt);
    let (tdx, tds, tdb) = (
        zeros(ctx, &shape, dt),
        zeros(ctx, &[case.c], dt),
        zeros(ctx, &[case.c], dt),
    );
    let grad = ChannelNormGradIo::new(&tx, &tdy, &tdx)
        .with_params(io.scale, io.bias)
        .with_grads(Some(&tds), Some(&tdb));
    op.backward_into(ctx, &grad).unwrap();
    let g = group_norm_backward_f64(
        &f64s(&x),
        &f64s(&dy),
        case.n,
        case.c,
        s,
        case.groups,
        scale,
        bias,
        eps,
        case.silu,
        case.last,
    );
    let first = (
        tdx.read(ctx).unwrap(),
        tds.read(ctx).unwrap(),
        tdb.read(ctx).unwrap(),
    );
    let max_rstd = want
        .rstd
        .iter()
        .filter(|r| r.is_finite())
        .fold(0.0f64, |m, &r| m.max(r));
    let gamma_max = if case.affine { max_abs(&gamma) } else { 1.0 };
    let floor = (max_rstd * max_abs(&dy) * gamma_max).max(DX_FLOOR);
    assert_close_to(&format!("{name} dx"), &first.0, &g.dx, t * 4.0, floor);
    assert_close(&format!("{name} dscale"), &first.1, &g.dscale, t * 4.0);
    assert_close(&format!("{name} dbias"), &first.2, &g.dbias, t * 4.0);
    op.backward_into(ctx, &grad).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&tdx.read(ctx).unwrap()),
        bits(&first.0),
        "{name}: dx differs run to run"
    );
    assert_eq!(
        bits(&tds.read(ctx).unwrap()),
        bits(&first.1),
        "{name}: dscale differs"
    );
}

fn group_norm(case: &Case<'_>) -> GroupNorm {
    GroupNorm::new(case.groups)
        .with_channels_last(case.last)
        .with_activation(match case.silu {
            true => Activation::Silu,
            false => Activation::None,
        })
}

#[test]
fn group_norm_matches_the_reference_on_shapes_that_hurt() {
    let _serial = gl_serial();
    let ctx = ctx();
    let cases = [
        Case::new(2, 6, &[5], 3),
        Case::new(2, 6, &[5], 1),       // G = 1
        Case::new(2, 6, &[5], 6),       // G = C
        Case::new(3, 7, &[], 7),        // rank 2: spatial 1, C odd
        Case::new(3, 14, &[1], 2),      // spatial 1
        Case::new(2, 10, &[3, 3], 5),   // C % 4 != 0
        Case::new(1, 32, &[64, 32], 4), // sets of 16,384 values: 128 pieces
        Case::new(2, 512, &[8, 8], 32), // SD-like channels
    ];
    for base in cases {
        for last in [false, true] {
            for silu in [false, true] {
                let case = Case { last, silu, ..base };
                check_case(ctx, &group_norm(&case), case, None);
            }
        }
    }
    // No scale or bias; 10,000 + N(0, 1); constant input.
    let plain = Case {
        affine: false,
        ..Case::new(2, 8, &[17], 2)
    };
    check_case(ctx, &group_norm(&plain), plain, None);
    let offset = Case {
        offset: 10_000.0,
        std: 1.0,
        ..Case::new(2, 12, &[33, 5], 3)
    };
    check_case(ctx, &group_norm(&offset), offset, None);
    let offset_last = Case {
        last: true,
        ..offset
    };
    check_case(ctx, &group_norm(&offset_last), offset_last, None);
    let constant = Case::new(2, 4, &[9], 2);
    check_case(ctx, &group_norm(&constant), constant, Some(vec![3.25; 72]));
}

#[test]
fn group_norm_keeps_nan_and_inf_in_their_group_and_survives_huge_values() {
    let _serial = gl_serial();
    let ctx = ctx();
    let case = Case::new(2, 4, &[6], 2);
    let mut x = data(21, 48, 0.0, 1.0, DType::F32);
    x[3] = f32::NAN; // n 0, group 0
    x[24 + 13] = f32::INFINITY; // n 1, group 1
    check_case(ctx, &group_norm(&case), case, Some(x.clone()));
    // Magnitudes up to 3e38: moments that overflow f32 are taken at 2^-96.
    for scale in [1e20f32, 1e30, 3e37] {
        let big: Vec<f32> = data(22, 48, 0.0, 1.0, DType::F32)
            .iter()
            .map(|v| v * scale)
            .collect();
        check_case(ctx, &group_norm(&case), case, Some(big));
    }
    // Pieces whose moments each fit f32 but whose merge does not: 16
    // pieces of 512 values of N(0, 1) * 5e17 (M2 about 1.3e38 each).
    let pieces = Case::new(1, 2, &[4096], 1);
    let x: Vec<f32> = data(23, 8192, 0.0, 1.0, DType::F32)
        .iter()
        .map(|v| v * 5e17)
        .collect();
    check_case(ctx, &group_norm(&pieces), pieces, Some(x));
    let mut extreme = vec![f32::MAX; 48];
    for v in extreme.iter_mut().step_by(2) {
        *v = -f32::MAX;
    }
    check_case(ctx, &group_norm(&case), case, Some(extreme));
}

#[test]
fn group_norm_and_instance_norm_in_f16_where_offered() {
    let _serial = gl_serial();
    let ctx = ctx();
    if !ctx.capabilities().shader_f16 {
        let case = Case::new(1, 2, &[2], 1);
        let x = wgpu_norm::GpuTensor::from_slice_as(ctx, &[0.0; 4], &case.shape(), DType::F16);
        assert!(x.is_err(), "f16 tensors without SHADER_F16");
        return;
    }
    for last in [false, true] {
        let case = Case {
            dtype: DType::F16,
            last,
            silu: true,
            ..Case::new(2, 12, &[7, 3], 4)
        };
        check_case(ctx, &group_norm(&case), case, None);
        // Spatial 1024: cells of 4 f16, a workgroup per run.
        let case = Case {
            dtype: DType::F16,
            last,
            ..Case::new(1, 4, &[32, 32], 2)
        };
        check_case(ctx, &group_norm(&case), case, None);
        let case = Case {
            dtype: DType::F16,
            last,
            ..Case::new(3, 5, &[9, 2], 5)
        };
        let op = wgpu_norm::InstanceNorm::new().with_channels_last(last);
        check_case(ctx, &op, case, None);
    }
}
