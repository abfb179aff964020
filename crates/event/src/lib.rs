//! The event model of Strata: what an event is, what a caller asks to push, and the identifiers both
//! are made of.
//!
//! This crate is pure data. It does no IO, starts no runtime and knows no database; every other Strata
//! crate builds on it. What it guarantees is *validity*: a value of one of its types has passed the
//! grammar documented on that type, so a backend never has to re-check an id, an event type or a
//! payload.
//!
//! # Tour
//!
//! - [`Command`] is what a caller asks to push: one event for one aggregate, with its payload, creator,
//!   owner, optional [`UniqueConstraintOp`]s and an optional expected sequence. Build it with
//!   [`Command::builder`]; `build()` validates everything and names the field that is wrong.
//! - [`Event`] is what a store returns: the command's content plus the `sequence` the store assigned
//!   within the aggregate, the global [`Position`] and `in_tx_order`, and `created_at`.
//! - [`Position`] wraps a [`rust_decimal::Decimal`]; it never passes through a float, so 19-digit values
//!   such as `1725257931223002628` survive every conversion exactly. A [`Cursor`] adds the event's
//!   `in_tx_order`: the event's place in the store's total order, for resuming a read after it.
//! - [`InstanceId`], [`AggregateType`], [`AggregateId`], [`EventType`], [`Creator`] and [`Owner`] are
//!   validated strings; [`AggregateRef`] names one aggregate.
//! - [`Metadata`] travels with a command into its event: a correlation id (queries select by it), a
//!   causation id and string headers. Set it with [`CommandBuilder::correlation_id`] and friends.
//! - [`IdempotencyKey`] names one logical push in an instance, so a retried push is stored once.
//! - [`Payload`] holds the event's JSON; [`Event::payload`] decodes it into your type and, when that
//!   fails, says which event type and revision could not be read.
//!
//! # Example
//!
//! ```
//! use strata_event::{Command, EventType};
//!
//! #[derive(serde::Serialize)]
//! struct UserAdded { username: String }
//!
//! let command = Command::builder("instance-1", "user", "user-42", "user.added")
//!     .revision(1)
//!     .payload(&UserAdded { username: "alice".into() })
//!     .creator("admin")
//!     .owner("org-1")
//!     .add_unique_constraint("username", "alice", "errors.user.username_taken")
//!     .expect_sequence(0)
//!     .build()?;
//! assert_eq!(command.event_type(), &EventType::new("user.added")?);
//!
//! // Bad input is refused before anything can be written, with the field named.
//! let err = Command::builder("instance-1", "user", "", "user.added")
//!     .creator("admin")
//!     .owner("org-1")
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "invalid aggregate id: must not be empty");
//! # Ok::<(), strata_event::ValidationError>(())
//! ```
//!
//! # Limits
//!
//! Every limit is a constant of this crate so callers can check against it: [`MAX_ID_LEN`],
//! [`MAX_TYPE_LEN`], [`MAX_PAYLOAD_BYTES`], [`MAX_PAYLOAD_DEPTH`], [`MAX_METADATA_VALUE_LEN`],
//! [`MAX_HEADERS`], [`MAX_HEADER_NAME_LEN`], [`MAX_IDEMPOTENCY_KEY_LEN`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod command;
mod cursor;
mod error;
mod event;
mod idempotency;
mod ids;
mod metadata;
mod payload;
mod position;

pub use crate::command::{Command, CommandBuilder, UniqueConstraintOp};
pub use crate::cursor::{Cursor, CursorError};
pub use crate::error::ValidationError;
pub use crate::event::{Event, PayloadError};
pub use crate::idempotency::{IdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN};
pub use crate::ids::{
    AggregateId, AggregateRef, AggregateType, Creator, EventType, InstanceId, MAX_ID_LEN,
    MAX_TYPE_LEN, Owner, SubjectId, UniqueType,
};
pub use crate::metadata::{MAX_HEADER_NAME_LEN, MAX_HEADERS, MAX_METADATA_VALUE_LEN, Metadata};
pub use crate::payload::{MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, Payload};
pub use crate::position::{Position, PositionError};

/// The schema version of an event's payload, chosen by the caller. An aggregate may mix revisions;
/// reducers map old revisions onto current types.
pub type Revision = u16;

/// The number of an event within its aggregate: 1, 2, 3… with no gaps and no duplicates. `0` means
/// "the aggregate has no events yet" wherever a current sequence is reported or expected.
pub type Sequence = u64;
