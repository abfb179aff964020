//! [`Personal<T>`]: a field of personal data, which reads as [`Personal::Erased`] once its
//! subject is erased.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::format::ERASED_TAG;

/// A value of personal data in a typed event or a state: the value, or the mark left where the
/// value was once its subject was erased.
///
/// Declare the field in the event's table ([`EventSpec::personal`](crate::EventSpec::personal))
/// so it is stored encrypted; type it `Personal<T>` so a read after the erasure decodes instead of
/// failing. In JSON it is `T` itself, or `{"strata.erased":{}}` once erased; in a format that is
/// not self-describing (bincode) it is an enum.
///
/// `Debug` never prints the value, so a state or event logged with `{:?}` leaks nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Personal<T> {
    /// The value.
    Value(T),
    /// Its subject was erased: the value is gone for good.
    Erased,
}

impl<T> Personal<T> {
    /// The value, if not erased.
    pub fn value(&self) -> Option<&T> {
        match self {
            Personal::Value(value) => Some(value),
            Personal::Erased => None,
        }
    }

    /// The value, if not erased.
    pub fn into_value(self) -> Option<T> {
        match self {
            Personal::Value(value) => Some(value),
            Personal::Erased => None,
        }
    }

    /// Whether the subject was erased.
    pub fn is_erased(&self) -> bool {
        matches!(self, Personal::Erased)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Value(value)
    }
}

impl<T: Default> Default for Personal<T> {
    fn default() -> Self {
        Personal::Value(T::default())
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Personal::Value(_) => f.write_str("Personal(<redacted>)"),
            Personal::Erased => f.write_str("Personal(<erased>)"),
        }
    }
}

/// The enum form, for formats that are not self-describing.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "Personal")]
enum Tagged<T> {
    Value(T),
    Erased,
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            let tagged = match self {
                Personal::Value(value) => Tagged::Value(value),
                Personal::Erased => Tagged::Erased,
            };
            return tagged.serialize(serializer);
        }
        match self {
            Personal::Value(value) => value.serialize(serializer),
            Personal::Erased => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(ERASED_TAG, &Empty {})?;
                map.end()
            }
        }
    }
}

#[derive(serde::Serialize)]
struct Empty {}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return Ok(match Tagged::<T>::deserialize(deserializer)? {
                Tagged::Value(value) => Personal::Value(value),
                Tagged::Erased => Personal::Erased,
            });
        }
        // Self-describing formats only (JSON): the mark is an object with one known key.
        let value = serde_json::Value::deserialize(deserializer)?;
        if super::format::is_erased_mark(&value) {
            return Ok(Personal::Erased);
        }
        if super::format::is_sealed(&value) {
            return Err(de::Error::custom(
                "the field is sealed (encrypted personal data): decode it through a Vault",
            ));
        }
        T::deserialize(value)
            .map(Personal::Value)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_the_value_or_the_mark() {
        let value: Personal<String> = "alice@example.com".to_owned().into();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#""alice@example.com""#
        );
        let erased: Personal<String> = Personal::Erased;
        let text = serde_json::to_string(&erased).unwrap();
        assert_eq!(text, r#"{"strata.erased":{}}"#);
        assert_eq!(
            serde_json::from_str::<Personal<String>>(&text).unwrap(),
            erased
        );
        assert_eq!(
            serde_json::from_str::<Personal<String>>(r#""bob""#).unwrap(),
            Personal::Value("bob".to_owned())
        );
        // An Option inside: null is None, not erased.
        assert_eq!(
            serde_json::from_str::<Personal<Option<String>>>("null").unwrap(),
            Personal::Value(None)
        );
    }

    #[test]
    fn debug_never_prints_the_value() {
        let value: Personal<String> = "alice@example.com".to_owned().into();
        assert!(!format!("{value:?}").contains("alice"));
    }

    #[test]
    fn a_sealed_field_read_without_a_vault_is_an_error_not_a_value() {
        let sealed = r#"{"strata.sealed":"1:AAAA:u-1"}"#;
        let err = serde_json::from_str::<Personal<String>>(sealed).unwrap_err();
        assert!(err.to_string().contains("Vault"), "{err}");
    }
}
