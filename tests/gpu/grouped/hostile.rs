//! The grouped ops refuse bad calls with a typed error naming the values,
//! before anything is encoded: never a panic.

use wgpu_norm::{
    BatchNorm, BatchNormIo, ChannelNormGradIo, ChannelNormIo, DType, Error, GroupNorm, GroupedNorm,
    InstanceNorm, LpNorm, LpNormIo,
};

use super::{upload, zeros};
use crate::common::{ctx, gl_serial};

#[test]
fn grouped_ops_refuse_bad_calls_with_typed_errors() {
    let _serial = gl_serial();
    let ctx = ctx();
    let f = DType::F32;
    let x = upload(ctx, &[1.0; 24], &[2, 6, 2], f);
    let y = zeros(ctx, &[2, 6, 2], f);
    let io = ChannelNormIo::new(&x, &y);
    let err = |r: wgpu_norm::Result<()>| r.expect_err("refused");

    // Groups, epsilon, rank.
    let e = err(GroupNorm::new(4).forward_into(ctx, &io));
    assert!(
        matches!(
            e,
            Error::InvalidParameter {
                what: "num_groups",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("6 channels"), "{e}");
    let e = err(GroupNorm::new(0).forward_into(ctx, &io));
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    for eps in [-1.0, f32::NAN, f32::INFINITY] {
        let e = err(GroupNorm::new(2).with_epsilon(eps).forward_into(ctx, &io));
        assert!(matches!(e, Error::InvalidEpsilon(_)), "{e}");
    }
    let x1 = upload(ctx, &[1.0; 4], &[4], f);
    let y1 = zeros(ctx, &[4], f);
    let e = err(InstanceNorm::new().forward_into(ctx, &ChannelNormIo::new(&x1, &y1)));
    assert!(e.to_string().contains("rank"), "{e}");

    // Shapes and types of the other tensors.
    let y_bad = zeros(ctx, &[2, 12], f);
    let e = err(GroupNorm::new(2).forward_into(ctx, &ChannelNormIo::new(&x, &y_bad)));
    assert!(matches!(e, Error::ShapeMismatch { what: "Y", .. }), "{e}");
    let s5 = upload(ctx, &[1.0; 5], &[5], f);
    let e = err(GroupNorm::new(2).forward_into(ctx, &io.with_scale(&s5)));
    assert!(
        matches!(e, Error::ShapeMismatch { what: "Scale", .. }),
        "{e}"
    );
    let m = zeros(ctx, &[2, 2], f);
    let e = err(GroupNorm::new(2).forward_into(
        ctx,
        &ChannelNormIo {
            mean: Some(&m),
            ..io
        },
    ));
    assert!(matches!(e, Error::IncompleteStats { .. }), "{e}");
    let (m3, r3) = (zeros(ctx, &[2, 3], f), zeros(ctx, &[2, 2], f));
    let e = err(GroupNorm::new(2).forward_into(ctx, &io.with_stats(&m3, &r3)));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");

    // Aliasing: y in x's buffer; dx in dy's.
    let e = err(GroupNorm::new(2).forward_into(ctx, &ChannelNormIo::new(&x, &x)));
    assert!(matches!(e, Error::AliasedBuffers { .. }), "{e}");
    let dy = upload(ctx, &[1.0; 24], &[2, 6, 2], f);
    let e = err(GroupNorm::new(2).backward_into(ctx, &ChannelNormGradIo::new(&x, &dy, &dy)));
    assert!(matches!(e, Error::AliasedBuffers { .. }), "{e}");

    // BatchNorm: statistics per channel, saved statistics only in training.
    let c6 = upload(ctx, &[1.0; 6], &[6], f);
    let c2 = upload(ctx, &[1.0; 2], &[2], f);
    let e = err(BatchNorm::new().forward_into(ctx, &BatchNormIo::new(&x, &y, &c2, &c6)));
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                what: "input_mean",
                ..
            }
        ),
        "{e}"
    );
    let (sm, sr) = (zeros(ctx, &[6], f), zeros(ctx, &[6], f));
    let bn_io = BatchNormIo::new(&x, &y, &c6, &c6).with_saved(&sm, &sr);
    let e = err(BatchNorm::new().forward_into(ctx, &bn_io));
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    BatchNorm::training().forward_into(ctx, &bn_io).unwrap();
    let e = err(BatchNorm::training().forward_into(
        ctx,
        &BatchNormIo {
            running_mean: Some(&sm),
            ..bn_io
        },
    ));
    assert!(
        matches!(
            e,
            Error::MissingTensor {
                what: "running_var"
            }
        ),
        "{e}"
    );

    // LpNorm: p and the axis.
    for p in [0, 3, u32::MAX] {
        let e = err(LpNorm::new()
            .with_p(p)
            .forward_into(ctx, &LpNormIo { x: &x, y: &y }));
        assert!(
            matches!(e, Error::InvalidParameter { what: "p", .. }),
            "{e}"
        );
    }
    for axis in [3, -4, isize::MIN] {
        let e = err(LpNorm::new()
            .with_axis(axis)
            .forward_into(ctx, &LpNormIo { x: &x, y: &y }));
        assert!(matches!(e, Error::AxisOutOfRange { .. }), "{e}");
    }
    let e = err(LpNorm::new().forward_into(ctx, &LpNormIo { x: &x, y: &y_bad }));
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}
