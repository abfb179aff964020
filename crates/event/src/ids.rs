//! Validated identifiers: instance, aggregate, event type, creator, owner and unique-constraint type.
//!
//! Two grammars exist. *Ids* (instance, aggregate id, creator, owner) are opaque: any UTF-8 text of
//! 1..=[`MAX_ID_LEN`] bytes without control characters, stored and returned verbatim (quotes,
//! semicolons and `'; DROP TABLE` included; they only ever reach SQL as bind parameters). *Types*
//! (aggregate type, event type, unique-constraint type) are names the code chooses: dot-separated
//! segments of lowercase ASCII letters, digits, `_` and `-`, each segment starting with a letter, at
//! most [`MAX_TYPE_LEN`] bytes, e.g. `user.human.added`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ValidationError;

/// Maximum length in bytes of an id (instance id, aggregate id, creator, owner, unique value).
pub const MAX_ID_LEN: usize = 200;

/// Maximum length in bytes of a type name (aggregate type, event type, unique-constraint type).
pub const MAX_TYPE_LEN: usize = 128;

pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), ValidationError> {
    check_text(field, value, MAX_ID_LEN)
}

/// The grammar of ids and of the other free-text values stores keep (metadata, idempotency keys):
/// non-empty, at most `max` bytes, no control characters.
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if value.len() > max {
        return Err(ValidationError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::grammar(
            field,
            value,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

pub(crate) fn check_type_name(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if value.len() > MAX_TYPE_LEN {
        return Err(ValidationError::TooLong {
            field,
            len: value.len(),
            max: MAX_TYPE_LEN,
        });
    }
    const RULE: &str = "expected dot-separated segments of [a-z0-9_-], each starting with a letter";
    for segment in value.split('.') {
        let mut chars = segment.chars();
        let starts_with_letter = matches!(chars.next(), Some(c) if c.is_ascii_lowercase());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !(starts_with_letter && rest_ok) {
            return Err(ValidationError::grammar(field, value, RULE));
        }
    }
    Ok(())
}

macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $field:literal, $check:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` against this type's grammar.
            pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
                let value = value.into();
                $check($field, &value)?;
                Ok(Self(value))
            }

            /// Wraps a value that was validated before it was stored (a backend reading its own
            /// rows back). Not for input: use [`Self::new`].
            #[doc(hidden)]
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValidationError;
            fn try_from(value: &str) -> Result<Self, ValidationError> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, ValidationError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(value: &str) -> Result<Self, ValidationError> {
                Self::new(value)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_string!(
    /// The tenant an event belongs to. Every query, index and lock in Strata is scoped by it.
    InstanceId, "instance id", check_id
);
validated_string!(
    /// The identifier of one aggregate within its type and instance.
    AggregateId, "aggregate id", check_id
);
validated_string!(
    /// Who caused an event (a user id, or a system name such as `SYSTEM`).
    Creator, "creator", check_id
);
validated_string!(
    /// The resource owner (organisation) an event belongs to.
    Owner, "owner", check_id
);
validated_string!(
    /// Whose personal data an encrypted field holds (a user id, usually): each subject has its own
    /// keys, and erasing the subject deletes them.
    SubjectId, "subject id", check_id
);
validated_string!(
    /// The kind of an aggregate, e.g. `user` or `oidc_session`.
    AggregateType, "aggregate type", check_type_name
);
validated_string!(
    /// What happened, as dot-separated segments, e.g. `user.human.added`.
    EventType, "event type", check_type_name
);
validated_string!(
    /// The kind of a unique constraint, e.g. `username`.
    UniqueType, "unique constraint type", check_type_name
);

/// Names one aggregate: the instance it lives in, its type and its id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggregateRef {
    /// The tenant.
    pub instance_id: InstanceId,
    /// The aggregate's type.
    pub aggregate_type: AggregateType,
    /// The aggregate's id.
    pub aggregate_id: AggregateId,
}

impl AggregateRef {
    /// Validates and joins the three parts.
    pub fn new(
        instance_id: impl Into<String>,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        Ok(AggregateRef {
            instance_id: InstanceId::new(instance_id)?,
            aggregate_type: AggregateType::new(aggregate_type)?,
            aggregate_id: AggregateId::new(aggregate_id)?,
        })
    }
}

impl fmt::Display for AggregateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance_id, self.aggregate_type, self.aggregate_id
        )
    }
}

impl fmt::Debug for AggregateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AggregateRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_verbatim_text() {
        let id = AggregateId::new("'; DROP TABLE eventstore.events; --").expect("valid id");
        assert_eq!(id.as_str(), "'; DROP TABLE eventstore.events; --");
        assert!(AggregateId::new("ünïcødé ✓").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_control() {
        assert_eq!(
            InstanceId::new("").unwrap_err(),
            ValidationError::Empty {
                field: "instance id"
            }
        );
        assert!(matches!(
            InstanceId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(ValidationError::TooLong { .. })
        ));
        assert!(InstanceId::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(matches!(
            Creator::new("a\0b"),
            Err(ValidationError::Grammar { .. })
        ));
        assert!(matches!(
            Owner::new("line\nbreak"),
            Err(ValidationError::Grammar { .. })
        ));
    }

    #[test]
    fn type_grammar() {
        for good in [
            "user",
            "user.human.added",
            "oidc_session.access_token.revoked",
            "a1.b-2",
        ] {
            assert!(EventType::new(good).is_ok(), "{good}");
        }
        for bad in [
            "User",
            "user added",
            ".user",
            "user.",
            "user..added",
            "1user",
            "user.9x",
            "usér",
        ] {
            assert!(
                matches!(EventType::new(bad), Err(ValidationError::Grammar { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            AggregateType::new("a".repeat(MAX_TYPE_LEN + 1)),
            Err(ValidationError::TooLong { .. })
        ));
    }

    #[test]
    fn deserialising_validates() {
        let ok: EventType = serde_json::from_str("\"user.added\"").expect("valid");
        assert_eq!(ok, "user.added");
        let err = serde_json::from_str::<EventType>("\"User Added\"").unwrap_err();
        assert!(err.to_string().contains("invalid event type"), "{err}");
    }
}
