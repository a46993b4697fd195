//! The crate's layers only look down: reads every `use crate::…` (and
//! `crate::…` path) in `src/` (the library, not the CLI), and fails on
//!
//! - a cycle among the files, and
//! - a module that uses one above it in [`LAYERS`] (the order the crate
//!   docs state).
//!
//! Plain text, no GPU: it runs everywhere `cargo test` does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first; a module may use those at its own
/// rank or below (files inside one module may use each other, acyclically).
const LAYERS: &[&[&str]] = &[
    &["dtype"],
    &["error"],
    &["shape", "caps", "synthetic", "reference"],
    &["plan"],
    &["gpu"],
    &["kernels"],
    &["bind_cache"],
    &["context"],
    &["tensor", "ticks"],
    &["ops"],
    &["autotune", "export"],
    &["bench"],
    &["lib"],
];

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is not in LAYERS: add it at its layer"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "bin" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/ops/forward.rs` → `ops::forward`; `src/plan/mod.rs` → `plan`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<_> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    parts.join("::")
}

/// The module paths a file names after `crate::`, down to an existing
/// module file (the longest prefix that is one).
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        // `crate::{a, b::c}` groups: take every path inside the braces.
        let paths: Vec<String> = if rest.starts_with('{') {
            let end = rest.find('}').unwrap_or(rest.len());
            rest[1..end]
                .split(',')
                .map(|p| p.trim().to_string())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_string()]
        };
        for p in paths {
            let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
            let target = (1..=segs.len())
                .rev()
                .map(|n| segs[..n].join("::"))
                .find(|m| modules.contains(m));
            if let Some(t) = target {
                out.insert(t);
            }
        }
    }
    out
}

#[test]
fn the_use_crate_graph_has_no_cycle_and_looks_only_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let to: BTreeSet<String> = uses(&text, &modules)
            .into_iter()
            .filter(|t| *t != from)
            .collect();
        let top = |m: &str| m.split("::").next().unwrap().to_string();
        for t in &to {
            if rank(&top(t)) > rank(&top(&from)) {
                upward.push(format!("{from} uses {t}, a layer above it"));
            }
        }
        graph.insert(from, to);
    }
    assert!(
        upward.is_empty(),
        "imports that look up:\n{}",
        upward.join("\n")
    );
    assert!(
        graph.len() > 30,
        "the scan found only {} modules",
        graph.len()
    );
    assert!(
        graph["ops::layer_norm"].contains("ops::forward"),
        "the scan reads `use crate::` lines: {:?}",
        graph["ops::layer_norm"]
    );

    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for n in graph.get(m).into_iter().flatten() {
            match state.get(n.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == n).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(n.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(n, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(m, &graph, &mut state, &mut stack) {
                panic!("import cycle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_scanner_sees_a_cycle_where_there_is_one() {
    let modules: BTreeSet<String> = ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        uses(
            "use crate::b::c::Thing;\nuse crate::{a, b::D};\n// use crate::zzz;",
            &modules
        ),
        ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect()
    );
}
