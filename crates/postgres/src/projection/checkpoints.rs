//! Reading and moving checkpoints: one statement each, for a lone pair's lease and for a group's
//! alike, so both paths read and write the bookkeeping the same way.

use rust_decimal::Decimal;
use sqlx::{Postgres, Transaction};
use strata_event::{Event, InstanceId};
use strata_projection::ProjectionError;

use crate::projection::rows::CheckpointRow;
use crate::projection::store_error;

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

/// Checkpoint moves, of one pair or of a group's members, as the parallel arrays of one
/// statement: each pair moves to the last event it processed and forgets a failure recorded for
/// `retried` (an event that failed before with attempts left, now applied).
#[derive(Default)]
pub(super) struct CheckpointMoves {
    projections: Vec<String>,
    positions: Vec<Decimal>,
    in_tx_orders: Vec<i32>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    retried_types: Vec<Option<String>>,
    retried_ids: Vec<Option<String>>,
    retried_sequences: Vec<Option<i64>>,
}

impl CheckpointMoves {
    /// Moves `projection` to `last`, forgetting the failure of `retried` if one is recorded.
    pub(super) fn push(&mut self, projection: &str, last: &Event, retried: Option<&Event>) {
        self.projections.push(projection.to_owned());
        self.positions.push(last.position.as_decimal());
        self.in_tx_orders.push(last.in_tx_order as i32);
        self.aggregate_types
            .push(last.aggregate.aggregate_type.as_str().to_owned());
        self.aggregate_ids
            .push(last.aggregate.aggregate_id.as_str().to_owned());
        self.sequences.push(last.sequence as i64);
        self.retried_types
            .push(retried.map(|event| event.aggregate.aggregate_type.as_str().to_owned()));
        self.retried_ids
            .push(retried.map(|event| event.aggregate.aggregate_id.as_str().to_owned()));
        self.retried_sequences
            .push(retried.map(|event| event.sequence as i64));
    }

    pub(super) async fn run(
        self,
        tx: &mut Transaction<'static, Postgres>,
        instance: &InstanceId,
    ) -> Result<(), ProjectionError> {
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
        .bind(instance.as_str())
        .bind(&self.projections)
        .bind(&self.positions)
        .bind(&self.in_tx_orders)
        .bind(&self.aggregate_types)
        .bind(&self.aggregate_ids)
        .bind(&self.sequences)
        .bind(&self.retried_types)
        .bind(&self.retried_ids)
        .bind(&self.retried_sequences)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|err| store_error("moving checkpoints", err))
    }
}
