//! Latency samples and the result rows every workload reports.

use std::time::Duration;

use serde::Serialize;

/// One line of output, in the JSON format `docs/benchmarks.md` describes ("JSON rows").
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

/// Bits of a latency kept below its leading one: 64 buckets per power of two, so a bucket spans
/// at most 1/64 of its values (a reported percentile is within 0.8 % of the exact one).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64` of nanoseconds: the exact ones below `2 × SUB`, then `SUB` for each
/// power of two from `2 × SUB` to `2^63`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Operation latencies as a log-linear histogram of nanoseconds: constant memory however many
/// operations a workload completes (a memory-cache hit runs millions of times per second, where a
/// list of every latency would take gigabytes and a sort of seconds).
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Latencies {
    /// One latency.
    pub(crate) fn of(latency: Duration) -> Latencies {
        let mut latencies = Latencies::default();
        latencies.record(latency);
        latencies
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(nanos)] += 1;
        self.total += 1;
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    fn merge(&mut self, other: &Latencies) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The latency at `fraction` (0.5 for the median), in milliseconds: the middle of the bucket
    /// holding the sample a sorted list would have at index `round((n - 1) × fraction)`.
    pub(crate) fn percentile(&self, fraction: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total - 1) as f64 * fraction).round() as u64;
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen > rank {
                let (low, width) = bucket_bounds(index);
                return (low as f64 + (width - 1) as f64 / 2.0) / 1e6;
            }
        }
        0.0
    }
}

/// Values below `2 × SUB` have a bucket each; above, a power of two is split into `SUB` buckets.
fn bucket(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let exponent = 63 - nanos.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let mantissa = (nanos >> shift) as usize; // in [SUB, 2 × SUB)
    (shift as usize + 1) * SUB + (mantissa - SUB)
}

/// The lowest value of bucket `index` and how many values it spans.
fn bucket_bounds(index: usize) -> (u64, u64) {
    if index < 2 * SUB {
        return (index as u64, 1);
    }
    let shift = (index / SUB - 1) as u32;
    let mantissa = (SUB + index % SUB) as u64;
    (mantissa << shift, 1 << shift)
}

/// Latencies of completed operations plus counts, gathered from every task of a run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples {
    pub(crate) latencies: Latencies,
    pub(crate) events: u64,
    pub(crate) errors: u64,
}

impl Samples {
    pub(crate) fn merge(&mut self, other: Samples) {
        self.latencies.merge(&other.latencies);
        self.events += other.events;
        self.errors += other.errors;
    }

    /// A row for an event workload measured over `elapsed`.
    pub(crate) fn events_row(
        self,
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
            ops_per_sec: Some(self.latencies.count() as f64 / seconds),
            p50_ms: self.latencies.percentile(0.50),
            p99_ms: self.latencies.percentile(0.99),
            errors: self.errors,
            retries: 0,
        }
    }

    /// A row for a cache workload (C1): operations per second, no events.
    pub(crate) fn ops_row(
        self,
        system: &'static str,
        workload: &str,
        concurrency: usize,
        elapsed: Duration,
    ) -> Row {
        Row {
            events_per_sec: None,
            ..self.events_row(system, workload, concurrency, elapsed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values_and_are_narrow() {
        for nanos in (0..5_000u64).chain([
            127,
            128,
            129,
            1_000_000,
            123_456_789,
            u64::MAX / 3,
            u64::MAX,
        ]) {
            let index = bucket(nanos);
            assert!(index < BUCKETS, "{nanos} -> {index}");
            let (low, width) = bucket_bounds(index);
            assert!(
                low <= nanos && nanos - low < width,
                "{nanos} in [{low}, +{width})"
            );
            assert!(
                width == 1 || width <= low / SUB as u64,
                "{nanos}: width {width}"
            );
        }
    }

    #[test]
    fn percentiles_match_a_sorted_list_within_a_bucket() {
        let mut latencies = Latencies::default();
        for micros in 1..=1_000u64 {
            latencies.record(Duration::from_micros(micros));
        }
        assert_eq!(latencies.count(), 1_000);
        // Exact: index round(999 × 0.5) = 500 → 501 µs; round(999 × 0.99) = 989 → 990 µs.
        let p50 = latencies.percentile(0.5);
        let p99 = latencies.percentile(0.99);
        assert!((p50 - 0.501).abs() / 0.501 < 0.01, "p50 {p50}");
        assert!((p99 - 0.990).abs() / 0.990 < 0.01, "p99 {p99}");
        assert_eq!(Latencies::default().percentile(0.99), 0.0);
    }
}
