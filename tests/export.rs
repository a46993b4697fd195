//! Exported plans (`wgpu_norm::export`, `wgpu-norm export`): made on wgpu's
//! noop backend for a target's features and limits, no GPU needed. Every
//! plan keeps the target's limits (storage buffers per stage, binding size
//! and alignment, workgroups per dimension), its buffers cover what is bound,
//! and browsers get `enable subgroups;` exactly where subgroups are used.

use std::process::Command;

use serde_json::{Value, json};
use wgpu_norm::export::{EXPORT_OPS, ExportRequest, Target, export, kernels_for};
use wgpu_norm::{Error, Kernel};

/// Asserts that `plan` respects `target`'s limits; returns its dispatches.
fn check_limits(plan: &Value, target: &Target) -> usize {
    let buffers = plan["buffers"].as_array().unwrap();
    let mut dispatches = 0;
    for pass in plan["passes"].as_array().unwrap() {
        for d in pass["dispatches"].as_array().unwrap() {
            dispatches += 1;
            let bindings = d["bindings"].as_array().unwrap();
            let storage = bindings.iter().filter(|b| b["type"] != "uniform").count();
            assert!(
                storage as u32 <= target.limits.max_storage_buffers_per_shader_stage,
                "{}: {storage} storage buffers",
                d["entry"]
            );
            for b in bindings {
                let (offset, size) = (b["offset"].as_u64().unwrap(), b["size"].as_u64().unwrap());
                let buffer = &buffers[b["buffer"].as_u64().unwrap() as usize];
                assert!(
                    offset + size <= buffer["size"].as_u64().unwrap(),
                    "{b} past {buffer}"
                );
                if b["type"] == "uniform" {
                    assert_eq!(
                        offset % target.limits.min_uniform_buffer_offset_alignment as u64,
                        0
                    );
                } else {
                    assert_eq!(
                        offset % target.limits.min_storage_buffer_offset_alignment as u64,
                        0
                    );
                    assert!(size <= target.limits.max_storage_buffer_binding_size, "{b}");
                }
            }
            for w in d["workgroups"].as_array().unwrap() {
                assert!(
                    w.as_u64().unwrap()
                        <= target.limits.max_compute_workgroups_per_dimension as u64
                );
            }
            let module = &plan["modules"][d["module"].as_u64().unwrap() as usize]["wgsl"];
            assert!(
                module
                    .as_str()
                    .unwrap()
                    .contains(&format!("fn {}(", d["entry"].as_str().unwrap()))
            );
        }
    }
    dispatches
}

fn swiftshader_like() -> Target {
    Target::from_json(&json!({
        "features": ["subgroups", "timestamp-query"],
        "limits": {"maxStorageBuffersPerShaderStage": 10, "maxStorageBufferBindingSize": 1073741824u64,
                   "maxBufferSize": 1073741824u64},
        "info": {"vendor": "google", "description": "SwiftShader", "subgroupMinSize": 4, "subgroupMaxSize": 4}
    }))
    .unwrap()
}

#[test]
fn every_op_and_kernel_exports_within_the_targets_limits() {
    for target in [Target::webgpu(), swiftshader_like()] {
        for op in EXPORT_OPS {
            for shape in [&[4usize, 33][..], &[3, 1024], &[70_000, 8], &[2, 20_000]] {
                let (fwd, bwd) = kernels_for(&target, shape[1]).unwrap();
                let mut reqs = vec![ExportRequest::new(op.name, shape)];
                if op.name.ends_with("backward") {
                    for k in bwd {
                        let mut r = ExportRequest::new(op.name, shape);
                        r.config.backward_kernel = Some(k);
                        reqs.push(r);
                    }
                } else {
                    for k in fwd {
                        let mut r = ExportRequest::new(op.name, shape);
                        r.config.kernel = Some(k);
                        r.stats = true;
                        reqs.push(r);
                    }
                }
                for req in reqs {
                    let plan = export(&req, &target).unwrap_or_else(|e| panic!("{req:?}: {e}"));
                    assert!(check_limits(&plan, &target) > 0, "{req:?}: no dispatch");
                    let subgroups = plan["modules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["wgsl"].as_str().unwrap().starts_with("enable subgroups;"));
                    let uses = plan["modules"].as_array().unwrap().iter().any(|m| {
                        let code = m["wgsl"].as_str().unwrap();
                        code.lines()
                            .any(|l| l.split("//").next().unwrap().contains("subgroupAdd("))
                    });
                    assert_eq!(subgroups, uses, "{req:?}");
                    if target.name == "webgpu" {
                        assert!(!uses, "{req:?}: subgroups on a target without them");
                    }
                }
            }
        }
    }
}

#[test]
fn tensors_over_one_binding_are_chunked_and_named() {
    let target = Target::webgpu(); // 128 MiB bindings
    let plan = export(&ExportRequest::new("layer-norm", &[40_000, 1024]), &target).unwrap();
    let dispatches = check_limits(&plan, &target);
    assert!(
        dispatches >= 2,
        "163 MB of x in one binding of 128 MiB: {dispatches} dispatch"
    );
    let names: Vec<&str> = plan["buffers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] != "scratch" && b["role"] != "uniform")
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["X", "Scale", "B", "Y"]);
    let plan = export(&ExportRequest::new("rms-norm-backward", &[4, 64]), &target).unwrap();
    let names: Vec<&str> = plan["buffers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] == "input" || b["role"] == "output")
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["X", "Scale", "dY", "dX", "dScale"]);
}

#[test]
fn every_copy_kernel_exports_as_the_benchs_floor() {
    let target = Target::webgpu();
    for kernel in wgpu_norm::CopyKernel::ALL {
        for shape in [&[1000usize][..], &[8, 512, 768], &[40_000_000]] {
            let req = ExportRequest {
                copy_kernel: Some(kernel),
                ..ExportRequest::new("copy", shape)
            };
            let plan = export(&req, &target).unwrap();
            assert_eq!(plan["kernel"], kernel.name());
            let dispatches = check_limits(&plan, &target);
            // 160 MB of f32 take two bindings of at most 128 MiB.
            assert_eq!(
                dispatches,
                if shape == [40_000_000] { 2 } else { 1 },
                "{shape:?}"
            );
        }
    }
}

#[test]
fn a_subgroup_kernel_is_refused_where_the_target_has_none() {
    let mut req = ExportRequest::new("layer-norm", &[4, 64]);
    req.config.kernel = Some(Kernel::RowPerSubgroup);
    let e = export(&req, &Target::webgpu()).unwrap_err();
    assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
    assert!(export(&req, &swiftshader_like()).is_ok());
    let e = Target::from_json(&json!({"features": "subgroups"})).unwrap_err();
    assert!(matches!(e, Error::InvalidTarget(_)), "{e}");
}

#[test]
fn the_cli_exports_for_webgpu_or_a_capabilities_file() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps.json");
    std::fs::write(
        &caps,
        r#"{"features":["subgroups"],"info":{"subgroupMinSize":8,"subgroupMaxSize":8}}"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wgpu-norm"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "export",
        "--op",
        "layer-norm",
        "--shape",
        "8x512x768",
        "--scale",
        "--bias",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["format"], "wgpu-norm-plan/1");
    assert_eq!(plan["rows"], 4096);
    let out_file = dir.path().join("plan.json");
    let out = run(&[
        "export",
        "--op",
        "layer-norm-backward",
        "--shape",
        "4x33",
        "--capabilities",
        caps.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(plan["target"]["subgroups"], json!([8, 8]));
    // Bad input: exit 2 naming it.
    for (args, says) in [
        (
            vec!["export", "--op", "nonsense", "--shape", "4x4"],
            "unknown op",
        ),
        (
            vec![
                "export",
                "--op",
                "layer-norm",
                "--shape",
                "4x4",
                "--capabilities",
                "/nonexistent.json",
            ],
            "/nonexistent.json",
        ),
        (
            vec![
                "export",
                "--op",
                "layer-norm",
                "--shape",
                "4x4",
                "--kernel",
                "warp-drive",
            ],
            "warp-drive",
        ),
        (
            vec![
                "export",
                "--op",
                "layer-norm",
                "--shape",
                "4x4",
                "--axis",
                "5",
            ],
            "axis",
        ),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
