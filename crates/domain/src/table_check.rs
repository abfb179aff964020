//! A check a user's test runs once per event type: that the enum and its `EVENTS` table agree.

use std::fmt::Debug;

use strata_event::{AggregateRef, Event, Payload, Position};

use crate::codec;
use crate::envelope::Envelope;
use crate::event::DomainEvent;
use crate::personal::format;

/// Where an event enum and its [`DomainEvent::EVENTS`] table disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableMismatch {
    /// A sample's variant has no row in the table.
    #[error("{event_type} is a variant of {target} but not in its EVENTS table")]
    NotInTable {
        /// The Rust type.
        target: &'static str,
        /// The variant's event type.
        event_type: &'static str,
    },
    /// A table row has no sample (a variant renamed or removed, or a sample missing).
    #[error("{event_type} is in the EVENTS table of {target} but no sample has it")]
    NoSample {
        /// The Rust type.
        target: &'static str,
        /// The row's event type.
        event_type: &'static str,
    },
    /// A sample did not survive encoding and decoding unchanged.
    #[error("{event_type} of {target} does not round-trip: {reason}")]
    RoundTrip {
        /// The Rust type.
        target: &'static str,
        /// The variant's event type.
        event_type: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A personal field does not decode once erased (type it `Personal<T>`), or is not in the
    /// sample's payload.
    #[error("personal field {field:?} of {event_type} ({target}) cannot read as erased: {reason}")]
    NotErasable {
        /// The Rust type.
        target: &'static str,
        /// The variant's event type.
        event_type: &'static str,
        /// The declared field.
        field: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Checks that `samples` (one value of each variant) and `E`'s table agree: every sample's event
/// type has a row, every row has a sample, every sample decodes back equal from its own
/// encoding, and every field the table declares [`personal`](crate::EventSpec::personal) is in
/// its sample and still decodes once erased (it is a [`Personal<T>`](crate::Personal)). Meant for
/// a test:
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use strata_domain::{DomainEvent, EventSpec};
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum UserEvent {
///     #[serde(rename = "user.added")]
///     Added { username: String },
///     #[serde(rename = "user.removed")]
///     Removed,
/// }
/// # impl DomainEvent for UserEvent {
/// #     const AGGREGATE_TYPE: &'static str = "user";
/// #     const EVENTS: &'static [EventSpec] =
/// #         &[EventSpec::new("user.added"), EventSpec::new("user.removed")];
/// # }
///
/// strata_domain::check_table(&[UserEvent::Added { username: "a".into() }, UserEvent::Removed])?;
/// # Ok::<(), strata_domain::TableMismatch>(())
/// ```
pub fn check_table<E: DomainEvent + PartialEq + Debug>(samples: &[E]) -> Result<(), TableMismatch> {
    let target = std::any::type_name::<E>();
    let mut covered = Vec::new();
    for sample in samples {
        let encoded = codec::encode(sample).map_err(|reason| TableMismatch::RoundTrip {
            target,
            event_type: "?",
            reason,
        })?;
        let event_type = encoded.event_type;
        let spec = E::EVENTS
            .iter()
            .find(|spec| spec.event_type == event_type)
            .ok_or(TableMismatch::NotInTable { target, event_type })?;
        let round_trip = |reason: String| TableMismatch::RoundTrip {
            target,
            event_type,
            reason,
        };
        let payload = match &encoded.payload {
            Some(value) => Payload::from_value(value).map_err(|err| round_trip(err.to_string()))?,
            None => Payload::empty(),
        };
        let stored = Event {
            aggregate: AggregateRef::new(
                "check",
                spec.aggregate_type_or(E::AGGREGATE_TYPE),
                "check",
            )
            .map_err(|err| round_trip(err.to_string()))?,
            event_type: strata_event::EventType::new(event_type)
                .map_err(|err| round_trip(err.to_string()))?,
            sequence: 1,
            revision: spec.revision,
            created_at: chrono::DateTime::UNIX_EPOCH,
            creator: strata_event::Creator::new("check")
                .map_err(|err| round_trip(err.to_string()))?,
            owner: strata_event::Owner::new("check").map_err(|err| round_trip(err.to_string()))?,
            position: Position::ZERO,
            in_tx_order: 0,
            raw_payload: payload,
            metadata: strata_event::Metadata::default(),
        };
        let decoded =
            Envelope::<E>::decode(stored.clone()).map_err(|err| round_trip(err.to_string()))?;
        if &decoded.payload != sample {
            return Err(round_trip(format!("decoded as {:?}", decoded.payload)));
        }
        for field in spec.personal {
            let not_erasable = |reason: String| TableMismatch::NotErasable {
                target,
                event_type,
                field,
                reason,
            };
            let mut erased = encoded.payload.clone().unwrap_or(serde_json::Value::Null);
            match format::field_mut(&mut erased, field) {
                Some(value) => *value = format::erased_mark(),
                None => {
                    return Err(not_erasable(
                        "the sample's payload has no such field".into(),
                    ));
                }
            }
            let payload =
                Payload::from_value(&erased).map_err(|err| not_erasable(err.to_string()))?;
            Envelope::<E>::decode(Event {
                raw_payload: payload,
                ..stored.clone()
            })
            .map_err(|err| not_erasable(err.failure.to_string()))?;
        }
        covered.push(event_type);
    }
    match E::EVENTS
        .iter()
        .find(|spec| !covered.contains(&spec.event_type))
    {
        Some(spec) => Err(TableMismatch::NoSample {
            target,
            event_type: spec.event_type,
        }),
        None => Ok(()),
    }
}
