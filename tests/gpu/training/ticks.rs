//! Backward passes are ticked and labelled.

use wgpu_norm::NormOp;
use wgpu_norm::{
    GpuTensor, LayerNorm, LayerNormGradIo, RecordKind, RmsNorm, RmsNormGradIo, Ticks,
    TicksSettings, reference, synthetic,
};

use crate::common::{ctx, gl_serial};

#[test]
fn backward_passes_are_ticked_and_labelled() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (64usize, 96usize);
    let up = |seed| {
        GpuTensor::from_slice(
            ctx,
            &synthetic::normal(seed, rows * dim, 0.0, 1.0),
            &[rows, dim],
        )
        .unwrap()
    };
    let (x, dy) = (up(121), up(122));
    let dx = GpuTensor::zeros(ctx, &[rows, dim]).unwrap();
    let dgamma = GpuTensor::zeros(ctx, &[dim]).unwrap();
    let mut ticks = Ticks::new(ctx, TicksSettings::default());
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    let io = LayerNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        mean: None,
        rstd: None,
        dx: &dx,
        dgamma: Some(&dgamma),
        dbeta: None,
    };
    LayerNorm::new()
        .encode_backward_ticked(ctx, &mut encoder, &io, &mut ticks)
        .unwrap();
    let io = RmsNormGradIo {
        x: &x,
        dy: &dy,
        gamma: None,
        rstd: None,
        dx: &dx,
        dgamma: Some(&dgamma),
    };
    RmsNorm::new()
        .encode_backward_ticked(ctx, &mut encoder, &io, &mut ticks)
        .unwrap();
    ticks.submit(encoder).unwrap();
    ticks.flush().unwrap();
    let passes: Vec<_> = ticks
        .records()
        .iter()
        .filter(|r| r.kind == RecordKind::Pass)
        .map(|r| r.label.clone())
        .collect();
    if ctx.capabilities().timestamps {
        let prefixes = [
            "layer_norm_stats 64x96 (",
            "layer_norm_backward 64x96 (",
            "rms_norm_stats 64x96 (",
            "rms_norm_backward 64x96 (",
        ];
        assert_eq!(passes.len(), 4, "{passes:?}");
        for (label, prefix) in passes.iter().zip(prefixes) {
            assert!(
                label.starts_with(prefix),
                "{label} should start with {prefix}"
            );
        }
    }
    // The gradients are right too (the ticked path is the same encoder).
    let want = reference::norm_backward(
        &x.read(ctx).unwrap(),
        &dy.read(ctx).unwrap(),
        dim,
        None,
        1e-5,
        true,
    );
    let err = reference::max_abs_error(&dx.read(ctx).unwrap(), &want.dx);
    assert!(err < 1e-4, "ticked RMSNorm backward: dx error {err:.3e}");
}
