//! A stored event with its payload decoded into the user's type, and the table-driven decoding
//! that makes it.

use chrono::{DateTime, Utc};
use strata_event::{
    AggregateRef, Creator, Cursor, Event, EventType, Metadata, Owner, Payload, Position, Revision,
    Sequence,
};

use crate::codec;
use crate::error::{DecodeError, DecodeFailure};
use crate::event::DomainEvent;
use crate::personal::format;
use crate::upcast::upcast;

/// What to do with a stored event whose type the [`DomainEvent`] table does not list (written by
/// a newer build, or of a type this reader does not care about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownEvents {
    /// Fail with [`DecodeFailure::UnknownEventType`]. The default for aggregates: a decision made
    /// on a state that silently missed an event could be wrong.
    #[default]
    Fail,
    /// Leave the event out.
    Skip,
}

/// A stored event whose payload was decoded (and upcast) into `E`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// The decoded payload, at the current revision.
    pub payload: E,
    /// The aggregate the event belongs to.
    pub aggregate: AggregateRef,
    /// The stored event type.
    pub event_type: EventType,
    /// The event's number within its aggregate.
    pub sequence: Sequence,
    /// The revision the event was stored at (the payload has been upcast from it).
    pub stored_revision: Revision,
    /// When the store accepted the push.
    pub created_at: DateTime<Utc>,
    /// Who caused it.
    pub creator: Creator,
    /// The resource owner.
    pub owner: Owner,
    /// The global position.
    pub position: Position,
    /// Order among the events sharing the position.
    pub in_tx_order: u32,
    /// Correlation and causation ids and headers, as pushed.
    pub metadata: Metadata,
}

impl<E: DomainEvent> Envelope<E> {
    /// Decodes `event`; an event type the table does not list is an error.
    #[allow(clippy::result_large_err)] // Rare, and rich on purpose: it names the event.
    pub fn decode(event: Event) -> Result<Envelope<E>, DecodeError> {
        match decode_payload::<E>(&event, None, UnknownEvents::Fail) {
            Ok(Some(payload)) => Ok(Envelope::wrap(event, payload)),
            Ok(None) => Err(DecodeError::new::<E>(
                &event,
                DecodeFailure::UnknownEventType,
            )),
            Err(failure) => Err(DecodeError::new::<E>(&event, failure)),
        }
    }

    /// Decodes `event`, or returns `None` for an event type the table does not list.
    #[allow(clippy::result_large_err)]
    pub fn decode_known(event: Event) -> Result<Option<Envelope<E>>, DecodeError> {
        Self::decode_with(event, UnknownEvents::Skip)
    }

    /// Decodes `event` under `unknown`'s rule: `Ok(None)` only for a skipped unknown type.
    #[allow(clippy::result_large_err)]
    pub fn decode_with(
        event: Event,
        unknown: UnknownEvents,
    ) -> Result<Option<Envelope<E>>, DecodeError> {
        match decode_payload::<E>(&event, None, unknown) {
            Ok(Some(payload)) => Ok(Some(Envelope::wrap(event, payload))),
            Ok(None) => Ok(None),
            Err(failure) => Err(DecodeError::new::<E>(&event, failure)),
        }
    }

    /// Decodes `event` whose payload a vault opened into `payload`.
    #[cfg_attr(not(feature = "personal-data"), allow(dead_code))]
    #[allow(clippy::result_large_err)] // As `decode`: rare, and it names the event.
    pub(crate) fn decode_opened(
        event: Event,
        payload: &str,
        unknown: UnknownEvents,
    ) -> Result<Option<Envelope<E>>, DecodeError> {
        match decode_payload::<E>(&event, Some(payload), unknown) {
            Ok(Some(payload)) => Ok(Some(Envelope::wrap(event, payload))),
            Ok(None) => Ok(None),
            Err(failure) => Err(DecodeError::new::<E>(&event, failure)),
        }
    }

    /// Decodes a borrowed `event` whose payload a vault opened into `payload`.
    #[allow(clippy::result_large_err)]
    #[cfg_attr(
        not(all(feature = "personal-data", feature = "projection")),
        allow(dead_code)
    )]
    pub(crate) fn decode_ref_opened(
        event: &Event,
        payload: &str,
        unknown: UnknownEvents,
    ) -> Result<Option<Envelope<E>>, DecodeError> {
        match decode_payload::<E>(event, Some(payload), unknown) {
            Ok(Some(payload)) => Ok(Some(Envelope::wrap(without_payload(event), payload))),
            Ok(None) => Ok(None),
            Err(failure) => Err(DecodeError::new::<E>(event, failure)),
        }
    }

    pub(crate) fn wrap(event: Event, payload: E) -> Envelope<E> {
        Envelope {
            payload,
            aggregate: event.aggregate,
            event_type: event.event_type,
            sequence: event.sequence,
            stored_revision: event.revision,
            created_at: event.created_at,
            creator: event.creator,
            owner: event.owner,
            position: event.position,
            in_tx_order: event.in_tx_order,
            metadata: event.metadata,
        }
    }

    /// Decodes a borrowed `event` (a projection's reducer sees events by reference), copying its
    /// identifiers.
    #[allow(clippy::result_large_err)]
    pub fn decode_ref(
        event: &Event,
        unknown: UnknownEvents,
    ) -> Result<Option<Envelope<E>>, DecodeError> {
        match decode_payload::<E>(event, None, unknown) {
            // Only the identifiers are cloned; the raw payload was parsed in place.
            Ok(Some(payload)) => Ok(Some(Envelope::wrap(without_payload(event), payload))),
            Ok(None) => Ok(None),
            Err(failure) => Err(DecodeError::new::<E>(event, failure)),
        }
    }
}

impl<E> Envelope<E> {
    /// The event's place in the store's total order (resume a query after it).
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.position, self.in_tx_order)
    }

    /// The event's id as causation ids name it: `aggregate_type/aggregate_id/sequence`, unique
    /// within its instance and the same in every copy of the store.
    pub fn id(&self) -> String {
        event_id(&self.aggregate, self.sequence)
    }
}

/// A copy of `event` without its raw payload, which the decoded payload replaces.
fn without_payload(event: &Event) -> Event {
    Event {
        aggregate: event.aggregate.clone(),
        event_type: event.event_type.clone(),
        sequence: event.sequence,
        revision: event.revision,
        created_at: event.created_at,
        creator: event.creator.clone(),
        owner: event.owner.clone(),
        position: event.position,
        in_tx_order: event.in_tx_order,
        raw_payload: Payload::empty(),
        metadata: event.metadata.clone(),
    }
}

/// `aggregate_type/aggregate_id/sequence`: an event's id within its instance.
pub(crate) fn event_id(aggregate: &AggregateRef, sequence: Sequence) -> String {
    format!(
        "{}/{}/{}",
        aggregate.aggregate_type, aggregate.aggregate_id, sequence
    )
}

/// The table-driven core: find the event's row, upcast an old revision, parse once. `opened` is
/// the payload text with its sealed fields opened by a vault, when it had any.
fn decode_payload<E: DomainEvent>(
    event: &Event,
    opened: Option<&str>,
    unknown: UnknownEvents,
) -> Result<Option<E>, DecodeFailure> {
    let event_type = event.event_type.as_str();
    let Some(spec) = E::spec(event.aggregate.aggregate_type.as_str(), event_type) else {
        return match unknown {
            UnknownEvents::Skip => Ok(None),
            UnknownEvents::Fail => Err(DecodeFailure::UnknownEventType),
        };
    };
    if event.revision > spec.revision {
        return Err(DecodeFailure::NewerRevision {
            known: spec.revision,
        });
    }
    let text = match opened {
        Some(opened) => Some(opened),
        None => {
            let text = event.raw_payload.json();
            if let Some(text) = text
                && format::may_be_sealed(text)
                && holds_sealed(text)
            {
                return Err(DecodeFailure::Sealed);
            }
            text
        }
    };
    if event.revision == spec.revision {
        return codec::decode(event_type, text)
            .map(Some)
            .map_err(|err| DecodeFailure::Payload(err.to_string()));
    }
    let stored = match text {
        Some(text) => {
            serde_json::from_str(text).map_err(|err| DecodeFailure::Payload(err.to_string()))?
        }
        None => serde_json::Value::Null,
    };
    let current = upcast(
        E::UPCASTERS,
        event_type,
        event.revision,
        spec.revision,
        stored,
    )?;
    codec::decode_value(event_type, current)
        .map(Some)
        .map_err(|err| DecodeFailure::Payload(err.to_string()))
}

/// Whether the payload `text` holds a sealed field (the cheap substring test passed).
fn holds_sealed(text: &str) -> bool {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let mut found = false;
    let _ = format::replace_sealed::<()>(&mut value, &mut |_| {
        found = true;
        Err(())
    });
    found
}
