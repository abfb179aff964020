//! Why a projection operation failed.

use std::time::Duration;

use crate::backend::FailedEvent;

/// A projection operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A projection's definition is unusable (bad name, reads nothing, invalid types).
    #[error("projection {name:?} is invalid: {reason}")]
    InvalidProjection {
        /// The projection's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Two projections share a name.
    #[error("a projection named {0:?} is already registered")]
    DuplicateName(String),
    /// No projection has this name.
    #[error("no projection named {0:?} is registered")]
    UnknownProjection(String),
    /// No failed event matches.
    #[error("no failed event of projection {projection} at {aggregate} sequence {sequence}")]
    UnknownFailedEvent {
        /// The projection.
        projection: String,
        /// The aggregate, as `instance/type/id`.
        aggregate: String,
        /// The event's sequence.
        sequence: u64,
    },
    /// An event the projection reads, at or before the position a
    /// [`catch_up`](crate::ProjectionRuntime::catch_up) asked for, was not applied: its reducer
    /// or statements failed, and it was either skipped after its last attempt (`skipped`) or has
    /// attempts left that cannot happen before the deadline. The read model lacks the event until
    /// it is retried successfully or an operator skips it
    /// ([`skip_failed`](crate::ProjectionRuntime::skip_failed)).
    #[error(
        "projection {projection} in instance {instance} {outcome} event {aggregate} sequence {sequence} \
         (position {position}) after {attempts} attempt(s): {cause}",
        projection = failed.projection,
        instance = failed.aggregate.instance_id,
        outcome = if failed.parked { "parked the aggregate at" } else if *skipped { "skipped" } else { "has not yet applied" },
        aggregate = failed.aggregate,
        sequence = failed.sequence,
        position = failed.position,
        attempts = failed.failure_count,
        cause = failed.error,
    )]
    EventFailed {
        /// The event's failure record: projection, aggregate (with the instance), sequence,
        /// position, attempts and the last error.
        failed: Box<FailedEvent>,
        /// Whether the runtime gave up on it and moved past it; `false` while attempts are left.
        skipped: bool,
    },
    /// [`shutdown`](crate::ProjectionRuntime::shutdown) waited its deadline and batches were
    /// still running. They finish or roll back on their own; none is cut halfway.
    #[error(
        "the projection runtime did not stop within {deadline:?}: {running} batch(es) still running"
    )]
    ShutdownTimeout {
        /// How long was waited.
        deadline: Duration,
        /// Batches still running when it gave up waiting.
        running: usize,
    },
    /// A catch-up did not finish in time.
    #[error("projection {projection} did not reach the requested position within {timeout:?}")]
    Timeout {
        /// The projection.
        projection: String,
        /// How long was waited.
        timeout: Duration,
    },
    /// The read model refused a statement (e.g. raw SQL on the in-memory read model).
    #[error("statement refused: {0}")]
    Statement(String),
    /// The projection's reducer refused an event it was asked to apply again
    /// ([`retry_failed`](crate::ProjectionRuntime::retry_failed)).
    #[error("projection {projection} could not reduce the event: {message}")]
    Reducer {
        /// The projection.
        projection: String,
        /// The reducer's error, or what its panic said.
        message: String,
    },
    /// The projection's `after_commit` hook panicked (after its batch committed), and the pair's
    /// run ended there; the next trigger runs it on. A panicking reducer is not reported here: its
    /// event is recorded as failed, like a reducer error.
    #[error("projection {projection} panicked while running a batch")]
    Panicked {
        /// The projection.
        projection: String,
    },
    /// The projection has no such version.
    #[error("projection {projection} has no version {version}")]
    UnknownVersion {
        /// The projection.
        projection: String,
        /// The version asked for.
        version: u32,
    },
    /// A version cannot take over yet: it has events left to apply.
    #[error(
        "version {version} of projection {projection} is {events_behind} event(s) behind in \
         {instances_behind} instance(s); it can take over once it has caught up"
    )]
    VersionBehind {
        /// The projection.
        projection: String,
        /// The version.
        version: u32,
        /// Events it has not applied yet.
        events_behind: u64,
        /// Instances where it has some.
        instances_behind: u64,
    },
    /// A version operation that the version's state does not allow.
    #[error("version {version} of projection {projection} is {state}: {reason}")]
    VersionRefused {
        /// The projection.
        projection: String,
        /// The version.
        version: u32,
        /// Its state.
        state: crate::VersionState,
        /// Why that refuses the operation.
        reason: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] strata_store::Error),
    /// The runtime has been shut down.
    #[error("the projection runtime has stopped")]
    Stopped,
}

impl From<strata_query::QueryError> for ProjectionError {
    fn from(err: strata_query::QueryError) -> Self {
        ProjectionError::Store(err.into())
    }
}
