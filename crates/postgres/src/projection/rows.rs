//! The rows of the projection bookkeeping tables, decoded into the runtime's types.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use strata_event::{AggregateId, AggregateRef, AggregateType, Cursor, InstanceId, Position};
use strata_projection::{
    Checkpoint, CurrentState, FailedEvent, FailedEventKey, NextFailure, OperatorRequest,
    ProjectionError,
};

use crate::projection::corrupt;

/// A row of `projections.current_states`.
#[derive(sqlx::FromRow)]
pub(crate) struct StateRow {
    instance_id: String,
    projection_name: String,
    position: Decimal,
    in_tx_order: i32,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    updated_at: DateTime<Utc>,
}

/// A row of `projections.failed_events`.
#[derive(sqlx::FromRow)]
pub(crate) struct FailedRow {
    instance_id: String,
    projection_name: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: Decimal,
    in_tx_order: i32,
    failure_count: i32,
    error: String,
    last_failed_at: DateTime<Utc>,
    skipped_by_operator: bool,
    parked: bool,
}

/// What [`ProjectionBackend::checkpoint`](strata_projection::ProjectionBackend::checkpoint) reads
/// in one round trip.
#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    position: Option<Decimal>,
    in_tx_order: Option<i32>,
    horizon: Decimal,
    next_failure_count: Option<i32>,
    next_failed_at: Option<DateTime<Utc>>,
    /// The parked aggregates' types and ids, in two parallel arrays.
    parked_types: Option<Vec<String>>,
    parked_ids: Option<Vec<String>>,
    /// The pair is a version no longer applied.
    retired: bool,
}

impl CheckpointRow {
    pub(crate) fn decode(self, instance: &InstanceId) -> Result<Checkpoint, ProjectionError> {
        let parked = self
            .parked_types
            .unwrap_or_default()
            .into_iter()
            .zip(self.parked_ids.unwrap_or_default())
            .map(|(aggregate_type, aggregate_id)| {
                aggregate_ref(instance.clone(), aggregate_type, aggregate_id)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cursor = match self.position.zip(self.in_tx_order) {
            Some((position, in_tx_order)) => Some(Cursor::new(
                Position::new(position).map_err(|err| corrupt("position", err))?,
                in_tx_order as u32,
            )),
            None => None,
        };
        Ok(Checkpoint {
            cursor,
            horizon: Some(Position::new(self.horizon).map_err(|err| corrupt("horizon", err))?),
            next_failure: self
                .next_failure_count
                .zip(self.next_failed_at)
                .map(|(count, at)| NextFailure {
                    failure_count: count.max(0) as u32,
                    last_failed_at: at,
                }),
            parked,
            retired: self.retired,
        })
    }
}

/// A row of `projections.requests`.
#[derive(sqlx::FromRow)]
pub(crate) struct RequestRow {
    pub(crate) instance_id: String,
    pub(crate) projection_name: String,
    /// `rebuild`, `retry` or `skip`.
    pub(crate) kind: String,
    /// The failed event's aggregate and sequence, for `retry` and `skip`.
    pub(crate) aggregate_type: Option<String>,
    pub(crate) aggregate_id: Option<String>,
    pub(crate) sequence: Option<i64>,
}

impl RequestRow {
    pub(crate) fn decode(self) -> Result<OperatorRequest, ProjectionError> {
        let instance_id =
            InstanceId::new(self.instance_id).map_err(|err| corrupt("instance id", err))?;
        if self.kind == "rebuild" {
            return Ok(OperatorRequest::Rebuild {
                projection: self.projection_name,
                instance_id,
            });
        }
        let key = FailedEventKey {
            projection: self.projection_name,
            aggregate: aggregate_ref(
                instance_id,
                self.aggregate_type.unwrap_or_default(),
                self.aggregate_id.unwrap_or_default(),
            )?,
            sequence: self.sequence.unwrap_or_default().max(0) as u64,
        };
        Ok(match self.kind.as_str() {
            "retry" => OperatorRequest::Retry(key),
            _ => OperatorRequest::Skip(key),
        })
    }
}

pub(crate) fn decode_state(row: StateRow) -> Result<CurrentState, ProjectionError> {
    let instance_id =
        InstanceId::new(row.instance_id).map_err(|err| corrupt("instance id", err))?;
    Ok(CurrentState {
        projection: row.projection_name,
        aggregate: aggregate_ref(instance_id.clone(), row.aggregate_type, row.aggregate_id)?,
        instance_id,
        position: Position::new(row.position).map_err(|err| corrupt("position", err))?,
        in_tx_order: row.in_tx_order as u32,
        sequence: row.sequence as u64,
        updated_at: row.updated_at,
    })
}

pub(crate) fn decode_failed(row: FailedRow) -> Result<FailedEvent, ProjectionError> {
    let instance_id =
        InstanceId::new(row.instance_id).map_err(|err| corrupt("instance id", err))?;
    Ok(FailedEvent {
        projection: row.projection_name,
        aggregate: aggregate_ref(instance_id, row.aggregate_type, row.aggregate_id)?,
        sequence: row.sequence as u64,
        position: Position::new(row.position).map_err(|err| corrupt("position", err))?,
        in_tx_order: row.in_tx_order as u32,
        failure_count: row.failure_count.max(0) as u32,
        error: row.error,
        last_failed_at: row.last_failed_at,
        skipped_by_operator: row.skipped_by_operator,
        parked: row.parked,
    })
}

pub(crate) const STATE_COLUMNS: &str = "instance_id, projection_name, position, in_tx_order, aggregate_type, \
     aggregate_id, sequence, updated_at";
pub(crate) const FAILED_COLUMNS: &str = "instance_id, projection_name, aggregate_type, aggregate_id, sequence, \
     position, in_tx_order, failure_count, error, last_failed_at, skipped_by_operator, parked";

fn aggregate_ref(
    instance_id: InstanceId,
    aggregate_type: String,
    aggregate_id: String,
) -> Result<AggregateRef, ProjectionError> {
    Ok(AggregateRef {
        instance_id,
        aggregate_type: AggregateType::new(aggregate_type)
            .map_err(|err| corrupt("aggregate type", err))?,
        aggregate_id: AggregateId::new(aggregate_id).map_err(|err| corrupt("aggregate id", err))?,
    })
}
