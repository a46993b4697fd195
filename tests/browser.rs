//! Every op and kernel in a real browser's WebGPU: `wgpu-norm web` serves
//! the page, headless Chromium opens it with `?auto=1` (WebGPU on
//! SwiftShader: Dawn, with the Tint compiler), and the page runs every check
//! case (each op, each kernel the adapter can run, four shapes) against its
//! own f64 reference and the bench, then logs one line, `wgpu-norm result:
//! {json}`, which this test reads from Chromium's log.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`), or another
//! Chromium named by `CHROMIUM`. It fails, with that hint, where none is.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "no Chromium at {path}: install Debian's (`apt-get install -y chromium`) or name one with CHROMIUM=…"
    );
    path
}

#[test]
fn the_page_checks_every_op_and_kernel_in_headless_chromium() {
    let chromium = chromium();
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
            .args(["web", "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("wgpu-norm web starts"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Killed(
        Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--enable-unsafe-webgpu",
                "--use-webgpu-adapter=swiftshader",
                "--enable-unsafe-swiftshader",
                "--enable-logging=stderr",
                "--v=0",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("{url}?auto=1"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts"),
    );
    let (tx, rx) = mpsc::channel();
    let stderr = browser.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("CONSOLE") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let limit = Duration::from_secs(420);
    let mut console = Vec::new();
    let result = loop {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(at) = line.find("wgpu-norm result: ") {
                    let json = &line[at + "wgpu-norm result: ".len()..];
                    let json = json.rsplit_once("\", source:").map_or(json, |(j, _)| j);
                    break serde_json::from_str::<serde_json::Value>(json)
                        .unwrap_or_else(|e| panic!("the result line is not JSON ({e}): {json}"));
                }
                console.push(line);
            }
            Err(_) => panic!(
                "no result line from the page within {limit:?}; its console said:\n{}",
                console.join("\n")
            ),
        }
    };
    eprintln!(
        "[browser] {} cases, ok {}, in {:.0} s; adapter {}",
        result["cases"],
        result["ok"],
        start.elapsed().as_secs_f64(),
        result["adapter"]["info"]
    );
    for b in result["bench"].as_array().into_iter().flatten() {
        eprintln!(
            "[browser] bench {} {} {}: {} us (gpu {}), copy {} us, ratio {:.2}",
            b["op"],
            b["shape"],
            b["kernel"],
            b["op_us"],
            b["gpu_us"],
            b["copy_us"],
            b["ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
    assert!(
        result["error"].is_null(),
        "the page failed: {}",
        result["error"]
    );
    let failures = result["failures"].as_array().expect("failures is a list");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (Tint refusals are in `refused`):\n{}",
        failures.len(),
        result["cases"],
        serde_json::to_string_pretty(failures).unwrap()
    );
    assert_eq!(result["ok"], true);
    // Four ops × four shapes, each with its planned kernel and every kernel
    // the adapter can run forced: far more than the 16 planned cases.
    let cases = result["cases"].as_u64().unwrap();
    assert!(cases >= 64, "only {cases} cases ran");
    let ops: std::collections::BTreeSet<String> = result["check"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap().to_string())
        .collect();
    // The four ops, and both forwards fused with a residual add.
    assert_eq!(ops.len(), 6, "{ops:?}");
    let bench = result["bench"].as_array().unwrap();
    assert_eq!(bench.len(), 8);
    assert!(
        bench
            .iter()
            .all(|b| b["op_us"].as_f64().unwrap() > 0.0 && b["copy_us"].as_f64().unwrap() > 0.0)
    );
}
