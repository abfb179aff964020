//! The cache's metrics and spans. Every operation counts into `strata_cache_requests_total`
//! (labels `cache`, `connector`, `operation`, `result`); operations that leave the process
//! (PostgreSQL, Redis) also record `strata_cache_duration_seconds` and run in a span
//! (`strata.cache`, with `db.system` and `db.operation.name`). The in-memory connector gets no
//! span: a lookup takes well under a microsecond, less than a span would cost.
//!
//! The metric keys are built once per cache, so the hot path allocates nothing whether or not a
//! recorder is installed; nothing here installs one. `docs/observability.md` lists the names.

use std::time::Instant;

use metrics::{Key, Label, Level, Metadata};
use tracing::{Span, field};

use crate::config::ConnectorKind;

/// Cache operations, by `operation` (`get`, `set`, `invalidate`, `delete`) and `result`
/// (`hit`, `miss` and `error` for a get; `ok` and `error` otherwise).
pub const CACHE_REQUESTS: &str = "strata_cache_requests_total";
/// Seconds a PostgreSQL or Redis cache operation took, by `operation`.
pub const CACHE_DURATION: &str = "strata_cache_duration_seconds";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A cache operation, for the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Get,
    Set,
    Invalidate,
    Delete,
}

impl Operation {
    const ALL: [Operation; 4] = [
        Operation::Get,
        Operation::Set,
        Operation::Invalidate,
        Operation::Delete,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Set => "set",
            Operation::Invalidate => "invalidate",
            Operation::Delete => "delete",
        }
    }
}

/// How an operation ended, for the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Miss,
    Ok,
    Error,
}

impl Outcome {
    const ALL: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Ok, Outcome::Error];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// The keys of one cache's series, built when the cache starts.
pub(crate) struct CacheMetrics {
    name: String,
    connector: ConnectorKind,
    /// Indexed by `operation * 4 + outcome`.
    requests: Vec<Key>,
    /// Indexed by operation.
    durations: Vec<Key>,
}

impl CacheMetrics {
    pub(crate) fn new(name: &str, connector: ConnectorKind) -> Self {
        let label = |key: &'static str, value: String| Label::new(key, value);
        let base = || {
            vec![
                label("cache", name.to_owned()),
                label("connector", connector.to_string()),
            ]
        };
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        for operation in Operation::ALL {
            for outcome in Outcome::ALL {
                let mut labels = base();
                labels.push(Label::new("operation", operation.as_str()));
                labels.push(Label::new("result", outcome.as_str()));
                requests.push(Key::from_parts(CACHE_REQUESTS, labels));
            }
            let mut labels = base();
            labels.push(Label::new("operation", operation.as_str()));
            durations.push(Key::from_parts(CACHE_DURATION, labels));
        }
        CacheMetrics {
            name: name.to_owned(),
            connector,
            requests,
            durations,
        }
    }

    /// Counts one operation; `started` (for a connector outside the process) also records how
    /// long it took.
    pub(crate) fn record(&self, operation: Operation, outcome: Outcome, started: Option<Instant>) {
        let index = operation as usize * Outcome::ALL.len() + outcome as usize;
        metrics::with_recorder(|recorder| {
            if let Some(key) = self.requests.get(index) {
                recorder.register_counter(key, &METADATA).increment(1);
            }
            if let (Some(started), Some(key)) = (started, self.durations.get(operation as usize)) {
                recorder
                    .register_histogram(key, &METADATA)
                    .record(started.elapsed().as_secs_f64());
            }
        });
    }

    /// The span of one operation on a connector outside the process.
    pub(crate) fn span(&self, operation: Operation, index: &'static str, keys: usize) -> Span {
        let system = match self.connector {
            ConnectorKind::Memory => "memory",
            ConnectorKind::Postgres => "postgresql",
            ConnectorKind::Redis => "redis",
        };
        tracing::info_span!(
            "strata.cache",
            otel.name = operation.as_str(),
            otel.kind = "client",
            db.system = system,
            db.operation.name = operation.as_str(),
            strata.cache = self.name.as_str(),
            strata.cache_index = index,
            strata.key_count = keys,
            strata.cache_result = field::Empty,
        )
    }
}
