//! Metrics of the connection pools: how long a caller waited for a connection and how many are
//! in use. Recorded through the `metrics` facade (nothing is kept without a recorder); the names
//! are listed in `docs/observability.md` beside the store's own (`strata_store::telemetry`).

use std::time::Instant;

use sqlx::PgPool;
use sqlx::pool::PoolConnection;

/// Seconds a caller waited for a connection from one of Strata's pools.
pub const POOL_ACQUIRE: &str = "strata_pool_acquire_seconds";
/// Connections of one of Strata's pools, `state` `idle` or `in_use`.
pub const POOL_CONNECTIONS: &str = "strata_pool_connections";

/// Takes a connection from `pool` (named `name`: `push`, `query`, `projection`), recording the
/// wait and the pool's usage after it.
pub(crate) async fn acquire(
    pool: &PgPool,
    name: &'static str,
) -> Result<PoolConnection<sqlx::Postgres>, sqlx::Error> {
    let started = Instant::now();
    let connection = pool.acquire().await;
    let waited = started.elapsed().as_secs_f64();
    // Literal labels make each key a static: no allocation per call.
    match name {
        "push" => metrics::histogram!(POOL_ACQUIRE, "pool" => "push").record(waited),
        other => metrics::histogram!(POOL_ACQUIRE, "pool" => other).record(waited),
    }
    record_usage(pool, name);
    connection
}

/// Sets the pool's connection gauges.
pub(crate) fn record_usage(pool: &PgPool, name: &'static str) {
    let size = pool.size();
    let idle = pool.num_idle() as u32;
    let in_use = size.saturating_sub(idle);
    match name {
        "push" => {
            metrics::gauge!(POOL_CONNECTIONS, "pool" => "push", "state" => "idle").set(idle);
            metrics::gauge!(POOL_CONNECTIONS, "pool" => "push", "state" => "in_use").set(in_use);
        }
        "projection" => {
            metrics::gauge!(POOL_CONNECTIONS, "pool" => "projection", "state" => "idle").set(idle);
            metrics::gauge!(POOL_CONNECTIONS, "pool" => "projection", "state" => "in_use")
                .set(in_use);
        }
        other => {
            metrics::gauge!(POOL_CONNECTIONS, "pool" => other, "state" => "idle").set(idle);
            metrics::gauge!(POOL_CONNECTIONS, "pool" => other, "state" => "in_use").set(in_use);
        }
    }
}

/// Times reads left the standby for the primary, by `reason`: `unavailable`, `lagging`,
/// `not_a_standby`.
pub const REPLICA_FALLBACKS: &str = "strata_replica_fallbacks_total";
/// `1` while routed reads go to the standby, `0` while they go to the primary.
pub const REPLICA_SERVING: &str = "strata_replica_serving_reads";
/// Seconds the standby is behind the primary, as its last health check measured.
pub const REPLICA_LAG: &str = "strata_replica_lag_seconds";
/// Reads given a [`ReadToken`](crate::ReadToken), by the server that served them (`served_by`:
/// `replica` once it showed the push, `primary` when it did not in time).
pub const READ_TOKEN_READS: &str = "strata_read_token_reads_total";
