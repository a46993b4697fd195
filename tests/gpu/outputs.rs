//! Output files of the `wgpu-norm` binary: written through the path given
//! (symlinks followed, FIFOs and devices refused unless asked for, the umask
//! honoured), every target checked before anything is written, nothing left
//! behind on failure, the same file named twice refused, and tune files never
//! overwritten when they are something else.

#![cfg(unix)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use npyz::WriterBuilder;
use wgpu_norm::synthetic;

fn wgpu_norm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
        .args(args)
        .output()
        .expect("the wgpu-norm binary runs")
}

/// The binary under `umask`.
fn wgpu_norm_umask(umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_wgpu-norm"))
        .args(args)
        .output()
        .expect("sh runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_x(path: &Path) {
    let x = synthetic::normal(5, 4 * 8, 0.0, 1.0);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[4, 8])
        .writer(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .begin_nd()
        .unwrap();
    w.extend(x.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn is_npy(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x93NUMPY"))
}

fn apply(input: &Path, rest: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "--op",
        "layer-norm",
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(rest);
    wgpu_norm(&args)
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success());
}

#[test]
fn a_fifo_is_refused_unless_allowed_and_then_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let fifo = dir.path().join("y.fifo");
    mkfifo(&fifo);
    let before = listing(dir.path());
    let out = apply(&x, &["--output", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("FIFO") && stderr(&out).contains("--allow-special-output"));
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(listing(dir.path()), before, "nothing left behind");

    // Allowed: a reader gets the NPY bytes; the FIFO stays a FIFO.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    let out = apply(
        &x,
        &["--output", fifo.to_str().unwrap(), "--allow-special-output"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = reader.join().unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"), "the reader got NPY bytes");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

/// A character device like /dev/null: a private node (`mknod`, as root) so
/// that a regression cannot replace the system's; /dev/null itself where
/// nodes cannot be made.
fn null_device(dir: &Path) -> std::path::PathBuf {
    let node = dir.join("null");
    let made = Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made { node } else { "/dev/null".into() }
}

#[test]
fn a_device_is_refused_unless_allowed_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let null = null_device(dir.path());
    let null_s = null.to_str().unwrap();
    let out = apply(&x, &["--output", null_s]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(null_s) && stderr(&out).contains("character device"));
    let out = apply(&x, &["--output", null_s, "--allow-special-output"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{null_s} is still a device"
    );
}

#[test]
fn a_symlink_is_written_through_and_stays_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let target = dir.path().join("real.npy");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.path().join("y.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = apply(&x, &["--output", link.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(is_npy(&target), "the link's target holds the output");

    // A dangling link is refused, and nothing is created.
    let dangling = dir.path().join("dangling.npy");
    std::os::unix::fs::symlink(dir.path().join("missing/nothing.npy"), &dangling).unwrap();
    let before = listing(dir.path());
    let out = apply(&x, &["--output", dangling.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("dangling.npy"));
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn new_files_honour_the_umask_and_existing_files_keep_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let y = dir.path().join("y.npy");
    for (umask, mode) in [("027", 0o640), ("022", 0o644), ("077", 0o600)] {
        let _ = std::fs::remove_file(&y);
        let out = wgpu_norm_umask(
            umask,
            &[
                "apply",
                "--op",
                "layer-norm",
                "--input",
                x.to_str().unwrap(),
                "--output",
                y.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let got = std::fs::metadata(&y).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}: mode {got:o}, want {mode:o}");
    }
    // An existing file keeps its mode.
    std::fs::set_permissions(&y, std::fs::Permissions::from_mode(0o604)).unwrap();
    let out = apply(&x, &["--output", y.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&y).unwrap().permissions().mode() & 0o777,
        0o604
    );
}

#[test]
fn a_bad_output_target_leaves_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let y = dir.path().join("y.npy");
    let sub = dir.path().join("some_directory");
    std::fs::create_dir(&sub).unwrap();
    let before = listing(dir.path());
    // A directory as the second output: refused before y is written.
    let out = apply(
        &x,
        &[
            "--output",
            y.to_str().unwrap(),
            "--mean",
            sub.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("some_directory") && stderr(&out).contains("is a directory"));
    assert_eq!(listing(dir.path()), before, "no y.npy, no temporary file");

    // A missing directory, and a path under a regular file: exit 2 naming the
    // path given (not a temporary file).
    for bad in [dir.path().join("missing/y.npy"), x.join("y.npy")] {
        let out = apply(
            &x,
            &[
                "--output",
                y.to_str().unwrap(),
                "--inv-std-dev",
                bad.to_str().unwrap(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            bad.display(),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(bad.to_str().unwrap()),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(".wgpu-norm-"), "{}", stderr(&out));
        assert_eq!(listing(dir.path()), before);
    }
}

#[test]
fn two_outputs_naming_one_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_x(&x);
    let y = dir.path().join("y.npy");
    let out = apply(
        &x,
        &[
            "--output",
            y.to_str().unwrap(),
            "--mean",
            y.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("name the same file"),
        "{}",
        stderr(&out)
    );
    assert!(!y.exists());
    // The same file by another spelling, and through a symlink.
    let other = dir.path().join(".").join("y.npy");
    let out = apply(
        &x,
        &[
            "--output",
            y.to_str().unwrap(),
            "--mean",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    std::fs::write(&y, b"old").unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&y, &link).unwrap();
    let out = apply(
        &x,
        &[
            "--output",
            y.to_str().unwrap(),
            "--inv-std-dev",
            link.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&y).unwrap(), b"old", "untouched");
}

#[test]
fn run_trace_into_a_directory_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = wgpu_norm(&[
        "run",
        "--shape",
        "4x8",
        "--iters",
        "1",
        "--trace",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--trace") && stderr(&out).contains("is a directory"));
    assert!(out.stdout.is_empty(), "refused before anything ran");
}

#[test]
fn bench_tune_file_is_never_overwritten_when_it_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let tune = dir.path().join("tune.json");
    let bench = |tune: &Path| {
        wgpu_norm(&[
            "bench",
            "--shapes",
            "4x64",
            "--ops",
            "layer-norm",
            "--iters",
            "1",
            "--tune-file",
            tune.to_str().unwrap(),
        ])
    };
    // Someone's notes: refused, exit 2, untouched.
    std::fs::write(&tune, "my notes, not JSON").unwrap();
    let out = bench(&tune);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a wgpu-norm tune file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&tune).unwrap(),
        "my notes, not JSON"
    );
    // JSON of another shape is refused too.
    std::fs::write(&tune, "[1, 2, 3]").unwrap();
    assert_eq!(bench(&tune).status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&tune).unwrap(), "[1, 2, 3]");

    // A new file: written with the winner; read back by the next run.
    std::fs::remove_file(&tune).unwrap();
    let out = bench(&tune);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&tune).unwrap();
    let winners: serde_json::Value = serde_json::from_str(&text).unwrap();
    let classes = winners.as_object().unwrap().values().next().unwrap();
    assert!(!classes.as_object().unwrap().is_empty(), "{text}");
    let out = bench(&tune);
    assert!(out.status.success(), "{}", stderr(&out));

    // Where it cannot be written: exit 2 naming it, before anything runs.
    let bad = dir.path().join("missing/tune.json");
    let out = bench(&bad);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(bad.to_str().unwrap()));
    assert!(out.stdout.is_empty());
}
