//! From a typed event to a [`Command`]: the event type and revision from the table, the payload
//! from serde (personal fields sealed by a vault), the unique constraints from the event, the rest
//! from the [`Context`].

use serde_json::Value;
use strata_event::{AggregateRef, Command, InstanceId, Sequence, SubjectId};

use crate::codec;
use crate::context::Context;
use crate::error::EncodeError;
use crate::event::{DomainEvent, EventSpec, Unique};

/// A typed event on its way to becoming a command: encoded, its table row found, its personal
/// fields sealed when a vault did so.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) event_type: &'static str,
    payload: Option<Value>,
    pub(crate) spec: &'static EventSpec,
    pub(crate) instance_id: InstanceId,
    pub(crate) aggregate_id: String,
    /// Whose personal data it holds, once a vault looked.
    #[cfg_attr(not(feature = "personal-data"), allow(dead_code))]
    pub(crate) subject: Option<SubjectId>,
    sealed: bool,
}

impl Prepared {
    #[cfg_attr(not(feature = "personal-data"), allow(dead_code))]
    pub(crate) fn payload(&self) -> Option<&Value> {
        self.payload.as_ref()
    }

    /// Seals the personal fields with `key` of the subject.
    #[cfg(feature = "personal-data")]
    pub(crate) fn seal_with(&mut self, key: &crate::personal::DataKey) -> Result<(), EncodeError> {
        let subject = self.subject.clone().ok_or(EncodeError::Subject {
            event_type: self.event_type,
            reason: "no subject was found".to_owned(),
        })?;
        if let Some(payload) = &mut self.payload {
            for path in self.spec.personal {
                if let Some(field) = crate::personal::format::field_mut(payload, path)
                    && !field.is_null()
                    && !crate::personal::format::is_erased_mark(field)
                    && !crate::personal::format::is_sealed(field)
                {
                    *field = crate::personal::seal_value(
                        self.instance_id.as_str(),
                        &subject,
                        subject.as_str() == self.aggregate_id,
                        key,
                        field,
                    );
                }
            }
        }
        self.sealed = true;
        Ok(())
    }
}

/// Encodes `event` for aggregate `aggregate_id` of `instance_id` and finds its table row.
pub(crate) fn prepare<E: DomainEvent>(
    event: &E,
    instance_id: &str,
    aggregate_id: &str,
) -> Result<Prepared, EncodeError> {
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
    Ok(Prepared {
        event_type: encoded.event_type,
        payload: encoded.payload,
        spec,
        instance_id: InstanceId::new(instance_id)?,
        aggregate_id: aggregate_id.to_owned(),
        subject: None,
        sealed: false,
    })
}

/// The command `prepared` (made from `event`) becomes, expecting the aggregate at the sequence
/// `expected` gives it. Refuses personal fields no vault sealed.
pub(crate) fn finish<E: DomainEvent>(
    prepared: Prepared,
    event: &E,
    context: &Context,
    expected: &dyn Fn(&AggregateRef) -> Option<Sequence>,
) -> Result<Command, EncodeError> {
    let spec = prepared.spec;
    if !spec.personal.is_empty() && !prepared.sealed {
        return Err(EncodeError::NeedsVault {
            event_type: spec.event_type,
        });
    }
    let aggregate_type = spec.aggregate_type_or(E::AGGREGATE_TYPE);
    let expected = expected(&AggregateRef::new(
        prepared.instance_id.as_str(),
        aggregate_type,
        &prepared.aggregate_id,
    )?);
    let mut builder = Command::builder(
        prepared.instance_id.as_str(),
        aggregate_type,
        &prepared.aggregate_id,
        prepared.event_type,
    )
    .revision(spec.revision)
    .creator(context.creator.as_str())
    .owner(context.owner.as_str());
    if !context.metadata.is_empty() {
        builder = builder.metadata(context.metadata.clone());
    }
    if let Some(payload) = &prepared.payload {
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
    finish(
        prepare(event, instance_id, aggregate_id)?,
        event,
        context,
        &|_| None,
    )
}
