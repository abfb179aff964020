//! The embedded schema and the one call that applies it (shared by `cargo xtask migrate`, the CLI
//! and the tests): versioned migrations for tables, indexes and grants, then every SQL function
//! from its own file, re-applied when its text changed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use strata_store::Error;
use tracing::Instrument;

use crate::error::from_sqlx;
use crate::pooling::{Pooled, Pooler};

/// Every versioned migration in the workspace's `migrations/` folder, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// One SQL function's definition: a file of `migrations/functions/` with a
/// `CREATE OR REPLACE FUNCTION` (and the grants that go with it), embedded at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlFunction {
    /// The file's name, `schema.function.sql`.
    pub file: &'static str,
    /// Its text.
    pub sql: &'static str,
}

impl SqlFunction {
    /// A checksum of the text: [`migrate`] applies the file again when it differs from the one
    /// recorded in `eventstore.applied_functions`.
    pub fn checksum(&self) -> String {
        format!("{:016x}", fnv1a(self.sql.as_bytes()))
    }
}

macro_rules! sql_functions {
    ($($file:literal),* $(,)?) => {
        &[$(SqlFunction {
            file: $file,
            sql: include_str!(concat!("../../../migrations/functions/", $file)),
        }),*]
    };
}

/// Every function file of `migrations/functions/`, applied in this order by [`migrate`] after the
/// versioned migrations. A test fails when a file of that folder is missing here.
pub static FUNCTIONS: &[SqlFunction] = sql_functions![
    "cache.advisory_lock.sql",
    "cache.create_partitions.sql",
    "cache.delete_keys.sql",
    "cache.invalidate.sql",
    "cache.lock_for_writing.sql",
    "cache.lock_keys_for_writing.sql",
    "cache.prune.sql",
    "cache.set_object.sql",
    "cache.truncate.sql",
    "cache.valid_name.sql",
    "eventstore.aggregate_lock_key.sql",
    "eventstore.append_events.sql",
    "eventstore.archive_batch.sql",
    "eventstore.archive_candidates.sql",
    "eventstore.begin_push.sql",
    "eventstore.commit_horizon.sql",
    "eventstore.create_subject_key.sql",
    "eventstore.current_sequence.sql",
    "eventstore.enter_instances.sql",
    "eventstore.erase_subject.sql",
    "eventstore.event_digest.sql",
    "eventstore.grant_roles.sql",
    "eventstore.hard_delete.sql",
    "eventstore.idempotency_lock_key.sql",
    "eventstore.instance_lock_key.sql",
    "eventstore.push.sql",
    "eventstore.push_one.sql",
    "eventstore.record_archive_batch.sql",
    "eventstore.record_idempotency_key.sql",
    "eventstore.recorded_push.sql",
    "eventstore.remove_instance.sql",
    "eventstore.restore_batch.sql",
    "eventstore.rewrap_subject_key.sql",
    "eventstore.set_up_roles.sql",
    "eventstore.subject_lock_key.sql",
    "eventstore.unique_lock_key.sql",
    "projections.lease_key.sql",
    "projections.reading.sql",
    "projections.switch_key.sql",
];

/// A versioned migration that [`migrate`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (the file name's number).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The versioned migrations it applied, oldest first; empty when the database had them all.
    pub migrations: Vec<AppliedMigration>,
    /// The function files it (re-)applied because they were new or their text changed.
    pub functions: Vec<&'static str>,
}

impl Migrated {
    /// Whether the database was already up to date.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty() && self.functions.is_empty()
    }
}

/// Where a database stands against the schema this build embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Every versioned migration this build knows, oldest first, with when it was applied.
    pub migrations: Vec<MigrationState>,
    /// Versions the database recorded that this build does not know (a newer build migrated it,
    /// or its history was squashed): `migrate` refuses to run until that is sorted out.
    pub unknown_versions: Vec<i64>,
    /// Every function file, with whether the database has its current text.
    pub functions: Vec<FunctionState>,
}

impl MigrationStatus {
    /// Whether `migrate` would change nothing.
    pub fn is_current(&self) -> bool {
        self.unknown_versions.is_empty()
            && self.migrations.iter().all(|m| m.applied_at.is_some())
            && self.functions.iter().all(|f| f.current)
    }
}

/// One versioned migration in a [`MigrationStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// When it was applied; `None` while pending.
    pub applied_at: Option<DateTime<Utc>>,
}

/// One function file in a [`MigrationStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionState {
    /// The file.
    pub file: &'static str,
    /// Whether the database has this text of it; `false` when it is pending or changed.
    pub current: bool,
}

/// Serialises function application between concurrent migrators (the versioned migrations have
/// sqlx's own lock).
const FUNCTIONS_LOCK_KEY: i64 = 0x5354_5241_5441_4d46;

/// Serialises migrators behind transaction pooling, where sqlx's session-level lock cannot be
/// used (`apply_migrations`).
const MIGRATIONS_LOCK_KEY: i64 = 0x5354_5241_5441_4d4d;

/// Applies the versioned migrations the database does not have yet, then every function file
/// that is new or changed, then re-grants the roles `set_up_roles` named (so tables and functions
/// added since reach them). Re-running changes nothing. Concurrent callers are serialised.
pub async fn migrate(pool: &PgPool) -> Result<Migrated, Error> {
    let span = tracing::info_span!(
        "strata.migrate",
        otel.name = "migrate",
        otel.kind = "client",
        db.system = "postgresql",
        db.operation.name = "migrate",
        strata.migrations_applied = tracing::field::Empty,
        strata.functions_applied = tracing::field::Empty,
    );
    let migrated = apply_migrations(pool).instrument(span.clone()).await?;
    span.record("strata.migrations_applied", migrated.migrations.len());
    span.record("strata.functions_applied", migrated.functions.len());
    Ok(migrated)
}

async fn apply_migrations(pool: &PgPool) -> Result<Migrated, Error> {
    let options = pool.connect_options();
    let transaction_pooling =
        crate::pooling::detect(options.as_ref()).await? == Pooler::TransactionPooling;
    // Behind transaction pooling, a pool of its own that keeps no prepared statements, whatever
    // the caller's pool does (`crate::pooling`).
    let own_pool;
    let pool = if transaction_pooling {
        own_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.as_ref().clone().statement_cache_capacity(0));
        Pooled::new(&own_pool, true)
    } else {
        Pooled::new(pool, false)
    };
    let failed = |err| match err {
        sqlx::migrate::MigrateError::Execute(inner) => from_sqlx("applying migrations", inner),
        other => Error::Backend {
            message: format!("applying migrations: {other}"),
            source: Some(std::sync::Arc::new(other)),
        },
    };
    let before = if transaction_pooling {
        // sqlx's migrator serialises migrators with a session-level advisory lock, which
        // transaction pooling would leave held on a server connection other clients then get
        // (and its unlock sent to another). Instead every pending migration runs in one
        // transaction that holds a transaction-scoped lock; each migration's own transaction
        // becomes a savepoint in it.
        // NOTE: a migrator connected directly takes sqlx's lock, not this one: run migrations
        // from one place at a time.
        let unlocked = Migrator {
            migrations: std::borrow::Cow::Borrowed(&MIGRATOR.migrations),
            ignore_missing: MIGRATOR.ignore_missing,
            locking: false,
            no_tx: MIGRATOR.no_tx,
        };
        let mut tx = pool
            .begin()
            .await
            .map_err(|err| from_sqlx("applying migrations", err))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATIONS_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(|err| from_sqlx("applying migrations", err))?;
        // Read under the lock, so a migrator that waited for another reports nothing applied.
        let before = applied_versions(&mut tx).await?;
        unlocked.run(&mut *tx).await.map_err(failed)?;
        tx.commit()
            .await
            .map_err(|err| from_sqlx("applying migrations", err))?;
        before
    } else {
        let before = applied_versions(&mut *acquire(pool.pool()).await?).await?;
        MIGRATOR.run(pool.pool()).await.map_err(failed)?;
        before
    };
    let functions = apply_functions(pool).await?;
    Ok(Migrated {
        migrations: MIGRATOR
            .iter()
            .filter(|migration| !before.contains_key(&migration.version))
            .map(|migration| AppliedMigration {
                version: migration.version,
                description: migration.description.to_string(),
            })
            .collect(),
        functions,
    })
}

/// Where the database stands: applied and pending migrations, and function files whose current
/// text it lacks. Reads only.
pub async fn migration_status(pool: &PgPool) -> Result<MigrationStatus, Error> {
    let applied = applied_versions(&mut *acquire(pool).await?).await?;
    let known: HashSet<i64> = MIGRATOR.iter().map(|migration| migration.version).collect();
    let mut unknown_versions: Vec<i64> = applied
        .keys()
        .copied()
        .filter(|version| !known.contains(version))
        .collect();
    unknown_versions.sort_unstable();
    let recorded = recorded_checksums(pool).await?;
    Ok(MigrationStatus {
        migrations: MIGRATOR
            .iter()
            .map(|migration| MigrationState {
                version: migration.version,
                description: migration.description.to_string(),
                applied_at: applied.get(&migration.version).copied(),
            })
            .collect(),
        unknown_versions,
        functions: FUNCTIONS
            .iter()
            .map(|function| FunctionState {
                file: function.file,
                current: recorded.get(function.file) == Some(&function.checksum()),
            })
            .collect(),
    })
}

async fn apply_functions(pool: Pooled<'_>) -> Result<Vec<&'static str>, Error> {
    let failed = |err| from_sqlx("applying SQL functions", err);
    let mut tx = pool.begin().await.map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FUNCTIONS_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    // Bodies refer to each other and to tables; checked when first called, not in file order.
    sqlx::query("SET LOCAL check_function_bodies = off")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let recorded: HashMap<String, String> =
        sqlx::query_as("SELECT file, checksum FROM eventstore.applied_functions")
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?
            .into_iter()
            .collect();
    let mut applied = Vec::new();
    for function in FUNCTIONS {
        let checksum = function.checksum();
        if recorded.get(function.file) == Some(&checksum) {
            continue;
        }
        sqlx::raw_sql(function.sql)
            .execute(&mut *tx)
            .await
            .map_err(|err| from_sqlx(&format!("applying {}", function.file), err))?;
        sqlx::query(
            "INSERT INTO eventstore.applied_functions (file, checksum, applied_at) \
             VALUES ($1, $2, now()) \
             ON CONFLICT (file) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
        )
        .bind(function.file)
        .bind(&checksum)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        applied.push(function.file);
    }
    sqlx::query("SELECT eventstore.grant_roles()")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(applied)
}

async fn acquire(pool: &PgPool) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, Error> {
    pool.acquire()
        .await
        .map_err(|err| from_sqlx("reading applied migrations", err))
}

async fn applied_versions(
    pool: &mut sqlx::PgConnection,
) -> Result<HashMap<i64, DateTime<Utc>>, Error> {
    let failed = |err| from_sqlx("reading applied migrations", err);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *pool)
        .await
        .map_err(failed)?;
    if !exists {
        return Ok(HashMap::new());
    }
    let versions: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT version, installed_on FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *pool)
            .await
            .map_err(failed)?;
    Ok(versions.into_iter().collect())
}

async fn recorded_checksums(pool: &PgPool) -> Result<HashMap<String, String>, Error> {
    let failed = |err| from_sqlx("reading applied functions", err);
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('eventstore.applied_functions') IS NOT NULL")
            .fetch_one(pool)
            .await
            .map_err(failed)?;
    if !exists {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT file, checksum FROM eventstore.applied_functions")
            .fetch_all(pool)
            .await
            .map_err(failed)?;
    Ok(rows.into_iter().collect())
}

/// FNV-1a, 64 bits: stable across builds and Rust versions, unlike `DefaultHasher`.
/// A checksum of everything [`migrate`] applies: the versioned migrations of [`MIGRATOR`] and
/// every file of [`FUNCTIONS`]. Two builds with the same checksum create the same schema, so a
/// test harness can migrate a template database once and name it by this checksum (Strata's own
/// integration tests do), instead of migrating a fresh database per test.
pub fn schema_checksum() -> String {
    let migrations = MIGRATOR.iter().flat_map(|migration| {
        migration
            .version
            .to_le_bytes()
            .into_iter()
            .chain(migration.checksum.iter().copied())
    });
    let functions = FUNCTIONS
        .iter()
        .flat_map(|function| function.file.bytes().chain(function.sql.bytes()));
    let bytes: Vec<u8> = migrations.chain(functions).collect();
    format!("{:016x}", fnv1a(&bytes))
}

/// FNV-1a: stable across runs, platforms and Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_file_is_embedded_and_defines_its_function() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/functions");
        let mut on_disk: Vec<String> = std::fs::read_dir(folder)
            .expect("the functions folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FUNCTIONS.iter().map(|function| function.file).collect();
        assert_eq!(
            on_disk, embedded,
            "FUNCTIONS must list migrations/functions/"
        );
        for function in FUNCTIONS {
            let name = function.file.trim_end_matches(".sql");
            assert!(
                function
                    .sql
                    .contains(&format!("CREATE OR REPLACE FUNCTION {name}(")),
                "{} must define {name} with CREATE OR REPLACE",
                function.file
            );
        }
    }

    #[test]
    fn no_versioned_migration_defines_a_function_the_files_define() {
        for migration in MIGRATOR.iter() {
            for function in FUNCTIONS {
                let name = function.file.trim_end_matches(".sql");
                assert!(
                    !migration.sql.contains(&format!("FUNCTION {name}(")),
                    "migration {} defines {name}, which {} defines",
                    migration.version,
                    function.file
                );
            }
        }
    }
}
