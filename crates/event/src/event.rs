//! What a store returns: a stored event with its sequence and position.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cursor::Cursor;
use crate::ids::{AggregateRef, Creator, EventType, Owner};
use crate::metadata::Metadata;
use crate::payload::Payload;
use crate::position::Position;
use crate::{Revision, Sequence};

/// A stored event. Stores build it; callers read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The aggregate the event belongs to.
    pub aggregate: AggregateRef,
    /// What happened.
    pub event_type: EventType,
    /// The event's number within its aggregate (1, 2, 3… without gaps).
    pub sequence: Sequence,
    /// The payload's schema version.
    pub revision: Revision,
    /// When the store accepted the push.
    pub created_at: DateTime<Utc>,
    /// Who caused it.
    pub creator: Creator,
    /// The resource owner.
    pub owner: Owner,
    /// The global position; shared by the events of one push.
    pub position: Position,
    /// Order of the event among those sharing its position.
    pub in_tx_order: u32,
    /// The JSON payload. Read it with [`Event::payload`].
    #[serde(rename = "payload")]
    pub raw_payload: Payload,
    /// The command's metadata (correlation and causation ids, headers); empty when it had none,
    /// and then left out of the JSON form.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// A payload could not be decoded into the requested type.
#[derive(Debug, Error)]
#[error(
    "cannot decode payload of {event_type} revision {revision} (aggregate {aggregate}, sequence {sequence}) as {target}: {source}"
)]
pub struct PayloadError {
    /// The event's type.
    pub event_type: EventType,
    /// The event's revision.
    pub revision: Revision,
    /// The event's aggregate.
    pub aggregate: AggregateRef,
    /// The event's sequence.
    pub sequence: Sequence,
    /// The Rust type that was requested.
    pub target: &'static str,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

impl Event {
    /// Decodes the payload into `T`. The error names the event type, revision and aggregate, so a
    /// reducer that meets an old revision can tell what to upcast.
    #[allow(clippy::result_large_err)] // Decode errors are rare and rich on purpose; the happy path pays nothing.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.raw_payload.decode().map_err(|source| PayloadError {
            event_type: self.event_type.clone(),
            revision: self.revision,
            aggregate: self.aggregate.clone(),
            sequence: self.sequence,
            target: std::any::type_name::<T>(),
            source,
        })
    }

    /// The event's place in the store's total order: resume a read after it with
    /// `Query::resumed_after(event.cursor())`.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.position, self.in_tx_order)
    }
}
