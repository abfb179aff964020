//! Operator queries behind the `strata` CLI: the projection registry, operator requests, and
//! cache administration.
//!
//! The CLI does not have the projections' code, so it never runs one: it reads what running
//! runtimes registered (`projections.registry`) and asks them for work by inserting rows into
//! `projections.requests`, which every runtime polls and carries out (`docs/projections.md`).
//! Checkpoints and failed events are read through [`crate::PgProjections`], which already has
//! that SQL.
//!
//! Cache administration calls the SQL functions `cache.prune` and `cache.truncate`
//! (`migrations/functions/`), the same ones the cache connector uses, so the CLI and the connector cannot
//! disagree on what pruning means.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use strata_projection::OperatorRequest;
use strata_store::{Error, Result};

use crate::error::from_sqlx;
use crate::store::PgStore;

/// A projection some runtime registered: what it reads and whether it has side effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredProjection {
    /// Its name.
    pub name: String,
    /// `(aggregate type, event types)` pairs; empty event types mean every event of the type.
    pub reads: Vec<(String, Vec<String>)>,
    /// Whether applying it causes effects outside its read model (e-mails, webhooks).
    pub has_side_effects: bool,
    /// When a runtime last registered it.
    pub registered_at: DateTime<Utc>,
}

/// Every registered projection, sorted by name.
pub async fn registered_projections(store: &PgStore) -> Result<Vec<RegisteredProjection>> {
    let rows: Vec<(String, serde_json::Value, bool, DateTime<Utc>)> = sqlx::query_as(
        "SELECT projection_name, reads, has_side_effects, registered_at \
         FROM projections.registry ORDER BY projection_name",
    )
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading the projection registry", err))?;
    rows.into_iter()
        .map(|(name, reads, has_side_effects, registered_at)| {
            let reads: Vec<(String, Vec<String>)> =
                serde_json::from_value(reads).map_err(|err| Error::Backend {
                    message: format!(
                        "projection {name:?} has an unreadable `reads` in projections.registry: {err}"
                    ),
                    source: None,
                })?;
            Ok(RegisteredProjection {
                name,
                reads,
                has_side_effects,
                registered_at,
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
            .execute(&mut *tx)
            .await
            .map_err(failed)?
            .rows_affected();
        match count {
            Some(count) => *count = deleted,
            None => removed.registered = deleted > 0,
        }
    }
    tx.commit().await.map_err(failed)?;
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

/// Removes a cache's expired objects: created at least `max_age` ago, or last used at least
/// `last_use_age` ago (`None`: the cache has no such age), plus objects without keys and keys
/// without objects (what a crash mid-write can leave). Returns how many objects went.
///
/// Refuses ([`Error::InvalidInput`]) a name that is not a cache name or a cache that does not
/// exist here (its partitions are created when the connector first starts it).
pub async fn prune_cache(
    store: &PgStore,
    cache_name: &str,
    max_age: Option<Duration>,
    last_use_age: Option<Duration>,
) -> Result<u64> {
    check_cache_exists(store, cache_name).await?;
    let seconds = |age: Option<Duration>| age.map(|age| age.as_secs_f64());
    let removed: i64 = sqlx::query_scalar(
        "SELECT cache.prune($1, make_interval(secs => $2), make_interval(secs => $3))",
    )
    .bind(cache_name)
    .bind(seconds(max_age))
    .bind(seconds(last_use_age))
    .fetch_one(store.pools().push())
    .await
    .map_err(|err| from_sqlx("pruning a cache", err))?;
    Ok(u64::try_from(removed).unwrap_or_default())
}

/// Empties a cache (a `TRUNCATE` of its own partitions; other caches are untouched) and returns
/// how many objects it held. Refuses unknown caches like [`prune_cache`].
pub async fn truncate_cache(store: &PgStore, cache_name: &str) -> Result<u64> {
    check_cache_exists(store, cache_name).await?;
    let mut tx = store
        .pools()
        .push()
        .begin()
        .await
        .map_err(|err| from_sqlx("starting to truncate a cache", err))?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM cache.objects WHERE cache_name = $1")
        .bind(cache_name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| from_sqlx("counting a cache's objects", err))?;
    sqlx::query("SELECT cache.truncate($1)")
        .bind(cache_name)
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx("truncating a cache", err))?;
    tx.commit()
        .await
        .map_err(|err| from_sqlx("committing a cache truncation", err))?;
    Ok(u64::try_from(held).unwrap_or_default())
}

async fn check_cache_exists(store: &PgStore, cache_name: &str) -> Result<()> {
    // Two statements: the second names cache functions, which PostgreSQL resolves when it parses
    // the statement, so it can only be sent once the first has shown the schema exists.
    let migrated: bool =
        sqlx::query_scalar("SELECT to_regprocedure('cache.valid_name(text)') IS NOT NULL")
            .fetch_one(store.pools().query())
            .await
            .map_err(|err| from_sqlx("looking up the cache schema", err))?;
    if !migrated {
        return Err(Error::invalid_input(
            "this database has no cache schema: run the migrations (`strata migrate`)",
        ));
    }
    let (valid, exists): (bool, bool) = sqlx::query_as(
        "SELECT cache.valid_name($1), \
                to_regclass(format('cache.%I', 'objects_' || $1)) IS NOT NULL",
    )
    .bind(cache_name)
    .fetch_one(store.pools().query())
    .await
    .map_err(|err| from_sqlx("looking up a cache", err))?;
    if !valid {
        return Err(Error::invalid_input(format!(
            "{cache_name:?} is not a cache name: lowercase letters, digits and `_`, starting \
             with a letter, at most 48 characters"
        )));
    }
    if !exists {
        return Err(Error::invalid_input(format!(
            "there is no cache named {cache_name:?} in this database (a cache's tables are \
             created when the application first starts it)"
        )));
    }
    Ok(())
}
