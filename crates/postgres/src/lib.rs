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
//!   it, so [`EventStore::commit_horizon`](strata_store::EventStore::commit_horizon) is simply
//!   `pg_snapshot_xmin(pg_current_snapshot())`: below it nothing can still commit. Readers wait for
//!   nobody and writers for nothing (`docs/position.md`).
//! - **Separate pools** for pushing, querying and projection work ([`PgConfig`]), or bring your own
//!   ([`PgPools`]). Pools Strata opens check a connection with a round trip only after it sat idle
//!   ([`PoolConfig::check_idle_after`]), not before every call as sqlx does by default; pools you
//!   bring keep their own settings.
//! - **Migrations** embedded once as [`MIGRATOR`]; [`migrate`] applies them and reports what it did.
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

mod admin;
mod config;
mod error;
mod migrate;
mod mirror;
mod projection;
mod push;
mod read;
mod roles;
mod store;

pub use crate::admin::{
    LiveRuntime, PendingRequest, RUNTIME_ALIVE_WITHIN, RegisteredProjection, Unregistered,
    live_runtimes, pending_projection_requests, prune_cache, registered_projections,
    request_projection_work, truncate_cache, unregister_projection,
};
pub use crate::config::{GroupCommitConfig, PgConfig, PoolConfig};
pub use crate::migrate::{
    AppliedMigration, FUNCTIONS, FunctionState, MIGRATOR, Migrated, MigrationState,
    MigrationStatus, SqlFunction, migrate, migration_status,
};
pub use crate::mirror::{
    MirrorKey, MirrorProgress, UniqueConstraintRow, copy_mirror_batch, event_counts,
    mirror_progress, replace_unique_constraints, skip_to_head, unique_constraints,
};
pub use crate::projection::{PgLease, PgProjections};
pub use crate::read::{
    BindValue, RenderedQuery, render_instance_heads, render_instance_ids, render_query,
};
pub use crate::roles::{RoleKind, RoleNames, RoleSetUp, set_up_roles};
pub use crate::store::{PUSH_CHANNEL, PgPools, PgStore};
