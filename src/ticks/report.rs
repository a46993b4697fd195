//! Per-label statistics of tick records: a table in the style of Nsight
//! Systems' kernel summary, and JSON.

use serde::Serialize;

use crate::ticks::record::TickRecord;

/// Statistics of one label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LabelStats {
    /// The label.
    pub label: String,
    /// How many records carry it.
    pub count: usize,
    /// Sum of their durations, µs.
    pub total_us: f64,
    /// Share of the summed duration of every label, in percent.
    pub percent: f64,
    /// Shortest, µs.
    pub min_us: f64,
    /// Median (the lower middle value for an even count), µs.
    pub median_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// 95th percentile (nearest rank), µs.
    pub p95_us: f64,
    /// Longest, µs.
    pub max_us: f64,
}

/// Statistics per label over a set of records, sorted by total time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `gpu_timestamps`, `cpu_wall_clock`, `mixed`, or `none` without records.
    pub timing_source: String,
    /// One entry per label, the most expensive first.
    pub passes: Vec<LabelStats>,
}

/// The value at fraction `q` of sorted `v` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Report {
    /// Builds the statistics of `records`.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a TickRecord>) -> Self {
        let mut by_label: Vec<(String, Vec<f64>)> = Vec::new();
        let mut sources = Vec::new();
        for r in records {
            if !sources.contains(&r.source) {
                sources.push(r.source);
            }
            match by_label.iter_mut().find(|(l, _)| *l == r.label) {
                Some((_, v)) => v.push(r.duration_ns / 1e3),
                None => by_label.push((r.label.clone(), vec![r.duration_ns / 1e3])),
            }
        }
        let grand_total: f64 = by_label.iter().flat_map(|(_, v)| v).sum();
        let mut passes: Vec<LabelStats> = by_label
            .into_iter()
            .map(|(label, mut v)| {
                v.sort_by(f64::total_cmp);
                let total: f64 = v.iter().sum();
                LabelStats {
                    label,
                    count: v.len(),
                    total_us: total,
                    percent: if grand_total > 0.0 {
                        100.0 * total / grand_total
                    } else {
                        0.0
                    },
                    min_us: v[0],
                    median_us: quantile(&v, 0.5),
                    mean_us: total / v.len() as f64,
                    p95_us: quantile(&v, 0.95),
                    max_us: v[v.len() - 1],
                }
            })
            .collect();
        passes.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
        let timing_source = match sources.as_slice() {
            [] => "none".to_string(),
            [one] => one.as_str().to_string(),
            _ => "mixed".to_string(),
        };
        Report {
            timing_source,
            passes,
        }
    }

    /// The statistics as a table (times in µs), like `nsys stats`' kernel summary.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>8}  {:>14}  {:>9}  {:>11}  {:>11}  {:>11}  {:>11}  {:>11}  Name   [{}]\n",
            "Time (%)",
            "Total (us)",
            "Instances",
            "Avg (us)",
            "Med (us)",
            "Min (us)",
            "P95 (us)",
            "Max (us)",
            self.timing_source
        );
        for s in &self.passes {
            out += &format!(
                "{:>8.1}  {:>14.1}  {:>9}  {:>11.1}  {:>11.1}  {:>11.1}  {:>11.1}  {:>11.1}  {}\n",
                s.percent,
                s.total_us,
                s.count,
                s.mean_us,
                s.median_us,
                s.min_us,
                s.p95_us,
                s.max_us,
                s.label
            );
        }
        out
    }

    /// The statistics as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticks::record::{RecordKind, TimingSource};

    fn record(label: &str, duration_ns: f64) -> TickRecord {
        TickRecord {
            label: label.into(),
            scope: vec![],
            kind: RecordKind::Pass,
            source: TimingSource::GpuTimestamps,
            step: 0,
            epoch: 0,
            start_ns: 0.0,
            duration_ns,
            args: vec![],
        }
    }

    #[test]
    fn statistics_per_label() {
        let mut records: Vec<_> = (1..=20).map(|i| record("a", i as f64 * 1000.0)).collect();
        records.push(record("b", 0.0));
        records.push(record("b", -500.0));
        let report = Report::new(&records);
        assert_eq!(report.timing_source, "gpu_timestamps");
        let a = &report.passes[0];
        assert_eq!((a.label.as_str(), a.count), ("a", 20));
        assert_eq!((a.min_us, a.max_us, a.total_us), (1.0, 20.0, 210.0));
        assert_eq!((a.median_us, a.p95_us, a.mean_us), (10.0, 19.0, 10.5));
        let b = &report.passes[1];
        assert_eq!(
            (b.min_us, b.max_us),
            (-0.5, 0.0),
            "zero and negative kept as measured"
        );
        let pct: f64 = report.passes.iter().map(|p| p.percent).sum();
        assert!((pct - 100.0).abs() < 1e-9);
        assert!(report.table().lines().nth(1).unwrap().ends_with(" a"));
        assert_eq!(report.to_json()["passes"][0]["count"], 20);
    }

    #[test]
    fn sources_are_named() {
        assert_eq!(Report::new(&[]).timing_source, "none");
        let mut cpu = record("c", 1.0);
        cpu.source = TimingSource::CpuWallClock;
        assert_eq!(Report::new([&cpu]).timing_source, "cpu_wall_clock");
        assert_eq!(
            Report::new([&cpu, &record("g", 1.0)]).timing_source,
            "mixed"
        );
    }
}
