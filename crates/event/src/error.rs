//! The one error this crate returns: a value that does not meet its documented grammar or limit.

use thiserror::Error;

/// A value was refused before it could reach a store. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An identifier or type was empty.
    #[error("invalid {field}: must not be empty")]
    Empty {
        /// Which field, e.g. `aggregate id`.
        field: &'static str,
    },
    /// A value was longer than its documented maximum.
    #[error("invalid {field}: {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The length seen, in bytes.
        len: usize,
        /// The maximum allowed, in bytes.
        max: usize,
    },
    /// A value contained a character its grammar does not allow.
    #[error("invalid {field} {value:?}: {rule}")]
    Grammar {
        /// Which field.
        field: &'static str,
        /// The offending value (truncated to 80 characters).
        value: String,
        /// The rule it broke.
        rule: &'static str,
    },
    /// A payload could not be serialised, is not JSON, or breaks a payload limit.
    #[error("invalid payload: {reason}")]
    Payload {
        /// What is wrong with it.
        reason: String,
    },
    /// Some other part of a command is inconsistent.
    #[error("invalid command: {reason}")]
    Command {
        /// What is wrong with it.
        reason: String,
    },
}

impl ValidationError {
    pub(crate) fn grammar(field: &'static str, value: &str, rule: &'static str) -> Self {
        ValidationError::Grammar {
            field,
            value: value.chars().take(80).collect(),
            rule,
        }
    }
}
