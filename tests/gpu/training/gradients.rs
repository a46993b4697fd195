//! The backward against finite differences of the forward, and bit-identical
//! from run to run.

use wgpu_norm::{GpuTensor, synthetic};

use crate::common::{backend, ctx, gl_serial};

use super::*;

#[test]
fn backward_matches_finite_differences() {
    // Central differences of L = Σ y·w with h = 1e-2 on N(0, 1) data: the
    // f32 forward's rounding gives the quotient an error of about
    // dim · 1e-7 / 2h ≈ 1e-5 and the truncation O(h²) ≈ 1e-4, so the GPU's
    // gradients must agree within 2e-3 · (1 + |gradient|).
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (2usize, 7usize);
    let h = 1e-2f32;
    for op in [Op::layer(), Op::rms()] {
        let x = synthetic::normal(71, rows * dim, 0.3, 1.0);
        let g = synthetic::normal(72, dim, 1.0, 0.3);
        let w = synthetic::normal(73, rows * dim, 0.0, 1.0);
        let (dx, dgamma) = {
            let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice(ctx, v, s).unwrap();
            let (xg, wg, gg) = (up(&x, &[rows, dim]), up(&w, &[rows, dim]), up(&g, &[dim]));
            match op {
                Op::Layer(ln) => {
                    let gr = ln.backward(ctx, &xg, &wg, Some(&gg), None).unwrap();
                    (gr.dx.read(ctx).unwrap(), gr.dgamma.read(ctx).unwrap())
                }
                Op::Rms(rn) => {
                    let gr = rn.backward(ctx, &xg, &wg, Some(&gg), None).unwrap();
                    (gr.dx.read(ctx).unwrap(), gr.dgamma.read(ctx).unwrap())
                }
            }
        };
        // All ±h copies of x in one forward.
        let copies: Vec<Vec<f32>> = (0..rows * dim)
            .flat_map(|i| {
                [h, -h].map(|d| {
                    let mut c = x.clone();
                    c[i] += d;
                    c
                })
            })
            .collect();
        let l = losses(ctx, op, &copies, &g, &w);
        for i in 0..rows * dim {
            let fd = (l[2 * i] - l[2 * i + 1]) / (2.0 * h as f64);
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!(
                (dx[i] as f64 - fd).abs() <= tol,
                "{op:?} dx[{i}] = {} but the finite difference is {fd}",
                dx[i]
            );
        }
        for c in 0..dim {
            let mut lp = [0.0; 2];
            for (k, d) in [h, -h].into_iter().enumerate() {
                let mut gp = g.clone();
                gp[c] += d;
                lp[k] = losses(ctx, op, std::slice::from_ref(&x), &gp, &w)[0];
            }
            let fd = (lp[0] - lp[1]) / (2.0 * h as f64);
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!(
                (dgamma[c] as f64 - fd).abs() <= tol,
                "{op:?} dgamma[{c}] = {} but the finite difference is {fd}",
                dgamma[c]
            );
        }
        eprintln!(
            "[finite-differences] {} {op:?}: dx and dgamma within 2e-3·(1+|g|)",
            backend(ctx)
        );
    }
}

#[test]
fn backward_is_bit_identical_from_run_to_run() {
    let _serial = gl_serial();
    let ctx = ctx();
    let (rows, dim) = (3000usize, 515usize);
    let x = synthetic::normal(81, rows * dim, 0.0, 1.0);
    let dy = synthetic::normal(82, rows * dim, 0.0, 1.0);
    let g = synthetic::normal(83, dim, 1.0, 0.3);
    let up = |v: &[f32], s: &[usize]| GpuTensor::from_slice(ctx, v, s).unwrap();
    let (xg, dyg, gg) = (up(&x, &[rows, dim]), up(&dy, &[rows, dim]), up(&g, &[dim]));
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let run = |op: Op| -> Vec<Vec<u32>> {
        match op {
            Op::Layer(ln) => {
                let gr = ln.backward(ctx, &xg, &dyg, Some(&gg), None).unwrap();
                [gr.dx, gr.dgamma, gr.dbeta]
                    .iter()
                    .map(|t| bits(t.read(ctx).unwrap()))
                    .collect()
            }
            Op::Rms(rn) => {
                let gr = rn.backward(ctx, &xg, &dyg, Some(&gg), None).unwrap();
                [gr.dx, gr.dgamma]
                    .iter()
                    .map(|t| bits(t.read(ctx).unwrap()))
                    .collect()
            }
        }
    };
    for op in [Op::layer(), Op::rms()] {
        let first = run(op);
        for attempt in 1..4 {
            assert!(
                first == run(op),
                "{op:?}: run {attempt} differs from run 0 in some bit"
            );
        }
        eprintln!(
            "[determinism] {} {op:?}: 4 runs bit-identical",
            backend(ctx)
        );
    }
}
