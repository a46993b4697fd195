//! `wgpu-norm apply` with the grouped ops on NPY files: each op and its
//! backward reproduce the f64 oracles (ONNX's definitions), and flags that
//! do not fit an op exit 2 with a message and write nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use npyz::WriterBuilder;
use wgpu_norm::DType;
use wgpu_norm::reference::{
    batch_norm_backward_f64, batch_norm_training_f64, group_norm_backward_f64, group_norm_f64,
    lp_norm_backward_f64, lp_norm_f64,
};

use super::{assert_close, assert_close_to, data, f64s};

fn wgpu_norm(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
        .args(args)
        .output()
        .expect("the wgpu-norm binary runs")
}

fn write(path: &Path, shape: &[usize], v: &[f32]) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let npy = npyz::NpyFile::new(f).unwrap();
    (npy.shape().to_vec(), npy.into_vec().unwrap())
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_string()
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn apply_runs_every_grouped_op_and_its_backward_as_onnx_defines_it() {
    let d = Dir(tempfile::tempdir().unwrap());
    let (n, c, h, w) = (2usize, 6usize, 3usize, 5usize);
    let shape = [n, c, h, w];
    let len = n * c * h * w;
    let x = data(61, len, 1.0, 2.0, DType::F32);
    let dy = data(62, len, 0.0, 1.0, DType::F32);
    let (scale, bias) = (
        data(63, c, 1.0, 0.5, DType::F32),
        data(64, c, 0.0, 0.5, DType::F32),
    );
    write(&d.p("x.npy"), &shape, &x);
    write(&d.p("dy.npy"), &shape, &dy);
    write(&d.p("s.npy"), &[c], &scale);
    write(&d.p("b.npy"), &[c], &bias);
    let common = |op: &str| {
        args(&[
            "apply",
            "--op",
            op,
            "--input",
            &d.s("x.npy"),
            "--scale",
            &d.s("s.npy"),
            "--bias",
            &d.s("b.npy"),
        ])
    };
    let (xf, dyf) = (f64s(&x), f64s(&dy));
    let (sp, bp) = (Some(&scale[..]), Some(&bias[..]));
    let tol = 2e-6;

    // GroupNorm with SiLU, and InstanceNorm (G = C), forward and backward.
    for (op, groups, extra) in [
        (
            "group-norm",
            3,
            vec!["--num-groups", "3", "--activation", "silu"],
        ),
        ("instance-norm", c, vec![]),
    ] {
        let silu = op == "group-norm";
        let mut a = common(op);
        a.extend(args(&extra));
        a.extend(args(&["--output", &d.s("y.npy")]));
        ok(&wgpu_norm(&a));
        let want = group_norm_f64(&xf, n, c, h * w, groups, sp, bp, 1e-5, silu, false);
        let (y_shape, y) = read(&d.p("y.npy"));
        assert_eq!(y_shape, [2, 6, 3, 5]);
        assert_close(&format!("cli {op} y"), &y, &want.y, tol);
        let mut a = common(&format!("{op}-backward"));
        a.extend(args(&extra));
        a.extend(args(&[
            "--grad",
            &d.s("dy.npy"),
            "--grad-input",
            &d.s("dx.npy"),
            "--grad-scale",
            &d.s("ds.npy"),
            "--grad-bias",
            &d.s("db.npy"),
        ]));
        ok(&wgpu_norm(&a));
        let g = group_norm_backward_f64(&xf, &dyf, n, c, h * w, groups, sp, bp, 1e-5, silu, false);
        assert_close_to(
            &format!("cli {op} dx"),
            &read(&d.p("dx.npy")).1,
            &g.dx,
            4.0 * tol,
            10.0,
        );
        assert_close(
            &format!("cli {op} dscale"),
            &read(&d.p("ds.npy")).1,
            &g.dscale,
            4.0 * tol,
        );
        assert_close(
            &format!("cli {op} dbias"),
            &read(&d.p("db.npy")).1,
            &g.dbias,
            4.0 * tol,
        );
    }

    // GroupNorm's statistics written by the forward, read by the backward.
    let mut a = common("group-norm");
    a.extend(args(&[
        "--num-groups",
        "3",
        "--output",
        &d.s("y.npy"),
        "--mean",
        &d.s("m3.npy"),
        "--inv-std-dev",
        &d.s("r3.npy"),
    ]));
    ok(&wgpu_norm(&a));
    let want = group_norm_f64(&xf, n, c, h * w, 3, sp, bp, 1e-5, false, false);
    let (m_shape, m) = read(&d.p("m3.npy"));
    assert_eq!(m_shape, [2, 3]);
    assert_close("cli group-norm mean", &m, &want.mean, tol);
    let mut a = common("group-norm-backward");
    a.extend(args(&[
        "--num-groups",
        "3",
        "--mean",
        &d.s("m3.npy"),
        "--inv-std-dev",
        &d.s("r3.npy"),
        "--grad",
        &d.s("dy.npy"),
        "--grad-input",
        &d.s("dx.npy"),
    ]));
    ok(&wgpu_norm(&a));
    let g = group_norm_backward_f64(&xf, &dyf, n, c, h * w, 3, sp, bp, 1e-5, false, false);
    assert_close_to(
        "cli group-norm dx (saved)",
        &read(&d.p("dx.npy")).1,
        &g.dx,
        4.0 * tol,
        10.0,
    );

    // BatchNorm in training mode with PyTorch's running variance.
    let (mean, var) = (data(65, c, 0.5, 0.2, DType::F32), vec![1.5f32; c]);
    write(&d.p("m.npy"), &[c], &mean);
    write(&d.p("v.npy"), &[c], &var);
    let mut a = common("batch-norm");
    a.extend(args(&[
        "--input-mean",
        &d.s("m.npy"),
        "--input-var",
        &d.s("v.npy"),
        "--training-mode",
        "--momentum",
        "0.8",
        "--unbiased-running-var",
        "--running-mean",
        &d.s("rm.npy"),
        "--running-var",
        &d.s("rv.npy"),
        "--output",
        &d.s("y.npy"),
    ]));
    ok(&wgpu_norm(&a));
    let r = batch_norm_training_f64(
        &xf,
        n,
        c,
        h * w,
        sp,
        bp,
        1e-5,
        0.8f32 as f64,
        &f64s(&mean),
        &f64s(&var),
        true,
    );
    assert_close("cli batch-norm y", &read(&d.p("y.npy")).1, &r.y, tol);
    assert_close(
        "cli batch-norm running_mean",
        &read(&d.p("rm.npy")).1,
        &r.running_mean,
        tol,
    );
    assert_close(
        "cli batch-norm running_var",
        &read(&d.p("rv.npy")).1,
        &r.running_var,
        4.0 * tol,
    );
    let mut a = common("batch-norm-backward");
    a.extend(args(&[
        "--training-mode",
        "--grad",
        &d.s("dy.npy"),
        "--grad-input",
        &d.s("dx.npy"),
    ]));
    ok(&wgpu_norm(&a));
    let g = batch_norm_backward_f64(&xf, &dyf, n, c, h * w, sp, 1e-5, None);
    assert_close_to(
        "cli batch-norm dx",
        &read(&d.p("dx.npy")).1,
        &g.dx,
        4.0 * tol,
        10.0,
    );

    // LpNorm, p 1 along axis 1, and its backward.
    for (p, axis) in [("1", "1"), ("2", "-1")] {
        let ax = if axis == "1" { 1 } else { 3 };
        let pn: u32 = p.parse().unwrap();
        ok(&wgpu_norm(&args(&[
            "apply",
            "--op",
            "lp-norm",
            "--input",
            &d.s("x.npy"),
            "--p",
            p,
            "--axis",
            axis,
            "--output",
            &d.s("y.npy"),
        ])));
        assert_close(
            "cli lp-norm y",
            &read(&d.p("y.npy")).1,
            &lp_norm_f64(&xf, &shape, ax, pn),
            tol,
        );
        ok(&wgpu_norm(&args(&[
            "apply",
            "--op",
            "lp-norm-backward",
            "--input",
            &d.s("x.npy"),
            "--p",
            p,
            "--axis",
            axis,
            "--grad",
            &d.s("dy.npy"),
            "--grad-input",
            &d.s("dx.npy"),
        ])));
        let want = lp_norm_backward_f64(&xf, &dyf, &shape, ax, pn);
        assert_close("cli lp-norm dx", &read(&d.p("dx.npy")).1, &want, 4.0 * tol);
    }
}

#[test]
fn apply_refuses_flags_that_do_not_fit_a_grouped_op() {
    let d = Dir(tempfile::tempdir().unwrap());
    write(&d.p("x.npy"), &[2, 6, 4], &[1.0; 48]);
    write(&d.p("c5.npy"), &[5], &[1.0; 5]);
    write(&d.p("c6.npy"), &[6], &[1.0; 6]);
    let x = d.s("x.npy");
    let y = d.s("y.npy");
    let (c5, c6) = (d.s("c5.npy"), d.s("c6.npy"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--op", "group-norm"], "--num-groups"),
        (
            vec!["--op", "group-norm", "--num-groups", "4"],
            "num_groups is 4",
        ),
        (
            vec!["--op", "group-norm", "--num-groups", "0"],
            "num_groups is 0",
        ),
        (
            vec!["--op", "group-norm", "--num-groups", "2", "--p", "2"],
            "--p",
        ),
        (
            vec!["--op", "instance-norm", "--num-groups", "2"],
            "--num-groups",
        ),
        (vec!["--op", "instance-norm", "--scale", &c5], "[6]"),
        (vec!["--op", "instance-norm", "--mean", &y], "--mean"),
        (vec!["--op", "batch-norm"], "--input-mean"),
        (
            vec![
                "--op",
                "batch-norm",
                "--input-mean",
                &c6,
                "--input-var",
                &c6,
                "--momentum",
                "0.5",
            ],
            "--training-mode",
        ),
        (
            vec![
                "--op",
                "batch-norm",
                "--input-mean",
                &c6,
                "--input-var",
                &c6,
                "--channels-last",
            ],
            "--channels-last",
        ),
        (vec!["--op", "lp-norm", "--p", "3"], "p is 3"),
        (vec!["--op", "lp-norm", "--scale", &c6], "--scale"),
        (vec!["--op", "lp-norm", "--axis", "3"], "axis 3"),
        (
            vec!["--op", "layer-norm", "--num-groups", "2"],
            "--num-groups",
        ),
        (
            vec!["--op", "group-norm-backward", "--num-groups", "2"],
            "--grad",
        ),
    ];
    for (flags, expect) in cases {
        let mut a = vec!["apply", "--input", &x, "--output", &y];
        if flags[1].ends_with("-backward") {
            a = vec!["apply", "--input", &x];
        }
        a.extend(flags.iter().copied());
        let out = wgpu_norm(&args(&a));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(
            err.contains(expect),
            "{flags:?}: {err:?} does not name {expect}"
        );
        assert!(!d.p("y.npy").exists(), "{flags:?} wrote an output");
    }
}

#[test]
fn check_compares_the_grouped_ops_with_the_reference_on_the_adapters() {
    for op in ["group-norm-backward", "batch-norm", "lp-norm-backward"] {
        let out = wgpu_norm(&args(&["check", "--op", op, "--shape", "2x8x5x3"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{op}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(op) && text.contains(" ok "), "{op}: {text}");
        assert!(!text.contains("FAILED"), "{op}: {text}");
    }
    let out = wgpu_norm(&args(&["check", "--op", "lp-norm", "--num-groups", "2"]));
    assert_eq!(out.status.code(), Some(2));
}
