//! Sharding by instance: [`ShardedStore`] is one [`EventStore`] over several shards, each a
//! complete store of its own (typically a `PgStore` on its own PostgreSQL server), and routes
//! every operation by the instance (tenant) it names. Code written against [`EventStore`] (a
//! `Repository`, a handler) runs on it unchanged, as long as each operation stays within one
//! shard or is one of the reads defined across shards below.
//!
//! It is for spreading many instances over several servers when one server no longer holds
//! them all. It is **not** a distributed database: nothing is atomic across shards, positions
//! are per server, one instance never spans two shards, and projections run per shard.
//!
//! # Placement
//!
//! A [`Directory`] maps each instance to a named shard: explicit assignments first, then a
//! [`Fallback`]: a [`stable_hash`] of the instance id over the shards in the order given (fixed
//! forever; assign every instance explicitly before adding a shard) or a refusal, so that every
//! instance must be assigned. With feature `postgres` the assignments can be persisted in a table
//! of one designated database ([`persisted`]), created only by an explicit call; other processes
//! learn of a change by reloading it ([`ShardedStore::load_assignments`]).
//!
//! # Semantics across shards
//!
//! - **Positions are per server.** Two events on different shards have positions that compare
//!   as numbers but mean nothing together; an instance's positions change when it moves.
//! - **A push is atomic on one shard.** A push (or keyed push) whose commands touch instances on
//!   different shards is refused with [`Error::InvalidInput`](strata_store::Error) naming the
//!   shards, and writes nothing. An idempotency key is recorded on its own instance's shard, in
//!   the push's transaction, so the commands must live there too.
//! - **A read within one shard** (every instance it names lives there) is that shard's answer,
//!   exactly as a single store gives it: `(position, in_tx_order)` order, cursors and position
//!   bounds included.
//! - **A read spanning shards** (instances on several shards, or every instance when there are
//!   several shards) is merged per instance: instances in id order, each instance's events in its
//!   own `(position, in_tx_order)` order, all reversed when descending; offset and limit count
//!   over that sequence. A `resume_after` cursor or a position bound is refused, since it compares
//!   positions. `count` and `instance_ids` add the shards up; `latest_position` answers when the
//!   matching events lie on one shard and is refused when they lie on several. A merged read is
//!   not one snapshot: it reads each instance (page by page) in turn.
//! - `instance_heads` lists every instance with its head *on its own shard*; `current_sequence`
//!   and `recorded_push` go to the instance's shard.
//! - **Subscriptions and the commit horizon are per shard.** A subscription whose instances live
//!   on one shard runs there; one spanning shards is refused. `commit_horizon` is refused when
//!   there are several shards, and `subscribe_pushes` is then `None`.
//! - **Projections and consumers run per shard**: one `ProjectionRuntime` per shard store
//!   ([`ShardedStore::shards`]), each with its own projection backend on that shard. Each
//!   runtime sees every instance on its shard (a copy a move left behind included, until it is
//!   removed).
//!
//! `docs/scaling.md` ("Sharding by instance") has the reasoning, moving instances, and an
//! example of per-shard runtimes.
//!
//! # Example
//!
//! ```
//! use strata_event::{Command, InstanceId};
//! use strata_query::Query;
//! use strata_shard::{Fallback, ShardName, ShardedStore};
//! use strata_store::{ErrorKind, EventStore, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (eu, us) = (ShardName::new("eu")?, ShardName::new("us")?);
//! let store = ShardedStore::new(
//!     vec![(eu.clone(), MemoryStore::new()), (us.clone(), MemoryStore::new())],
//!     Fallback::Refuse,
//! )?;
//! store.assign(InstanceId::new("acme")?, &eu).await?;
//! store.assign(InstanceId::new("globex")?, &us).await?;
//!
//! let added = |instance: &str| {
//!     Command::builder(instance, "user", "u-1", "user.added")
//!         .creator("admin")
//!         .owner(instance)
//!         .build()
//! };
//! store.push(vec![added("acme")?]).await?;
//! store.push(vec![added("globex")?]).await?;
//!
//! // One push cannot be atomic on two servers: refused, nothing written.
//! let err = store.push(vec![added("acme")?, added("globex")?]).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidInput);
//!
//! // A read over both shards comes back instance by instance.
//! let both = Query::builder().instances(["globex", "acme"]).build()?;
//! let events = store.query(&both).await?;
//! assert_eq!(events[0].aggregate.instance_id, "acme");
//! assert_eq!(events[1].aggregate.instance_id, "globex");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `postgres`: [`ShardedStore::move_instance`] (moving an instance between PostgreSQL shards
//!   online, through the mirror's copy) and the [`persisted`] directory. Off by default.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod directory;
mod gate;
#[cfg(feature = "postgres")]
mod moving;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod persisted;
mod read;
mod store;

pub use crate::directory::{Directory, Fallback, MAX_SHARD_NAME_LEN, ShardName, stable_hash};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use crate::moving::{MoveOptions, Moved};
pub use crate::store::ShardedStore;
#[doc(no_inline)]
pub use strata_store::EventStore;
