//! Event metadata: the correlation and causation ids that tie events to the request or event that
//! caused them, and free-form string headers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::check_text;

/// Longest correlation id, causation id or header value, in bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 1024;

/// Most headers one event may carry.
pub const MAX_HEADERS: usize = 32;

/// Longest header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 64;

/// What travels with an event besides its payload: ids that trace it back to a request or another
/// event, and string headers (a trace id, a client version…).
///
/// Every id and header value is 1..=[`MAX_METADATA_VALUE_LEN`] bytes without control characters
/// (PostgreSQL's `jsonb` cannot hold `\u0000`, and both backends must store the same values); a
/// header name is 1..=[`MAX_HEADER_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`; at most [`MAX_HEADERS`]
/// headers. A [`Command`](crate::Command) checks this when it is built; a `Metadata` on its own is
/// plain data.
///
/// Empty metadata (no ids, no headers) is what an event without metadata has; it is stored as
/// nothing at all and left out of the event's JSON.
///
/// Reading an event ignores fields this build does not know, so metadata a newer build stored
/// (with a field added later) stays readable by older readers; a command's JSON input refuses
/// them, as a typo.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by every event of one business request or workflow; queries can select by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of what directly caused this event (a command id, another event's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Free-form headers, sorted by name so equal metadata encodes equally.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Reads metadata that must not carry fields this build does not know: a command's input, where
/// an unknown field is a typo to report rather than data to keep.
pub(crate) fn deserialize_strict<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Metadata, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[serde(default)]
        correlation_id: Option<String>,
        #[serde(default)]
        causation_id: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    }
    let strict = Strict::deserialize(deserializer)?;
    Ok(Metadata {
        correlation_id: strict.correlation_id,
        causation_id: strict.causation_id,
        headers: strict.headers,
    })
}

impl Metadata {
    /// Whether there is nothing in it: no ids and no headers.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.headers.is_empty()
    }

    /// Checks every limit above and names the field that breaks one.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(id) = &self.correlation_id {
            check_metadata_value("correlation id", id)?;
        }
        if let Some(id) = &self.causation_id {
            check_metadata_value("causation id", id)?;
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(ValidationError::Command {
                reason: format!(
                    "{} headers exceed the maximum of {MAX_HEADERS}",
                    self.headers.len()
                ),
            });
        }
        for (name, value) in &self.headers {
            check_header_name(name)?;
            check_metadata_value("header value", value)?;
        }
        Ok(())
    }
}

/// A correlation id, causation id or header value: non-empty, bounded, no control characters.
pub(crate) fn check_metadata_value(
    field: &'static str,
    value: &str,
) -> Result<(), ValidationError> {
    check_text(field, value, MAX_METADATA_VALUE_LEN)
}

fn check_header_name(name: &str) -> Result<(), ValidationError> {
    const FIELD: &str = "header name";
    if name.is_empty() {
        return Err(ValidationError::Empty { field: FIELD });
    }
    if name.len() > MAX_HEADER_NAME_LEN {
        return Err(ValidationError::TooLong {
            field: FIELD,
            len: name.len(),
            max: MAX_HEADER_NAME_LEN,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.chars().all(allowed) {
        return Err(ValidationError::grammar(
            FIELD,
            name,
            "expected ASCII letters, digits, `_`, `.` and `-`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_metadata_with_a_field_this_build_does_not_know_still_reads() {
        let newer: Metadata =
            serde_json::from_str(r#"{"correlation_id":"r","trace_parent":"00-ab"}"#).unwrap();
        assert_eq!(newer.correlation_id.as_deref(), Some("r"));
    }

    #[test]
    fn empty_metadata_serialises_to_an_empty_object() {
        let empty = Metadata::default();
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_string(&empty).ok().as_deref(), Some("{}"));
    }

    #[test]
    fn limits_name_the_field() {
        let long = "x".repeat(MAX_METADATA_VALUE_LEN + 1);
        let cases: Vec<(Metadata, &str)> = vec![
            (
                Metadata {
                    correlation_id: Some(String::new()),
                    ..Metadata::default()
                },
                "correlation id",
            ),
            (
                Metadata {
                    causation_id: Some(long.clone()),
                    ..Metadata::default()
                },
                "causation id",
            ),
            (
                Metadata {
                    correlation_id: Some("a\u{0}b".into()),
                    ..Metadata::default()
                },
                "correlation id",
            ),
            (
                Metadata {
                    headers: [("bad name".to_owned(), "v".to_owned())].into(),
                    ..Metadata::default()
                },
                "header name",
            ),
            (
                Metadata {
                    headers: [("n".to_owned(), long)].into(),
                    ..Metadata::default()
                },
                "header value",
            ),
            (
                Metadata {
                    headers: (0..=MAX_HEADERS)
                        .map(|n| (format!("h{n}"), "v".to_owned()))
                        .collect(),
                    ..Metadata::default()
                },
                "headers",
            ),
        ];
        for (metadata, field) in cases {
            let Err(err) = metadata.validate() else {
                panic!("{metadata:?} should be refused");
            };
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }
}
