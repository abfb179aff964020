//! The spans and metrics of projection and consumer batches: each batch runs in a
//! `strata.projection_batch` or `strata.consumer_delivery` span, and its metrics go through the
//! `metrics` facade (nothing is kept until the service installs a recorder; this crate never
//! installs one).
//!
//! A projection's series carry the label `projection` (its pair name, `users@v2` for a version);
//! a consumer's carry `consumer` (the consumer's name, all its partitions together). With
//! [`RuntimeConfig::instance_labels`](crate::RuntimeConfig::instance_labels) they also carry
//! `instance`: off by default, since a store with thousands of tenants would make thousands of
//! series per projection. `docs/observability.md` lists every name.
//!
//! These are what one process did. Lag and health as the database sees them, across every
//! process and including a process that stopped, come from `strata serve`'s `/metrics`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::Label;
use strata_event::InstanceId;
use tracing::{Span, field};

use crate::BatchOutcome;
use crate::consumer::ConsumerPart;
use crate::error::ProjectionError;

/// Batches of a projection, by `outcome`: `applied`, `stalled` (an event failed with attempts
/// left), `timed_out` (rolled back, retried smaller) or `error`.
pub const PROJECTION_BATCHES: &str = "strata_projection_batches_total";
/// Seconds a projection batch took, from applying its first event to its commit.
pub const PROJECTION_BATCH_DURATION: &str = "strata_projection_batch_duration_seconds";
/// Events a projection's checkpoint moved past (applied, skipped or parked).
pub const PROJECTION_EVENTS: &str = "strata_projection_events_processed_total";
/// Failed attempts to apply an event (each attempt counts once).
pub const PROJECTION_FAILURES: &str = "strata_projection_event_failures_total";
/// Events given up on and skipped.
pub const PROJECTION_SKIPPED: &str = "strata_projection_events_skipped_total";
/// Events given up on that parked their aggregate.
pub const PROJECTION_PARKED: &str = "strata_projection_events_parked_total";
/// How far behind the newest event the projection was at its latest batches in this process: the
/// worst over its instances in the last 30 s (0 once a batch reached the horizon).
pub const PROJECTION_BATCH_LAG: &str = "strata_projection_batch_lag_seconds";

/// The consumer counterparts of the projection metrics above, labelled `consumer`.
pub const CONSUMER_DELIVERIES: &str = "strata_consumer_deliveries_total";
/// Seconds a consumer's delivery (one call of `handle_batch` plus its checkpoint) took.
pub const CONSUMER_DELIVERY_DURATION: &str = "strata_consumer_delivery_duration_seconds";
/// Events a consumer's checkpoint moved past.
pub const CONSUMER_EVENTS: &str = "strata_consumer_events_processed_total";
/// Failed attempts to handle an event.
pub const CONSUMER_FAILURES: &str = "strata_consumer_event_failures_total";
/// Events given up on and skipped.
pub const CONSUMER_SKIPPED: &str = "strata_consumer_events_skipped_total";
/// Events given up on that parked their aggregate.
pub const CONSUMER_PARKED: &str = "strata_consumer_events_parked_total";
/// How far behind the newest event the consumer was at its latest delivery in this process.
pub const CONSUMER_BATCH_LAG: &str = "strata_consumer_batch_lag_seconds";

/// How long the worst lag seen stays on the batch-lag gauge without a batch of its instance.
const WORST_KEPT: Duration = Duration::from_secs(30);

/// What a batch ended as, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchEnd {
    Applied,
    Stalled,
    TimedOut,
    Error,
}

impl BatchEnd {
    fn as_str(self) -> &'static str {
        match self {
            BatchEnd::Applied => "applied",
            BatchEnd::Stalled => "stalled",
            BatchEnd::TimedOut => "timed_out",
            BatchEnd::Error => "error",
        }
    }
}

/// The metrics of one registered projection or consumer part: its labels and the worst lag it saw
/// lately (the gauge shows it).
#[derive(Debug)]
pub(crate) struct PairMetrics {
    consumer: bool,
    name: String,
    instance_labels: bool,
    /// The worst lag lately seen: its instance, its seconds, when.
    worst: Mutex<Option<(InstanceId, f64, Instant)>>,
}

impl PairMetrics {
    /// For the projection pair `name`, or for a part of the consumer `consumer`.
    pub(crate) fn new(name: &str, consumer: Option<&str>, instance_labels: bool) -> Self {
        PairMetrics {
            consumer: consumer.is_some(),
            name: consumer.unwrap_or(name).to_owned(),
            instance_labels,
            worst: Mutex::new(None),
        }
    }

    /// Turns the `instance` label on or off (the runtime's setting, known when it starts).
    pub(crate) fn set_instance_labels(&mut self, on: bool) {
        self.instance_labels = on;
    }

    fn labels(&self, instance: &InstanceId) -> Vec<Label> {
        let key = if self.consumer {
            "consumer"
        } else {
            "projection"
        };
        let mut labels = vec![Label::new(key, self.name.clone())];
        if self.instance_labels {
            labels.push(Label::new("instance", instance.as_str().to_owned()));
        }
        labels
    }

    /// Records one batch in `instance`: how it ended, how long it took, what it did, and, when
    /// it applied events, how far behind the newest event it still is (`newest_applied` is the
    /// creation time of its last event; `complete` says it reached the horizon).
    pub(crate) fn record_batch(
        &self,
        instance: &InstanceId,
        end: BatchEnd,
        seconds: f64,
        outcome: Option<&BatchOutcome>,
        newest_applied: Option<DateTime<Utc>>,
        complete: bool,
    ) {
        let labels = self.labels(instance);
        let (batches, duration, events, failures, skipped, parked) = if self.consumer {
            (
                CONSUMER_DELIVERIES,
                CONSUMER_DELIVERY_DURATION,
                CONSUMER_EVENTS,
                CONSUMER_FAILURES,
                CONSUMER_SKIPPED,
                CONSUMER_PARKED,
            )
        } else {
            (
                PROJECTION_BATCHES,
                PROJECTION_BATCH_DURATION,
                PROJECTION_EVENTS,
                PROJECTION_FAILURES,
                PROJECTION_SKIPPED,
                PROJECTION_PARKED,
            )
        };
        let mut with_outcome = labels.clone();
        with_outcome.push(Label::new("outcome", end.as_str()));
        metrics::counter!(batches, with_outcome).increment(1);
        metrics::histogram!(duration, labels.clone()).record(seconds);
        let Some(outcome) = outcome else {
            return;
        };
        metrics::counter!(events, labels.clone()).increment(outcome.processed as u64);
        // A stalled batch recorded one failure; skipped and parked events failed their last time.
        let failed = u64::from(outcome.stalled) + (outcome.skipped + outcome.parked) as u64;
        if failed > 0 {
            metrics::counter!(failures, labels.clone()).increment(failed);
        }
        if outcome.skipped > 0 {
            metrics::counter!(skipped, labels.clone()).increment(outcome.skipped as u64);
        }
        if outcome.parked > 0 {
            metrics::counter!(parked, labels.clone()).increment(outcome.parked as u64);
        }
        let behind = match (complete, newest_applied) {
            (false, Some(created_at)) => {
                (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0
            }
            _ => 0.0,
        };
        self.record_lag(instance, behind, labels);
    }

    fn record_lag(&self, instance: &InstanceId, behind: f64, labels: Vec<Label>) {
        let gauge = if self.consumer {
            CONSUMER_BATCH_LAG
        } else {
            PROJECTION_BATCH_LAG
        };
        if self.instance_labels {
            metrics::gauge!(gauge, labels).set(behind);
            return;
        }
        // The worst lag seen lately, in O(1) per batch: an instance's batch replaces it when it
        // is that instance's, when it is worse, or when the worst is older than WORST_KEPT (its
        // instance may have moved to another process, which reports it there).
        let shown = {
            let Ok(mut worst) = self.worst.lock() else {
                return;
            };
            let now = Instant::now();
            let replace = match &*worst {
                None => true,
                Some((worst_instance, worst_behind, at)) => {
                    worst_instance == instance
                        || behind >= *worst_behind
                        || now.duration_since(*at) > WORST_KEPT
                }
            };
            if replace {
                *worst = Some((instance.clone(), behind, now));
            }
            worst.as_ref().map_or(behind, |(_, behind, _)| *behind)
        };
        metrics::gauge!(gauge, labels).set(shown);
    }
}

/// The `error.type` of a batch that failed: the store error's kind, or what went wrong here.
pub(crate) fn error_type(err: &ProjectionError) -> &'static str {
    match err {
        ProjectionError::Store(err) => err.kind().as_str(),
        ProjectionError::Statement(_) => "statement",
        ProjectionError::Reducer { .. } => "reducer",
        ProjectionError::Panicked { .. } => "panicked",
        ProjectionError::Timeout { .. } => "timeout",
        _ => "projection",
    }
}

/// The span of one batch: `strata.projection_batch`, or `strata.consumer_delivery` for a
/// consumer's part, with the pair, the instance and the events it carries.
pub(crate) fn batch_span(
    pair: &str,
    part: Option<&ConsumerPart>,
    instance: &InstanceId,
    events: usize,
) -> Span {
    match part {
        Some(part) => tracing::info_span!(
            "strata.consumer_delivery",
            otel.name = "consumer_delivery",
            otel.status_code = field::Empty,
            strata.consumer = part.consumer.name(),
            strata.pair = pair,
            strata.instance_id = instance.as_str(),
            strata.event_count = events,
            strata.processed = field::Empty,
            error.type = field::Empty,
        ),
        None => tracing::info_span!(
            "strata.projection_batch",
            otel.name = "projection_batch",
            otel.status_code = field::Empty,
            strata.projection = pair,
            strata.instance_id = instance.as_str(),
            strata.event_count = events,
            strata.processed = field::Empty,
            error.type = field::Empty,
        ),
    }
}
