//! How personal data looks inside a stored payload: a sealed field is replaced by
//! `{"strata.sealed":"KEY:DATA:SUBJECT"}` (the subject's key version, the field's JSON sealed with
//! AES-256-GCM under that key in unpadded base64, and the subject's id, last because it may hold
//! any character; empty when the subject is the event's aggregate, the usual case), and a read
//! after the erasure puts `{"strata.erased":{}}` in its place. One short string, not an object of
//! three fields: every sealed event carries it, and its size is most of what sealing adds to
//! reading.
//!
//! The format is table-independent on read: sealed values are found wherever they are in the
//! payload, so events written at an older revision (with other field names) open like new ones.

use serde_json::Value;

/// The key of a sealed field's object.
pub(crate) const SEALED_TAG: &str = "strata.sealed";
/// The key of the mark an erased field reads as.
pub(crate) const ERASED_TAG: &str = "strata.erased";

/// Whether `text` (a stored payload) may hold a sealed field: a cheap test before parsing.
pub(crate) fn may_be_sealed(text: &str) -> bool {
    text.contains("\"strata.sealed\"")
}

/// Whether `value` is the erased mark.
pub(crate) fn is_erased_mark(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.len() == 1 && map.contains_key(ERASED_TAG))
}

/// Whether `value` is a sealed field.
pub(crate) fn is_sealed(value: &Value) -> bool {
    sealed_parts(value).is_some()
}

/// A sealed field's parts: subject, key version, base64 data.
pub(crate) fn sealed_parts(value: &Value) -> Option<(&str, u32, &str)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    split_sealed(map.get(SEALED_TAG)?.as_str()?)
}

/// `KEY:DATA:SUBJECT` into subject, key version and data.
pub(crate) fn split_sealed(sealed: &str) -> Option<(&str, u32, &str)> {
    let (version, rest) = sealed.split_once(':')?;
    let (data, subject) = rest.split_once(':')?;
    Some((subject, version.parse().ok()?, data))
}

/// The erased mark.
pub(crate) fn erased_mark() -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(ERASED_TAG.to_owned(), Value::Object(serde_json::Map::new()));
    Value::Object(map)
}

/// A sealed field's object.
#[cfg_attr(not(feature = "personal-data"), allow(dead_code))]
pub(crate) fn sealed_value(subject: &str, version: u32, data: &str) -> Value {
    let mut map = serde_json::Map::with_capacity(1);
    map.insert(
        SEALED_TAG.to_owned(),
        Value::String(format!("{version}:{data}:{subject}")),
    );
    Value::Object(map)
}

/// Calls `visit` on every sealed value in `value`, depth first, and replaces it with what
/// `visit` returns (`None`: leave it). Stops at the first error.
pub(crate) fn replace_sealed<E>(
    value: &mut Value,
    visit: &mut dyn FnMut(&Value) -> Result<Option<Value>, E>,
) -> Result<(), E> {
    if is_sealed(value) {
        if let Some(replacement) = visit(value)? {
            *value = replacement;
        }
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                replace_sealed(child, visit)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                replace_sealed(child, visit)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The value at `path` (dot-separated field names) in `value`, if present.
pub(crate) fn field_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(value, |current, name| {
        current.as_object_mut()?.get_mut(name)
    })
}
