//! Tick records as a Chrome trace-event file, for Perfetto and chrome://tracing.
//!
//! Format: `{"traceEvents": [...]}` with one complete event (`"ph": "X"`, `ts`
//! and `dur` in µs) per record, `"ph": "M"` metadata naming the process (the
//! adapter) and the tracks. Passes, dispatches and CPU-timed submissions each
//! get a track of their own, so events on one track nest properly; named
//! scopes get spans from their first pass's start to their last pass's end.

use serde_json::{Value, json};

use crate::ticks::record::{RecordKind, TickRecord};

const PID: u32 = 1;

fn track(kind: RecordKind) -> u32 {
    match kind {
        RecordKind::Pass => 2,
        RecordKind::Dispatch => 3,
        RecordKind::Submission => 4,
    }
}

/// The trace document of `records`, naming `adapter` as the process.
pub(crate) fn trace_json<'a>(
    records: impl IntoIterator<Item = &'a TickRecord>,
    adapter: &wgpu::AdapterInfo,
) -> String {
    let mut events = vec![
        json!({"name": "process_name", "ph": "M", "pid": PID, "tid": 0,
               "args": {"name": format!("{} ({:?})", adapter.name, adapter.backend)}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": 1, "args": {"name": "scopes"}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": 2, "args": {"name": "passes"}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": 3, "args": {"name": "dispatches"}}),
        json!({"name": "thread_name", "ph": "M", "pid": PID, "tid": 4, "args": {"name": "submissions (CPU clock)"}}),
    ];
    // Scope spans: (scope path, epoch, step) -> (start, end) over their records.
    type SpanKey = (Vec<String>, u64, u64);
    let mut spans: Vec<(SpanKey, f64, f64)> = Vec::new();
    for r in records {
        let mut args = serde_json::Map::new();
        for (k, v) in &r.args {
            args.insert(k.clone(), Value::String(v.clone()));
        }
        args.insert("step".into(), json!(r.step));
        args.insert("epoch".into(), json!(r.epoch));
        args.insert("source".into(), json!(r.source.as_str()));
        if !r.scope.is_empty() {
            args.insert("scope".into(), json!(r.scope.join("/")));
        }
        events.push(json!({
            "name": r.label, "cat": "gpu", "ph": "X", "pid": PID, "tid": track(r.kind),
            "ts": r.start_ns / 1e3, "dur": r.duration_ns.max(0.0) / 1e3, "args": args,
        }));
        let end = r.start_ns + r.duration_ns.max(0.0);
        for depth in 1..=r.scope.len() {
            let key = (r.scope[..depth].to_vec(), r.epoch, r.step);
            match spans.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, s, e)) => {
                    *s = s.min(r.start_ns);
                    *e = e.max(end);
                }
                None => spans.push((key, r.start_ns, end)),
            }
        }
    }
    for ((path, epoch, step), start, end) in spans {
        events.push(json!({
            "name": path.last().cloned().unwrap_or_default(), "cat": "scope", "ph": "X",
            "pid": PID, "tid": 1, "ts": start / 1e3, "dur": (end - start) / 1e3,
            "args": {"scope": path.join("/"), "step": step, "epoch": epoch},
        }));
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ns" }).to_string()
}
