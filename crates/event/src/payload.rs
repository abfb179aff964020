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

    /// Checks that `text` is JSON within the payload limits that every backend stores and every
    /// reader decodes alike: no NUL character, no lone UTF-16 surrogate, no number beyond `f64` or
    /// with more than 16 383 digits after the point, no key twice in one object. An empty string
    /// means no payload.
    ///
    /// Numbers keep their value, not their spelling: PostgreSQL's `jsonb` writes `3e23` out in
    /// full and `1e2` or `-0` as the integers `100` and `0`, which decode into integer types
    /// there but not from the memory store's verbatim text. Write integers as integers.
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
        let Shape {
            depth,
            widest_scale,
        } = shape(&text);
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(ValidationError::Payload {
                reason: format!("nested {depth} levels deep, the maximum is {MAX_PAYLOAD_DEPTH}"),
            });
        }
        serde_json::from_str::<Storable>(&text).map_err(|err| ValidationError::Payload {
            // Data errors are valid JSON that no store can keep alike (Storable says which).
            reason: if err.classify() == serde_json::error::Category::Data {
                format!("cannot be stored: {err}")
            } else {
                format!("not valid JSON: {err}")
            },
        })?;
        if widest_scale > MAX_NUMERIC_SCALE {
            return Err(ValidationError::Payload {
                reason: format!(
                    "cannot be stored: a number with {widest_scale} digits after the decimal point, \
                     PostgreSQL keeps at most {MAX_NUMERIC_SCALE}"
                ),
            });
        }
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

/// Most digits after the decimal point PostgreSQL's `numeric` (and so `jsonb`) keeps; `1e-16384`
/// is a fine `f64` (zero) that `jsonb` refuses.
const MAX_NUMERIC_SCALE: i64 = 16_383;

/// What a linear scan of the text tells before and after parsing: the deepest nesting of `[` and
/// `{`, and the largest decimal scale of any number (digits after the point once the exponent is
/// applied), both outside of strings. Counting on the text keeps the depth check stack-free, so a
/// hostile payload cannot overflow the stack of the parser after it; the scale is meaningful once
/// the parser has accepted the text.
struct Shape {
    depth: usize,
    widest_scale: i64,
}

fn shape(text: &str) -> Shape {
    let bytes = text.as_bytes();
    let mut shape = Shape {
        depth: 0,
        widest_scale: 0,
    };
    let (mut depth, mut i, mut in_string, mut escaped) = (0usize, 0, false, false);
    while i < bytes.len() {
        let byte = bytes[i];
        i += 1;
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
                shape.depth = shape.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                // A number: -?int(.frac)?([eE][+-]?exp)?; `i` is past its first byte.
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let mut fraction: i64 = 0;
                if i < bytes.len() && bytes[i] == b'.' {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        fraction += 1;
                        i += 1;
                    }
                }
                let mut exponent: i64 = 0;
                if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                    i += 1;
                    let negative = i < bytes.len() && bytes[i] == b'-';
                    if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
                        i += 1;
                    }
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        // Saturating: an exponent of a million digits is as refused as one of six.
                        exponent = exponent
                            .saturating_mul(10)
                            .saturating_add(i64::from(bytes[i] - b'0'));
                        i += 1;
                    }
                    if negative {
                        exponent = -exponent;
                    }
                }
                shape.widest_scale = shape.widest_scale.max(fraction.saturating_sub(exponent));
            }
            _ => {}
        }
    }
    shape
}

/// A JSON document every backend stores and every reader decodes alike. Parsing into it checks,
/// beyond the JSON grammar, what would otherwise surface later and differently per backend:
///
/// - **the NUL character**, escaped or not, which PostgreSQL's `jsonb` refuses (checked on the
///   decoded strings, so the text `\\u0000`, an escaped backslash, is fine);
/// - **lone UTF-16 surrogates** (`"\ud800"`), which `jsonb` refuses and Rust strings cannot hold;
/// - **numbers beyond `f64`** (`1e400`), which `jsonb` keeps as exact decimals but
///   `serde_json` cannot decode, so [`Payload::decode`] would fail on every read;
/// - **duplicate keys** in an object, which `jsonb` collapses to the last one while text stored
///   as is keeps both, so the two backends would decode different values.
struct Storable;

impl<'de> Deserialize<'de> for Storable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StorableVisitor)
    }
}

struct StorableVisitor;

/// Objects up to this many keys look for duplicates by scanning, larger ones through a hash set.
const SCANNED_KEYS: usize = 16;

fn refuse_nul<E: serde::de::Error>(text: &str) -> Result<(), E> {
    if text.contains('\0') {
        return Err(E::custom(
            "the NUL character (\\u0000) cannot be stored in a payload",
        ));
    }
    Ok(())
}

impl<'de> serde::de::Visitor<'de> for StorableVisitor {
    type Value = Storable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Storable, E> {
        Ok(Storable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Storable, E> {
        Ok(Storable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Storable, E> {
        Ok(Storable)
    }
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Storable, E> {
        // serde_json refuses overflowing literals itself; this keeps the promise for any input.
        if value.is_finite() {
            Ok(Storable)
        } else {
            Err(E::custom("a number beyond the range of f64"))
        }
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Storable, E> {
        refuse_nul(value)?;
        Ok(Storable)
    }
    fn visit_unit<E>(self) -> Result<Storable, E> {
        Ok(Storable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Storable, A::Error> {
        while seq.next_element::<Storable>()?.is_some() {}
        Ok(Storable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Storable, A::Error> {
        let mut scanned: Vec<Key<'de>> = Vec::new();
        let mut hashed: std::collections::HashSet<Key<'de>> = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            refuse_nul(key.as_str())?;
            let duplicate = if hashed.is_empty() && scanned.len() < SCANNED_KEYS {
                let seen = scanned.contains(&key);
                scanned.push(key.clone());
                seen
            } else {
                hashed.extend(scanned.drain(..));
                !hashed.insert(key.clone())
            };
            if duplicate {
                return Err(serde::de::Error::custom(format_args!(
                    "the key {:?} appears twice in one object",
                    key.as_str()
                )));
            }
            map.next_value::<Storable>()?;
        }
        Ok(Storable)
    }
}

/// An object key, borrowed from the text unless it had escapes to decode.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl Key<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(value.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
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
        assert!(Payload::from_json(r#"{"x\u0000y":1}"#).is_err());
        assert!(Payload::from_json(r#"["\u0000"]"#).is_err());
        // An escaped backslash followed by the text u0000 holds no NUL.
        assert!(Payload::from_json(r#"{"a":"\\u0000"}"#).is_ok());
    }

    #[test]
    fn refuses_what_a_backend_or_a_reader_would_refuse_later() {
        for (bad, why) in [
            // serde_json names these "unexpected end of hex escape" or "lone leading surrogate
            // in hex escape".
            (r#"{"s":"\ud800"}"#, "escape"),
            (r#"{"\udc00":1}"#, "escape"),
            (r#"["x\udbff y"]"#, "escape"),
            (r#"{"n":1e400}"#, "out of range"),
            (r#"[-1e400]"#, "out of range"),
            (r#"{"a":1,"a":2}"#, "appears twice"),
            (r#"{"a":{"b":1,"b":1}}"#, "appears twice"),
            (r#"{"\u0061":1,"a":2}"#, "appears twice"),
            (r#"[1e-16384]"#, "16384 digits after the decimal point"),
            (r#"{"z":0e-20000}"#, "20000 digits"),
        ] {
            match Payload::from_json(bad) {
                Err(ValidationError::Payload { reason }) => {
                    assert!(reason.contains(why), "{bad}: {reason}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let fine = format!("[0.{}1, 1e-16383, 1.5e-16382]", "0".repeat(16381));
        assert!(Payload::from_json(fine).is_ok());
        let too_fine = format!("[0.{}1]", "0".repeat(16383));
        assert!(Payload::from_json(too_fine).is_err());
        // A surrogate pair is one character, and the same key in two objects is no duplicate.
        assert!(Payload::from_json(r#"{"s":"\ud83d\ude00"}"#).is_ok());
        assert!(Payload::from_json(r#"[{"a":1},{"a":1}]"#).is_ok());
        let many: Vec<String> = (0..100).map(|n| format!("\"k{n}\":{n}")).collect();
        assert!(Payload::from_json(format!("{{{}}}", many.join(","))).is_ok());
        let twice = format!("{{{},\"k57\":0}}", many.join(","));
        assert!(Payload::from_json(twice).is_err());
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
