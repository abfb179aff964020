//! The PostgreSQL backend of Strata: the only crate that speaks SQL to the event store.
//!
//! [`PgStore`] implements [`strata_store::EventStore`] with the same semantics as the in-memory
//! backend (both run one conformance suite). What it adds is how those semantics are kept at scale:
//!
//! - **One round trip per push.** A push is one call of the SQL function `eventstore.push`, one
//!   statement and therefore one transaction. Sequences are computed inside it under a per-aggregate
//!   advisory lock, taken in key order: many writers on one aggregate queue instead of colliding, and
//!   nobody retries.
//! - **Group commit.** Pushes that arrive while earlier ones are in flight travel together in the next
//!   call. Each push still has its own all-or-nothing outcome and its own typed error; an idle store
//!   adds no wait. See [`GroupCommitConfig`].
//! - **Positions from transaction ids.** An event's position is the id of the transaction that wrote
//!   it, so [`EventStore::commit_horizon`](strata_store::EventStore::commit_horizon) is the oldest
//!   transaction that may still write events (`eventstore.commit_horizon()`): below it nothing can
//!   still commit. Readers wait for nobody and writers for nothing (`docs/position.md`).
//! - **Idempotent pushes** ([`EventStore::push_idempotent`](strata_store::EventStore::push_idempotent))
//!   travel through the same lanes: the key is recorded in the push's transaction, in
//!   `eventstore.idempotency_keys`, for [`PgConfig::idempotency_key_retention`];
//!   [`admin::prune_idempotency_keys`] deletes expired ones.
//! - **Separate pools** for pushing, querying and projection work ([`PgConfig`]), or bring your own
//!   ([`PgPools`]). Pools Strata opens check a connection with a round trip only after it sat idle
//!   ([`PoolConfig::check_idle_after`]), not before every call as sqlx does by default; pools you
//!   bring keep their own settings.
//! - **Migrations** embedded once as [`MIGRATOR`] (tables, indexes, grants) and [`FUNCTIONS`] (one
//!   file per SQL function); [`migrate`] applies both and reports what it did.
//! - **Pushes announced** to other processes with `NOTIFY` on [`PUSH_CHANNEL`], and heard by
//!   [`PgStore::subscribe_pushes`](strata_store::EventStore::subscribe_pushes) (see
//!   [`PgConfig::notify_pushes`] and [`PgConfig::listen_for_pushes`]).
//!
//! What a service uses is at the root. The [`admin`] and [`mirror`] modules serve the `strata` CLI
//! (the projection registry, roles, the state of the migrations, copying between stores); a
//! service does not need them. [`shard_directory`] holds the SQL of `strata-shard`'s persisted
//! directory, a table created only on request, and [`moved_instances`] that of its moves: the
//! instances a database refuses pushes to because they moved away.
//!
//! ```no_run
//! use strata_postgres::{PgConfig, PgStore};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), strata_store::Error> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/postgres", PgConfig::default()).await?;
//! strata_postgres::migrate(store.pools().push()).await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod admin;
mod announce;
mod config;
mod deprecated;
mod erasure_notices;
mod error;
mod keys;
mod migrate;
pub mod mirror;
pub mod moved_instances;
mod pooling;
mod projection;
mod push;
mod read;
mod replica;
pub mod shard_directory;
mod store;
pub mod telemetry;

pub use crate::announce::PUSH_CHANNEL;
pub use crate::config::{GroupCommitConfig, PgConfig, PoolConfig, ReplicaConfig};
pub use crate::erasure_notices::ERASURE_CHANNEL;
pub use crate::migrate::{
    AppliedMigration, FUNCTIONS, MIGRATOR, Migrated, SqlFunction, migrate, schema_checksum,
};
pub use crate::pooling::Pooler;
pub use crate::projection::{PgGroupLease, PgLease, PgProjections, PgSwitch};
pub use crate::replica::{ReadServer, ReadToken};
pub use crate::store::{PgPools, PgStore};

#[doc(hidden)]
#[allow(deprecated)]
pub use crate::deprecated::{
    MigrationStatus, RoleNames, copy_mirror_batch, migration_status, mirror_progress, set_up_roles,
    unregister_projection,
};
