//! Why a projection operation failed.

use std::time::Duration;

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
