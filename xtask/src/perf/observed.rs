//! W1-observed and R1-observed: what Strata's spans and metrics cost once a service listens to
//! them. The libraries only record through the `tracing` and `metrics` facades, which cost next to
//! nothing while nothing is installed; a service installs a subscriber and a recorder, and then
//! every push and read builds a span, formats it when it closes, and updates histograms and
//! counters. These rows measure W1 (C = 8) and R1 (C = 1) with both installed and enabled:
//!
//! - the recorder is `metrics-exporter-prometheus`'s, with buckets, and its upkeep every 5 s as its
//!   HTTP listener would run it (no listener: nothing scrapes);
//! - the subscriber formats every INFO span as it closes (`fmt` with `FmtSpan::CLOSE`) into a
//!   sink that only counts its lines, the work an exporter does per span, without the I/O.
//!
//! Both are global, installed once per process, and switched between rounds: the recorder hands
//! out no-op handles while off, and the subscriber's level filter is reloaded between `INFO` and
//! `OFF`. The reference (`strata-unobserved` row) is the same workload with both switched off, in
//! rounds alternating with the observed ones, each side first in turn: a single window of each
//! would compare two moments of a disk whose flush latency drifts, far more than 5 %.
//! Everything is off outside these rounds, so no other workload pays for them.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Registry, fmt, reload};

use crate::perf::runner::{Operation, Timing, run};
use crate::perf::stats::{Row, Samples};

/// Whether the recorder records; off outside the observed rounds.
static RECORDING: AtomicBool = AtomicBool::new(false);

static INSTALLED: OnceLock<Observability> = OnceLock::new();

/// Lines the subscriber formatted: proof that it saw the spans.
static FORMATTED: AtomicU64 = AtomicU64::new(0);

/// The subscriber's output: counted, then dropped.
struct Counted;

impl io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // `fmt` writes each formatted line in one call.
        FORMATTED.fetch_add(1, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Buckets of the `_seconds` histograms: 0.25 ms to 10 s.
const SECONDS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Buckets of the other histograms (group sizes, rows per read).
const COUNTS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1_000.0, 10_000.0];

/// The Prometheus recorder, while [`RECORDING`] is on; no-op handles otherwise.
#[derive(Debug)]
struct Switched(PrometheusRecorder);

impl Recorder for Switched {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if RECORDING.load(Ordering::Relaxed) {
            self.0.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if RECORDING.load(Ordering::Relaxed) {
            self.0.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if RECORDING.load(Ordering::Relaxed) {
            self.0.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

/// The process's recorder and subscriber, and the switches between rounds.
struct Observability {
    filter: reload::Handle<LevelFilter, Registry>,
    prometheus: PrometheusHandle,
}

impl Observability {
    /// Installs both, switched off, the first time; the same ones afterwards.
    fn get() -> Result<&'static Observability> {
        if let Some(installed) = INSTALLED.get() {
            return Ok(installed);
        }
        let recorder = PrometheusBuilder::new()
            .set_buckets(&COUNTS)?
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)?
            .build_recorder();
        let prometheus = recorder.handle();
        metrics::set_global_recorder(Switched(recorder))
            .map_err(|err| anyhow!("installing the metrics recorder: {err}"))?;
        let (filter, reload) = reload::Layer::new(LevelFilter::OFF);
        let subscriber = tracing_subscriber::registry().with(filter).with(
            fmt::layer()
                .with_writer(|| Counted)
                .with_span_events(FmtSpan::CLOSE),
        );
        tracing::subscriber::set_global_default(subscriber)
            .context("installing the tracing subscriber")?;
        // What the exporter's HTTP listener would run: histograms drained into their buckets.
        let upkeep = prometheus.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        Ok(INSTALLED.get_or_init(|| Observability {
            filter: reload,
            prometheus,
        }))
    }

    fn switch(&self, on: bool) -> Result<()> {
        let level = if on {
            LevelFilter::INFO
        } else {
            LevelFilter::OFF
        };
        self.filter
            .reload(level)
            .context("reloading the subscriber's filter")?;
        RECORDING.store(on, Ordering::Relaxed);
        Ok(())
    }
}

/// Switches both off when dropped, whatever ended the rounds.
struct Off(&'static Observability);

impl Drop for Off {
    fn drop(&mut self) {
        if let Err(err) = self.0.switch(false) {
            eprintln!("bench: could not switch observability off: {err:#}");
        }
    }
}

/// `workload` (`operation` from `concurrency` tasks) observed and unobserved in `rounds`
/// alternating rounds; fails unless the recorder then holds `required` (proof it recorded).
pub(crate) async fn run_alternating(
    workload: &str,
    concurrency: usize,
    timing: Timing,
    rounds: u32,
    operation: Operation,
    required: &str,
) -> Result<Vec<Row>> {
    let observability = Observability::get()?;
    let formatted_before = FORMATTED.load(Ordering::Relaxed);
    let round = Timing {
        warmup: timing.warmup / 2,
        measure: timing.measure / rounds,
    };
    let (mut observed, mut unobserved) = (Samples::default(), Samples::default());
    let (mut observed_time, mut unobserved_time) = (Duration::ZERO, Duration::ZERO);
    {
        let _off = Off(observability);
        for n in 0..rounds {
            for on in [n % 2 == 0, n % 2 != 0] {
                observability.switch(on)?;
                let (samples, took) = run(concurrency, round, Arc::clone(&operation)).await;
                if on {
                    observed.merge(samples);
                    observed_time += took;
                } else {
                    unobserved.merge(samples);
                    unobserved_time += took;
                }
            }
        }
    }
    let exposition = observability.prometheus.render();
    let series = exposition
        .lines()
        .filter(|line| line.starts_with("strata_"))
        .count();
    let names: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .filter(|name| name.starts_with("strata_"))
        .collect();
    let formatted = FORMATTED.load(Ordering::Relaxed) - formatted_before;
    eprintln!(
        "bench: {workload}: the subscriber formatted {formatted} lines; the recorder holds \
         {series} strata_ series of {} metrics: {}",
        names.len(),
        names.join(" ")
    );
    if !names.contains(&required) {
        bail!("{workload}: the recorder holds no {required}: it recorded nothing");
    }
    if formatted == 0 {
        bail!("{workload}: the subscriber formatted nothing");
    }
    Ok(vec![
        observed.events_row("strata", workload, concurrency, observed_time),
        unobserved.events_row("strata-unobserved", workload, concurrency, unobserved_time),
    ])
}

/// Each observed workload that ran beside its unobserved rounds, with their ratio.
pub(crate) fn summary(rows: &[Row]) -> Vec<String> {
    let rate = |row: &Row| row.events_per_sec.unwrap_or(0.0);
    rows.iter()
        .filter(|row| row.system == "strata" && row.workload.ends_with("-observed"))
        .filter_map(|observed| {
            let unobserved = rows.iter().find(|row| {
                row.system == "strata-unobserved"
                    && row.workload == observed.workload
                    && row.concurrency == observed.concurrency
            })?;
            Some(format!(
                "{} C={} {:.0} ev/s (p50/p99 {:.2}/{:.2} ms) beside unobserved {:.0} ev/s \
                 (p50/p99 {:.2}/{:.2} ms) in alternating rounds: ratio {:.3} (target >= 0.95)",
                observed.workload,
                observed.concurrency,
                rate(observed),
                observed.p50_ms,
                observed.p99_ms,
                rate(unobserved),
                unobserved.p50_ms,
                unobserved.p99_ms,
                rate(observed) / rate(unobserved).max(1e-9)
            ))
        })
        .collect()
}
