//! InstanceNorm forward and backward against the oracles (GroupNorm with a
//! group per channel): spatial 1, odd C, channels-last, more fine sets than
//! one dispatch addresses (65,535 workgroups of 64 lanes); f16 in
//! `group_norm.rs`.

use wgpu_norm::reference::instance_norm_f64;
use wgpu_norm::{DType, InstanceNorm};

use super::group_norm::{Case, check_case};
use super::*;
use crate::common::{ctx, gl_serial};

#[test]
fn instance_norm_matches_the_reference() {
    let _serial = gl_serial();
    let ctx = ctx();
    for base in [
        Case::new(2, 3, &[7, 5], 3),
        Case::new(4, 5, &[1], 5),
        Case::new(1, 9, &[4096], 9),
        Case {
            offset: 10_000.0,
            std: 1.0,
            ..Case::new(2, 6, &[100], 6)
        },
    ] {
        for last in [false, true] {
            let case = Case { last, ..base };
            let op = InstanceNorm::new().with_channels_last(last);
            check_case(ctx, &op, case, None);
        }
    }
    // The forward's own oracle agrees with GroupNorm's at G = C.
    let x = data(5, 2 * 3 * 4, 1.0, 1.0, DType::F32);
    let a = instance_norm_f64(&f64s(&x), 2, 3, 4, None, None, 1e-5);
    let b =
        wgpu_norm::reference::group_norm_f64(&f64s(&x), 2, 3, 4, 3, None, None, 1e-5, false, false);
    assert_eq!(a.y, b.y);
}

#[test]
fn instance_norm_over_more_sets_than_one_dispatch_addresses() {
    let _serial = gl_serial();
    let ctx = ctx();
    // 4 × 1,048,575 (n, c) sets: 65,536 workgroups of 64 lanes per pass
    // (and the backward's coefficients just inside lavapipe's 128 MiB binding).
    let case = Case::new(4, 1_048_575, &[2], 1_048_575);
    check_case(ctx, &InstanceNorm::new(), case, None);
}
