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
    let out = wgpu_norm(&["check", "--shape", "3x5x67"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains(" ok "), "{stdout}");
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
