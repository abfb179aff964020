//! Databases for a run: created and migrated per workload family, dropped at the end.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use strata_postgres::{PgConfig, PgPools, PgStore};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix of every database a benchmark run creates.
pub(crate) const PREFIX: &str = "strata_bench_";

/// A migrated database with a raw baseline table shaped like `eventstore.events`.
pub(crate) struct BenchDatabase {
    pub(crate) options: PgConnectOptions,
}

/// The baseline's table: the same columns, key and indexes as `eventstore.events` (copied from it,
/// so an index a migration adds is there too), no triggers, no function, no locks. `LIKE` copies
/// NOT NULL but no defaults, checks or triggers.
const RAW_SCHEMA: &str = "
CREATE SCHEMA raw;
CREATE TABLE raw.events (LIKE eventstore.events INCLUDING INDEXES);
";

/// The definition of every index of a table, without the index's and the table's names.
const INDEX_SHAPES: &str = "
SELECT coalesce(array_agg(shape ORDER BY shape), '{}')
FROM (SELECT indisunique::text || indisprimary::text
             || regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', ' USING ') AS shape
      FROM pg_index WHERE indrelid = $1::regclass) indexes";

/// Refuses a baseline whose indexes differ from the store's: the ratio would mean nothing.
async fn same_indexes(pool: &PgPool) -> Result<()> {
    let shapes = |table: &'static str| {
        sqlx::query_scalar::<_, Vec<String>>(INDEX_SHAPES)
            .bind(table)
            .fetch_one(pool)
    };
    let (store, raw) = (
        shapes("eventstore.events").await?,
        shapes("raw.events").await?,
    );
    if store != raw {
        bail!("raw.events has other indexes than eventstore.events:\n{raw:?}\n{store:?}");
    }
    Ok(())
}

impl BenchDatabase {
    pub(crate) async fn create(admin_url: &str) -> Result<BenchDatabase> {
        let admin_options: PgConnectOptions = admin_url.parse().context("admin URL")?;
        let name = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = admin_options.connect().await.context("connecting")?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .with_context(|| format!("creating {name}"))?;
        admin.close().await.ok();
        let options = admin_options.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await?;
        strata_postgres::migrate(&pool)
            .await
            .context("migrating the bench database")?;
        sqlx::raw_sql(RAW_SCHEMA).execute(&pool).await?;
        same_indexes(&pool).await?;
        pool.close().await;
        Ok(BenchDatabase { options })
    }

    /// A pool for the raw-SQL baselines and for the caches under test. Like the pools `PgStore`
    /// opens, it skips sqlx's round trip that checks each connection before use, so a baseline
    /// pays no cost Strata does not, and neither pays one a tuned service would not.
    pub(crate) fn pool(&self, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .connect_lazy_with(self.options.clone())
    }

    pub(crate) fn store(&self, config: &PgConfig) -> Result<PgStore> {
        let pools = PgPools::connect_lazy_with(self.options.clone(), config);
        Ok(PgStore::from_pools(pools, config)?)
    }

    /// VACUUM ANALYZE both event tables, so reads start from the same footing.
    pub(crate) async fn settle(&self) -> Result<()> {
        self.settle_tables(&["eventstore.events", "raw.events"])
            .await
    }

    /// VACUUM ANALYZE each of `tables` (a partitioned table with its partitions).
    pub(crate) async fn settle_tables(&self, tables: &[&str]) -> Result<()> {
        let pool = self.pool(1);
        // One statement each: several in one string would share an implicit transaction, where
        // VACUUM cannot run.
        for table in tables {
            sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
                .execute(&pool)
                .await
                .with_context(|| format!("VACUUM ANALYZE {table}"))?;
        }
        pool.close().await;
        Ok(())
    }
}
