//! A group lease: one transaction holding the leases of several pairs of one instance, so a
//! round of projections reading the same events costs one lease statement, one checkpoint read,
//! one checkpoint write and one commit, instead of one of each per projection.
//!
//! Its fast path runs no savepoints: a statement that fails aborts the whole group, which then
//! rolls back, and the runtime applies its batches one pair at a time (`PgProjections::apply`
//! finds and records the failing event). Failures are rare; round trips are not.

use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use strata_event::InstanceId;
use strata_projection::{
    Checkpoint, ProjectionError, ReducedEvent, Statement, split_versioned_name,
};

use crate::projection::render::execute_merged;
use crate::projection::rows::CheckpointRow;
use crate::projection::{PgProjections, store_error};

/// The leases of a group of pairs of one instance, in one open transaction; committing or
/// rolling it back ends them all, and so does a crash, with the session.
#[derive(Debug)]
pub struct PgGroupLease {
    tx: Transaction<'static, Postgres>,
    instance: InstanceId,
    /// Per projection asked for: its name when the transaction holds its lease.
    held: Vec<Option<String>>,
}

impl PgProjections {
    pub(super) async fn lease_group(
        &self,
        projections: &[&str],
        instance: &InstanceId,
    ) -> Result<(PgGroupLease, Vec<bool>), ProjectionError> {
        let mut tx = self
            .db()
            .await
            .begin()
            .await
            .map_err(|err| store_error("starting a projection group batch", err))?;
        crate::telemetry::record_usage(&self.pool, "projection");
        // As `try_lease`, for every member in one statement: the switch locks shared first (the
        // aggregate in FROM completes before any row's lease is tried), then each pair's lease.
        // The group commits durably when any member must.
        let durable = projections
            .iter()
            .any(|projection| self.commits_durably(projection));
        let mut switches: Vec<&str> = projections
            .iter()
            .map(|projection| split_versioned_name(projection).0)
            .collect();
        switches.sort_unstable();
        switches.dedup();
        let locked: Vec<bool> = sqlx::query_scalar(if durable {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key(member.name, $2)) \
             FROM (SELECT count(pg_advisory_xact_lock_shared(projections.switch_key(name))) \
                   FROM unnest($3::text[]) AS name) AS switch, \
                  unnest($1::text[]) WITH ORDINALITY AS member(name, ord) \
             ORDER BY member.ord"
        } else {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key(member.name, $2)) \
                    AND set_config('synchronous_commit', 'off', true) IS NOT NULL \
             FROM (SELECT count(pg_advisory_xact_lock_shared(projections.switch_key(name))) \
                   FROM unnest($3::text[]) AS name) AS switch, \
                  unnest($1::text[]) WITH ORDINALITY AS member(name, ord) \
             ORDER BY member.ord"
        })
        .bind(projections)
        .bind(instance.as_str())
        .bind(&switches)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| store_error("taking projection leases", err))?;
        if locked.len() != projections.len() {
            return Err(crate::projection::corrupt(
                "answer to a group lease",
                format_args!(
                    "{} flags for {} projections",
                    locked.len(),
                    projections.len()
                ),
            ));
        }
        let held = projections
            .iter()
            .zip(&locked)
            .map(|(projection, &locked)| locked.then(|| (*projection).to_owned()))
            .collect();
        let lease = PgGroupLease {
            tx,
            instance: instance.clone(),
            held,
        };
        Ok((lease, locked))
    }

    pub(super) async fn read_group_checkpoints(
        &self,
        lease: &mut PgGroupLease,
    ) -> Result<Vec<Option<Checkpoint>>, ProjectionError> {
        let names: Vec<&str> = lease.held.iter().flatten().map(String::as_str).collect();
        let rows = read_checkpoints(&mut lease.tx, &lease.instance, &names).await?;
        if rows.len() != names.len() {
            return Err(crate::projection::corrupt(
                "answer to a group's checkpoints",
                format_args!("{} rows for {} pairs", rows.len(), names.len()),
            ));
        }
        let mut rows = rows.into_iter();
        let mut checkpoints = Vec::with_capacity(lease.held.len());
        for held in &lease.held {
            // A row per held pair only: a pair held elsewhere takes none.
            let row = match held {
                Some(_) => rows.next(),
                None => None,
            };
            checkpoints.push(row.map(|row| row.decode(&lease.instance)).transpose()?);
        }
        Ok(checkpoints)
    }

    pub(super) async fn apply_group_batches(
        &self,
        mut lease: PgGroupLease,
        batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> Result<bool, ProjectionError> {
        let mut moves = CheckpointMoves::default();
        for (member, batch) in &batches {
            let Some(Some(projection)) = lease.held.get(*member) else {
                let _ = lease.tx.rollback().await;
                return Ok(false);
            };
            let mut statements: Vec<&Statement> = Vec::new();
            for reduced in batch {
                match &reduced.statements {
                    Ok(more) => statements.extend(more),
                    Err(_) => {
                        let _ = lease.tx.rollback().await;
                        return Ok(false);
                    }
                }
            }
            if execute_merged(&mut lease.tx, &statements).await.is_err() {
                // The transaction is aborted; the runtime applies the batches pair by pair.
                let _ = lease.tx.rollback().await;
                return Ok(false);
            }
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                moves.push(projection, &first.event, &last.event);
            }
        }
        moves.run(&mut lease).await?;
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a projection group batch", err))?;
        Ok(true)
    }

    pub(super) async fn release_group_lease(&self, lease: PgGroupLease) {
        let _ = lease.tx.rollback().await;
    }
}

/// The checkpoints of `names` in `instance`, in that order, in one round trip: each with the
/// failure recorded for its next event (failures with attempts left sit right after the
/// checkpoint), its parked aggregates and whether it is a retired version, and one commit horizon
/// for all, read after the leases and before the events, which is all the runtime needs of it.
/// A lone pair's lease reads its checkpoint here too.
pub(super) async fn read_checkpoints(
    tx: &mut Transaction<'static, Postgres>,
    instance: &InstanceId,
    names: &[&str],
) -> Result<Vec<CheckpointRow>, ProjectionError> {
    sqlx::query_as(
        "SELECT state.position, state.in_tx_order, horizon.horizon, \
                next.failure_count AS next_failure_count, \
                next.last_failed_at AS next_failed_at, \
                parked.parked_types, parked.parked_ids, \
                COALESCE(version.state IN ('retired', 'dropped'), false) AS retired \
         FROM (SELECT eventstore.commit_horizon() AS horizon) AS horizon \
         CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS member(name, ord) \
         LEFT JOIN projections.versions version ON version.pair_name = member.name \
         LEFT JOIN projections.current_states state \
                ON state.instance_id = $1 AND state.projection_name = member.name \
         LEFT JOIN LATERAL ( \
             SELECT failure_count, last_failed_at FROM projections.failed_events failed \
             WHERE failed.instance_id = $1 AND failed.projection_name = member.name \
               AND (state.position IS NULL \
                    OR (failed.position, failed.in_tx_order) \
                       > (state.position, state.in_tx_order)) \
             ORDER BY failed.position, failed.in_tx_order LIMIT 1 \
         ) AS next ON true \
         LEFT JOIN LATERAL ( \
             SELECT array_agg(aggregate_type) AS parked_types, \
                    array_agg(aggregate_id) AS parked_ids \
             FROM projections.failed_events parked \
             WHERE parked.instance_id = $1 AND parked.projection_name = member.name \
               AND parked.parked \
         ) AS parked ON true \
         ORDER BY member.ord",
    )
    .bind(instance.as_str())
    .bind(names)
    .fetch_all(&mut **tx)
    .await
    .map_err(|err| store_error("reading checkpoints", err))
}

/// Every member's checkpoint move, as the parallel arrays of one statement: each pair moves to
/// its batch's last event and forgets a failure recorded for its first (an event that failed
/// before with attempts left, now applied), as `move_checkpoint` does for one.
#[derive(Default)]
struct CheckpointMoves {
    projections: Vec<String>,
    positions: Vec<Decimal>,
    in_tx_orders: Vec<i32>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    retried_types: Vec<String>,
    retried_ids: Vec<String>,
    retried_sequences: Vec<i64>,
}

impl CheckpointMoves {
    fn push(&mut self, projection: &str, first: &strata_event::Event, last: &strata_event::Event) {
        self.projections.push(projection.to_owned());
        self.positions.push(last.position.as_decimal());
        self.in_tx_orders.push(last.in_tx_order as i32);
        self.aggregate_types
            .push(last.aggregate.aggregate_type.as_str().to_owned());
        self.aggregate_ids
            .push(last.aggregate.aggregate_id.as_str().to_owned());
        self.sequences.push(last.sequence as i64);
        self.retried_types
            .push(first.aggregate.aggregate_type.as_str().to_owned());
        self.retried_ids
            .push(first.aggregate.aggregate_id.as_str().to_owned());
        self.retried_sequences.push(first.sequence as i64);
    }

    async fn run(self, lease: &mut PgGroupLease) -> Result<(), ProjectionError> {
        if self.projections.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "WITH moved AS ( \
                 SELECT * FROM unnest($2::text[], $3::numeric[], $4::int4[], $5::text[], \
                                      $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[]) \
                 AS moved(projection_name, position, in_tx_order, aggregate_type, aggregate_id, \
                          sequence, retried_type, retried_id, retried_sequence)), \
             forgotten AS (DELETE FROM projections.failed_events failed USING moved \
                 WHERE failed.instance_id = $1 AND failed.projection_name = moved.projection_name \
                   AND failed.aggregate_type = moved.retried_type \
                   AND failed.aggregate_id = moved.retried_id \
                   AND failed.sequence = moved.retried_sequence) \
             INSERT INTO projections.current_states (instance_id, projection_name, position, \
                 in_tx_order, aggregate_type, aggregate_id, sequence, updated_at) \
             SELECT $1, projection_name, position, in_tx_order, aggregate_type, aggregate_id, \
                    sequence, now() FROM moved \
             ON CONFLICT (instance_id, projection_name) DO UPDATE SET \
                 position = EXCLUDED.position, in_tx_order = EXCLUDED.in_tx_order, \
                 aggregate_type = EXCLUDED.aggregate_type, aggregate_id = EXCLUDED.aggregate_id, \
                 sequence = EXCLUDED.sequence, updated_at = now()",
        )
        .bind(lease.instance.as_str())
        .bind(&self.projections)
        .bind(&self.positions)
        .bind(&self.in_tx_orders)
        .bind(&self.aggregate_types)
        .bind(&self.aggregate_ids)
        .bind(&self.sequences)
        .bind(&self.retried_types)
        .bind(&self.retried_ids)
        .bind(&self.retried_sequences)
        .execute(&mut *lease.tx)
        .await
        .map(drop)
        .map_err(|err| store_error("moving checkpoints", err))
    }
}
