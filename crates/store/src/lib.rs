//! The contract between Strata and its storage: the [`EventStore`] trait, the typed [`Error`] every
//! backend returns, and [`MemoryStore`], an in-memory backend with the same semantics as PostgreSQL.
//!
//! This crate knows no database driver. It states what a push and a read must do (below) and
//! checks it: the `conformance` feature exposes a suite ([`conformance`] module and the
//! `conformance_tests!` macro) that every backend runs against itself, so "the same semantics" is a
//! test, not a promise.
//!
//! # What a push guarantees
//!
//! - **Atomic**: all commands of one push, over any number of aggregates, are stored or none is.
//! - **Gap-free sequences**: each aggregate's events are numbered 1, 2, 3… Concurrent pushes to one
//!   aggregate all succeed and get distinct consecutive numbers; no caller ever sees a conflict it did
//!   not ask for, and no backend retries.
//! - **Optimistic concurrency on request**: a command may expect its aggregate to be at a sequence
//!   before the push; otherwise the push fails with [`Error::Conflict`].
//! - **Unique constraints** travel with the push; all removals apply before all additions; a clash
//!   fails the push with [`Error::UniqueConstraintViolation`] carrying the caller's message id.
//! - **Total order**: events of one push share a position and differ in `in_tx_order`;
//!   `(position, in_tx_order)` never repeats.
//! - **Idempotent retries on request**: [`EventStore::push_idempotent`] records an
//!   [`IdempotencyKey`](strata_event::IdempotencyKey) with the push, in its transaction; a retry with
//!   the key and the same commands stores nothing and returns the first push's events, with other
//!   commands it fails with [`Error::IdempotencyKeyReused`]. The commands are compared by
//!   [`push_fingerprint`].
//!
//! # Example
//!
//! ```
//! use strata_event::Command;
//! use strata_query::Query;
//! use strata_store::{EventStore, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let added = Command::builder("instance-1", "user", "u1", "user.added")
//!     .payload(&serde_json::json!({ "username": "alice" }))
//!     .creator("admin")
//!     .owner("org-1")
//!     .build()?;
//! let stored = store.push(vec![added]).await?;
//! assert_eq!(stored[0].sequence, 1);
//!
//! let events = store.query(&Query::aggregate(&stored[0].aggregate)).await?;
//! assert_eq!(events, stored);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod idempotency;
mod keys;
mod memory;
mod store;
mod subscription;
pub mod telemetry;

pub use crate::error::{BackendCause, Error, ErrorKind, Result};
pub use crate::idempotency::{DEFAULT_IDEMPOTENCY_RETENTION, push_fingerprint};
pub use crate::keys::{
    ERASURE_NOTICE_CAPACITY, ErasedSubject, Erasure, MAX_MASTER_KEY_ID_LEN, SubjectKeyStore,
    SubjectKeys, WrappedKey, validate_erasure_record, validate_key, validate_master_key_id,
    validate_rewrap,
};
pub use crate::memory::MemoryStore;
pub use crate::store::{
    EventStore, MAX_COMMANDS_PER_PUSH, PUSH_NOTICE_CAPACITY, Pushed, validate_push,
};
pub use crate::subscription::{StartFrom, SubscribeOptions, Subscription};
