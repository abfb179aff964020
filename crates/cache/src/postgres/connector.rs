//! The PostgreSQL connector: the `cache` schema of migration `20261206000003_cache.sql`, one
//! partition per cache, reached through a pool of the caller's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;

use crate::config::CacheConfig;

/// A hit is this one statement: two primary-key lookups (key, then object) in one round trip, and
/// `touch` tells whether the stored last-use time is old enough to be worth rewriting.
///
/// It reads the cache's own partitions (`{keys}` and `{objects}`, filled in by
/// [`partition_sql`]), not the partitioned parents: through a parent, a prepared statement's
/// generic plan locks every cache's partitions and prunes them again on each execution, so a hit
/// would cost more the more caches the database holds (`docs/cache.md`).
///
/// The age conditions are evaluated with the server's clock, so every process agrees on what has
/// expired.
const GET: &str = "\
SELECT o.id, o.payload, COALESCE(o.last_used_at <= now() - $4::interval, FALSE) AS touch
FROM {keys} k
JOIN {objects} o ON o.cache_name = k.cache_name AND o.id = k.object_id
WHERE k.cache_name = $1 AND k.index_name = $2 AND k.index_key = $3
  AND ($5::interval IS NULL OR o.created_at > now() - $5::interval)
  AND ($6::interval IS NULL OR o.last_used_at > now() - $6::interval)";

/// Rewrites the last-use time unless another hit already did; on the cache's object partition,
/// like [`GET`].
const TOUCH: &str = "\
UPDATE {objects} SET last_used_at = now()
WHERE cache_name = $1 AND id = $2 AND last_used_at <= now() - $3::interval";

/// `sql` with `{keys}` and `{objects}` naming the partitions of cache `name` (created by
/// `cache.create_partitions`). Cache names follow `[a-z][a-z0-9_]{0,47}`, checked before any
/// connector starts, so they are safe identifiers; quoted all the same.
fn partition_sql(sql: &str, name: &str) -> String {
    sql.replace("{keys}", &format!("cache.\"string_keys_{name}\""))
        .replace("{objects}", &format!("cache.\"objects_{name}\""))
}

/// SQLSTATE `undefined_table`: the cache's partitions do not exist (yet, or any more).
fn is_missing_partition(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|err| err.code())
        .is_some_and(|code| code == "42P01")
}

#[derive(Debug)]
pub(crate) struct PgConnector {
    pool: PgPool,
    name: String,
    /// [`GET`] and [`TOUCH`] on this cache's partitions.
    get_sql: String,
    touch_sql: String,
    max_age: Option<PgInterval>,
    last_use_age: Option<PgInterval>,
    touch_after: Option<PgInterval>,
    /// Whether this process has seen the cache's partitions exist. Cleared by a failed write, so a
    /// partition that was dropped (or never created because the database was down at start-up) is
    /// created again by the next write.
    partitions_ready: AtomicBool,
}

impl PgConnector {
    /// Creates the cache's partitions if needed. A failure is logged and retried by the next
    /// write, so a database that is down at start-up does not keep the service from starting.
    pub(crate) async fn start(pool: PgPool, name: &str, config: &CacheConfig) -> Arc<PgConnector> {
        let interval = |age: Option<std::time::Duration>| {
            // Ages were validated (>= 1 ms); a duration too large for an interval means "never".
            age.and_then(|age| PgInterval::try_from(age).ok())
        };
        let connector = Arc::new(PgConnector {
            pool,
            name: name.to_owned(),
            get_sql: partition_sql(GET, name),
            touch_sql: partition_sql(TOUCH, name),
            max_age: interval(config.max_age),
            last_use_age: interval(config.last_use_age),
            touch_after: interval(config.touch_after()),
            partitions_ready: AtomicBool::new(false),
        });
        if let Err(err) = connector.ensure_partitions().await {
            tracing::warn!(
                cache = %connector.name,
                error = &err as &dyn std::error::Error,
                "could not create the cache's partitions; writes will retry, reads miss until then"
            );
        }
        connector
    }

    async fn ensure_partitions(&self) -> Result<(), sqlx::Error> {
        if self.partitions_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        sqlx::query("SELECT cache.create_partitions($1)")
            .bind(&self.name)
            .execute(&self.pool)
            .await?;
        self.partitions_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs a write, clearing `partitions_ready` when it fails so the next write checks them.
    async fn write<F>(&self, statement: F) -> Result<(), sqlx::Error>
    where
        F: Future<Output = Result<(), sqlx::Error>>,
    {
        let result = async {
            self.ensure_partitions().await?;
            statement.await
        }
        .await;
        if result.is_err() {
            self.partitions_ready.store(false, Ordering::Release);
        }
        result
    }

    pub(crate) async fn get(
        self: &Arc<Self>,
        index: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let row: Option<(i64, Vec<u8>, bool)> = match sqlx::query_as(&self.get_sql)
            .bind(&self.name)
            .bind(index)
            .bind(key)
            .bind(self.touch_after)
            .bind(self.max_age)
            .bind(self.last_use_age)
            .fetch_optional(&self.pool)
            .await
        {
            Ok(row) => row,
            Err(err) if is_missing_partition(&err) => {
                // Not created yet (the database was down when the cache started): a miss, and the
                // next write creates them.
                self.partitions_ready.store(false, Ordering::Release);
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let Some((id, payload, touch)) = row else {
            return Ok(None);
        };
        if touch {
            // Off the caller's path: the hit returns after its one round trip, and a lost touch
            // only makes the entry expire a little early.
            let connector = Arc::clone(self);
            tokio::spawn(async move {
                let touched = sqlx::query(&connector.touch_sql)
                    .bind(&connector.name)
                    .bind(id)
                    .bind(connector.touch_after)
                    .execute(&connector.pool)
                    .await;
                if let Err(err) = touched {
                    tracing::warn!(cache = %connector.name, error = &err as &dyn std::error::Error, "could not record a cache hit");
                }
            });
        }
        Ok(Some(payload))
    }

    pub(crate) async fn set(
        &self,
        index_names: Vec<&'static str>,
        index_keys: Vec<String>,
        payload: Vec<u8>,
    ) -> Result<(), sqlx::Error> {
        self.write(async {
            sqlx::query("SELECT cache.set_object($1, $2, $3, $4)")
                .bind(&self.name)
                .bind(&index_names)
                .bind(&index_keys)
                .bind(&payload)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    pub(crate) async fn invalidate(&self, index: &str, keys: &[String]) -> Result<(), sqlx::Error> {
        self.write(self.keyed("SELECT cache.invalidate($1, $2, $3)", index, keys))
            .await
    }

    pub(crate) async fn delete(&self, index: &str, keys: &[String]) -> Result<(), sqlx::Error> {
        self.write(self.keyed("SELECT cache.delete_keys($1, $2, $3)", index, keys))
            .await
    }

    async fn keyed(
        &self,
        sql: &'static str,
        index: &str,
        keys: &[String],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql)
            .bind(&self.name)
            .bind(index)
            .bind(keys)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    pub(crate) async fn truncate(&self) -> Result<(), sqlx::Error> {
        self.write(async {
            sqlx::query("SELECT cache.truncate($1)")
                .bind(&self.name)
                .execute(&self.pool)
                .await
                .map(drop)
        })
        .await
    }

    /// Removes expired objects, objects without keys and keys without objects; returns how many
    /// objects went.
    pub(crate) async fn prune(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT cache.prune($1, $2, $3)")
            .bind(&self.name)
            .bind(self.max_age)
            .bind(self.last_use_age)
            .fetch_one(&self.pool)
            .await
    }
}
