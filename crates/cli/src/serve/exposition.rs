//! `/metrics`: the latest sample in Prometheus' text format (version 0.0.4). Every series is
//! labelled by projection (or consumer) only, unless `--instance-labels` asks for one series per
//! instance too: with thousands of tenants that is thousands of series per projection.
//!
//! These are the database's view, the same for every process, and they keep reporting a
//! projection whose runtimes all stopped: what a service's own metrics cannot.
//! `docs/observability.md` lists the names beside the libraries' own.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::sample::{Counts, Kind, Sample};

/// The label value escaped as the text format asks: backslash, double quote and newline.
fn label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// One metric family being written: its header once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", label_value(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// A family of per-projection series: its name's suffix, type, help, and the value of a total.
type GaugeFamily = (&'static str, &'static str, &'static str, fn(&Totals) -> f64);

/// Per projection (or consumer), or per projection and instance: its instances' rows summed,
/// and the most live runtimes any of its parts has.
#[derive(Debug, Default)]
struct Totals {
    counts: Counts,
    runtimes_alive: usize,
}

/// The text of `/metrics`. `up` says whether the latest sample succeeded.
pub(super) fn render(sample: Option<&Sample>, up: bool, instance_labels: bool) -> String {
    let mut out = String::with_capacity(4096);
    Family::new(
        &mut out,
        "strata_up",
        "gauge",
        "Whether the latest sample of the database succeeded.",
    )
    .sample("strata_up", &[], if up { 1.0 } else { 0.0 });
    let Some(sample) = sample else {
        return out;
    };
    Family::new(
        &mut out,
        "strata_serve_sample_duration_seconds",
        "gauge",
        "How long reading the latest sample took.",
    )
    .sample(
        "strata_serve_sample_duration_seconds",
        &[],
        sample.took.as_secs_f64(),
    );
    Family::new(
        &mut out,
        "strata_serve_sample_timestamp_seconds",
        "gauge",
        "When the latest sample was taken, in seconds since the Unix epoch.",
    )
    .sample(
        "strata_serve_sample_timestamp_seconds",
        &[],
        sample.taken_at.timestamp_millis() as f64 / 1000.0,
    );
    Family::new(
        &mut out,
        "strata_store_events_stored_total",
        "counter",
        "Events committed since this strata serve started, counted between commit horizons (rate() of it is the push rate).",
    )
    .sample("strata_store_events_stored_total", &[], sample.events_stored_total as f64);
    Family::new(
        &mut out,
        "strata_runtimes_alive",
        "gauge",
        "Projection runtimes that sent a heartbeat within the last 15 s.",
    )
    .sample("strata_runtimes_alive", &[], sample.runtimes.len() as f64);

    for (prefix, label, consumers) in [
        ("strata_projection", "projection", false),
        ("strata_consumer", "consumer", true),
    ] {
        // Keyed by the label value (and instance, when asked for), sorted for a stable output.
        let mut totals: BTreeMap<(&str, Option<&str>), Totals> = BTreeMap::new();
        for summary in &sample.projections {
            if matches!(summary.kind, Kind::Consumer(_)) != consumers {
                continue;
            }
            if instance_labels {
                for row in sample.rows_of(summary) {
                    let entry = totals
                        .entry((summary.label(), Some(row.instance_id.as_str())))
                        .or_default();
                    entry.counts.add(row);
                    entry.runtimes_alive = entry.runtimes_alive.max(summary.runtimes_alive);
                }
                continue;
            }
            let entry = totals.entry((summary.label(), None)).or_default();
            entry.counts.merge(&summary.counts);
            entry.runtimes_alive = entry.runtimes_alive.max(summary.runtimes_alive);
        }
        let labels = |key: &(&str, Option<&str>)| -> Vec<(&'static str, String)> {
            let mut labels = vec![(label, key.0.to_owned())];
            if let Some(instance) = key.1 {
                labels.push(("instance", instance.to_owned()));
            }
            labels
        };
        let families: [GaugeFamily; 5] = [
            (
                "events_behind",
                "gauge",
                "Events it reads that are past its checkpoints and below the commit horizon.",
                |t| t.counts.events_behind as f64,
            ),
            (
                "seconds_behind",
                "gauge",
                "Age of the oldest event it has not processed (0 when up to date).",
                |t| t.counts.seconds_behind,
            ),
            (
                "failed_events",
                "gauge",
                "Failed events recorded and not skipped by an operator (parked ones included).",
                |t| t.counts.failed as f64,
            ),
            (
                "parked_events",
                "gauge",
                "Failed events that parked their aggregate: its later events wait for an operator.",
                |t| t.counts.parked as f64,
            ),
            (
                "runtimes_alive",
                "gauge",
                "Live runtimes that run it.",
                |t| t.runtimes_alive as f64,
            ),
        ];
        for (suffix, kind, help, value) in families {
            let name = format!("{prefix}_{suffix}");
            let mut family = Family::new(&mut out, &name, kind, help);
            for (key, total) in &totals {
                let owned = labels(key);
                let borrowed: Vec<(&str, &str)> =
                    owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                family.sample(&name, &borrowed, value(total));
            }
        }
        let name = format!("{prefix}_instances");
        let mut family = Family::new(
            &mut out,
            &name,
            "gauge",
            "Instances it runs in, by health (healthy, catching_up, stalled).",
        );
        for (key, total) in &totals {
            for (health, count) in [
                ("healthy", total.counts.healthy),
                ("catching_up", total.counts.catching_up),
                ("stalled", total.counts.stalled),
            ] {
                let mut owned = labels(key);
                owned.push(("health", health.to_owned()));
                let borrowed: Vec<(&str, &str)> =
                    owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                family.sample(&name, &borrowed, count as f64);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn integers_print_without_a_fraction() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn without_a_sample_only_up_is_reported() {
        let text = render(None, false, false);
        assert!(text.contains("strata_up 0"));
        assert!(!text.contains("strata_projection"));
    }
}
