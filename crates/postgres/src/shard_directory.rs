//! The SQL of a persisted shard directory (`strata-shard`): which shard each instance lives on,
//! in a table of one designated database.
//!
//! The table is created only by [`create_table`], never by [`migrate`](crate::migrate): a
//! migration runs on every shard's server, and a directory belongs to one database of the
//! operator's choosing. Its key starts with `instance_id`, like every key of the schema.

use chrono::{DateTime, Utc};
use strata_event::InstanceId;
use strata_store::Result;

use crate::error::from_sqlx;
use crate::store::PgStore;

/// One instance's row: its shard's name (validated by `strata-shard`) and when it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The instance.
    pub instance_id: InstanceId,
    /// The shard's name.
    pub shard: String,
    /// When the row was last written.
    pub updated_at: DateTime<Utc>,
}

/// Creates `eventstore.shard_directory` in `store`'s database if it is missing. Needs the
/// migrator's rights; grants reading and writing to the writer role when it exists, since every
/// service reads the directory and a move writes it.
pub async fn create_table(store: &PgStore) -> Result<()> {
    let statements = [
        "CREATE TABLE IF NOT EXISTS eventstore.shard_directory (\
             instance_id TEXT PRIMARY KEY, shard TEXT NOT NULL, \
             updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        "DO $$ BEGIN \
             IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'strata_writer') THEN \
                 GRANT SELECT, INSERT, UPDATE ON eventstore.shard_directory TO strata_writer; \
             END IF; \
         END $$",
    ];
    for statement in statements {
        sqlx::query(statement)
            .execute(store.writes())
            .await
            .map_err(|err| from_sqlx("creating the shard directory", err))?;
    }
    Ok(())
}

/// Every row of the directory, sorted by instance.
pub async fn load(store: &PgStore) -> Result<Vec<Assignment>> {
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT instance_id, shard, updated_at FROM eventstore.shard_directory \
         ORDER BY instance_id",
    )
    .fetch_all(store.reads())
    .await
    .map_err(|err| from_sqlx("reading the shard directory", err))?;
    Ok(rows
        .into_iter()
        .map(|(instance_id, shard, updated_at)| Assignment {
            instance_id: InstanceId::from_stored(instance_id),
            shard,
            updated_at,
        })
        .collect())
}

/// Records that `instance` lives on `shard`, replacing its row.
pub async fn save(store: &PgStore, instance: &InstanceId, shard: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO eventstore.shard_directory (instance_id, shard) VALUES ($1, $2) \
         ON CONFLICT (instance_id) DO UPDATE SET shard = EXCLUDED.shard, updated_at = now()",
    )
    .bind(instance.as_str())
    .bind(shard)
    .execute(store.writes())
    .await
    .map_err(|err| from_sqlx("writing the shard directory", err))?;
    Ok(())
}
