//! The slow path of a batch that failed: each event again behind its own savepoint, to find the
//! culprit, count its attempts and record it, then the checkpoint past what was applied.

use sqlx::{Postgres, Transaction};
use strata_projection::{BatchOutcome, ProjectionError, ReducedEvent};

use crate::projection::render::execute;
use crate::projection::{PgLease, move_checkpoint, store_error};

/// The slow path: each event behind its own savepoint, failures counted and recorded.
pub(crate) async fn apply_event_by_event(
    mut lease: PgLease,
    batch: Vec<ReducedEvent>,
    max_failure_count: u32,
) -> Result<BatchOutcome, ProjectionError> {
    let failed_before: Vec<RecordedFailure> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, failure_count FROM projections.failed_events \
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
    for reduced in &batch {
        savepoint(&mut lease.tx, "SAVEPOINT strata_event").await?;
        let result = match &reduced.statements {
            Ok(statements) => execute(&mut lease.tx, statements).await,
            Err(err) => Err(err.clone()),
        };
        match result {
            Ok(()) => {
                savepoint(&mut lease.tx, "RELEASE SAVEPOINT strata_event").await?;
                if failures_of(reduced).is_some() {
                    forget_failure(&mut lease, reduced).await?;
                }
            }
            Err(error) => {
                savepoint(&mut lease.tx, "ROLLBACK TO SAVEPOINT strata_event").await?;
                let before = failures_of(reduced).unwrap_or(0);
                // A count already at the limit (given up by an operator) stays there.
                let count = if before >= max_failure_count {
                    before
                } else {
                    before + 1
                };
                record_failure(&mut lease, reduced, count, &error).await?;
                if count < max_failure_count {
                    outcome.stalled = true;
                    break;
                }
                outcome.skipped += 1;
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
    reduced: &ReducedEvent,
    count: u32,
    error: &str,
) -> Result<(), ProjectionError> {
    let event = &reduced.event;
    sqlx::query(
        "INSERT INTO projections.failed_events (instance_id, projection_name, aggregate_type, \
         aggregate_id, sequence, position, in_tx_order, failure_count, error, last_failed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) \
         ON CONFLICT (instance_id, projection_name, aggregate_type, aggregate_id, sequence) \
         DO UPDATE SET failure_count = EXCLUDED.failure_count, error = EXCLUDED.error, \
         last_failed_at = now()",
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
}

impl RecordedFailure {
    fn is_of(&self, reduced: &ReducedEvent) -> bool {
        let aggregate = &reduced.event.aggregate;
        self.aggregate_type == aggregate.aggregate_type.as_str()
            && self.aggregate_id == aggregate.aggregate_id.as_str()
            && self.sequence as u64 == reduced.event.sequence
    }
}
