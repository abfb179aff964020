//! What a caller asks to push: one event for one aggregate, plus its side conditions.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::{
    AggregateId, AggregateRef, AggregateType, Creator, EventType, InstanceId, Owner, UniqueType,
    check_id,
};
use crate::metadata::Metadata;
use crate::payload::Payload;
use crate::{Revision, Sequence};

/// A change to the unique-constraint set, applied in the same transaction as the push's events.
///
/// Within one push every removal happens before any addition, so a push can rename (remove `alice`,
/// add `alicia`) or release and re-take a value. Constraints are scoped to the command's instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UniqueConstraintOp {
    /// Claim `(unique_type, value)`. If it is already taken, the whole push fails with an error that
    /// carries `error_message_id`, so the caller can show its own message.
    Add {
        /// The kind of constraint, e.g. `username`.
        unique_type: UniqueType,
        /// The value that must be unique, stored verbatim.
        value: String,
        /// A caller-chosen id for the error message shown on a clash.
        error_message_id: String,
    },
    /// Release `(unique_type, value)`. Releasing a value nobody holds is not an error.
    Remove {
        /// The kind of constraint.
        unique_type: UniqueType,
        /// The value to release.
        value: String,
    },
    /// Release every constraint of the command's instance (used when an instance is removed).
    RemoveAllOfInstance,
}

/// One event a caller asks to push. Build it with [`Command::builder`].
///
/// The fields are read-only: a `Command` has been validated as a whole, and changing a part would
/// bypass that.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command {
    aggregate: AggregateRef,
    event_type: EventType,
    revision: Revision,
    payload: Payload,
    creator: Creator,
    owner: Owner,
    unique_constraints: Vec<UniqueConstraintOp>,
    expected_sequence: Option<Sequence>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata,
}

impl Command {
    /// Starts a command for event `event_type` on the aggregate `(instance_id, aggregate_type,
    /// aggregate_id)`. Nothing is checked until [`CommandBuilder::build`].
    pub fn builder(
        instance_id: impl Into<String>,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        event_type: impl Into<String>,
    ) -> CommandBuilder {
        CommandBuilder {
            instance_id: instance_id.into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: event_type.into(),
            revision: 1,
            payload: Ok(Payload::empty()),
            creator: String::new(),
            owner: String::new(),
            unique_constraints: Vec::new(),
            expected_sequence: None,
            metadata: Metadata::default(),
        }
    }

    /// The aggregate this command appends to.
    pub fn aggregate(&self) -> &AggregateRef {
        &self.aggregate
    }
    /// The event type.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }
    /// The payload's schema version.
    pub fn revision(&self) -> Revision {
        self.revision
    }
    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
    /// Who causes the event.
    pub fn creator(&self) -> &Creator {
        &self.creator
    }
    /// The resource owner.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
    /// Unique-constraint changes that travel with this command.
    pub fn unique_constraints(&self) -> &[UniqueConstraintOp] {
        &self.unique_constraints
    }
    /// The sequence the caller expects the aggregate to be at *before the push*, if any.
    pub fn expected_sequence(&self) -> Option<Sequence> {
        self.expected_sequence
    }
    /// The metadata the event will carry (empty when none was set).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// Collects the parts of a [`Command`]; `build` validates them all at once.
///
/// Defaults: revision `1`, no payload, no unique constraints, no expected sequence, no metadata.
/// `creator` and `owner` have no default and must be set.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CommandBuilder {
    instance_id: String,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    revision: Revision,
    payload: Result<Payload, ValidationError>,
    creator: String,
    owner: String,
    unique_constraints: Vec<Result<UniqueConstraintOp, ValidationError>>,
    expected_sequence: Option<Sequence>,
    metadata: Metadata,
}

impl CommandBuilder {
    /// The payload's schema version. Default `1`.
    pub fn revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// Serialises `payload` as the event's JSON payload. A value that does not serialise, or breaks a
    /// payload limit, makes `build` fail. (serde_json writes a non-finite float, `NaN` or an
    /// infinity, as `null`, so such a field reaches readers as `null`.)
    pub fn payload<T: Serialize + ?Sized>(mut self, payload: &T) -> Self {
        self.payload = Payload::from_value(payload);
        self
    }

    /// Uses already-encoded JSON text as the payload; it is validated by `build`.
    pub fn payload_json(mut self, json: impl Into<String>) -> Self {
        self.payload = Payload::from_json(json);
        self
    }

    /// Who causes the event. Required.
    pub fn creator(mut self, creator: impl Into<String>) -> Self {
        self.creator = creator.into();
        self
    }

    /// The resource owner. Required.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Claims a unique `(unique_type, value)` in the command's instance; a clash fails the push with
    /// `error_message_id`.
    pub fn add_unique_constraint(
        mut self,
        unique_type: impl Into<String>,
        value: impl Into<String>,
        error_message_id: impl Into<String>,
    ) -> Self {
        let value = value.into();
        let op = UniqueType::new(unique_type).and_then(|unique_type| {
            check_id("unique constraint value", &value)?;
            Ok(UniqueConstraintOp::Add {
                unique_type,
                value,
                error_message_id: error_message_id.into(),
            })
        });
        self.unique_constraints.push(op);
        self
    }

    /// Releases a unique `(unique_type, value)` in the command's instance.
    pub fn remove_unique_constraint(
        mut self,
        unique_type: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let value = value.into();
        let op = UniqueType::new(unique_type).and_then(|unique_type| {
            check_id("unique constraint value", &value)?;
            Ok(UniqueConstraintOp::Remove { unique_type, value })
        });
        self.unique_constraints.push(op);
        self
    }

    /// Releases every unique constraint of the command's instance.
    pub fn remove_all_unique_constraints_of_instance(mut self) -> Self {
        self.unique_constraints
            .push(Ok(UniqueConstraintOp::RemoveAllOfInstance));
        self
    }

    /// Makes the push fail with a conflict unless the aggregate is at `sequence` before the push
    /// (`0` for "has no events yet"). Default: no expectation, the push always appends.
    pub fn expect_sequence(mut self, sequence: Sequence) -> Self {
        self.expected_sequence = Some(sequence);
        self
    }

    /// Replaces the event's whole metadata (ids and headers set before are dropped). Default: none.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the correlation id: shared by every event of one request or workflow, and what
    /// `QueryBuilder::correlation_id` selects by. Default: none.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id: what directly caused this event. Default: none.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.causation_id = Some(id.into());
        self
    }

    /// Sets header `name` to `value` (a later call with the same name wins). Default: no headers.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.headers.insert(name.into(), value.into());
        self
    }

    /// Validates every part and returns the command, or the first problem found.
    pub fn build(self) -> Result<Command, ValidationError> {
        let aggregate = AggregateRef {
            instance_id: InstanceId::new(self.instance_id)?,
            aggregate_type: AggregateType::new(self.aggregate_type)?,
            aggregate_id: AggregateId::new(self.aggregate_id)?,
        };
        let event_type = EventType::new(self.event_type)?;
        let creator = Creator::new(self.creator)?;
        let owner = Owner::new(self.owner)?;
        let payload = self.payload?;
        self.metadata.validate()?;
        let unique_constraints = self
            .unique_constraints
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(expected) = self.expected_sequence
            && expected > i64::MAX as u64
        {
            return Err(ValidationError::Command {
                reason: format!("expected sequence {expected} is beyond the largest sequence"),
            });
        }
        Ok(Command {
            aggregate,
            event_type,
            revision: self.revision,
            payload,
            creator,
            owner,
            unique_constraints,
            expected_sequence: self.expected_sequence,
            metadata: self.metadata,
        })
    }
}

impl<'de> Deserialize<'de> for Command {
    /// Reads a command from its JSON form (the CLI's input), validating it like `build` does.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            aggregate: AggregateRef,
            event_type: EventType,
            #[serde(default = "default_revision")]
            revision: Revision,
            #[serde(default)]
            payload: Payload,
            creator: Creator,
            owner: Owner,
            #[serde(default)]
            unique_constraints: Vec<UniqueConstraintOp>,
            #[serde(default)]
            expected_sequence: Option<Sequence>,
            #[serde(default, deserialize_with = "crate::metadata::deserialize_strict")]
            metadata: Metadata,
        }
        fn default_revision() -> Revision {
            1
        }
        let wire = Wire::deserialize(deserializer)?;
        wire.metadata.validate().map_err(serde::de::Error::custom)?;
        for op in &wire.unique_constraints {
            if let UniqueConstraintOp::Add { value, .. }
            | UniqueConstraintOp::Remove { value, .. } = op
            {
                check_id("unique constraint value", value).map_err(serde::de::Error::custom)?;
            }
        }
        Ok(Command {
            aggregate: wire.aggregate,
            event_type: wire.event_type,
            revision: wire.revision,
            payload: wire.payload,
            creator: wire.creator,
            owner: wire.owner,
            unique_constraints: wire.unique_constraints,
            expected_sequence: wire.expected_sequence,
            metadata: wire.metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CommandBuilder {
        Command::builder("inst", "user", "u1", "user.added")
            .creator("admin")
            .owner("org")
    }

    #[test]
    fn builds_a_valid_command() {
        let command = base()
            .payload(&serde_json::json!({"name": "alice"}))
            .add_unique_constraint("username", "alice", "name.taken")
            .expect_sequence(3)
            .build()
            .unwrap();
        assert_eq!(command.aggregate().aggregate_id, "u1");
        assert_eq!(command.expected_sequence(), Some(3));
        assert_eq!(command.unique_constraints().len(), 1);
        assert_eq!(command.revision(), 1);
    }

    #[test]
    fn names_the_broken_field() {
        let cases: Vec<(CommandBuilder, &str)> = vec![
            (
                Command::builder("", "user", "u1", "user.added"),
                "instance id",
            ),
            (
                Command::builder("i", "user type", "u1", "user.added"),
                "aggregate type",
            ),
            (
                Command::builder("i", "user", "u1", "User.Added"),
                "event type",
            ),
            (
                Command::builder("i", "user", "u1", "user.added").owner("o"),
                "creator",
            ),
            (
                Command::builder("i", "user", "u1", "user.added").creator("c"),
                "owner",
            ),
            (base().payload_json("{not json"), "payload"),
            (
                base().add_unique_constraint("username", "", "m"),
                "unique constraint value",
            ),
            (
                base().add_unique_constraint("user name", "x", "m"),
                "unique constraint type",
            ),
            (base().correlation_id(""), "correlation id"),
            (base().causation_id("a\u{7}"), "causation id"),
            (base().header("x y", "v"), "header name"),
            (base().header("x", ""), "header value"),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn payload_that_does_not_serialise_is_refused() {
        struct Broken;
        impl Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("broken on purpose"))
            }
        }
        let err = base().payload(&Broken).build().unwrap_err();
        assert!(err.to_string().contains("broken on purpose"), "{err}");
    }

    #[test]
    fn json_round_trip_validates() {
        let command = base()
            .payload_json(r#"{"a":1}"#)
            .remove_unique_constraint("username", "bob")
            .correlation_id("req-1")
            .header("trace", "t-9")
            .build()
            .unwrap();
        let text = serde_json::to_string(&command).unwrap();
        let back: Command = serde_json::from_str(&text).unwrap();
        assert_eq!(back, command);
        let bad = text.replace("user.added", "USER ADDED");
        assert!(serde_json::from_str::<Command>(&bad).is_err());
    }
}
