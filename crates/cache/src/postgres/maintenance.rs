//! Pruning and emptying a PostgreSQL cache by name.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;
use thiserror::Error;

use crate::entry::validate_cache_name;

/// Why [`prune`] or [`truncate`] did nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    /// The name breaks the cache-name grammar.
    #[error(transparent)]
    InvalidCacheName(crate::Error),
    /// The database has no `cache` schema: the migrations have not run.
    #[error("this database has no cache schema: run the migrations (`strata migrate`)")]
    NotMigrated,
    /// No cache of that name exists in the database. A cache's partitions are created when a
    /// service first starts it.
    #[error(
        "there is no cache named {name:?} in this database (a cache's tables are created when \
         the application first starts it)"
    )]
    UnknownCache {
        /// The name given.
        name: String,
    },
    /// The database failed the request.
    #[error("{context}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Removes the expired objects of cache `name`: created at least `max_age` ago, or last used at
/// least `last_use_age` ago (`None`: the cache has no such age; a cache's ages live in the
/// application's configuration, not in the database), plus objects without keys and keys without
/// objects (what a crash mid-write can leave). Returns how many objects went.
pub async fn prune(
    pool: &PgPool,
    name: &str,
    max_age: Option<Duration>,
    last_use_age: Option<Duration>,
) -> Result<u64, MaintenanceError> {
    check_cache_exists(pool, name).await?;
    // Intervals hold microseconds; an age too long for one means "never expires".
    let interval = |age: Option<Duration>| {
        age.and_then(|age| {
            let micros = u64::try_from(age.as_micros()).ok()?;
            PgInterval::try_from(Duration::from_micros(micros)).ok()
        })
    };
    let removed: i64 = sqlx::query_scalar("SELECT cache.prune($1, $2, $3)")
        .bind(name)
        .bind(interval(max_age))
        .bind(interval(last_use_age))
        .fetch_one(pool)
        .await
        .map_err(database("pruning the cache"))?;
    Ok(u64::try_from(removed).unwrap_or_default())
}

/// Empties cache `name` (a `TRUNCATE` of its own partitions; other caches are untouched) and
/// returns how many objects it held.
pub async fn truncate(pool: &PgPool, name: &str) -> Result<u64, MaintenanceError> {
    check_cache_exists(pool, name).await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(database("starting to truncate the cache"))?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM cache.objects WHERE cache_name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(database("counting the cache's objects"))?;
    sqlx::query("SELECT cache.truncate($1)")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(database("truncating the cache"))?;
    tx.commit()
        .await
        .map_err(database("committing the truncation"))?;
    Ok(u64::try_from(held).unwrap_or_default())
}

async fn check_cache_exists(pool: &PgPool, name: &str) -> Result<(), MaintenanceError> {
    validate_cache_name(name).map_err(MaintenanceError::InvalidCacheName)?;
    // Two statements: the second names the cache's partitions, which only exist once the schema
    // does.
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('cache.objects') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(database("looking up the cache schema"))?;
    if !migrated {
        return Err(MaintenanceError::NotMigrated);
    }
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass(format('cache.%I', 'objects_' || $1)) IS NOT NULL")
            .bind(name)
            .fetch_one(pool)
            .await
            .map_err(database("looking up the cache"))?;
    if !exists {
        return Err(MaintenanceError::UnknownCache {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> MaintenanceError {
    move |source| MaintenanceError::Database { context, source }
}
