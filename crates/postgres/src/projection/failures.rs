//! The slow path of a batch that failed: each event again behind its own savepoint, to find the
//! culprit, count its attempts and record it, then the checkpoint past what was applied.

use std::collections::HashSet;

use sqlx::{Postgres, Transaction};
use strata_event::{AggregateRef, Event};
use strata_projection::{
    BatchOutcome, FailedEvent, FailurePolicy, OnFailure, ProjectionError, ReducedEvent, Unparked,
};

use crate::projection::render::execute;
use crate::projection::{PgLease, move_checkpoint, store_error};

/// The slow path: each event behind its own savepoint, failures counted and recorded.
pub(crate) async fn apply_event_by_event(
    mut lease: PgLease,
    batch: Vec<ReducedEvent>,
    policy: FailurePolicy,
) -> Result<BatchOutcome, ProjectionError> {
    let max_failure_count = policy.max_failure_count;
    let failed_before: Vec<RecordedFailure> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, failure_count, skipped_by_operator \
         FROM projections.failed_events \
         WHERE instance_id = $1 AND projection_name = $2",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .fetch_all(&mut *lease.tx)
    .await
    .map_err(|err| store_error("reading failed events", err))?;
    let failures_of = |reduced: &ReducedEvent| {
        failed_before
            .iter()
            .find(|failure| failure.is_of(reduced))
            .map(|failure| failure.failure_count.max(0) as u32)
    };
    let mut outcome = BatchOutcome::default();
    let mut last = None;
    // Aggregates this batch parked: their later events in it are owed, not applied.
    let mut parked_now: HashSet<&AggregateRef> = HashSet::new();
    for reduced in &batch {
        if parked_now.contains(&reduced.event.aggregate) {
            outcome.processed += 1;
            last = Some(reduced.event.clone());
            continue;
        }
        match apply_one(&mut lease, reduced).await? {
            Ok(()) => {
                if failures_of(reduced).is_some() {
                    forget_failure(&mut lease, reduced).await?;
                }
            }
            Err(error) => {
                let before = failures_of(reduced).unwrap_or(0);
                // A count already at the limit (given up by an operator) stays there.
                let count = if before >= max_failure_count {
                    before
                } else {
                    before + 1
                };
                let park = count >= max_failure_count
                    && policy.on_failure == OnFailure::Park
                    && !failed_before
                        .iter()
                        .any(|failure| failure.is_of(reduced) && failure.skipped_by_operator);
                record_failure(&mut lease, &reduced.event, count, &error, park).await?;
                if count < max_failure_count {
                    outcome.stalled = true;
                    break;
                }
                if park {
                    parked_now.insert(&reduced.event.aggregate);
                    outcome.parked += 1;
                } else {
                    outcome.skipped += 1;
                }
            }
        }
        outcome.processed += 1;
        last = Some(reduced.event.clone());
    }
    if let Some(event) = last {
        move_checkpoint(&mut lease, &event, None).await?;
    }
    lease
        .tx
        .commit()
        .await
        .map_err(|err| store_error("committing a projection batch", err))?;
    Ok(outcome)
}

/// [`ProjectionBackend::unpark`](strata_projection::ProjectionBackend::unpark) on PostgreSQL:
/// the owed events behind a savepoint each, in order, until one fails; the park record follows
/// in the same transaction.
pub(crate) async fn unpark_in_order(
    mut lease: PgLease,
    parked: &FailedEvent,
    batch: Vec<ReducedEvent>,
    skip_parked: bool,
) -> Result<Unparked, ProjectionError> {
    // Locks the record first: it must still be parked, or another operator got there first.
    let still_parked: Option<bool> = sqlx::query_scalar(
        "SELECT parked FROM projections.failed_events WHERE instance_id = $1 \
         AND projection_name = $2 AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5 \
         FOR UPDATE",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(parked.aggregate.aggregate_type.as_str())
    .bind(parked.aggregate.aggregate_id.as_str())
    .bind(parked.sequence as i64)
    .fetch_optional(&mut *lease.tx)
    .await
    .map_err(|err| store_error("reading a parked aggregate", err))?;
    if still_parked != Some(true) {
        let _ = lease.tx.rollback().await;
        return Err(ProjectionError::UnknownFailedEvent {
            projection: parked.projection.clone(),
            aggregate: parked.aggregate.to_string(),
            sequence: parked.sequence,
        });
    }
    let mut unparked = Unparked::default();
    let mut failure = None;
    for reduced in &batch {
        match apply_one(&mut lease, reduced).await? {
            Ok(()) => unparked.applied += 1,
            Err(error) => {
                failure = Some((reduced, error));
                break;
            }
        }
    }
    // The old record goes (or stays as the operator's skip), and a new failure parks again.
    sqlx::query(if skip_parked {
        "UPDATE projections.failed_events SET parked = false, skipped_by_operator = true \
         WHERE instance_id = $1 AND projection_name = $2 AND aggregate_type = $3 \
         AND aggregate_id = $4 AND sequence = $5"
    } else {
        "DELETE FROM projections.failed_events WHERE instance_id = $1 AND projection_name = $2 \
         AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5"
    })
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(parked.aggregate.aggregate_type.as_str())
    .bind(parked.aggregate.aggregate_id.as_str())
    .bind(parked.sequence as i64)
    .execute(&mut *lease.tx)
    .await
    .map_err(|err| store_error("releasing a parked aggregate", err))?;
    if let Some((reduced, error)) = failure {
        let again = !skip_parked && reduced.event.sequence == parked.sequence;
        let count = if again {
            parked.failure_count.saturating_add(1)
        } else {
            1
        };
        record_failure(&mut lease, &reduced.event, count, &error, true).await?;
        unparked.parked_at = Some(reduced.event.sequence);
    }
    lease
        .tx
        .commit()
        .await
        .map_err(|err| store_error("committing a released aggregate", err))?;
    Ok(unparked)
}

/// Applies one event's statements behind a savepoint: when they fail (or its reducer did), the
/// transaction is left as it was before them, and the error is returned as the inner `Err`.
async fn apply_one(
    lease: &mut PgLease,
    reduced: &ReducedEvent,
) -> Result<Result<(), String>, ProjectionError> {
    savepoint(&mut lease.tx, "SAVEPOINT strata_event").await?;
    let result = match &reduced.statements {
        Ok(statements) => execute(&mut lease.tx, statements).await,
        Err(err) => Err(err.clone()),
    };
    let end = if result.is_ok() {
        "RELEASE SAVEPOINT strata_event"
    } else {
        "ROLLBACK TO SAVEPOINT strata_event"
    };
    savepoint(&mut lease.tx, end).await?;
    Ok(result)
}

async fn forget_failure(
    lease: &mut PgLease,
    reduced: &ReducedEvent,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "DELETE FROM projections.failed_events WHERE instance_id = $1 AND projection_name = $2 \
         AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(reduced.event.aggregate.aggregate_type.as_str())
    .bind(reduced.event.aggregate.aggregate_id.as_str())
    .bind(reduced.event.sequence as i64)
    .execute(&mut *lease.tx)
    .await
    .map(drop)
    .map_err(|err| store_error("forgetting a failed event", err))
}

async fn record_failure(
    lease: &mut PgLease,
    event: &Event,
    count: u32,
    error: &str,
    parked: bool,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO projections.failed_events (instance_id, projection_name, aggregate_type, \
         aggregate_id, sequence, position, in_tx_order, failure_count, error, last_failed_at, \
         parked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10) \
         ON CONFLICT (instance_id, projection_name, aggregate_type, aggregate_id, sequence) \
         DO UPDATE SET failure_count = EXCLUDED.failure_count, error = EXCLUDED.error, \
         last_failed_at = now(), parked = EXCLUDED.parked",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(event.aggregate.aggregate_type.as_str())
    .bind(event.aggregate.aggregate_id.as_str())
    .bind(event.sequence as i64)
    .bind(event.position.as_decimal())
    .bind(event.in_tx_order as i32)
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .bind(error)
    .bind(parked)
    .execute(&mut *lease.tx)
    .await
    .map(drop)
    .map_err(|err| store_error("recording a failed event", err))
}

async fn savepoint(
    tx: &mut Transaction<'static, Postgres>,
    sql: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(sql)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|err| store_error("managing a savepoint", err))
}

/// A failure already recorded for the pair: which event, and how many attempts failed.
#[derive(sqlx::FromRow)]
struct RecordedFailure {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    failure_count: i32,
    skipped_by_operator: bool,
}

impl RecordedFailure {
    fn is_of(&self, reduced: &ReducedEvent) -> bool {
        let aggregate = &reduced.event.aggregate;
        self.aggregate_type == aggregate.aggregate_type.as_str()
            && self.aggregate_id == aggregate.aggregate_id.as_str()
            && self.sequence as u64 == reduced.event.sequence
    }
}
