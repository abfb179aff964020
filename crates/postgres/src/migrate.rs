//! The embedded migrations and the one call that applies them (shared by `cargo xtask migrate`, the
//! CLI and the tests).

use std::collections::HashSet;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use strata_store::Error;

use crate::error::from_sqlx;

/// Every migration in the workspace's `migrations/` folder, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// A migration that [`migrate`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (the file name's number).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// Applies the migrations the database does not have yet and returns them; re-running returns an
/// empty list. Concurrent callers are serialised by sqlx's advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<Vec<AppliedMigration>, Error> {
    let before = applied_versions(pool).await?;
    MIGRATOR.run(pool).await.map_err(|err| match err {
        sqlx::migrate::MigrateError::Execute(inner) => from_sqlx("applying migrations", inner),
        other => Error::Backend {
            message: format!("applying migrations: {other}"),
            source: Some(std::sync::Arc::new(other)),
        },
    })?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !before.contains(&migration.version))
        .map(|migration| AppliedMigration {
            version: migration.version,
            description: migration.description.to_string(),
        })
        .collect())
}

async fn applied_versions(pool: &PgPool) -> Result<HashSet<i64>, Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|err| from_sqlx("reading applied migrations", err))?;
    if !exists {
        return Ok(HashSet::new());
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(|err| from_sqlx("reading applied migrations", err))?;
    Ok(versions.into_iter().collect())
}
