//! The projection registry, operator requests and live runtimes, as the CLI reads and writes them.
//!
//! The CLI does not have the projections' code, so it never runs one: it reads what running
//! runtimes registered (`projections.registry`) and asks them for work by inserting rows into
//! `projections.requests`, which every runtime polls and carries out (`docs/projections.md`).
//! Checkpoints and failed events are read through [`crate::PgProjections`], which already has
//! that SQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use strata_projection::OperatorRequest;
use strata_store::{Error, Result};

use crate::error::{from_sqlx, unexpected_answer};
use crate::store::PgStore;

/// A projection some runtime registered: what it reads and whether it has side effects.
///
/// A consumer's parts are registered the same way (as pairs with side effects), with
/// [`consumer`](RegisteredProjection::consumer) set: whoever replays events (`strata mirror`) must
/// treat them like any projection with side effects, while listings of projections leave them to
/// `strata consumers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredProjection {
    /// Its name: for a consumer's part, the part's pair name (`name` or `name#k/n`).
    pub name: String,
    /// `(aggregate type, event types)` pairs; empty event types mean every event of the type.
    pub reads: Vec<(String, Vec<String>)>,
    /// Whether applying it causes effects outside its read model (e-mails, webhooks).
    pub has_side_effects: bool,
    /// When a runtime last registered it.
    pub registered_at: DateTime<Utc>,
    /// The consumer this pair is a part of; `None` for a projection.
    pub consumer: Option<String>,
    /// How long it may sit still with events waiting before it counts as stalled
    /// (`strata_projection::Health`); `None` when the runtime that registered it predates the
    /// setting.
    pub stall_after: Option<Duration>,
}

/// Every registered projection and consumer part, sorted by name.
pub async fn registered_projections(store: &PgStore) -> Result<Vec<RegisteredProjection>> {
    /// A row of `projections.registry`.
    #[derive(sqlx::FromRow)]
    struct RegistryRow {
        projection_name: String,
        /// `[[aggregate type, [event types]], …]`.
        reads: serde_json::Value,
        has_side_effects: bool,
        registered_at: DateTime<Utc>,
        consumer_name: Option<String>,
        stall_after_ms: Option<i64>,
    }
    let rows: Vec<RegistryRow> = sqlx::query_as(
        "SELECT projection_name, reads, has_side_effects, registered_at, consumer_name, \
         stall_after_ms FROM projections.registry ORDER BY projection_name",
    )
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading the projection registry", err))?;
    rows.into_iter()
        .map(|row| {
            let reads: Vec<(String, Vec<String>)> =
                serde_json::from_value(row.reads).map_err(|err| {
                    unexpected_answer(
                        "projections.registry",
                        format_args!("unreadable reads of {:?}: {err}", row.projection_name),
                    )
                })?;
            Ok(RegisteredProjection {
                name: row.projection_name,
                reads,
                has_side_effects: row.has_side_effects,
                registered_at: row.registered_at,
                consumer: row.consumer_name,
                // A negative value was never written by a runtime; it reads as unknown.
                stall_after: row
                    .stall_after_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Duration::from_millis),
            })
        })
        .collect()
}

/// Queues operator requests for running projection runtimes, all in one statement (so either all
/// are queued or none), and returns how many were. A runtime that runs the projection takes them
/// within about a second.
pub async fn request_projection_work(store: &PgStore, requests: &[OperatorRequest]) -> Result<u64> {
    let mut instance = Vec::with_capacity(requests.len());
    let mut projection = Vec::with_capacity(requests.len());
    let mut kind = Vec::with_capacity(requests.len());
    let mut aggregate_type: Vec<Option<&str>> = Vec::with_capacity(requests.len());
    let mut aggregate_id: Vec<Option<&str>> = Vec::with_capacity(requests.len());
    let mut sequence: Vec<Option<i64>> = Vec::with_capacity(requests.len());
    for request in requests {
        match request {
            OperatorRequest::Rebuild {
                projection: name,
                instance_id,
            } => {
                instance.push(instance_id.as_str());
                projection.push(name.as_str());
                kind.push("rebuild");
                aggregate_type.push(None);
                aggregate_id.push(None);
                sequence.push(None);
            }
            OperatorRequest::Retry(key) | OperatorRequest::Skip(key) => {
                instance.push(key.aggregate.instance_id.as_str());
                projection.push(key.projection.as_str());
                kind.push(match request {
                    OperatorRequest::Retry(_) => "retry",
                    _ => "skip",
                });
                aggregate_type.push(Some(key.aggregate.aggregate_type.as_str()));
                aggregate_id.push(Some(key.aggregate.aggregate_id.as_str()));
                sequence.push(Some(i64::try_from(key.sequence).map_err(|_| {
                    Error::invalid_input(format!("sequence {} is out of range", key.sequence))
                })?));
            }
            // A kind this function does not know would also need the CHECK constraint of
            // projections.requests changed first, so it is refused rather than guessed at.
            other => {
                return Err(Error::invalid_input(format!(
                    "cannot queue an operator request of this kind: {other:?}"
                )));
            }
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO projections.requests \
         (instance_id, projection_name, kind, aggregate_type, aggregate_id, sequence) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])",
    )
    .bind(instance)
    .bind(projection)
    .bind(kind)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .execute(store.pools().push())
    .await
    .map_err(|err| from_sqlx("queueing projection requests", err))?;
    Ok(inserted.rows_affected())
}

/// A queued operator request, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingRequest {
    /// The instance it applies to.
    pub instance_id: String,
    /// The projection.
    pub projection: String,
    /// `rebuild`, `retry` or `skip`.
    pub kind: String,
    /// The failed event's aggregate type (retry and skip).
    pub aggregate_type: Option<String>,
    /// The failed event's aggregate id (retry and skip).
    pub aggregate_id: Option<String>,
    /// The failed event's sequence (retry and skip).
    pub sequence: Option<i64>,
    /// When it was queued.
    pub requested_at: DateTime<Utc>,
}

/// The operator requests still queued (no runtime has taken them yet), oldest first: what
/// `strata projections requests` shows, and how tests see what the CLI asked for.
pub async fn pending_projection_requests(store: &PgStore) -> Result<Vec<PendingRequest>> {
    sqlx::query_as(
        "SELECT instance_id, projection_name AS projection, kind, aggregate_type, aggregate_id, \
         sequence, requested_at FROM projections.requests ORDER BY requested_at, id",
    )
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading projection requests", err))
}

/// What [`unregister_projection`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unregistered {
    /// Whether the projection was registered.
    pub registered: bool,
    /// Checkpoints removed (one per instance it ran in).
    pub checkpoints: u64,
    /// Failed events removed.
    pub failed_events: u64,
    /// Queued operator requests removed.
    pub requests: u64,
}

/// Forgets a projection, in one transaction: its registration, its checkpoints, its failed events
/// and its queued requests. Its read-model tables are the application's: drop them in the
/// application's own migrations. A runtime that still runs the projection registers it again when
/// it next starts, and moves new checkpoints meanwhile: stop those runtimes first (see
/// [`live_runtimes`]).
pub async fn unregister_projection(pool: &PgPool, projection: &str) -> Result<Unregistered> {
    let failed = |err| from_sqlx("unregistering a projection", err);
    let mut tx = pool.begin().await.map_err(failed)?;
    let removed = unregister_in(&mut tx, projection).await?;
    tx.commit().await.map_err(failed)?;
    Ok(removed)
}

/// [`unregister_projection`] inside the caller's transaction, so a consumer's parts go together.
pub(crate) async fn unregister_in(
    connection: &mut PgConnection,
    projection: &str,
) -> Result<Unregistered> {
    let mut removed = Unregistered::default();
    for (table, count) in [
        ("projections.registry", None),
        ("projections.current_states", Some(&mut removed.checkpoints)),
        (
            "projections.failed_events",
            Some(&mut removed.failed_events),
        ),
        ("projections.requests", Some(&mut removed.requests)),
    ] {
        let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE projection_name = $1"))
            .bind(projection)
            .execute(&mut *connection)
            .await
            .map_err(|err| from_sqlx("unregistering a projection", err))?
            .rows_affected();
        match count {
            Some(count) => *count = deleted,
            None => removed.registered = deleted > 0,
        }
    }
    Ok(removed)
}

/// A projection runtime that recorded a heartbeat recently enough to count as alive.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveRuntime {
    /// Its id: host, process id and start time.
    pub runtime_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// The projections it runs.
    pub projections: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen_at: DateTime<Utc>,
}

/// A runtime whose last heartbeat is older than this is taken for dead: runtimes beat every five
/// seconds, so this allows three missed beats.
pub const RUNTIME_ALIVE_WITHIN: Duration = Duration::from_secs(15);

/// The runtimes alive on this database (heartbeat within [`RUNTIME_ALIVE_WITHIN`]), by host and
/// process: who will carry out queued operator requests.
pub async fn live_runtimes(store: &PgStore) -> Result<Vec<LiveRuntime>> {
    sqlx::query_as(
        "SELECT runtime_id, host, pid, projections, started_at, last_seen_at \
         FROM projections.runtimes WHERE last_seen_at > now() - make_interval(secs => $1) \
         ORDER BY host, pid, started_at",
    )
    .bind(RUNTIME_ALIVE_WITHIN.as_secs_f64())
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading the live runtimes", err))
}
