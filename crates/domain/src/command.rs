//! From a typed event to a [`Command`]: the event type and revision from the table, the payload
//! from serde, the unique constraints from the event, the rest from the [`Context`].

use strata_event::{AggregateRef, Command, Sequence};

use crate::codec;
use crate::context::Context;
use crate::error::EncodeError;
use crate::event::{DomainEvent, Unique};

/// Builds the command that stores `event` on aggregate `aggregate_id` of `instance_id` (its
/// aggregate type from the table), expecting the aggregate at the sequence `expected` gives it.
pub(crate) fn build<E: DomainEvent>(
    event: &E,
    instance_id: &str,
    aggregate_id: &str,
    context: &Context,
    expected: &dyn Fn(&AggregateRef) -> Option<Sequence>,
) -> Result<Command, EncodeError> {
    let target = std::any::type_name::<E>();
    let encoded =
        codec::encode(event).map_err(|reason| EncodeError::Serialize { target, reason })?;
    let spec = E::EVENTS
        .iter()
        .find(|spec| spec.event_type == encoded.event_type)
        .ok_or(EncodeError::NotInTable {
            target,
            event_type: encoded.event_type,
        })?;
    let aggregate_type = spec.aggregate_type_or(E::AGGREGATE_TYPE);
    let expected = expected(&AggregateRef::new(
        instance_id,
        aggregate_type,
        aggregate_id,
    )?);
    let mut builder = Command::builder(
        instance_id,
        aggregate_type,
        aggregate_id,
        encoded.event_type,
    )
    .revision(spec.revision)
    .creator(context.creator.as_str())
    .owner(context.owner.as_str());
    if !context.metadata.is_empty() {
        builder = builder.metadata(context.metadata.clone());
    }
    if let Some(payload) = &encoded.payload {
        builder = builder.payload(payload);
    }
    for unique in event.unique_constraints() {
        builder = match unique {
            Unique::Add {
                unique_type,
                value,
                error_message_id,
            } => builder.add_unique_constraint(unique_type, value, error_message_id),
            Unique::Remove { unique_type, value } => {
                builder.remove_unique_constraint(unique_type, value)
            }
        };
    }
    if let Some(expected) = expected {
        builder = builder.expect_sequence(expected);
    }
    Ok(builder.build()?)
}

/// Builds the command that stores `event` on aggregate `aggregate_id` of `instance_id`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use strata_domain::{Context, DomainEvent, EventSpec};
/// # #[derive(Serialize, Deserialize)]
/// # enum UserEvent { #[serde(rename = "user.added")] Added { username: String } }
/// # impl DomainEvent for UserEvent {
/// #     const AGGREGATE_TYPE: &'static str = "user";
/// #     const EVENTS: &'static [EventSpec] = &[EventSpec::new("user.added")];
/// # }
/// let added = UserEvent::Added { username: "alice".into() };
/// let command = strata_domain::command(&added, "acme", "u-1", &Context::new("admin", "org-1"))?;
/// assert_eq!(command.event_type().as_str(), "user.added");
/// assert_eq!(command.payload().json(), Some(r#"{"username":"alice"}"#));
/// # Ok::<(), strata_domain::EncodeError>(())
/// ```
pub fn command<E: DomainEvent>(
    event: &E,
    instance_id: &str,
    aggregate_id: &str,
    context: &Context,
) -> Result<Command, EncodeError> {
    build(event, instance_id, aggregate_id, context, &|_| None)
}
