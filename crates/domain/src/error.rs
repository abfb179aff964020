//! The typed layer's errors: decoding and encoding events, and what a repository call can meet.

use strata_event::{AggregateRef, Event, EventType, Revision, Sequence, ValidationError};
use thiserror::Error;

use crate::upcast::UpcastFailure;

/// A stored event could not be read as the requested [`DomainEvent`](crate::DomainEvent). It
/// names the event, so an operator can find it and a developer can tell what to upcast.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "cannot decode {event_type} revision {revision} (aggregate {aggregate}, sequence {sequence}) \
     as {target}: {failure}"
)]
pub struct DecodeError {
    /// The event's aggregate.
    pub aggregate: AggregateRef,
    /// The stored event type.
    pub event_type: EventType,
    /// The event's sequence.
    pub sequence: Sequence,
    /// The stored revision.
    pub revision: Revision,
    /// The Rust type asked for.
    pub target: &'static str,
    /// What went wrong.
    pub failure: DecodeFailure,
}

impl DecodeError {
    pub(crate) fn new<E>(event: &Event, failure: DecodeFailure) -> DecodeError {
        DecodeError {
            aggregate: event.aggregate.clone(),
            event_type: event.event_type.clone(),
            sequence: event.sequence,
            revision: event.revision,
            target: std::any::type_name::<E>(),
            failure,
        }
    }
}

/// Why a stored event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// The type's `EVENTS` table does not list this (aggregate type, event type).
    #[error("the event type is not in the type's EVENTS table")]
    UnknownEventType,
    /// The event was written at a revision newer than this build knows (by a newer build).
    #[error("stored at a revision newer than the {known} this build knows")]
    NewerRevision {
        /// The revision this build writes.
        known: Revision,
    },
    /// No upcaster is registered for a step of the chain.
    #[error("no upcaster from revision {from}")]
    MissingUpcaster {
        /// The revision the missing step would read.
        from: Revision,
    },
    /// An upcaster returned an error.
    #[error("the upcaster from revision {from} failed: {reason}")]
    Upcast {
        /// The revision the step read.
        from: Revision,
        /// What it said.
        reason: String,
    },
    /// The payload did not deserialise into the variant.
    #[error("{0}")]
    Payload(String),
    /// The payload holds sealed personal data and was decoded without a `Vault`.
    #[error("the payload holds sealed personal data: decode it through a Vault")]
    Sealed,
    /// The keys of a subject whose data the event holds could not be had (the store failed while
    /// fetching them); retrying may succeed.
    #[error("the keys of subject {subject} are not available")]
    KeysUnavailable {
        /// The subject.
        subject: String,
    },
    /// The event holds data sealed with a key the store does not have, for a subject that was
    /// not erased: keys were lost or not copied (a restore or a copy without the keys table).
    #[error(
        "key version {version} of subject {subject} is missing, and the subject was not erased"
    )]
    KeyMissing {
        /// The subject.
        subject: String,
        /// The key version the data needs.
        version: u32,
    },
    /// A sealed field does not open with its subject's key (altered, or copied from elsewhere).
    #[error("a sealed field of subject {subject} does not open: {reason}")]
    Unsealable {
        /// The subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<UpcastFailure> for DecodeFailure {
    fn from(failure: UpcastFailure) -> Self {
        match failure {
            UpcastFailure::Missing { from } => DecodeFailure::MissingUpcaster { from },
            UpcastFailure::Step { from, reason } => DecodeFailure::Upcast { from, reason },
        }
    }
}

/// A typed event could not become a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value did not serialise as an enum variant, or its content did not serialise.
    #[error("cannot encode {target}: {reason}")]
    Serialize {
        /// The Rust type.
        target: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The variant's event type has no row in the type's `EVENTS` table.
    #[error("event type {event_type} of {target} is not in its EVENTS table")]
    NotInTable {
        /// The Rust type.
        target: &'static str,
        /// The variant's event type.
        event_type: &'static str,
    },
    /// The command broke the event model's rules (an id too long, a payload over the limit).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The event declares personal fields and was encoded without a `Vault`: it would have stored
    /// them in the clear.
    #[error("event type {event_type} holds personal data: push it through a Vault")]
    NeedsVault {
        /// The event type.
        event_type: &'static str,
    },
    /// The subject of an event's personal data could not be told.
    #[error("the subject of event type {event_type}: {reason}")]
    Subject {
        /// The event type.
        event_type: &'static str,
        /// What is wrong.
        reason: String,
    },
}
