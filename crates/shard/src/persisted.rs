//! A directory persisted in a table of one designated database (`eventstore.shard_directory`),
//! so every process routes by the same assignments.
//!
//! The table exists only once [`create`] made it, on the database the operator chose (usually
//! one shard's): ordinary migrations never create it, since they run on every shard's server.
//! A [`ShardedStore::move_instance`] given the database in [`MoveOptions::directory`] writes the
//! new assignment there before it switches. Other processes learn of it by calling [`reload`]
//! (e.g. every few seconds, and before trusting a read of a moved instance); until they do, they
//! route by what they loaded last.
//!
//! ```no_run
//! use std::time::Duration;
//! use strata_postgres::PgStore;
//! use strata_shard::{ShardedStore, persisted};
//!
//! # #[allow(dead_code)]
//! # async fn example(store: ShardedStore<PgStore>, designated: PgStore) -> strata_store::Result<()> {
//! persisted::create(&designated).await?; // once, by the operator, with the migrator's rights
//! loop {
//!     persisted::reload(&store, &designated).await?;
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//! }
//! # }
//! ```
//!
//! [`ShardedStore::move_instance`]: crate::ShardedStore::move_instance
//! [`MoveOptions::directory`]: crate::MoveOptions::directory

use strata_postgres::PgStore;
use strata_postgres::shard_directory;
use strata_store::{EventStore, Result};

use crate::directory::ShardName;
use crate::store::ShardedStore;

/// Creates the directory's table in `designated`'s database, if missing.
pub async fn create(designated: &PgStore) -> Result<()> {
    shard_directory::create_table(designated).await
}

/// Replaces `store`'s explicit assignments with those persisted in `designated`, all or none
/// (a row naming a shard `store` does not have is refused). Returns how many it loaded.
pub async fn reload<S: EventStore + Clone>(
    store: &ShardedStore<S>,
    designated: &PgStore,
) -> Result<usize> {
    let rows = shard_directory::load(designated).await?;
    let count = rows.len();
    let assignments = rows
        .into_iter()
        .map(|row| Ok((row.instance_id, ShardName::new(row.shard)?)))
        .collect::<Result<Vec<_>>>()?;
    store.load_assignments(assignments)?;
    Ok(count)
}

/// Records `instance` on `shard` in `designated`, without moving anything: for placing a new
/// instance before its first event (assign it in the running store too, with
/// [`ShardedStore::assign`]).
pub async fn save(
    designated: &PgStore,
    instance: &strata_event::InstanceId,
    shard: &ShardName,
) -> Result<()> {
    shard_directory::save(designated, instance, shard.as_str()).await
}
