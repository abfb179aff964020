//! A cache for objects found by several keys (an instance by its id or by any of its domains), with
//! one interface over three connectors: in-process memory (moka), PostgreSQL (unlogged, partitioned
//! tables) and Redis.
//!
//! It is for read models and lookups that are expensive to rebuild and cheap to lose: every entry
//! may vanish at any time, and every failure of the cache is a miss. It is **not** a store of
//! record, not a session store (nothing survives a PostgreSQL crash or a Redis flush), and it knows
//! nothing of events: keeping entries fresh is the caller's job, usually a projection calling
//! [`Cache::invalidate`] (or [`CacheInvalidator`]) after it commits.
//!
//! # Tour
//!
//! - [`Entry`] is what a cache holds: a value that yields its keys for each index of its
//!   [`Index`] type (usually a field-less enum with stable names).
//! - [`Cache`] is the interface: [`get`](Cache::get), [`set`](Cache::set),
//!   [`invalidate`](Cache::invalidate) (drop the objects), [`delete`](Cache::delete) (drop only
//!   the keys), [`truncate`](Cache::truncate) and [`prune`](Cache::prune).
//! - [`CacheConfig`] is per cache: the connector ([`ConnectorKind`]), `max_age` (since the write),
//!   `last_use_age` (since the last read), logging, and per-connector knobs.
//! - [`Connectors`] holds what the persistent connectors run on: a `PgPool` of the caller's and a
//!   Redis URL. [`Cache::start`] picks the connector the configuration names.
//! - [`CacheInvalidator`] is the object-safe hook a projection calls after a commit.
//! - [`Error`] is for caller mistakes only (an invalid cache name, an empty key).
//!
//! # Semantics every connector shares
//!
//! - **Several indices.** `set(value)` stores the value under every key it yields; `get(index,
//!   key)` finds it through any of them.
//! - **No ghosts.** When a key of the new value already found another object, that object is
//!   removed with all its keys, so an outdated copy never stays reachable through a key the new
//!   value no longer has.
//! - **Invalidate vs delete.** `invalidate` removes the objects the keys find (they changed);
//!   `delete` removes only the keys (they stopped naming the object), and an object left with no
//!   key is removed too.
//! - **Expiry.** An entry older than `max_age`, or unread for `last_use_age`, is never returned.
//!   PostgreSQL and Redis record reads coarsely (only when the recorded time is older than
//!   [`CacheConfig::touch_fraction`] of `last_use_age`), so an idle entry may expire up to that
//!   fraction early, never late. In exchange most hits are pure reads.
//! - **Isolation.** Each cache has its own partitions (PostgreSQL) or key namespace (Redis);
//!   `truncate` empties one cache and nothing else.
//! - **Failure is a miss.** A database or Redis that is down, a partition that was dropped, a stored
//!   value that no longer decodes: `get` returns `None`, writes are dropped, and a `tracing`
//!   warning says why. No cache failure is ever returned to the caller.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use strata_cache::{Cache, CacheConfig, Entry, Index};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
//! enum InstanceIndex {
//!     Id,
//!     Domain,
//! }
//!
//! impl Index for InstanceIndex {
//!     const ALL: &'static [Self] = &[InstanceIndex::Id, InstanceIndex::Domain];
//!
//!     fn name(self) -> &'static str {
//!         match self {
//!             InstanceIndex::Id => "id",
//!             InstanceIndex::Domain => "domain",
//!         }
//!     }
//! }
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Instance {
//!     id: String,
//!     domains: Vec<String>,
//! }
//!
//! impl Entry for Instance {
//!     type Index = InstanceIndex;
//!
//!     fn keys(&self, index: InstanceIndex) -> Vec<String> {
//!         match index {
//!             InstanceIndex::Id => vec![self.id.clone()],
//!             InstanceIndex::Domain => self.domains.clone(),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), strata_cache::Error> {
//! let cache: Cache<Instance> = Cache::memory("instances", CacheConfig::default())?;
//! let acme = Instance {
//!     id: "i1".into(),
//!     domains: vec!["acme.example".into(), "acme.test".into()],
//! };
//! cache.set(acme.clone()).await?;
//! assert_eq!(cache.get(InstanceIndex::Domain, "acme.test").await, Some(acme));
//!
//! // The domain moved to another instance: the old copy is gone, whatever key you try.
//! let other = Instance { id: "i2".into(), domains: vec!["acme.test".into()] };
//! cache.set(other).await?;
//! assert_eq!(cache.get(InstanceIndex::Id, "i1").await, None);
//! assert_eq!(cache.get(InstanceIndex::Domain, "acme.example").await, None);
//! # Ok(())
//! # }
//! ```
//!
//! # One line per connector
//!
//! Benchmarks and services build each connector in one line (`config` is a [`CacheConfig`]):
//!
#![cfg_attr(all(feature = "postgres", feature = "redis"), doc = "```no_run")]
#![cfg_attr(not(all(feature = "postgres", feature = "redis")), doc = "```ignore")]
//! # #![allow(dead_code)] // Shows the calls only.
//! # use strata_cache::{Cache, CacheConfig, Entry};
//! # async fn build<V: Entry>(pool: sqlx::PgPool, config: CacheConfig) -> Result<(), strata_cache::Error> {
//! let memory: Cache<V> = Cache::memory("c1_memory", config.clone())?;
//! let postgres: Cache<V> = Cache::postgres(pool, "c1_postgres", config.clone()).await?;
//! let redis: Cache<V> = Cache::redis("redis://127.0.0.1:6379", "c1_redis", config)?;
//! # let _ = (memory, postgres, redis);
//! # Ok(())
//! # }
//! ```
//!
//! The PostgreSQL connector needs the `cache` schema of migration `20261206000003_cache.sql`
//! (part of `strata_postgres::MIGRATOR`) and a pool of its own; it creates the cache's partitions
//! at start. `docs/cache.md` compares the connectors and gives measured costs.
//!
//! # Features
//!
//! Each connector is a feature, so a build compiles only the clients it uses:
//!
//! - `memory` (default): the in-process connector, on moka.
//! - `postgres`: the PostgreSQL connector (sqlx), [`Connectors::with_postgres`], and the
//!   [`postgres`] module's maintenance of a cache by name (what `strata cache` runs).
//! - `redis`: the Redis connector (the `redis` crate) and [`Connectors::with_redis`].
//! - `tls`: TLS for the PostgreSQL and Redis connectors (rustls, no system OpenSSL).
//! - `conformance`: the `conformance` module and the `conformance_tests!` macro, the suite every
//!   connector passes; public so the integration tests can run it against PostgreSQL and Redis.
//!
//! A configuration naming a connector this build leaves out gets
//! [`Error::ConnectorNotEnabled`] from [`Cache::start`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(any(feature = "memory", feature = "postgres", feature = "redis")))]
compile_error!("strata-cache needs at least one connector: enable `memory`, `postgres` or `redis`");

mod cache;
mod codec;
mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod disabled;
mod entry;
mod error;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
mod redis;
pub mod telemetry;

pub use crate::cache::{Cache, CacheInvalidator, Pruner};
pub use crate::config::{CacheConfig, ConnectorKind, Connectors};
pub use crate::entry::{Entry, Index, MAX_CACHE_NAME_LEN, MAX_KEY_LEN, validate_cache_name};
pub use crate::error::{Error, ErrorKind, Result};
