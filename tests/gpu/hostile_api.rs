//! The library's public entry points with hostile shapes, offsets, buffer
//! sizes and parameters: each returns a typed error naming the values, and
//! none panics.

use wgpu_norm::{
    DType, Error, GpuTensor, LayerNorm, LayerNormIo, NormConfig, NormOp, RmsNorm, RowsCols,
};

use crate::common::ctx;

const HOSTILE_SHAPES: &[&[usize]] = &[
    &[],
    &[0],
    &[3, 0, 2],
    &[usize::MAX, 2],
    &[1 << 40, 1 << 40],
    &[usize::MAX],
    &[1 << 62],
    &[65536, 65536, 65536],
];

fn storage(size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx().device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage,
        mapped_at_creation: false,
    })
}

#[test]
fn tensor_constructors_refuse_hostile_shapes() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for &shape in HOSTILE_SHAPES {
        for dtype in [DType::F32, DType::F16] {
            match GpuTensor::zeros_as(ctx, shape, dtype) {
                Err(Error::EmptyShape { shape: s })
                | Err(Error::ShapeOverflow { shape: s, .. }) => {
                    assert_eq!(s, shape)
                }
                Err(Error::TensorTooLarge { bytes, max, .. }) => assert!(bytes > max),
                Err(Error::MissingFeature { .. }) => assert_eq!(dtype, DType::F16),
                other => panic!(
                    "zeros_as {shape:?} {dtype}: {:?}",
                    other.map(|t| t.shape().to_vec())
                ),
            }
        }
        let e = GpuTensor::from_slice(ctx, &[1.0; 4], shape).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EmptyShape { .. }
                    | Error::ShapeOverflow { .. }
                    | Error::LengthMismatch { .. }
            ),
            "from_slice {shape:?}: {e}"
        );
        let t = GpuTensor::zeros(ctx, &[2, 2]).unwrap();
        let e = t.reshape(shape).unwrap_err();
        assert!(
            matches!(
                e,
                Error::EmptyShape { .. }
                    | Error::ShapeOverflow { .. }
                    | Error::LengthMismatch { .. }
            ),
            "reshape {shape:?}: {e}"
        );
    }
    // The overflow names the shape and says what overflowed (not "empty").
    let e = GpuTensor::zeros(ctx, &[usize::MAX, 2]).unwrap_err();
    assert!(
        e.to_string().contains("more elements than can be counted"),
        "{e}"
    );
}

#[test]
fn wrapped_buffers_refuse_hostile_offsets_and_sizes() {
    let _serial = crate::common::gl_serial();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let buf = storage(64, usage);
    for (offset, shape) in [
        (u64::MAX - 3, &[1usize][..]),
        (!3, &[4][..]),
        (0, &[usize::MAX / 2][..]),
        (0, &[17][..]),
        (60, &[2][..]),
        (64, &[1][..]),
    ] {
        let e = GpuTensor::from_buffer(buf.clone(), offset, shape).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BufferTooSmall {
                    buffer_size: 64,
                    ..
                }
            ),
            "offset {offset}, shape {shape:?}: {e}"
        );
    }
    let e = GpuTensor::from_buffer(buf.clone(), 2, &[1]).unwrap_err();
    assert!(
        matches!(e, Error::MisalignedOffset { offset: 2, .. }),
        "{e}"
    );
    let e = GpuTensor::from_buffer(buf.clone(), 0, &[usize::MAX, 4]).unwrap_err();
    assert!(matches!(e, Error::ShapeOverflow { .. }), "{e}");
    let e = GpuTensor::from_buffer(storage(64, wgpu::BufferUsages::UNIFORM), 0, &[4]).unwrap_err();
    assert!(matches!(e, Error::MissingUsage { .. }), "{e}");
    // A wrapper that reaches past its buffer's end is refused; one that fits
    // works and reads back.
    let t = GpuTensor::from_buffer(buf, 48, &[4]).unwrap();
    assert_eq!(t.read(ctx()).unwrap().len(), 4);
}

#[test]
fn shape_arithmetic_refuses_hostile_shapes_and_axes() {
    for &shape in HOSTILE_SHAPES {
        for axis in [-1isize, 0, isize::MIN, isize::MAX] {
            let cfg = NormConfig {
                axis,
                ..LayerNorm::new().config()
            };
            for r in [
                cfg.rows_cols(shape).map(|_| ()),
                cfg.norm_shape(shape).map(|_| ()),
                cfg.stats_shape(shape).map(|_| ()),
                RowsCols::of(shape, axis).map(|_| ()),
                LayerNorm::new()
                    .with_axis(axis)
                    .rows_cols(shape)
                    .map(|_| ()),
                RmsNorm::new().with_axis(axis).rows_cols(shape).map(|_| ()),
            ] {
                // Shapes whose product fits may be fine at a valid axis
                // (norm_shape and stats_shape do not count elements).
                if let Err(e) = r {
                    assert!(
                        matches!(
                            e,
                            Error::EmptyShape { .. }
                                | Error::ShapeOverflow { .. }
                                | Error::AxisOutOfRange { .. }
                        ),
                        "{shape:?} axis {axis}: {e}"
                    );
                }
            }
            let countable = !shape.is_empty()
                && !shape.contains(&0)
                && shape
                    .iter()
                    .try_fold(1usize, |n, &d| n.checked_mul(d))
                    .is_some();
            let axis_ok = (-(shape.len() as isize)..shape.len() as isize).contains(&axis);
            assert_eq!(
                RowsCols::of(shape, axis).is_ok(),
                countable && axis_ok,
                "{shape:?} axis {axis}"
            );
        }
    }
}

#[test]
fn plans_and_ops_refuse_hostile_shapes_and_parameters() {
    let _serial = crate::common::gl_serial();
    let ctx = ctx();
    for &shape in HOSTILE_SHAPES {
        assert!(LayerNorm::new().plan(ctx, shape).is_err(), "{shape:?}");
        assert!(
            LayerNorm::new().backward_plan(ctx, shape).is_err(),
            "{shape:?}"
        );
        assert!(RmsNorm::new().plan(ctx, shape).is_err(), "{shape:?}");
        assert!(
            LayerNorm::new().tensors(ctx, shape, 1).is_err(),
            "{shape:?}"
        );
    }
    let x = GpuTensor::zeros(ctx, &[4, 8]).unwrap();
    let y = GpuTensor::zeros(ctx, &[4, 8]).unwrap();
    for eps in [f32::NAN, -1.0, f32::INFINITY, f32::NEG_INFINITY] {
        let op = LayerNorm {
            epsilon: eps,
            ..LayerNorm::new()
        };
        let e = op.forward_into(ctx, &LayerNormIo::new(&x, &y)).unwrap_err();
        assert!(matches!(e, Error::InvalidEpsilon(_)), "epsilon {eps}: {e}");
        let e = op.forward(ctx, &x, None, None).unwrap_err();
        assert!(matches!(e, Error::InvalidEpsilon(_)), "epsilon {eps}: {e}");
    }
    for axis in [isize::MIN, -3, 2, isize::MAX] {
        let e = LayerNorm::new()
            .with_axis(axis)
            .forward(ctx, &x, None, None)
            .unwrap_err();
        assert!(
            matches!(e, Error::AxisOutOfRange { .. }),
            "axis {axis}: {e}"
        );
    }
    // gamma of the wrong shape, y of the wrong shape, y aliasing x.
    let g = GpuTensor::zeros(ctx, &[7]).unwrap();
    let e = LayerNorm::new()
        .forward(ctx, &x, Some(&g), None)
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let y_bad = GpuTensor::zeros(ctx, &[8, 4]).unwrap();
    let e = LayerNorm::new()
        .forward_into(ctx, &LayerNormIo::new(&x, &y_bad))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = LayerNorm::new()
        .forward_into(ctx, &LayerNormIo::new(&x, &x))
        .unwrap_err();
    assert!(matches!(e, Error::AliasedBuffers { .. }), "{e}");
}
