//! The application layer of Strata: typed events, upcasting, write models, aggregates with a
//! repository, and snapshots, over any [`EventStore`](strata_store::EventStore).
//!
//! It sits between a service's domain code and the store. The store speaks in [`Command`]s and
//! [`Event`]s with string types and JSON payloads; this crate lets the service speak in its own
//! serde types and decide on folded state, while the store's guarantees (atomic pushes, gap-free
//! sequences, expected sequences, unique constraints) stay exactly as they are. It adds no storage
//! of its own and runs on every backend. It is not a framework: no command bus, no service
//! container, no async in decisions.
//!
//! # Tour
//!
//! - A [`DomainEvent`] is a serde enum whose variant names are event types; its
//!   [`EVENTS`](DomainEvent::EVENTS) table gives each one's aggregate type and current revision,
//!   and drives decoding (ZITADEL's event mappers). [`command`] turns one into a [`Command`];
//!   [`Envelope::decode`] turns a stored [`Event`] into an [`Envelope`] around it, parsing the
//!   payload once. An event type the table does not list is an error or skipped
//!   ([`UnknownEvents`]), as the caller chooses.
//! - [`Upcaster`]s, registered per (event type, revision) in
//!   [`UPCASTERS`](DomainEvent::UPCASTERS), turn old payloads into the current revision, chained,
//!   wherever events are decoded. Stored events are never rewritten.
//! - An [`Aggregate`] decides ([`handle`](Aggregate::handle)) and folds
//!   ([`apply`](Aggregate::apply)); [`Repository::execute`] loads it, decides and pushes with the
//!   expected sequence, and returns the stored events.
//! - A [`WriteModel`] folds the events of any query; [`Repository::load_model`] records the
//!   sequence of every aggregate it saw and [`Repository::push`] expects them.
//! - A [`Context`] carries the creator, resource owner and metadata of what a call pushes;
//!   [`Context::caused_by`] passes an event's correlation id on and names it as the cause, and
//!   [`Context::idempotency_key`] makes a retried call return its first attempt's events instead
//!   of storing them twice.
//! - Conflicts are returned, never retried behind your back;
//!   [`Repository::execute_retrying`] and [`Repository::decide_retrying`] load and decide again
//!   when you ask.
//! - `Snapshots` (feature `snapshots`) keep aggregate states in a `strata-cache` cache.
//! - `TypedProjection` (feature `projection`, on by default) gives projections decoded events.
//! - Fields an event's table declares [`personal`](EventSpec::personal) are sealed per subject by
//!   a `Vault` (feature `personal-data`) and read back in the clear until the subject is erased;
//!   then they read as [`Personal::Erased`]. Erasing deletes the subject's keys and records the
//!   erasure as an event, in one transaction; the events stay append-only.
//!
//! `docs/domain.md` walks from a command to a read model and maps every cqrs-es term onto this
//! crate.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use strata_domain::{Aggregate, Context, DomainEvent, Envelope, EventSpec, Repository, Unique};
//! use strata_store::MemoryStore;
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum UserEvent {
//!     #[serde(rename = "user.added")]
//!     Added { username: String },
//!     #[serde(rename = "user.removed")]
//!     Removed { username: String },
//! }
//!
//! impl DomainEvent for UserEvent {
//!     const AGGREGATE_TYPE: &'static str = "user";
//!     const EVENTS: &'static [EventSpec] =
//!         &[EventSpec::new("user.added"), EventSpec::new("user.removed")];
//!
//!     fn unique_constraints(&self) -> Vec<Unique> {
//!         match self {
//!             UserEvent::Added { username } => {
//!                 vec![Unique::add("username", username, "errors.username_taken")]
//!             }
//!             UserEvent::Removed { username } => vec![Unique::remove("username", username)],
//!         }
//!     }
//! }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct User {
//!     username: Option<String>,
//! }
//!
//! enum UserCommand {
//!     Add { username: String },
//!     Remove,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! enum UserError {
//!     #[error("the user exists")]
//!     Exists,
//!     #[error("no such user")]
//!     Missing,
//! }
//!
//! impl Aggregate for User {
//!     type Event = UserEvent;
//!     type Command = UserCommand;
//!     type Error = UserError;
//!
//!     fn handle(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
//!         match (command, &self.username) {
//!             (UserCommand::Add { username }, None) => Ok(vec![UserEvent::Added { username }]),
//!             (UserCommand::Add { .. }, Some(_)) => Err(UserError::Exists),
//!             (UserCommand::Remove, Some(username)) => {
//!                 Ok(vec![UserEvent::Removed { username: username.clone() }])
//!             }
//!             (UserCommand::Remove, None) => Err(UserError::Missing),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: Envelope<UserEvent>) {
//!         match event.payload {
//!             UserEvent::Added { username } => self.username = Some(username),
//!             UserEvent::Removed { .. } => self.username = None,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users = Repository::new(MemoryStore::new());
//! let context = Context::new("admin", "org-1");
//!
//! let stored = users
//!     .execute::<User>("acme", "u-1", UserCommand::Add { username: "alice".into() }, &context)
//!     .await?;
//! assert_eq!(stored[0].sequence, 1);
//! assert_eq!(stored[0].payload, UserEvent::Added { username: "alice".into() });
//!
//! // The unique constraint travels with the typed event.
//! let taken = users
//!     .execute::<User>("acme", "u-2", UserCommand::Add { username: "alice".into() }, &context)
//!     .await
//!     .unwrap_err();
//! assert_eq!(taken.store_kind(), Some(strata_store::ErrorKind::UniqueConstraintViolation));
//!
//! let alice = users.load::<User>("acme", "u-1").await?;
//! assert_eq!(alice.state.username.as_deref(), Some("alice"));
//! assert_eq!(alice.sequence(), 1);
//!
//! // Removing her frees the username in the same push.
//! users.execute::<User>("acme", "u-1", UserCommand::Remove, &context).await?;
//! users
//!     .execute::<User>("acme", "u-2", UserCommand::Add { username: "alice".into() }, &context)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`Command`]: strata_event::Command
//! [`Event`]: strata_event::Event

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod aggregate;
mod codec;
mod command;
#[cfg(feature = "conformance")]
pub mod conformance;
mod context;
mod envelope;
mod error;
mod event;
mod personal;
#[cfg(feature = "projection")]
mod projection;
mod repository;
#[cfg(feature = "snapshots")]
mod snapshot;
mod subscription;
mod table_check;
mod upcast;
mod write_model;

pub use crate::aggregate::Aggregate;
pub use crate::command::command;
pub use crate::context::{Context, TRACE_ID_HEADER, set_trace_id_source};
pub use crate::envelope::{Envelope, UnknownEvents};
pub use crate::error::{DecodeError, DecodeFailure, EncodeError};
pub use crate::event::{DomainEvent, EventSpec, SubjectOf, Unique};
#[cfg(feature = "personal-data")]
pub use crate::personal::{
    DEFAULT_KEYS_FRESH_FOR, KeyError, Keyring, MasterKey, Rotation, Vault, erase_subject,
    reapply_erasures,
};
pub use crate::personal::{ERASURE_AGGREGATE_TYPE, ERASURE_EVENT_TYPE, ErasureRecord, Personal};
#[cfg(feature = "projection")]
pub use crate::projection::{Typed, TypedProjection, reads_of};
pub use crate::repository::{Change, DomainError, Repository};
#[cfg(feature = "snapshots")]
pub use crate::snapshot::{SnapshotEntry, SnapshotIndex, Snapshots};
pub use crate::subscription::TypedSubscription;
pub use crate::table_check::{TableMismatch, check_table};
pub use crate::upcast::Upcaster;
pub use crate::write_model::{Loaded, WriteModel};
