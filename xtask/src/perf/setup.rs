//! Databases for a run: created and migrated per workload family, dropped at the end.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
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

/// The baseline's table: the same columns, key and indexes as `eventstore.events`, no triggers,
/// no function, no locks.
const RAW_SCHEMA: &str = "
CREATE SCHEMA raw;
CREATE TABLE raw.events (
    instance_id TEXT NOT NULL, aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
    sequence BIGINT NOT NULL, event_type TEXT NOT NULL, revision INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, creator TEXT NOT NULL, owner TEXT NOT NULL, payload JSONB,
    position NUMERIC NOT NULL, in_tx_order INTEGER NOT NULL,
    PRIMARY KEY (instance_id, aggregate_type, aggregate_id, sequence)
);
CREATE INDEX raw_projection ON raw.events (instance_id, aggregate_type, event_type, position, in_tx_order);
CREATE INDEX raw_instance_position ON raw.events (instance_id, position, in_tx_order);
CREATE INDEX raw_position ON raw.events (position, in_tx_order);
";

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
        pool.close().await;
        Ok(BenchDatabase { options })
    }

    pub(crate) fn pool(&self, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .connect_lazy_with(self.options.clone())
    }

    pub(crate) fn store(&self, config: &PgConfig) -> Result<PgStore> {
        let pools = PgPools::connect_lazy_with(self.options.clone(), config);
        Ok(PgStore::from_pools(pools, config)?)
    }

    /// VACUUM ANALYZE both tables, so reads start from the same footing.
    pub(crate) async fn settle(&self) -> Result<()> {
        let pool = self.pool(1);
        // One statement each: several in one string would share an implicit transaction, where
        // VACUUM cannot run.
        for table in ["eventstore.events", "raw.events"] {
            sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        Ok(())
    }
}
