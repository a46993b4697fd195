//! The `wgpu-norm` binary end to end: `apply` on NPY files, `run`, `check`, `adapters`.

use std::path::Path;
use std::process::{Command, Output};

use npyz::WriterBuilder;
use wgpu_norm::{reference, synthetic};

fn wgpu_norm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
        .args(args)
        .output()
        .expect("the wgpu-norm binary runs")
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let npy =
        npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    (npy.shape().to_vec(), npy.into_vec().unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn apply_layer_norm_on_npy_files_with_onnx_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let shape = [2u64, 3, 5];
    let x = synthetic::normal(1, 30, 5.0, 2.0);
    write_npy(&p("x.npy"), &shape, &x);
    for (axis, norm_shape, stats_shape) in [
        ("-1", vec![5u64], vec![2u64, 3, 1]),
        ("1", vec![3, 5], vec![2, 1, 1]),
    ] {
        let cols: u64 = norm_shape.iter().product();
        let scale = synthetic::normal(2, cols as usize, 1.0, 0.3);
        let bias = synthetic::normal(3, cols as usize, 0.0, 0.3);
        write_npy(&p("w.npy"), &norm_shape, &scale);
        write_npy(&p("b.npy"), &norm_shape, &bias);
        let out = wgpu_norm(&[
            "apply",
            "--op",
            "layer-norm",
            "--input",
            p("x.npy").to_str().unwrap(),
            "--scale",
            p("w.npy").to_str().unwrap(),
            "--bias",
            p("b.npy").to_str().unwrap(),
            "--axis",
            axis,
            "--epsilon",
            "0.001",
            "--output",
            p("y.npy").to_str().unwrap(),
            "--mean",
            p("m.npy").to_str().unwrap(),
            "--inv-std-dev",
            p("r.npy").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "axis {axis}: {}", stderr(&out));
        let want = reference::layer_norm(&x, cols as usize, Some(&scale), Some(&bias), 1e-3);
        let (y_shape, y) = read_npy(&p("y.npy"));
        assert_eq!(y_shape, shape);
        let tol = reference::layer_norm_tolerance(&x, &want, Some(&scale), Some(&bias));
        assert!(reference::max_abs_error(&y, &want.y) <= tol);
        let (m_shape, m) = read_npy(&p("m.npy"));
        let (r_shape, r) = read_npy(&p("r.npy"));
        assert_eq!((m_shape, r_shape), (stats_shape.clone(), stats_shape));
        assert!(reference::max_abs_error(&m, &want.mean) < 1e-5);
        assert!(
            r.iter()
                .zip(&want.rstd)
                .all(|(&a, &b)| ((a as f64 - b) / b).abs() < 2e-5)
        );
    }
}

#[test]
fn apply_rejects_bad_input_with_exit_code_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_npy(Path::new(&p("x.npy")), &[2, 4], &[1.0f32; 8]);
    write_npy(Path::new(&p("x64.npy")), &[2, 4], &[1.0f64; 8]);
    write_npy(Path::new(&p("w3.npy")), &[3], &[1.0f32; 3]);
    std::fs::write(p("junk.npy"), b"this is not an npy file").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--input".into(), p("x64.npy")], "f32"),
        (vec!["--input".into(), p("junk.npy")], "NPY"),
        (vec!["--input".into(), p("missing.npy")], "missing.npy"),
        (
            vec!["--input".into(), p("x.npy"), "--scale".into(), p("w3.npy")],
            "[3]",
        ),
        (
            vec![
                "--input".into(),
                p("x.npy"),
                "--epsilon".into(),
                "-1".into(),
            ],
            "epsilon",
        ),
        (
            vec!["--input".into(), p("x.npy"), "--axis".into(), "2".into()],
            "axis 2",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec![
            "apply".to_string(),
            "--op".into(),
            "layer-norm".into(),
            "--output".into(),
            p("y.npy"),
            "--mean".into(),
            p("m.npy"),
        ];
        all.extend(args.clone());
        let out = wgpu_norm(&all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: message should name {needle:?}: {}",
            stderr(&out)
        );
        assert!(
            !Path::new(&p("y.npy")).exists() && !Path::new(&p("m.npy")).exists(),
            "{args:?} left an output behind"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 4, "no temporary files left: {leftovers:?}");
}

#[test]
fn run_checks_and_reports_json_ticks_and_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    let out = wgpu_norm(&[
        "run",
        "--shape",
        "4x33x65",
        "--iters",
        "3",
        "--json",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("Time (%)") && stdout.contains("layer_norm_forward 4x33x65"),
        "the tick table: {stdout}"
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["shape"], "4x33x65");
    assert_eq!(last["ok"], true);
    assert!(last["max_abs_error"].as_f64().unwrap() <= last["tolerance"].as_f64().unwrap());
    let source = last["timing_source"].as_str().unwrap();
    assert!(
        source == "gpu_timestamps" || source == "cpu_wall_clock",
        "{source}"
    );
    let passes = last["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0]["count"], 3);
    for key in ["label", "min_us", "median_us", "p95_us", "max_us"] {
        assert!(passes[0].get(key).is_some(), "{key} missing: {}", passes[0]);
    }
    assert!(passes[0]["min_us"].as_f64().unwrap() > 0.0);
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "gpu")
            .count(),
        3
    );
}

#[test]
fn run_with_no_arguments_is_the_main_job() {
    // What `cargo run --release` does: the default shape, checked, timed.
    let out = wgpu_norm(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("8x512x768") && stdout.contains(": ok"),
        "{stdout}"
    );
}

#[test]
fn run_rejects_a_bad_shape() {
    let out = wgpu_norm(&["run", "--shape", "4x0x3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("4x0x3"), "{}", stderr(&out));
}

#[test]
fn check_compares_every_adapter() {
    for op in [
        "layer-norm",
        "rms-norm",
        "layer-norm-backward",
        "rms-norm-backward",
    ] {
        let out = wgpu_norm(&["check", "--shape", "3x5x67", "--op", op]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{op}: {stdout}\n{}", stderr(&out));
        assert!(stdout.starts_with(op), "{stdout}");
        // Every adapter's line says ok (at least the one WGPU_BACKEND names).
        let adapter_lines: Vec<_> = stdout
            .lines()
            .filter(|l| l.contains("llvmpipe") || l.contains(" ok "))
            .collect();
        assert!(
            !adapter_lines.is_empty() && !stdout.contains("FAILED"),
            "{op}: {stdout}"
        );
    }
}

#[test]
fn adapters_lists_features_as_json() {
    let out = wgpu_norm(&["adapters", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for a in &lines {
        for key in [
            "name",
            "backend",
            "device_type",
            "driver",
            "timestamps",
            "subgroups",
            "shader_f16",
            "limits",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
        assert!(
            a["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
}

/// Runs `wgpu-norm apply` with `args` (paths relative to `dir`) and asserts success.
fn apply_ok(dir: &Path, args: &[&str]) {
    let mut all = vec!["apply".to_string()];
    for a in args {
        let is_file = a.ends_with(".npy");
        all.push(if is_file {
            dir.join(a).to_str().unwrap().to_string()
        } else {
            a.to_string()
        });
    }
    let out = wgpu_norm(&all.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

#[test]
fn apply_rms_norm_fused_with_a_residual() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (rows, cols) = (6usize, 13usize);
    let x = synthetic::normal(11, rows * cols, 0.5, 1.0);
    let r = synthetic::normal(12, rows * cols, 0.0, 1.0);
    let rb = synthetic::normal(13, cols, 0.0, 0.5);
    let w = synthetic::normal(14, cols, 1.0, 0.3);
    let shape = [2u64, 3, cols as u64];
    write_npy(&p("x.npy"), &shape, &x);
    write_npy(&p("r.npy"), &shape, &r);
    write_npy(&p("rb.npy"), &[cols as u64], &rb);
    write_npy(&p("w.npy"), &[cols as u64], &w);
    apply_ok(
        dir.path(),
        &[
            "--op",
            "rms-norm",
            "--input",
            "x.npy",
            "--scale",
            "w.npy",
            "--residual",
            "r.npy",
            "--residual-bias",
            "rb.npy",
            "--sum-output",
            "s.npy",
            "--output",
            "y.npy",
            "--inv-std-dev",
            "rstd.npy",
        ],
    );
    let s = reference::residual_sum(&x, &r, Some(&rb), cols);
    let want = reference::rms_norm_f64(&s, cols, Some(&w), 1e-5);
    let (y_shape, y) = read_npy(&p("y.npy"));
    assert_eq!(y_shape, shape);
    let err = reference::max_abs_error(&y, &want.y);
    assert!(err < 4e-6 * 1.5 * 5.0, "rms-norm y error {err:.3e}");
    let (_, sum) = read_npy(&p("s.npy"));
    assert!(reference::max_abs_error(&sum, &s) < 1e-5);
    let (r_shape, rstd) = read_npy(&p("rstd.npy"));
    assert_eq!(r_shape, vec![2, 3, 1]);
    assert!(
        rstd.iter()
            .zip(&want.rstd)
            .all(|(&a, &b)| ((a as f64 - b) / b).abs() < 2e-5)
    );
}

#[test]
fn apply_backward_ops_with_saved_and_recomputed_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (rows, cols) = (5usize, 9usize);
    let x = synthetic::normal(21, rows * cols, 2.0, 1.5);
    let dy = synthetic::normal(22, rows * cols, 0.0, 1.0);
    let w = synthetic::normal(23, cols, 1.0, 0.3);
    write_npy(&p("x.npy"), &[rows as u64, cols as u64], &x);
    write_npy(&p("dy.npy"), &[rows as u64, cols as u64], &dy);
    write_npy(&p("w.npy"), &[cols as u64], &w);
    // The forward's statistics, saved by a forward apply.
    apply_ok(
        dir.path(),
        &[
            "--op",
            "layer-norm",
            "--input",
            "x.npy",
            "--scale",
            "w.npy",
            "--output",
            "y.npy",
            "--mean",
            "m.npy",
            "--inv-std-dev",
            "r.npy",
        ],
    );
    for (op, rms) in [("layer-norm-backward", false), ("rms-norm-backward", true)] {
        let want = reference::norm_backward(&x, &dy, cols, Some(&w), 1e-5, rms);
        let (tol_dx, tol_dg, tol_db) = reference::norm_backward_tolerance(&dy, &want, Some(&w));
        let saved: &[&[&str]] = if rms {
            &[&[]]
        } else {
            &[&[], &["--mean", "m.npy", "--inv-std-dev", "r.npy"]]
        };
        for stats in saved {
            let mut args = vec![
                "--op",
                op,
                "--input",
                "x.npy",
                "--grad",
                "dy.npy",
                "--scale",
                "w.npy",
                "--grad-input",
                "dx.npy",
                "--grad-scale",
                "dw.npy",
            ];
            if !rms {
                args.extend(["--grad-bias", "db.npy"]);
            }
            args.extend(stats.iter());
            apply_ok(dir.path(), &args);
            let (dx_shape, dx) = read_npy(&p("dx.npy"));
            assert_eq!(dx_shape, vec![rows as u64, cols as u64]);
            assert!(
                reference::max_abs_error(&dx, &want.dx) <= tol_dx,
                "{op} {stats:?}: dx"
            );
            let (dw_shape, dw) = read_npy(&p("dw.npy"));
            assert_eq!(dw_shape, vec![cols as u64]);
            assert!(
                reference::max_abs_error(&dw, &want.dgamma) <= tol_dg,
                "{op}: dscale"
            );
            if !rms {
                let (_, db) = read_npy(&p("db.npy"));
                assert!(
                    reference::max_abs_error(&db, &want.dbeta) <= tol_db,
                    "{op}: dbias"
                );
            }
        }
    }
}

#[test]
fn apply_dtype_f16_reads_f16_or_f32_and_writes_f16() {
    let _serial = crate::common::gl_serial();
    let has_f16 = crate::common::ctx().capabilities().shader_f16;
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let (rows, cols) = (4usize, 11usize);
    let x = synthetic::normal(31, rows * cols, 1.0, 2.0);
    let x16: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    write_npy(&p("x32.npy"), &[rows as u64, cols as u64], &x);
    write_npy(&p("x16.npy"), &[rows as u64, cols as u64], &x16);
    for input in ["x32.npy", "x16.npy"] {
        let (input_path, output_path) = (p(input), p("y.npy"));
        let args = [
            "apply",
            "--op",
            "layer-norm",
            "--dtype",
            "f16",
            "--input",
            input_path.to_str().unwrap(),
            "--output",
            output_path.to_str().unwrap(),
        ];
        let out = wgpu_norm(&args);
        if !has_f16 {
            // llvmpipe GL: a clear refusal naming f16, and no output.
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("f16") && stderr(&out).contains("SHADER_F16"),
                "{}",
                stderr(&out)
            );
            assert!(!p("y.npy").exists());
            continue;
        }
        assert!(out.status.success(), "{}", stderr(&out));
        let npy = npyz::NpyFile::new(std::io::BufReader::new(
            std::fs::File::open(p("y.npy")).unwrap(),
        ))
        .unwrap();
        assert_eq!(npy.dtype().descr(), "'<f2'", "an f16 output");
        let y: Vec<f32> = npy
            .into_vec::<half::f16>()
            .unwrap()
            .into_iter()
            .map(f32::from)
            .collect();
        let xr: Vec<f32> = x16.iter().map(|v| v.to_f32()).collect();
        let want = reference::layer_norm(&xr, cols, None, None, 1e-5);
        let err = reference::max_abs_error(&y, &want.y);
        assert!(
            err < 1e-3 * 4.0,
            "f16 layer-norm from {input}: error {err:.3e}"
        );
    }
}

#[test]
fn apply_refuses_flags_that_do_not_fit_the_op() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_npy(Path::new(&p("x.npy")), &[2, 4], &[1.0f32; 8]);
    write_npy(Path::new(&p("w.npy")), &[4], &[1.0f32; 4]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--op", "rms-norm", "--output", "y.npy", "--bias", "w.npy"],
            "RMSNorm has no bias",
        ),
        (
            &[
                "--op",
                "layer-norm",
                "--output",
                "y.npy",
                "--sum-output",
                "s.npy",
            ],
            "--residual",
        ),
        (
            &["--op", "layer-norm-backward", "--grad-input", "dx.npy"],
            "--grad",
        ),
        (
            &[
                "--op",
                "layer-norm-backward",
                "--grad",
                "x.npy",
                "--grad-input",
                "dx.npy",
                "--mean",
                "x.npy",
            ],
            "--inv-std-dev",
        ),
        (
            &[
                "--op",
                "rms-norm-backward",
                "--grad",
                "x.npy",
                "--grad-input",
                "dx.npy",
                "--grad-bias",
                "db.npy",
            ],
            "no bias",
        ),
        (
            &[
                "--op",
                "layer-norm-backward",
                "--grad",
                "x.npy",
                "--grad-input",
                "dx.npy",
                "--output",
                "y.npy",
            ],
            "forward",
        ),
        (
            &[
                "--op",
                "rms-norm",
                "--output",
                "y.npy",
                "--residual",
                "w.npy",
            ],
            "residual",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["apply".to_string(), "--input".into(), p("x.npy")];
        all.extend(args.iter().map(|a| {
            if a.ends_with(".npy") {
                p(a)
            } else {
                a.to_string()
            }
        }));
        let out = wgpu_norm(&all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?} should name {needle:?}: {}",
            stderr(&out)
        );
        for out in ["y.npy", "s.npy", "dx.npy", "db.npy"] {
            assert!(!Path::new(&p(out)).exists(), "{args:?} left {out}");
        }
    }
}

#[test]
fn bench_measures_every_op_against_a_copy_as_json_lines() {
    let _serial = crate::common::gl_serial();
    let out = wgpu_norm(&[
        "bench",
        "--shapes",
        "4x33x65,2x1x7",
        "--iters",
        "2",
        "--repeat",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops = [
        "layer_norm_forward",
        "rms_norm_forward",
        "layer_norm_backward",
        "rms_norm_backward",
    ];
    assert_eq!(lines.len(), 2 * ops.len(), "{lines:?}");
    for (line, (op, shape)) in lines
        .iter()
        .zip(ops.iter().flat_map(|op| [(op, "4x33x65"), (op, "2x1x7")]))
    {
        assert_eq!(
            (line["op"].as_str(), line["shape"].as_str()),
            (Some(*op), Some(shape))
        );
        let (t, copy, ratio) = (
            line["ln_median_us"].as_f64().unwrap(),
            line["copy_median_us"].as_f64().unwrap(),
            line["ratio"].as_f64().unwrap(),
        );
        assert!(t > 0.0 && copy > 0.0, "{line}");
        assert!((ratio - t / copy).abs() <= 1e-9 * ratio, "{line}");
        let moved = if op.ends_with("backward") { 3.0 } else { 2.0 };
        let n = if shape == "4x33x65" {
            4.0 * 33.0 * 65.0
        } else {
            14.0
        };
        let gbps = line["gbps"].as_f64().unwrap();
        assert!(
            (gbps - moved * n * 4.0 / (t * 1e-6) / 1e9).abs() <= 1e-9 * gbps,
            "{line}"
        );
        // --repeat 3: the median of three rounds, with their spread; the
        // floor is a named copy kernel, the driver's copy reported beside.
        assert_eq!(line["repeats"].as_u64(), Some(3), "{line}");
        let (lo, hi) = (
            line["ratio_min"].as_f64().unwrap(),
            line["ratio_max"].as_f64().unwrap(),
        );
        assert!(lo <= ratio && ratio <= hi, "{line}");
        let names: Vec<String> = wgpu_norm::CopyKernel::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        assert!(
            names
                .iter()
                .any(|k| Some(k.as_str()) == line["copy_kernel"].as_str()),
            "{line}"
        );
        assert!(line["driver_copy_cpu_us"].as_f64().unwrap() > 0.0, "{line}");
    }
}

#[test]
fn huge_shapes_are_refused_before_anything_is_allocated() {
    // Each used to abort (a 1 PB allocation), panic ("capacity overflow") or
    // take all the machine's memory.
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--shape", "65536x65536x65536"], "max_buffer_size"),
        (&["run", "--shape", "4294967296x4294967296"], "64 bits"),
        (&["run", "--shape", "1x65536x65536"], "max_buffer_size"),
        (&["run", "--shape", "18446744073709551615"], "64 bits"),
        (&["check", "--shape", "2x9223372036854775808"], "64 bits"),
        (&["check", "--shape", "65536x65536x65536"], "host memory"),
        (
            &["bench", "--shapes", "65536x65536x65536"],
            "max_buffer_size",
        ),
    ];
    for (args, says) in cases {
        let out = wgpu_norm(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        // A device limit, or (on a device with larger buffers) the host's memory.
        let named =
            err.contains(says) || (*says == "max_buffer_size" && err.contains("host memory"));
        assert!(named, "{args:?} should name {says:?}: {err}");
    }
}

#[test]
fn a_wgpu_backend_that_names_nothing_is_an_input_error() {
    for value in ["nonsense", "", "vulkan,nonsense"] {
        let out = Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
            .args(["run", "--shape", "2x8"])
            .env("WGPU_BACKEND", value)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "WGPU_BACKEND={value:?}: {err}");
        assert!(
            err.contains("unknown backend") && !err.to_lowercase().contains("mesa"),
            "WGPU_BACKEND={value:?}: {err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_tool_quietly_not_in_a_panic() {
    // `wgpu-norm adapters | true`: the reader is gone before the writer writes.
    let out = Command::new("bash")
        .args([
            "-c",
            "\"$0\" adapters | true; echo \"status ${PIPESTATUS[0]}\"",
            env!("CARGO_BIN_EXE_wgpu-norm"),
        ])
        .output()
        .unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!err.contains("panicked"), "{err}");
    // 0 if it finished before the pipe closed, 141 (SIGPIPE) if not; never 101.
    assert!(
        stdout.contains("status 0") || stdout.contains("status 141"),
        "{stdout} {err}"
    );
}
