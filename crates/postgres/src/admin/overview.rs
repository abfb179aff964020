//! Where every registered projection and consumer part stands in every instance, computed by the
//! database in a few statements however many pairs there are: what `strata serve` samples for
//! its status page and `/metrics`.
//!
//! `strata projections status` asks the store, per pair, to count what is left; with a thousand
//! projections in a hundred instances that is two hundred thousand statements. Here one
//! statement finds each (instance, aggregate type)'s newest event with one index probe, compares
//! it with every checkpoint, and counts only for the pairs that may be behind.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use strata_event::{InstanceId, Position};
use strata_store::Result;

use crate::error::{from_sqlx, unexpected_answer};
use crate::read::INSTANCE_WALK;
use crate::store::PgStore;

/// How far one (projection or consumer part, instance) pair is behind the commit horizon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLag {
    /// The pair's registered name (`users`, `users@v2`, `mailer#0/4`).
    pub projection: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// Events it reads that are past its checkpoint and below the horizon. For a consumer's
    /// part in a partitioned consumer this counts every partition's events: the partitions are
    /// told apart by the runtime, not by an index.
    pub events_behind: u64,
    /// When the oldest of them was stored; `None` when nothing is behind.
    pub oldest_behind: Option<DateTime<Utc>>,
}

/// The lag of every registered pair in every instance that has events it reads. A pair whose
/// checkpoint is at the newest event of every aggregate type it reads costs no count; the others
/// count from their checkpoint on (an index range, not the instance's history). Reads that name
/// one aggregate type twice (some event types, and every type) count each event once.
pub async fn pair_lags(store: &PgStore) -> Result<Vec<PairLag>> {
    let sql = format!(
        "{INSTANCE_WALK}, \
         reads AS MATERIALIZED ( \
             SELECT r.projection_name, x.value->>0 AS aggregate_type, \
                    bool_or(jsonb_array_length(x.value->1) = 0) AS every_type, \
                    array_agg(DISTINCT t.event_type) \
                        FILTER (WHERE t.event_type IS NOT NULL) AS event_types \
             FROM projections.registry r \
             CROSS JOIN jsonb_array_elements(r.reads) AS x(value) \
             LEFT JOIN LATERAL jsonb_array_elements_text(x.value->1) AS t(event_type) ON true \
             GROUP BY r.projection_name, x.value->>0 \
         ), \
         types AS (SELECT DISTINCT aggregate_type FROM reads), \
         heads AS MATERIALIZED ( \
             SELECT i.id AS instance_id, t.aggregate_type, h.position, h.in_tx_order \
             FROM instances i CROSS JOIN types t \
             CROSS JOIN LATERAL ( \
                 SELECT e.position, e.in_tx_order FROM eventstore.events e \
                 WHERE e.instance_id = i.id AND e.aggregate_type = t.aggregate_type \
                 ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1 \
             ) h \
             WHERE i.id IS NOT NULL \
         ), \
         pairs AS MATERIALIZED ( \
             SELECT r.projection_name, h.instance_id, \
                    bool_or(s.position IS NULL \
                            OR (h.position, h.in_tx_order) > (s.position, s.in_tx_order)) \
                        AS may_be_behind \
             FROM reads r \
             JOIN heads h ON h.aggregate_type = r.aggregate_type \
             LEFT JOIN projections.current_states s \
                    ON s.projection_name = r.projection_name AND s.instance_id = h.instance_id \
             GROUP BY r.projection_name, h.instance_id \
         ) \
         SELECT p.projection_name, p.instance_id, 0::bigint, NULL::timestamptz \
         FROM pairs p WHERE NOT p.may_be_behind \
         UNION ALL \
         SELECT p.projection_name, p.instance_id, b.behind, b.oldest \
         FROM pairs p \
         LEFT JOIN projections.current_states s \
                ON s.projection_name = p.projection_name AND s.instance_id = p.instance_id \
         CROSS JOIN LATERAL ( \
             SELECT count(*) AS behind, min(e.created_at) AS oldest \
             FROM reads r \
             JOIN eventstore.events e \
               ON e.instance_id = p.instance_id AND e.aggregate_type = r.aggregate_type \
              AND (e.position, e.in_tx_order) \
                  > (COALESCE(s.position, -1), COALESCE(s.in_tx_order, -1)) \
              AND e.position < $1 \
             WHERE r.projection_name = p.projection_name \
               AND (r.every_type OR e.event_type = ANY(r.event_types)) \
         ) b \
         WHERE p.may_be_behind"
    );
    let failed = |err| from_sqlx("measuring the projections' lag", err);
    let mut tx = store.pools().query().begin().await.map_err(failed)?;
    // The planner's guesses for the registry's JSON make this look expensive enough to compile
    // with JIT, which then takes most of a second on a statement that runs in milliseconds.
    sqlx::query("SET LOCAL jit = off")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    // The horizon first, in a statement of its own: the count's snapshot, taken after it, then
    // sees every event below it (the function reads the lock table live, so within one statement
    // an event could be below the horizon and still invisible to the statement's snapshot).
    let horizon: Decimal = sqlx::query_scalar("SELECT eventstore.commit_horizon()")
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
    let rows: Vec<(String, String, i64, Option<DateTime<Utc>>)> = sqlx::query_as(&sql)
        .bind(horizon)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    rows.into_iter()
        .map(|(projection, instance, behind, oldest)| {
            Ok(PairLag {
                instance_id: InstanceId::new(instance).map_err(|err| {
                    unexpected_answer("eventstore.events", format_args!("an instance id: {err}"))
                })?,
                projection,
                events_behind: u64::try_from(behind).unwrap_or(0),
                oldest_behind: oldest,
            })
        })
        .collect()
}

/// Failed events of one pair: all recorded (retrying, skipped or parked) and, of those, how many
/// park their aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    /// The pair's registered name.
    pub projection: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// Failed events recorded and not skipped by an operator.
    pub failed: u64,
    /// Of those, events that parked their aggregate.
    pub parked: u64,
}

/// The failed events of every pair that has any, counted.
pub async fn failure_counts(store: &PgStore) -> Result<Vec<FailureCount>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT projection_name, instance_id, count(*), count(*) FILTER (WHERE parked) \
         FROM projections.failed_events WHERE NOT skipped_by_operator \
         GROUP BY projection_name, instance_id",
    )
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("counting failed events", err))?;
    rows.into_iter()
        .map(|(projection, instance, failed, parked)| {
            Ok(FailureCount {
                instance_id: InstanceId::new(instance).map_err(|err| {
                    unexpected_answer(
                        "projections.failed_events",
                        format_args!("an instance id: {err}"),
                    )
                })?,
                projection,
                failed: u64::try_from(failed).unwrap_or(0),
                parked: u64::try_from(parked).unwrap_or(0),
            })
        })
        .collect()
}

/// Where the commit horizon stands now, and how many events were stored between `since` (an
/// earlier horizon) and it: called at intervals, it counts every committed event exactly once,
/// late commits included (an event below a horizon is final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSince {
    /// The horizon now: pass it as `since` next time.
    pub horizon: Position,
    /// Events with `since <= position < horizon`; 0 when `since` is `None`.
    pub events: u64,
}

/// See [`StoredSince`].
pub async fn events_stored_since(store: &PgStore, since: Option<&Position>) -> Result<StoredSince> {
    let failed = |err| from_sqlx("counting the events stored since the last sample", err);
    // Two statements, the horizon first: the count's snapshot is then taken after the horizon
    // was, and sees every event below it. In one statement an event that committed between the
    // statement's snapshot and the function's reading of the lock table would be below the
    // horizon yet invisible, and never counted by the next interval either.
    let horizon: Decimal = sqlx::query_scalar("SELECT eventstore.commit_horizon()")
        .fetch_one(store.pools().query())
        .await
        .map_err(failed)?;
    let events: i64 = match since {
        None => 0,
        Some(since) => sqlx::query_scalar(
            "SELECT count(*) FROM eventstore.events WHERE position >= $1 AND position < $2",
        )
        .bind(since.as_decimal())
        .bind(horizon)
        .fetch_one(store.pools().query())
        .await
        .map_err(failed)?,
    };
    Ok(StoredSince {
        horizon: Position::new(horizon)
            .map_err(|_| unexpected_answer("eventstore.commit_horizon", "a negative horizon"))?,
        events: u64::try_from(events).unwrap_or(0),
    })
}
