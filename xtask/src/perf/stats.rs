//! Latency samples and the result rows every workload reports.

use std::time::Duration;

use serde::Serialize;

/// One line of output: spec §9's JSON format.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) system: &'static str,
    pub(crate) workload: String,
    pub(crate) concurrency: usize,
    pub(crate) events_per_sec: Option<f64>,
    pub(crate) ops_per_sec: Option<f64>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
    pub(crate) retries: u64,
}

/// Latencies of completed operations plus counts, gathered from every task of a run.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) events: u64,
    pub(crate) errors: u64,
}

impl Samples {
    pub(crate) fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.events += other.events;
        self.errors += other.errors;
    }

    fn percentile(&mut self, fraction: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    /// A row for an event workload measured over `elapsed`.
    pub(crate) fn events_row(
        mut self,
        system: &'static str,
        workload: &str,
        concurrency: usize,
        elapsed: Duration,
    ) -> Row {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Row {
            system,
            workload: workload.to_owned(),
            concurrency,
            events_per_sec: Some(self.events as f64 / seconds),
            ops_per_sec: Some(self.latencies.len() as f64 / seconds),
            p50_ms: self.percentile(0.50),
            p99_ms: self.percentile(0.99),
            errors: self.errors,
            retries: 0,
        }
    }
}
