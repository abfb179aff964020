//! Why a query could not be built.

use strata_event::ValidationError;
use thiserror::Error;

use crate::MAX_LIMIT;

/// A query could not be built. Nothing is read with a query that failed to build.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query names no instance and does not say it spans all of them: refused so that a
    /// forgotten tenant filter never reads every tenant's events.
    #[error(
        "a query must name its instance(s) with `instance`/`instances`, or read every instance \
         with `all_instances`"
    )]
    NoInstance,
    /// The query names instances and also says it spans all of them.
    #[error("a query cannot both name instances and read all instances")]
    InstancesAndAllInstances,
    /// A value in the query is not a valid id or type.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The limit is zero, negative or larger than [`MAX_LIMIT`].
    #[error("invalid limit {0}: must be between 1 and {MAX_LIMIT}")]
    Limit(i128),
    /// The offset is negative or absurdly large.
    #[error("invalid offset {0}: must be between 0 and {max}", max = i64::MAX)]
    Offset(i128),
    /// An aggregate exclusion names no event types, so it could never exclude anything.
    #[error("an aggregate exclusion needs at least one event type")]
    ExclusionWithoutEventTypes,
    /// The payload filter is not a JSON object, or holds what no payload can (the NUL character).
    #[error("invalid payload filter: {0}")]
    PayloadFilter(String),
    /// A creation-time bound lies before 4714-11-24 BC, the earliest instant PostgreSQL stores.
    #[error("invalid {field} {instant}: before 4714-11-24 BC, the earliest instant a store holds")]
    Timestamp {
        /// `created_after` or `created_before`.
        field: &'static str,
        /// The bound given.
        instant: chrono::DateTime<chrono::Utc>,
    },
}
