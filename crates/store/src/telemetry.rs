//! The spans and metrics of the store's operations, recorded the same way by every backend.
//!
//! Each push and read runs inside an `INFO` span whose fields follow OpenTelemetry's database
//! conventions where they fit (`db.system`, `db.operation.name`, `otel.kind`, `otel.status_code`,
//! `error.type`) and name Strata's own under `strata.` (`strata.instance_id`,
//! `strata.event_count`, `strata.group_size`). Metrics go through the [`metrics`] facade: nothing
//! is recorded until the service installs a recorder, and nothing here installs one (nor a
//! `tracing` subscriber). `docs/observability.md` lists every name and label.
//!
//! Labels are bounded: the backend (`system`), the operation and, for errors, the error's kind.
//! Instance and aggregate ids appear only on spans.

use std::future::Future;
use std::time::Instant;

use strata_event::{Command, Event};
use strata_query::Query;
use tracing::{Instrument, Span, field};

use crate::{Error, Result};

/// `db.system` of the PostgreSQL backend.
pub const SYSTEM_POSTGRESQL: &str = "postgresql";
/// `db.system` of the in-memory backend (not an OpenTelemetry value: the store is in-process).
pub const SYSTEM_MEMORY: &str = "memory";

/// Seconds a push took, from the call to its answer (group commit's wait included).
pub const PUSH_DURATION: &str = "strata_push_duration_seconds";
/// Events returned by successful pushes (a replay of an idempotent push counts them again).
pub const EVENTS_PUSHED: &str = "strata_events_pushed_total";
/// Failed pushes, by the error's kind.
pub const PUSH_ERRORS: &str = "strata_push_errors_total";
/// Pushes committed together in one group-commit call (PostgreSQL).
pub const PUSH_GROUP_SIZE: &str = "strata_push_group_size";
/// Seconds a read took, by operation.
pub const QUERY_DURATION: &str = "strata_query_duration_seconds";
/// Rows (events, instance ids) a read returned, by operation.
pub const QUERY_ROWS: &str = "strata_query_rows";

/// The span of one push: `strata.push`, with its instance, aggregate type and event count. The
/// outcome and (on PostgreSQL) the group-commit size are recorded into it when known.
pub fn push_span(system: &'static str, commands: &[Command]) -> Span {
    let first = commands.first();
    // One push may span aggregates of several types; the span names the first and counts all.
    // Few fields: a subscriber formats or exports each one on every push.
    tracing::info_span!(
        "strata.push",
        otel.kind = "client",
        otel.status_code = field::Empty,
        db.system = system,
        db.operation.name = "push",
        strata.instance_id = first.map(|c| c.aggregate().instance_id.as_str()),
        strata.aggregate_type = first.map(|c| c.aggregate().aggregate_type.as_str()),
        strata.event_count = field::Empty,
        strata.group_size = field::Empty,
        error.type = field::Empty,
    )
}

/// Runs `push` inside `span` (from [`push_span`]) and records its duration, its events or its
/// error's kind.
pub async fn observe_push<F>(system: &'static str, span: Span, push: F) -> Result<Vec<Event>>
where
    F: Future<Output = Result<Vec<Event>>>,
{
    let started = Instant::now();
    let outcome = push.instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    match &outcome {
        Ok(events) => {
            // Literal labels make each key a static: no allocation per push.
            if system == SYSTEM_POSTGRESQL {
                metrics::histogram!(PUSH_DURATION, "system" => "postgresql", "outcome" => "ok")
                    .record(seconds);
                metrics::counter!(EVENTS_PUSHED, "system" => "postgresql")
                    .increment(events.len() as u64);
            } else {
                metrics::histogram!(PUSH_DURATION, "system" => "memory", "outcome" => "ok")
                    .record(seconds);
                metrics::counter!(EVENTS_PUSHED, "system" => "memory")
                    .increment(events.len() as u64);
            }
            span.record("strata.event_count", events.len());
            span.record("otel.status_code", "OK");
        }
        Err(err) => {
            metrics::histogram!(PUSH_DURATION, "system" => system, "outcome" => "error")
                .record(seconds);
            record_error(system, &span, err);
        }
    }
    outcome
}

fn record_error(system: &'static str, span: &Span, err: &Error) {
    let kind = err.kind().as_str();
    metrics::counter!(PUSH_ERRORS, "system" => system, "kind" => kind).increment(1);
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

/// Records that `size` pushes were committed in one call; `spans` are theirs, each told the size.
pub fn record_group(spans: impl IntoIterator<Item = Span>, size: usize) {
    metrics::histogram!(PUSH_GROUP_SIZE, "system" => "postgresql").record(size as f64);
    for span in spans {
        span.record("strata.group_size", size);
    }
}

/// What a read returned, counted for `strata_query_rows`.
pub trait Rows {
    /// How many rows (events, instance ids) the answer holds.
    fn rows(&self) -> usize;
}

impl<T> Rows for Vec<T> {
    fn rows(&self) -> usize {
        self.len()
    }
}

impl Rows for u64 {
    fn rows(&self) -> usize {
        1
    }
}

impl<T> Rows for Option<T> {
    fn rows(&self) -> usize {
        usize::from(self.is_some())
    }
}

/// The span of one read: `strata.query`, with the operation (`query`, `count`,
/// `latest_position`, `instance_ids`) and the instance when the query names exactly one.
pub fn read_span(system: &'static str, operation: &'static str, query: &Query) -> Span {
    let instances = query.instance_ids();
    let instance = match instances {
        [only] => Some(only.as_str()),
        _ => None,
    };
    tracing::info_span!(
        "strata.query",
        otel.name = operation,
        otel.kind = "client",
        otel.status_code = field::Empty,
        db.system = system,
        db.operation.name = operation,
        strata.instance_id = instance,
        strata.rows = field::Empty,
        error.type = field::Empty,
    )
}

/// Records one read's duration and, when it answered, its rows. The common reads get keys with
/// literal labels, which are statics: no allocation per read.
fn record_read(system: &'static str, operation: &'static str, seconds: f64, rows: Option<usize>) {
    macro_rules! record {
        ($system:literal, $operation:literal) => {{
            metrics::histogram!(QUERY_DURATION, "system" => $system, "operation" => $operation)
                .record(seconds);
            if let Some(rows) = rows {
                metrics::histogram!(QUERY_ROWS, "system" => $system, "operation" => $operation)
                    .record(rows as f64);
            }
        }};
    }
    match (system, operation) {
        (SYSTEM_POSTGRESQL, "query") => record!("postgresql", "query"),
        (SYSTEM_POSTGRESQL, "count") => record!("postgresql", "count"),
        (SYSTEM_MEMORY, "query") => record!("memory", "query"),
        (SYSTEM_MEMORY, "count") => record!("memory", "count"),
        _ => {
            metrics::histogram!(QUERY_DURATION, "system" => system, "operation" => operation)
                .record(seconds);
            if let Some(rows) = rows {
                metrics::histogram!(QUERY_ROWS, "system" => system, "operation" => operation)
                    .record(rows as f64);
            }
        }
    }
}

/// The span of a subscription's start: `strata.subscribe`, with the instance when the query
/// names exactly one. Its reads are children of it; the reads of later rounds are not.
pub fn subscribe_span(query: &Query) -> Span {
    let instance = match query.instance_ids() {
        [only] => Some(only.as_str()),
        _ => None,
    };
    tracing::info_span!(
        "strata.subscribe",
        otel.name = "subscribe",
        strata.instance_id = instance,
    )
}

/// Runs the read `read` inside its span and records its duration and rows.
pub async fn observe_read<T, F>(
    system: &'static str,
    operation: &'static str,
    query: &Query,
    read: F,
) -> Result<T>
where
    T: Rows,
    F: Future<Output = Result<T>>,
{
    let span = read_span(system, operation, query);
    let started = Instant::now();
    let outcome = read.instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let rows = outcome.as_ref().ok().map(Rows::rows);
    record_read(system, operation, seconds, rows);
    match &outcome {
        Ok(_) => {
            span.record("strata.rows", rows.unwrap_or(0));
            span.record("otel.status_code", "OK");
        }
        Err(err) => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", err.kind().as_str());
        }
    }
    outcome
}
