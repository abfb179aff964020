//! Hard delete: removing one aggregate's or one instance's events for good (a court order, data
//! pushed by mistake), audited, and never behind a projection's back.
//!
//! The work is `eventstore.hard_delete`, one transaction: it removes the events from the hot table
//! and the archive, the idempotency keys that point at them, their failed events, the named unique
//! constraints, and records the removal in `eventstore.removals` (docs/operations.md, "Hard
//! delete"). Run it as the migrator; the writer role may not.

use sqlx::PgPool;
use strata_event::{AggregateRef, InstanceId};

use crate::error::{from_sqlx, unexpected_answer};

/// What a hard delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteTarget {
    /// One aggregate's events.
    Aggregate(AggregateRef),
    /// Every event of an instance.
    Instance(InstanceId),
}

impl std::fmt::Display for DeleteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeleteTarget::Aggregate(aggregate) => write!(f, "aggregate {aggregate}"),
            DeleteTarget::Instance(instance) => write!(f, "instance {instance}"),
        }
    }
}

/// A hard delete as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardDelete {
    /// What to remove.
    pub target: DeleteTarget,
    /// Who asked (a person or ticket), recorded beside the database role that ran it.
    pub actor: String,
    /// Why, recorded in `eventstore.removals` (e.g. the court order's reference).
    pub reason: String,
    /// Whether to have the projections whose checkpoint passed the removed events rebuild the
    /// instance (queued in the same transaction) instead of refusing. By default, refuse.
    pub rebuild: bool,
    /// Unique constraints to release with an aggregate, as `(unique type, value)` pairs. They
    /// carry no aggregate reference, so only the ones named here are released; an instance's
    /// are all released with it.
    pub release_unique: Vec<(String, String)>,
}

/// What a hard delete removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removal {
    /// Its row in `eventstore.removals`.
    pub removal_id: i64,
    /// Events removed from the hot table.
    pub hot_events: u64,
    /// Events removed from the archive.
    pub archived_events: u64,
    /// Idempotency keys removed: their push included a removed event.
    pub idempotency_keys: u64,
    /// Unique constraints released.
    pub unique_constraints: u64,
    /// Failed-event records of the removed events.
    pub failed_events: u64,
    /// Projections asked to rebuild the instance.
    pub projections_rebuilt: Vec<String>,
}

/// Why a hard delete removed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardDeleteError {
    /// Projections have processed some of the events: their read models hold rows derived from
    /// them. Ask again with [`HardDelete::rebuild`] to have them rebuilt.
    #[error(
        "projection(s) {} have processed events this would remove; ask for a rebuild of them \
         (--rebuild) to remove anyway",
        .projections.join(", ")
    )]
    ProjectionsAhead {
        /// The projections, by name.
        projections: Vec<String>,
    },
    /// The target has no events, hot or archived: an unknown instance or aggregate.
    #[error("nothing to remove: {target} has no events, hot or archived")]
    NotFound {
        /// What was asked for.
        target: String,
    },
    /// The request itself is wrong (an empty actor or reason, an empty unique value).
    #[error("invalid hard delete: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// The database failed or refused (for instance: the role may not hard delete).
    #[error(transparent)]
    Store(#[from] strata_store::Error),
}

/// Removes what `request` names, in one transaction, and records it in `eventstore.removals`; see
/// the module docs. Pass the migrator's pool.
pub async fn hard_delete(pool: &PgPool, request: &HardDelete) -> Result<Removal, HardDeleteError> {
    let invalid = |reason: &str| HardDeleteError::InvalidInput {
        reason: reason.to_owned(),
    };
    if request.actor.trim().is_empty() {
        return Err(invalid("the actor (who asks) is empty"));
    }
    if request.reason.trim().is_empty() {
        return Err(invalid("the reason is empty"));
    }
    if request
        .release_unique
        .iter()
        .any(|(unique_type, value)| unique_type.is_empty() || value.is_empty())
    {
        return Err(invalid(
            "a unique constraint to release has an empty type or value",
        ));
    }
    let (instance, aggregate_type, aggregate_id) = match &request.target {
        DeleteTarget::Aggregate(aggregate) => (
            aggregate.instance_id.as_str(),
            Some(aggregate.aggregate_type.as_str()),
            Some(aggregate.aggregate_id.as_str()),
        ),
        DeleteTarget::Instance(instance) if request.release_unique.is_empty() => {
            (instance.as_str(), None, None)
        }
        DeleteTarget::Instance(_) => {
            return Err(invalid(
                "unique constraints are named per aggregate; an instance's are all released with it",
            ));
        }
    };
    let (unique_types, unique_values): (Vec<&str>, Vec<&str>) = request
        .release_unique
        .iter()
        .map(|(unique_type, value)| (unique_type.as_str(), value.as_str()))
        .unzip();

    type Row = (
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<Vec<String>>,
    );
    let row: Row = sqlx::query_as(
        "SELECT r_outcome, r_removal_id, r_hot_events, r_archived_events, r_idempotency_keys, \
         r_unique_constraints, r_failed_events, r_projections \
         FROM eventstore.hard_delete($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(instance)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(&request.actor)
    .bind(&request.reason)
    .bind(request.rebuild)
    .bind(unique_types)
    .bind(unique_values)
    .fetch_one(pool)
    .await
    .map_err(|err| from_sqlx("hard deleting", err))?;
    let (outcome, removal_id, hot, archived, keys, uniques, failed, projections) = row;
    let count = |value: Option<i64>| u64::try_from(value.unwrap_or(0)).unwrap_or(0);
    match (outcome.as_str(), removal_id) {
        ("removed", Some(removal_id)) => Ok(Removal {
            removal_id,
            hot_events: count(hot),
            archived_events: count(archived),
            idempotency_keys: count(keys),
            unique_constraints: count(uniques),
            failed_events: count(failed),
            projections_rebuilt: projections.unwrap_or_default(),
        }),
        ("refused", _) => Err(HardDeleteError::ProjectionsAhead {
            projections: projections.unwrap_or_default(),
        }),
        ("not_found", _) => Err(HardDeleteError::NotFound {
            target: request.target.to_string(),
        }),
        (other, _) => Err(unexpected_answer(
            "eventstore.hard_delete",
            format_args!("outcome {other:?}"),
        )
        .into()),
    }
}
