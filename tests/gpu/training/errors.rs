//! Bad input to the training family is refused with the values named.

use wgpu_norm::NormOp;
use wgpu_norm::{
    BackwardKernel, DType, Error, GpuTensor, LayerNorm, LayerNormGradIo, RmsNorm, RmsNormGradIo,
};

use crate::common::{ctx, gl_serial};

#[test]
fn training_family_errors_name_the_values() {
    let _serial = gl_serial();
    let ctx = ctx();
    let x = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let dy = GpuTensor::zeros(ctx, &[2, 4]).unwrap();
    let e = LayerNorm::new()
        .backward(ctx, &x, &dy, None, None)
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { what: "dy", .. }), "{e}");
    // Only one of the saved statistics.
    let dy = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let dx = GpuTensor::zeros(ctx, &[2, 3]).unwrap();
    let mean = GpuTensor::zeros(ctx, &[2, 1]).unwrap();
    let io = LayerNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        mean: Some(&mean),
        rstd: None,
        dx: &dx,
        dgamma: None,
        dbeta: None,
    };
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let e = LayerNorm::new()
        .encode_backward(ctx, &mut encoder, &io)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::IncompleteStats {
                given: "mean",
                missing: "rstd"
            }
        ),
        "{e}"
    );
    // dx in dy's buffer.
    let io = RmsNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        rstd: None,
        dx: &dy,
        dgamma: None,
    };
    let e = RmsNorm::new()
        .encode_backward(ctx, &mut encoder, &io)
        .unwrap_err();
    assert!(
        matches!(e, Error::AliasedBuffers { a: "dx", b: "dy" }),
        "{e}"
    );
    // A residual of another shape.
    let r = GpuTensor::zeros(ctx, &[3, 2]).unwrap();
    let e = RmsNorm::new()
        .forward_residual(ctx, &x, &r, None, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                what: "residual",
                ..
            }
        ),
        "{e}"
    );
    // Mixed element types.
    if ctx.capabilities().shader_f16 {
        let g = GpuTensor::zeros(ctx, &[3]).unwrap();
        let xh = GpuTensor::zeros_as(ctx, &[2, 3], DType::F16).unwrap();
        let e = LayerNorm::new()
            .forward(ctx, &xh, Some(&g), None)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DTypeMismatch {
                    what: "gamma",
                    expected: DType::F16,
                    actual: DType::F32
                }
            ),
            "{e}"
        );
    }
    // A forced dx kernel that cannot take the row.
    let long = GpuTensor::zeros(ctx, &[1, 20_000]).unwrap();
    let e = LayerNorm::new()
        .with_backward_kernel(BackwardKernel::RowPerLane)
        .backward(ctx, &long, &long.clone(), None, None)
        .unwrap_err();
    assert!(matches!(e, Error::KernelUnsuitable { .. }), "{e}");
}
