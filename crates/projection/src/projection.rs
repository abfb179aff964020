//! What a projection is: a name, the events it reads, a reducer, and its settings.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use strata_event::{AggregateRef, Event, InstanceId};
use strata_query::{Query, QueryBuilder, SubQuery};

use crate::error::ProjectionError;
use crate::statement::Statement;
use crate::version::Table;

/// A read model kept up to date from events.
///
/// The runtime calls [`Projection::reduce`] for every event the projection reads, in
/// `(position, in_tx_order)` order per instance, and applies the statements it returns together with
/// the projection's checkpoint in one transaction: each event's effects happen exactly once.
pub trait Projection: Send + Sync + 'static {
    /// A unique, stable name (`[a-z_][a-z0-9_.]*`): it keys the checkpoint and the advisory lock,
    /// so renaming a projection rebuilds it.
    fn name(&self) -> &str;

    /// The events this projection reads.
    fn reads(&self) -> Reads;

    /// Turns one event into read-model statements. An error is treated like a failing statement:
    /// retried, then recorded as a failed event (see [`ProjectionConfig::max_failure_count`]).
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError>;

    /// Statements that remove this projection's rows of `instance`: a rebuild runs them, in the
    /// same transaction that forgets the checkpoint, and then replays every event. Required,
    /// because only the projection knows its tables, and a rebuild that kept the old rows would
    /// count every counter twice.
    ///
    /// Usually one delete per table, by the instance column:
    ///
    /// ```
    /// # use strata_event::InstanceId;
    /// # use strata_projection::Statement;
    /// # fn reset(instance: &InstanceId) -> Vec<Statement> {
    /// vec![Statement::delete("users", vec![("instance_id", instance.as_str().into())])]
    /// # }
    /// # let _ = reset;
    /// ```
    ///
    /// Return no statements only when replaying over the old rows gives the same read model
    /// (every statement an upsert or delete of whole rows). A projection without `reset` does
    /// not compile:
    ///
    /// ```compile_fail,E0046
    /// # use strata_event::Event;
    /// # use strata_projection::{Projection, Reads, ReduceError, Statement};
    /// struct Counter;
    ///
    /// impl Projection for Counter {
    ///     fn name(&self) -> &str { "counter" }
    ///     fn reads(&self) -> Reads { Reads::new().aggregate("user") }
    ///     fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> { Ok(vec![]) }
    /// }
    /// ```
    fn reset(&self, instance: &InstanceId) -> Vec<Statement>;

    /// Whether applying this projection causes effects outside its read model (sending e-mails,
    /// calling webhooks). Such projections are never replayed on a mirrored copy of the store:
    /// the mirror moves their checkpoint to the copied head instead, so nothing is sent twice.
    fn has_side_effects(&self) -> bool {
        false
    }

    /// Settings; see [`ProjectionConfig`] for the defaults.
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig::default()
    }

    /// The read model's version, for a projection that declares its [`tables`](Projection::tables).
    /// Raise it with any change to what `reduce` writes or to the tables: the runtime builds the
    /// new version beside the live one, in tables of its own, and switches readers over when it
    /// has caught up (`docs/projections.md`, "Versions"). Default: 1.
    fn version(&self) -> u32 {
        1
    }

    /// The tables of the read model, when the runtime should version them: each is created per
    /// version (`users_v2`) and read under its declared name (`users`, a view over the live
    /// version's table on PostgreSQL). Statements name the declared tables and the runtime
    /// rewrites them; raw SQL writes `{users}` where it means the table. Default: none, and the
    /// projection writes to tables the application manages, rebuilt in place.
    fn tables(&self) -> Vec<Table> {
        Vec::new()
    }

    /// Runs before a batch's events are reduced, with those events: where a projection fetches
    /// what its synchronous [`reduce`](Projection::reduce) needs from elsewhere in one call per
    /// batch (the typed layer fetches the keys of personal data here). It cannot fail the batch:
    /// an event whose needs it could not meet fails in `reduce` and takes the retry path. The
    /// default does nothing.
    fn prepare<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        let _ = events;
        Box::pin(std::future::ready(()))
    }

    /// Runs after a batch of this projection's statements **committed**, with the aggregates
    /// whose events the batch applied (each once, in the order first met). This is where a
    /// projection drops cache entries its read model no longer matches, e.g. with
    /// `strata_cache::CacheInvalidator::invalidate_keys`.
    ///
    /// It runs in the process that applied the batch, and that process's
    /// [`catch_up`](crate::ProjectionRuntime::catch_up) does not return while a batch of the pair
    /// sits between its commit and the end of this hook, so a caller that caught up reads through a
    /// cache that has already forgotten the old value. (A batch applied by another process is not
    /// waited for.) It cannot fail the batch
    /// (the batch is already committed): log what goes wrong. A process that dies between the
    /// commit and this call loses the invalidation, so give cached entries a `max_age` as the
    /// bound on staleness. The default does nothing.
    fn after_commit<'a>(&'a self, touched: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        let _ = touched;
        Box::pin(std::future::ready(()))
    }
}

/// A reducer could not handle an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReduceError(pub String);

impl ReduceError {
    /// A reduce error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ReduceError(message.into())
    }
}

impl From<strata_event::PayloadError> for ReduceError {
    fn from(err: strata_event::PayloadError) -> Self {
        ReduceError(err.to_string())
    }
}

/// The events a projection reads: for each aggregate type, some or all of its event types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    entries: Vec<(String, Vec<String>)>,
}

impl Reads {
    /// Reads nothing yet; add with [`Reads::events`] and [`Reads::aggregate`].
    pub fn new() -> Self {
        Reads::default()
    }

    /// Reads these event types of `aggregate_type`.
    #[must_use]
    pub fn events<I, S>(mut self, aggregate_type: impl Into<String>, event_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entries.push((
            aggregate_type.into(),
            event_types.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Reads every event of `aggregate_type`.
    #[must_use]
    pub fn aggregate(mut self, aggregate_type: impl Into<String>) -> Self {
        self.entries.push((aggregate_type.into(), Vec::new()));
        self
    }

    /// The `(aggregate type, event types)` pairs; empty event types mean all of that aggregate.
    pub fn entries(&self) -> &[(String, Vec<String>)] {
        &self.entries
    }

    /// A query builder selecting these events in `instance`.
    pub(crate) fn query(&self, instance: &InstanceId) -> QueryBuilder {
        self.entries.iter().fold(
            Query::builder().instance(instance.as_str()),
            |builder, (aggregate_type, event_types)| {
                builder.or(SubQuery::builder()
                    .aggregate_types([aggregate_type.as_str()])
                    .event_types(event_types.iter().map(String::as_str)))
            },
        )
    }

    /// A query builder selecting these events in every instance.
    pub(crate) fn query_all_instances(&self) -> QueryBuilder {
        self.entries.iter().fold(
            Query::builder().all_instances(),
            |builder, (aggregate_type, event_types)| {
                builder.or(SubQuery::builder()
                    .aggregate_types([aggregate_type.as_str()])
                    .event_types(event_types.iter().map(String::as_str)))
            },
        )
    }

    pub(crate) fn validate(&self, projection: &str) -> Result<(), ProjectionError> {
        if self.entries.is_empty() {
            return Err(ProjectionError::InvalidProjection {
                name: projection.to_owned(),
                reason: "it reads no events".into(),
            });
        }
        self.query_all_instances().build().map(drop).map_err(|err| {
            ProjectionError::InvalidProjection {
                name: projection.to_owned(),
                reason: err.to_string(),
            }
        })
    }
}

/// How a projection runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionConfig {
    /// Events per batch (one transaction). Default: 200.
    pub bulk_limit: u32,
    /// Safety-net tick: the projection is checked at least this often even without any trigger.
    /// Default: 10 s.
    pub requeue_every: Duration,
    /// After an event failed, wait this long before trying it again. Default: 1 s.
    pub retry_failed_after: Duration,
    /// Attempts before an event is recorded as failed for good and skipped (or its aggregate
    /// parked, see [`ProjectionConfig::on_failure`]). Default: 5.
    pub max_failure_count: u32,
    /// Longest a batch transaction may take; beyond it the batch is rolled back and retried with
    /// half as many events. Default: 30 s.
    pub transaction_duration: Duration,
    /// What happens to an event after its last attempt. Default: [`OnFailure::Skip`].
    pub on_failure: OnFailure,
    /// A pair whose checkpoint has not moved for this long while an event it reads has waited
    /// this long is reported as [stalled](crate::Health::Stalled). Default: 60 s.
    pub stall_after: Duration,
    /// When a new [version](Projection::version) takes over. Default: [`SwitchWhen::CaughtUp`].
    pub switch: SwitchWhen,
    /// How long a retired version's tables are kept for a rollback before a runtime drops them;
    /// `None` keeps them until an operator drops them. Default: one day.
    pub drop_retired_after: Option<Duration>,
}

/// When a version built beside the live one takes over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SwitchWhen {
    /// As soon as it has caught up with the live version in every instance.
    #[default]
    CaughtUp,
    /// When an operator says so (`strata projections switch`, or
    /// [`ProjectionRuntime::switch`](crate::ProjectionRuntime::switch)), once it has caught up.
    OnCommand,
}

/// What the runtime does with an event that failed [`max_failure_count`] times.
///
/// [`max_failure_count`]: ProjectionConfig::max_failure_count
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Record it as a [`FailedEvent`](crate::FailedEvent) and pass it: the aggregate's later
    /// events apply without it. An operator can retry it out of order or accept the gap. Right for
    /// read models where one missing event is better than a stalled row.
    #[default]
    Skip,
    /// Record it as failed and **park its aggregate** in this pair: the aggregate's later events
    /// wait (the checkpoint moves past them, they are owed), every other aggregate keeps
    /// flowing. Retrying (after a fix) applies the failed event and then every event the
    /// aggregate received meanwhile, in order; skipping passes the failed event and applies the
    /// rest. Right where order matters more than progress: side effects, state machines.
    Park,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        ProjectionConfig {
            bulk_limit: 200,
            requeue_every: Duration::from_secs(10),
            retry_failed_after: Duration::from_secs(1),
            max_failure_count: 5,
            transaction_duration: Duration::from_secs(30),
            on_failure: OnFailure::Skip,
            stall_after: Duration::from_secs(60),
            switch: SwitchWhen::CaughtUp,
            drop_retired_after: Some(Duration::from_secs(24 * 60 * 60)),
        }
    }
}

/// Whether `name` is a valid projection name.
pub(crate) fn is_projection_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 100
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}
