//! Strata is an event store for Rust services: atomic multi-aggregate pushes with gap-free
//! per-aggregate sequences, unique constraints, a query builder, and a global position that is a
//! `Decimal` end to end. PostgreSQL is the production storage; an in-memory store with the same
//! semantics serves tests and embedded use.
//!
//! This crate only re-exports. Each concern lives in a crate of its own that you may depend on
//! directly (`strata-event` has no IO at all, `strata-store` no database driver); this crate is the
//! one with a semver promise.
//!
//! # Tour
//!
//! - **Write** with a [`Command`] per event, built by [`Command::builder`] and validated by `build()`.
//!   [`EventStore::push`] stores a whole `Vec` of them atomically, across aggregates, and returns the
//!   stored [`Event`]s with their sequence and [`Position`]. Commands may carry [`Metadata`] (a
//!   correlation id queries select by, a causation id, headers).
//! - **Retry safely** with [`EventStore::push_idempotent`] and an [`IdempotencyKey`]: a push whose
//!   outcome is unknown ([`Error::Unavailable`]) can be sent again and is stored once.
//! - **Read** with a [`Query`] ([`Query::builder`], or [`Query::aggregate`] for one aggregate) through
//!   [`EventStore::query`] or [`EventStore::stream`]; decode payloads with [`Event::payload`].
//! - **Choose storage** by type: [`MemoryStore`] for tests and embedded use, `PgStore` (feature
//!   `postgres`) in production. Code written against the [`EventStore`] trait runs on both.
//! - **Page** through events with a [`Cursor`]: every event has one, and a query resumed after it
//!   continues with the next event, however many share a position.
//! - **Project** events into read models with a [`Projection`] run by a [`ProjectionRuntime`]:
//!   gap-free, exactly-once, shared by any number of processes, with read-your-writes through
//!   [`ProjectionRuntime::catch_up`]. [`MemoryProjections`] keeps read models in memory;
//!   `PgProjections` (feature `postgres`) in PostgreSQL tables.
//! - **Cache** lookups found by several keys with `cache::Cache` (feature `cache`): one interface
//!   over memory (moka), PostgreSQL and Redis; a projection keeps it fresh from
//!   [`Projection::after_commit`].
//! - **Handle failure** by [`ErrorKind`]: a [`Error::Conflict`] when an expected sequence is stale, a
//!   [`Error::UniqueConstraintViolation`] when a value is taken, [`Error::Unavailable`] when the
//!   database is away (the only retryable kind).
//!
//! # Example
//!
//! ```
//! use strata::{Command, EventStore, MemoryStore, Query};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//!
//! // One push, two aggregates, one unique constraint: all stored or nothing is.
//! let signed_up = Command::builder("acme", "user", "u-1", "user.signed_up")
//!     .payload(&serde_json::json!({ "username": "alice" }))
//!     .add_unique_constraint("username", "alice", "errors.username_taken")
//!     .creator("signup-service")
//!     .owner("org-1")
//!     .build()?;
//! let counted = Command::builder("acme", "org", "org-1", "org.member_added")
//!     .creator("signup-service")
//!     .owner("org-1")
//!     .build()?;
//! store.push(vec![signed_up, counted]).await?;
//!
//! // The same username again is refused, with the caller's message id.
//! let again = Command::builder("acme", "user", "u-2", "user.signed_up")
//!     .add_unique_constraint("username", "alice", "errors.username_taken")
//!     .creator("signup-service")
//!     .owner("org-1")
//!     .build()?;
//! let err = store.push(vec![again]).await.unwrap_err();
//! assert_eq!(err.kind(), strata::ErrorKind::UniqueConstraintViolation);
//!
//! let users = Query::builder().instance("acme").aggregate_types(["user"]).build()?;
//! let events = store.query(&users).await?;
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].payload::<serde_json::Value>()?["username"], "alice");
//! # Ok(())
//! # }
//! ```
//!
//! `examples/users.rs` is a longer story (sign-up, e-mail change, deactivation, a stale write) that
//! runs on PostgreSQL when `DATABASE_URL` is set: `cargo run --example users`.
//!
//! # Features
//!
//! - `postgres`: the PostgreSQL backend: `PgStore`, `PgProjections`, configuration, migrations and
//!   roles (the [`postgres`] module). Off by default, so depending on `strata` alone pulls in no
//!   database driver.
//! - `cache`: the cache with its memory connector (the `cache` module); `cache-postgres` and
//!   `cache-redis` add its PostgreSQL and Redis connectors, and their clients. Off by default.
//! - `personal-data`: fields declared personal are sealed per subject with AES-256-GCM and
//!   erased by deleting the subject's keys (`Vault`, `docs/personal-data.md`); pulls in aes-gcm
//!   and base64. Off by default; without it, events declaring personal fields refuse to encode.
//! - `shard`: sharding by instance (the `shard` module): one `EventStore` routing each instance
//!   to one of several stores; with `postgres`, moving an instance between PostgreSQL shards
//!   online and a persisted directory (`docs/scaling.md`). Off by default.
//! - `tls`: TLS to PostgreSQL (`sslmode=require`, or `verify-full` with `sslrootcert=`) and, with
//!   `cache-redis`, to Redis (`rediss://`), through rustls: no system OpenSSL. Off by default.
//!
//! Strata enables no dependency feature that changes how your own code behaves; the one it needs
//! that does (`serde_json`'s `float_roundtrip`) is explained in the README.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use strata_domain::{
    Aggregate, Change, Context, DecodeError, DomainError, DomainEvent, EncodeError, Envelope,
    ErasureRecord, EventSpec, Loaded, Personal, Repository, SubjectOf, Typed, TypedProjection,
    TypedSubscription, Unique, UnknownEvents, Upcaster, WriteModel,
};

#[cfg(feature = "personal-data")]
#[cfg_attr(docsrs, doc(cfg(feature = "personal-data")))]
#[doc(inline)]
pub use strata_domain::{KeyError, Keyring, MasterKey, Vault};
#[doc(inline)]
pub use strata_event::{
    AggregateId, AggregateRef, AggregateType, Command, CommandBuilder, Creator, Cursor,
    CursorError, Event, EventType, IdempotencyKey, InstanceId, Metadata, Owner, Payload,
    PayloadError, Position, PositionError, Revision, Sequence, UniqueConstraintOp, UniqueType,
    ValidationError,
};
#[doc(inline)]
pub use strata_projection::{
    Consumer, ConsumerConfig, FailedEvent, HandleError, Handled, Health, MemoryProjections,
    OnFailure, Projection, ProjectionBackend, ProjectionConfig, ProjectionError, ProjectionRuntime,
    ProjectionStatus, ProjectionVersion, Reads, ReduceError, RuntimeBuilder, RuntimeConfig,
    SqlValue, Statement, SwitchWhen, Table, VersionState,
};
#[doc(inline)]
pub use strata_query::{Order, Query, QueryBuilder, QueryError, SubQuery, SubQueryBuilder};
#[doc(inline)]
pub use strata_store::{
    Error, ErrorKind, EventStore, MAX_COMMANDS_PER_PUSH, MemoryStore, Result, StartFrom,
    SubjectKeyStore, SubscribeOptions, Subscription,
};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use strata_postgres::{PgConfig, PgProjections, PgStore, migrate};

/// The cache: objects found by several keys, on memory, PostgreSQL or Redis.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
#[doc(inline)]
pub use strata_cache as cache;
/// The application layer: typed events, upcasting, write models, aggregates, the repository and
/// (feature `cache`) snapshots.
#[doc(inline)]
pub use strata_domain as domain;
/// The event model: everything the flat re-exports leave out (limits, payload helpers).
#[doc(inline)]
pub use strata_event as event;
/// The PostgreSQL backend: store, projections, configuration and migrations at its root; roles and
/// the operator functions behind the `strata` CLI in its `admin` and `mirror` modules.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use strata_postgres as postgres;
/// The projection runtime: read models kept up to date from events, its backend trait, and the
/// conformance suite backends run (feature `conformance` of `strata-projection`).
#[doc(inline)]
pub use strata_projection as projection;
/// The query value and its builder.
#[doc(inline)]
pub use strata_query as query;
/// Sharding by instance: `ShardedStore`, one store over several, routing by instance; with
/// `postgres`, moving instances between shards and a persisted directory.
#[cfg(feature = "shard")]
#[cfg_attr(docsrs, doc(cfg(feature = "shard")))]
#[doc(inline)]
pub use strata_shard as shard;
/// The storage trait, errors, the in-memory backend and the backend conformance suite.
#[doc(inline)]
pub use strata_store as store;

/// The README's code samples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeSamples;
