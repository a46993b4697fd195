//! The standing fuzz suite of the `wgpu-norm apply` CLI: proptest over NPY
//! headers and bytes, shapes, flag combinations and value distributions
//! (magnitudes from 1e-38 to 3e38, offsets, NaN and Inf placement).
//!
//! Every case must either exit 0 with every output within tolerance of the
//! f64 reference (computed here from the input file as npyz reads it), or
//! exit 2 with a `wgpu-norm: ` message and nothing written (no output, no
//! temporary file). Any other exit (a panic's 101, an abort's 134, a signal)
//! fails, and so does refusing a valid case or accepting an invalid one.
//!
//! Cases: `FUZZ_CASES` (default 300; CI runs the default on each adapter).
//! Failures proptest finds are kept in `tests/proptest-regressions/fuzz.txt`
//! and replayed first; the hand-kept corpus below (`CORPUS`) holds the
//! cases issue #14 reported, replayed on every run.
//!
//! Tolerances: y as `reference::layer_norm_tolerance` does it
//! (4e-6 · (max|gamma| · (1 + max|x̂|) + max|beta|)), 1e-3 in place of 4e-6
//! for f16 storage; mean within 1e-6 of the row's largest magnitude (twice
//! that magnitude for rows of values all below 2^-100, whose denormals GPUs
//! may flush to 0); rstd
//! within 1e-5 relative or f32's smallest normal absolute (a denormal rstd
//! may be flushed); gradients as `reference::norm_backward_tolerance` (×250
//! dx, ×100 dgamma/dbeta for f16), with f32's smallest normal as dx's floor.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use wgpu_norm::{reference, synthetic};

static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

const OPS: [&str; 4] = [
    "layer-norm",
    "rms-norm",
    "layer-norm-backward",
    "rms-norm-backward",
];

/// What is done to the NPY file of X.
#[derive(Clone, Debug)]
enum Mutation {
    None,
    /// Cut the file to this many thousandths of its length.
    Truncate(u16),
    /// Another shape in the header (the data stays).
    Shape(String),
    /// Another dtype in the header (the data stays little-endian f32).
    Descr(&'static str),
    Fortran,
    /// One header byte (after the magic) replaced.
    HeaderByte(usize, u8),
}

#[derive(Clone, Debug)]
struct Case {
    op: usize,
    shape: Vec<usize>,
    axis: i64,
    epsilon: f32,
    f16: bool,
    scale: bool,
    bias: bool,
    stats: bool,
    seed: u64,
    /// Values are N(0, 1) · 10^exp (+ 10^offset), clamped to f32's range.
    exp: i32,
    offset: Option<i32>,
    nan_at: Option<usize>,
    inf_at: Option<usize>,
    mutation: Mutation,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        14 => Just(Mutation::None),
        1 => (0u16..1000).prop_map(Mutation::Truncate),
        1 => prop_oneof![
            Just("(18446744073709551615, 2)".to_string()),
            Just("(4294967296, 4294967296)".to_string()),
            Just("(9223372036854775808, 9223372036854775808)".to_string()),
            Just("(65536, 65536, 65536)".to_string()),
            Just("(-1,)".to_string()),
            Just("()".to_string()),
            Just("(0, 4)".to_string()),
            Just("(3,".to_string()),
            (1u64..1_000_000_000_000, 1u64..8).prop_map(|(a, b)| format!("({a}, {b})")),
        ]
        .prop_map(Mutation::Shape),
        1 => prop_oneof![
            Just("<f8"), Just("<i4"), Just("|b1"), Just(">f4"), Just("<f2"), Just("<c8"), Just("O"),
        ]
        .prop_map(Mutation::Descr),
        1 => Just(Mutation::Fortran),
        1 => (6usize..40, any::<u8>()).prop_map(|(i, b)| Mutation::HeaderByte(i, b)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            0usize..4,
            prop::collection::vec(1usize..10, 1..4),
            prop_oneof![4 => Just(-1i64), 2 => -3i64..3, 1 => -6i64..6],
        ),
        prop_oneof![
            12 => Just(1e-5f32), 3 => Just(1e-3), 1 => Just(0.0), 1 => Just(-1.0),
            1 => Just(f32::NAN), 1 => Just(f32::INFINITY),
        ],
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        ),
        (-38i32..=38, prop::option::weighted(0.3, 0i32..=38)),
        (
            prop::option::weighted(0.2, any::<usize>()),
            prop::option::weighted(0.2, any::<usize>()),
        ),
        mutation(),
    )
        .prop_map(
            |(
                (op, shape, axis),
                epsilon,
                (f16, scale, bias, stats, seed),
                (exp, offset),
                (nan_at, inf_at),
                mutation,
            )| Case {
                op,
                shape,
                axis,
                epsilon,
                f16: f16 && seed % 4 == 0,
                scale,
                bias,
                stats,
                seed,
                // With epsilon 0, a row's variance must be a normal f32 (above
                // ~1e-38) to be computed at all: values of 1e-15 and up.
                exp: if epsilon == 0.0 { exp.max(-15) } else { exp },
                offset,
                nan_at,
                inf_at,
                mutation,
            },
        )
}

fn values(case: &Case, n: usize) -> Vec<f32> {
    let z = synthetic::normal(case.seed, n, 0.0, 1.0);
    let m = 10f64.powi(case.exp);
    let off = case.offset.map_or(0.0, |e| 10f64.powi(e));
    let mut x: Vec<f32> = z
        .iter()
        .map(|&v| (v as f64 * m + off).clamp(-(f32::MAX as f64), f32::MAX as f64) as f32)
        .collect();
    if let Some(i) = case.nan_at {
        x[i % n] = f32::NAN;
    }
    if let Some(i) = case.inf_at {
        x[i % n] = if i % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
    }
    x
}

/// An NPY v1.0 file: `descr`, order, `shape` as written in the header.
fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn f32_npy(shape: &[usize], v: &[f32]) -> Vec<u8> {
    npy("<f4", false, &shape_str(shape), bytemuck::cast_slice(v))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read_back(path: &Path) -> Option<Vec<f32>> {
    read_shaped(path).map(|(_, v)| v)
}

fn read_shaped(path: &Path) -> Option<(Vec<usize>, Vec<f32>)> {
    let npy = npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(path).ok()?)).ok()?;
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let v = match npy.dtype() {
        npyz::DType::Plain(t) if t.size_field() == 2 => Some(
            npy.into_vec::<half::f16>()
                .ok()?
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        _ => npy.into_vec::<f32>().ok(),
    }?;
    Some((shape, v))
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect()
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter()
        .filter(|a| a.is_finite())
        .fold(0.0f64, |m, &a| m.max((a as f64).abs()))
}

/// Whether the case is valid input that must be accepted (else it must be
/// refused with exit code 2).
fn valid(case: &Case, has_f16: bool) -> bool {
    let ndim = case.shape.len() as i64;
    let axis_ok = (-ndim..ndim).contains(&case.axis);
    let eps_ok = case.epsilon.is_finite() && case.epsilon >= 0.0;
    let f16_ok = !case.f16 || has_f16;
    let mutation_ok = match &case.mutation {
        Mutation::None => true,
        Mutation::Descr(">f4") => true,
        _ => false, // decided by the tool; any of exit 0 or 2 is checked
    };
    axis_ok && eps_ok && f16_ok && mutation_ok
}

/// Runs one case; Ok(()) when the tool kept its promises.
fn run_case(case: &Case, has_f16: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let op = OPS[case.op];
    let backward = op.ends_with("backward");
    let rms = op.starts_with("rms");
    let n: usize = case.shape.iter().product();
    let ndim = case.shape.len() as i64;
    let axis = if case.axis < 0 {
        case.axis + ndim
    } else {
        case.axis
    };
    let norm_shape: Vec<usize> = if (0..ndim).contains(&axis) {
        case.shape[axis as usize..].to_vec()
    } else {
        vec![*case.shape.last().unwrap()]
    };
    let cols: usize = norm_shape.iter().product();
    let x = values(case, n);
    let x_bytes: Vec<u8> = bytemuck::cast_slice(&x).to_vec();
    let mut x_file = match &case.mutation {
        Mutation::Shape(s) => npy("<f4", false, s, &x_bytes),
        Mutation::Descr(d) => npy(d, false, &shape_str(&case.shape), &x_bytes),
        Mutation::Fortran => npy("<f4", true, &shape_str(&case.shape), &x_bytes),
        _ => f32_npy(&case.shape, &x),
    };
    match &case.mutation {
        Mutation::Truncate(k) => x_file.truncate(x_file.len() * *k as usize / 1000),
        Mutation::HeaderByte(i, b) => {
            let i = *i % x_file.len();
            x_file[i] = *b;
        }
        _ => {}
    }
    std::fs::write(p("x.npy"), &x_file).unwrap();
    let gamma = synthetic::normal(case.seed ^ 1, cols, 1.0, 0.5);
    let beta = synthetic::normal(case.seed ^ 2, cols, 0.0, 0.5);
    let dy = synthetic::normal(case.seed ^ 3, n, 0.0, 1.0);
    std::fs::write(p("w.npy"), f32_npy(&norm_shape, &gamma)).unwrap();
    std::fs::write(p("b.npy"), f32_npy(&norm_shape, &beta)).unwrap();
    std::fs::write(p("dy.npy"), f32_npy(&case.shape, &dy)).unwrap();

    let s = |q: PathBuf| q.to_str().unwrap().to_string();
    let eps = format!("{}", case.epsilon);
    let axis_s = case.axis.to_string();
    let mut args: Vec<String> = vec![
        "apply".into(),
        "--op".into(),
        op.into(),
        "--input".into(),
        s(p("x.npy")),
    ];
    args.extend(["--axis".into(), axis_s, "--epsilon".into(), eps]);
    if case.f16 {
        args.extend(["--dtype".into(), "f16".into()]);
    }
    if case.scale {
        args.extend(["--scale".into(), s(p("w.npy"))]);
    }
    let with_bias = case.bias && !rms && !backward;
    if with_bias {
        args.extend(["--bias".into(), s(p("b.npy"))]);
    }
    if backward {
        args.extend([
            "--grad".into(),
            s(p("dy.npy")),
            "--grad-input".into(),
            s(p("dx.npy")),
        ]);
        if case.stats {
            args.extend(["--grad-scale".into(), s(p("dg.npy"))]);
        }
    } else {
        args.extend(["--output".into(), s(p("y.npy"))]);
        if case.stats && rms {
            args.extend(["--inv-std-dev".into(), s(p("r.npy"))]);
        }
        if case.stats && !rms {
            args.extend([
                "--mean".into(),
                s(p("m.npy")),
                "--inv-std-dev".into(),
                s(p("r.npy")),
            ]);
        }
    }
    let before = listing(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
        .args(&args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let must_accept = valid(case, has_f16);
    match out.status.code() {
        Some(2) => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            prop_assert!(!must_accept, "a valid case was refused: {err}");
            prop_assert!(
                err.starts_with("wgpu-norm: ") && err.len() > 12,
                "exit 2 without a message: {err:?}"
            );
            prop_assert_eq!(
                listing(dir.path()),
                before,
                "a refused case left files: {}",
                err
            );
            return Ok(());
        }
        Some(0) => {}
        code => {
            return Err(TestCaseError::fail(format!(
                "exit {code:?} (neither 0 nor 2): {err}"
            )));
        }
    }
    let ok_to_accept = (-ndim..ndim).contains(&case.axis)
        && case.epsilon.is_finite()
        && case.epsilon >= 0.0
        && (!case.f16 || has_f16);
    prop_assert!(ok_to_accept, "an invalid case was accepted: {args:?}");
    ACCEPTED.fetch_add(1, Ordering::Relaxed);

    // Exit 0: compare with the reference, from X as the tool read it.
    let (x_shape, xr) = read_shaped(&p("x.npy")).expect("the tool read X; so must npyz");
    if x_shape != case.shape {
        return Ok(()); // a mutated header that still parses: another array
    }
    let cols_real = cols;
    let rounded = |v: &[f32]| if case.f16 { round_f16(v) } else { v.to_vec() };
    let (xr, g, b, dyr) = (rounded(&xr), rounded(&gamma), rounded(&beta), rounded(&dy));
    let g = case.scale.then_some(&g[..]);
    let b = with_bias.then_some(&b[..]);
    let epsilon = case.epsilon as f64;
    if backward {
        let mut want = reference::norm_backward(&xr, &dyr, cols_real, g, epsilon, rms);
        // A row holding NaN or Inf has a NaN rstd (the library's rule for
        // every op), so its dx, and every column's dgamma, are NaN; RMSNorm's
        // formula alone would give finite values beside an Inf.
        let mut any = false;
        for (row, d) in xr
            .chunks_exact(cols_real)
            .zip(want.dx.chunks_exact_mut(cols_real))
        {
            if row.iter().any(|v| !v.is_finite()) {
                d.fill(f64::NAN);
                any = true;
            }
        }
        if any {
            want.dgamma.fill(f64::NAN);
        }
        let (mut tdx, mut tdg, _) = reference::norm_backward_tolerance(&dyr, &want, g);
        if case.f16 {
            (tdx, tdg) = (tdx * 250.0, tdg * 100.0);
        }
        let tdx = tdx.max(f32::MIN_POSITIVE as f64);
        let dx = read_back(&p("dx.npy")).unwrap();
        let e = reference::max_abs_error(&dx, &want.dx);
        prop_assert!(e <= tdx, "dx error {e:e} > {tdx:e}");
        if case.stats {
            let dg = read_back(&p("dg.npy")).unwrap();
            let e = reference::max_abs_error(&dg, &want.dgamma);
            prop_assert!(e <= tdg, "dgamma error {e:e} > {tdg:e}");
        }
        return Ok(());
    }
    let xs: Vec<f64> = xr.iter().map(|&v| v as f64).collect();
    let (mut want_y, mean, rstd) = if rms {
        let r = reference::rms_norm_f64(&xs, cols_real, g, epsilon);
        let m = vec![0.0; r.rstd.len()];
        (r.y, m, r.rstd)
    } else {
        let r = reference::layer_norm_f64(&xs, cols_real, g, b, epsilon);
        (r.y, r.mean, r.rstd)
    };
    for (row, o) in xs
        .chunks_exact(cols_real)
        .zip(want_y.chunks_exact_mut(cols_real))
    {
        if row.iter().any(|v| !v.is_finite()) {
            o.fill(f64::NAN);
        }
    }
    let xhat_max = xs
        .chunks_exact(cols_real)
        .zip(mean.iter().zip(&rstd))
        .flat_map(|(row, (&m, &r))| row.iter().map(move |&v| ((v - m) * r).abs()))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let factor = if case.f16 { 1e-3 } else { 4e-6 };
    let tol = factor * (g.map_or(1.0, max_abs) * (1.0 + xhat_max) + b.map_or(0.0, max_abs));
    let y = read_back(&p("y.npy")).unwrap();
    let e = reference::max_abs_error(&y, &want_y);
    prop_assert!(e <= tol, "y error {e:e} > {tol:e}");
    if case.stats {
        let r = read_back(&p("r.npy")).unwrap();
        // RMSNorm has no mean output: its "mean" is 0, as the reference's.
        let m = if rms {
            vec![0.0; r.len()]
        } else {
            read_back(&p("m.npy")).unwrap()
        };
        for (row, xs_row) in xs.chunks_exact(cols_real).enumerate() {
            let finite = xs_row.iter().all(|v| v.is_finite());
            let big = xs_row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let (gm, gr) = (m[row] as f64, r[row] as f64);
            if !finite {
                prop_assert!(gr.is_nan(), "row {row} holds NaN/Inf: rstd {gr}, want NaN");
                continue;
            }
            // Denormals may be flushed to 0 (SwiftShader does): a row of
            // values all below 2^-100 may lose any of them.
            let tol = if big < 2f64.powi(-100) {
                2.0 * big
            } else {
                1e-6 * big
            };
            prop_assert!(
                (gm - mean[row]).abs() <= tol,
                "row {row}: mean {gm:e}, want {:e}",
                mean[row]
            );
            let wr = rstd[row];
            prop_assert!(
                (gr - wr).abs() <= 1e-5 * wr.abs()
                    || (gr - wr).abs() <= f32::MIN_POSITIVE as f64
                    || (gr.is_infinite() && wr.is_infinite()),
                "row {row}: rstd {gr:e}, want {wr:e}"
            );
        }
    }
    Ok(())
}

fn has_f16() -> bool {
    crate::common::ctx().capabilities().shader_f16
}

/// The cases issue #14 reported (and any found since), replayed every run.
fn corpus() -> Vec<Case> {
    let base = Case {
        op: 0,
        shape: vec![3, 7],
        axis: -1,
        epsilon: 1e-5,
        f16: false,
        scale: true,
        bias: true,
        stats: true,
        seed: 14,
        exp: 0,
        offset: None,
        nan_at: None,
        inf_at: None,
        mutation: Mutation::None,
    };
    let mut v = Vec::new();
    for op in 0..4 {
        // Rows of N(0,1) · 1e18, 1e20, 1e38 (silently wrong before).
        for exp in [18, 20, 38] {
            v.push(Case {
                op,
                exp,
                ..base.clone()
            });
        }
        // NaN and Inf rows (rstd 316.2 instead of NaN before).
        v.push(Case {
            op,
            nan_at: Some(3),
            ..base.clone()
        });
        v.push(Case {
            op,
            inf_at: Some(9),
            ..base.clone()
        });
        // Offsets of 1e7, denormal magnitudes.
        v.push(Case {
            op,
            offset: Some(7),
            ..base.clone()
        });
        v.push(Case {
            op,
            exp: -38,
            ..base.clone()
        });
    }
    // A header whose shape's product overflows ("empty" before), and lying shapes.
    for s in [
        "(18446744073709551615, 2)",
        "(4294967296, 4294967296)",
        "(1000000000000, 4)",
    ] {
        v.push(Case {
            mutation: Mutation::Shape(s.into()),
            ..base.clone()
        });
    }
    v.push(Case {
        mutation: Mutation::Descr(">f4"),
        ..base.clone()
    });
    v.push(Case {
        mutation: Mutation::Truncate(500),
        ..base.clone()
    });
    v
}

#[test]
fn the_corpus_of_found_failures() {
    let _serial = crate::common::gl_serial();
    let f16 = has_f16();
    for case in corpus() {
        if let Err(e) = run_case(&case, f16) {
            panic!("{case:?}: {e}");
        }
    }
}

#[test]
fn fuzz_the_cli_with_hostile_files_flags_and_values() {
    let _serial = crate::common::gl_serial();
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut runner = TestRunner::new(Config {
        cases,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    let f16 = has_f16();
    let start = std::time::Instant::now();
    let result = runner.run(&case(), |case| run_case(&case, f16));
    eprintln!(
        "[fuzz] {cases} cases in {:.1} s ({} accepted and checked, {} refused with exit 2, both counts with the corpus)",
        start.elapsed().as_secs_f64(),
        ACCEPTED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
