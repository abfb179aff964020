//! An event's payload: JSON text, kept unparsed until a reader asks for it.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::ValidationError;

/// Largest payload accepted, in bytes of JSON text (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Deepest nesting of arrays and objects accepted in a payload.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// The JSON payload of a command or event, or nothing.
///
/// Stored as validated JSON text and parsed only when read, so a store can pass payloads through
/// without paying for a parse. Equality is JSON equality (`{"a":1,"b":2}` equals `{"b": 2, "a": 1}`),
/// because backends may normalise whitespace and key order (PostgreSQL's `jsonb` does).
#[derive(Clone, Default)]
pub struct Payload(Option<Box<str>>);

impl Payload {
    /// No payload.
    pub const fn empty() -> Self {
        Payload(None)
    }

    /// Serialises `value` to JSON and checks the payload limits.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, ValidationError> {
        let text = serde_json::to_string(value).map_err(|err| ValidationError::Payload {
            reason: format!("could not serialise: {err}"),
        })?;
        Self::from_json(text)
    }

    /// Checks that `text` is JSON within the payload limits. An empty string means no payload.
    pub fn from_json(text: impl Into<String>) -> Result<Self, ValidationError> {
        let text: String = text.into();
        if text.is_empty() {
            return Ok(Payload(None));
        }
        if text.len() > MAX_PAYLOAD_BYTES {
            return Err(ValidationError::Payload {
                reason: format!(
                    "{} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES}",
                    text.len()
                ),
            });
        }
        let depth = nesting_depth(&text);
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(ValidationError::Payload {
                reason: format!("nested {depth} levels deep, the maximum is {MAX_PAYLOAD_DEPTH}"),
            });
        }
        // NOTE: PostgreSQL's `jsonb` refuses the NUL character even when escaped, so a payload that
        // contains one would be accepted by one backend and refused by the other.
        if text.contains("\\u0000") {
            return Err(ValidationError::Payload {
                reason: "the NUL character (\\u0000) cannot be stored".into(),
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|err| {
            ValidationError::Payload {
                reason: format!("not valid JSON: {err}"),
            }
        })?;
        Ok(Self::from_trusted_json(text))
    }

    /// Wraps JSON text a backend read from its own storage, where it was validated on the way in.
    /// Skipping a second parse keeps reads as cheap as the raw row transfer.
    #[doc(hidden)]
    pub fn from_trusted_json(text: String) -> Self {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return Payload(None);
        }
        Payload(Some(text.into_boxed_str()))
    }

    /// Whether there is no payload.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The JSON text, if any.
    pub fn json(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Parses the payload into a JSON value (`Null` when empty).
    pub fn to_value(&self) -> serde_json::Value {
        match self.json() {
            // The text was validated as JSON on construction, so this parse cannot fail; `Null` keeps
            // the signature infallible should that ever change.
            Some(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }
    }

    /// Decodes the payload into `T`. An empty payload decodes as JSON `null`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json().unwrap_or("null"))
    }
}

/// The deepest nesting of `[` and `{` outside of strings. Counting on the text keeps the check
/// linear and stack-free, so a hostile payload cannot overflow the stack of the parser after it.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self.json(), other.json()) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b || self.to_value() == other.to_value(),
            _ => false,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.json() {
            Some(text) => write!(f, "Payload({text})"),
            None => f.write_str("Payload(empty)"),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.json() {
            Some(text) => {
                let raw: &RawValue =
                    serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
                raw.serialize(serializer)
            }
            None => serializer.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Option<Box<RawValue>> = Option::deserialize(deserializer)?;
        match raw {
            Some(raw) => Payload::from_json(raw.get()).map_err(serde::de::Error::custom),
            None => Ok(Payload(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_invalid_json() {
        for bad in ["{", "not json", "{\"a\":}", "[1,2", "'single'"] {
            assert!(
                matches!(
                    Payload::from_json(bad),
                    Err(ValidationError::Payload { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_oversized_and_deep() {
        let big = format!("\"{}\"", "x".repeat(MAX_PAYLOAD_BYTES));
        assert!(Payload::from_json(big).is_err());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_PAYLOAD_DEPTH + 1),
            "]".repeat(MAX_PAYLOAD_DEPTH + 1)
        );
        assert!(Payload::from_json(deep).is_err());
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_PAYLOAD_DEPTH),
            "]".repeat(MAX_PAYLOAD_DEPTH)
        );
        assert!(Payload::from_json(ok).is_ok());
        // Brackets inside strings are not nesting.
        let in_string = format!("\"{}\"", "[".repeat(500));
        assert!(Payload::from_json(in_string).is_ok());
    }

    #[test]
    fn refuses_nul() {
        assert!(Payload::from_json(r#"{"a":"x\u0000y"}"#).is_err());
    }

    #[test]
    fn equality_is_json_equality() {
        let a = Payload::from_json(r#"{"a":1,"b":[true,null]}"#).unwrap();
        let b = Payload::from_json(r#"{ "b": [true, null], "a": 1 }"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Payload::empty());
        assert_eq!(Payload::from_json("null").unwrap(), Payload::empty());
    }
}
