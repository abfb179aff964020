//! Opening the sealed fields of a stored payload.
//!
//! The sealed objects are found in the payload's text and the plaintext is spliced in their place,
//! so the typed decode still parses the payload once, as for an event without personal data.
//! (Inside a JSON string every quote is escaped, so `{"strata.sealed"` in the text can only be
//! the start of a sealed object.) A payload whose sealed objects are spelled otherwise (another
//! writer's whitespace) is opened through a parsed tree instead.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use strata_event::{Event, InstanceId, SubjectId};

use super::format::{self, may_be_sealed, replace_sealed, sealed_parts};
use super::key_cache::Cached;
use crate::error::DecodeFailure;

const SEALED_START: &str = "{\"strata.sealed\"";

/// The erased mark as text.
const ERASED_TEXT: &str = "{\"strata.erased\":{}}";

/// A stored payload's sealed fields, found.
pub(crate) enum Sealed<'a> {
    /// In the text, at these spans.
    Spans { text: &'a str, spans: Vec<Span<'a>> },
    /// In a parsed tree (sealed objects spelled with other whitespace), of an event on this
    /// aggregate id (the subject of a sealed string that names none).
    Tree(Value, &'a str),
}

/// One sealed object in a payload's text.
pub(crate) struct Span<'a> {
    start: usize,
    end: usize,
    subject: Cow<'a, str>,
    version: u32,
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedObject<'a> {
    #[serde(rename = "strata.sealed", borrow)]
    sealed: Cow<'a, str>,
}

impl<'a> Sealed<'a> {
    /// The sealed fields of `event`'s payload; `None` when it has none.
    pub(crate) fn find(event: &'a Event) -> Result<Option<Sealed<'a>>, DecodeFailure> {
        let Some(text) = event.raw_payload.json() else {
            return Ok(None);
        };
        let mut spans = Vec::new();
        let mut from = 0;
        while let Some(found) = text[from..].find(SEALED_START) {
            let start = from + found;
            let mut objects =
                serde_json::Deserializer::from_str(&text[start..]).into_iter::<SealedObject<'a>>();
            let parsed = match objects.next() {
                Some(Ok(object)) => Some((object.sealed, start + objects.byte_offset())),
                _ => None,
            };
            match parsed.and_then(|(sealed, end)| Some((span_of(sealed)?, end))) {
                Some(((subject, version, data), end)) => {
                    let subject = if subject.is_empty() {
                        Cow::Borrowed(event.aggregate.aggregate_id.as_str())
                    } else {
                        subject
                    };
                    spans.push(Span {
                        start,
                        end,
                        subject,
                        version,
                        data,
                    });
                    from = end;
                }
                None => {
                    return Err(DecodeFailure::Unsealable {
                        subject: "?".to_owned(),
                        reason: "a `strata.sealed` object is malformed".to_owned(),
                    });
                }
            }
        }
        if !spans.is_empty() {
            return Ok(Some(Sealed::Spans { text, spans }));
        }
        if !may_be_sealed(text) {
            return Ok(None);
        }
        // Spelled with other whitespace, or only a string mentioning the tag: parse to know.
        let tree: Value =
            serde_json::from_str(text).map_err(|err| DecodeFailure::Payload(err.to_string()))?;
        let mut any = false;
        let mut probe = tree.clone();
        let _ = replace_sealed::<()>(&mut probe, &mut |_| {
            any = true;
            Err(())
        });
        Ok(any.then_some(Sealed::Tree(tree, event.aggregate.aggregate_id.as_str())))
    }

    /// The subjects whose keys opening needs, each once.
    pub(crate) fn subjects(&self) -> Result<Vec<SubjectId>, DecodeFailure> {
        let mut subjects: Vec<SubjectId> = Vec::new();
        let mut note = |subject: &str| -> Result<(), DecodeFailure> {
            if !subjects.iter().any(|known| known.as_str() == subject) {
                subjects.push(subject_id(subject)?);
            }
            Ok(())
        };
        match self {
            Sealed::Spans { spans, .. } => {
                for span in spans {
                    note(&span.subject)?;
                }
            }
            Sealed::Tree(tree, aggregate_id) => {
                let mut tree = tree.clone();
                replace_sealed::<DecodeFailure>(&mut tree, &mut |sealed| {
                    if let Some((subject, _, _)) = sealed_parts(sealed) {
                        note(or_aggregate(subject, aggregate_id))?;
                    }
                    Ok(None)
                })?;
            }
        }
        Ok(subjects)
    }

    /// The payload text with every sealed field opened, or replaced by the erased mark when its
    /// subject was erased; the subjects whose data it opened are added to `opened` (each once, no
    /// allocation for one already there). `lookup` gives what is known of a subject's keys
    /// (`None`: nothing fetched, an error).
    pub(crate) fn open<'c>(
        &self,
        instance: &InstanceId,
        lookup: &dyn Fn(&str) -> Option<&'c Cached>,
        opened: &mut Vec<SubjectId>,
    ) -> Result<String, DecodeFailure> {
        match self {
            Sealed::Spans { text, spans } => {
                let mut out = String::with_capacity(text.len());
                let mut last = 0;
                for span in spans {
                    out.push_str(&text[last..span.start]);
                    match open_one(instance, &span.subject, span.version, &span.data, lookup)? {
                        Some(plaintext) => {
                            // Authenticated: exactly the JSON text `seal` was given.
                            out.push_str(std::str::from_utf8(&plaintext).map_err(|_| {
                                unsealable(&span.subject, "its plaintext is not UTF-8")
                            })?);
                            note_opened(opened, &span.subject)?;
                        }
                        None => out.push_str(ERASED_TEXT),
                    }
                    last = span.end;
                }
                out.push_str(&text[last..]);
                Ok(out)
            }
            Sealed::Tree(tree, aggregate_id) => {
                let mut tree = tree.clone();
                replace_sealed::<DecodeFailure>(&mut tree, &mut |sealed| {
                    let Some((subject, version, data)) = sealed_parts(sealed) else {
                        return Ok(None);
                    };
                    let subject = or_aggregate(subject, aggregate_id);
                    match open_one(instance, subject, version, data, lookup)? {
                        Some(plaintext) => {
                            note_opened(opened, subject)?;
                            serde_json::from_slice(&plaintext)
                                .map(Some)
                                .map_err(|_| unsealable(subject, "its plaintext is not JSON"))
                        }
                        None => Ok(Some(format::erased_mark())),
                    }
                })?;
                Ok(tree.to_string())
            }
        }
    }
}

/// `subject`, or the aggregate's id when the sealed string names none.
fn or_aggregate<'s>(subject: &'s str, aggregate_id: &'s str) -> &'s str {
    if subject.is_empty() {
        aggregate_id
    } else {
        subject
    }
}

/// The subject, key version and data of a sealed string, borrowed from the text when it has no
/// escapes (always, as Strata writes it).
fn span_of(sealed: Cow<'_, str>) -> Option<(Cow<'_, str>, u32, Cow<'_, str>)> {
    match sealed {
        Cow::Borrowed(text) => {
            let (subject, version, data) = format::split_sealed(text)?;
            Some((Cow::Borrowed(subject), version, Cow::Borrowed(data)))
        }
        Cow::Owned(text) => {
            let (subject, version, data) = format::split_sealed(&text)?;
            Some((
                Cow::Owned(subject.to_owned()),
                version,
                Cow::Owned(data.to_owned()),
            ))
        }
    }
}

/// The plaintext of one sealed field, or `None` when its subject was erased.
fn open_one<'c>(
    instance: &InstanceId,
    subject: &str,
    version: u32,
    data: &str,
    lookup: &dyn Fn(&str) -> Option<&'c Cached>,
) -> Result<Option<Vec<u8>>, DecodeFailure> {
    let cached = lookup(subject).ok_or_else(|| DecodeFailure::KeysUnavailable {
        subject: subject.to_owned(),
    })?;
    if cached.erased {
        return Ok(None);
    }
    let key = cached
        .key(version)
        .ok_or_else(|| DecodeFailure::KeyMissing {
            subject: subject.to_owned(),
            version,
        })?;
    let mut buffer = STANDARD_NO_PAD
        .decode(data)
        .map_err(|_| unsealable(subject, "its data is not base64"))?;
    if !key.open_in_place(instance.as_str(), subject, &mut buffer) {
        return Err(unsealable(
            subject,
            "it does not open with the subject's key",
        ));
    }
    Ok(Some(buffer))
}

fn note_opened(opened: &mut Vec<SubjectId>, subject: &str) -> Result<(), DecodeFailure> {
    if !opened.iter().any(|known| known.as_str() == subject) {
        opened.push(subject_id(subject)?);
    }
    Ok(())
}

fn subject_id(subject: &str) -> Result<SubjectId, DecodeFailure> {
    SubjectId::new(subject).map_err(|err| unsealable(subject, &err.to_string()))
}

fn unsealable(subject: &str, reason: &str) -> DecodeFailure {
    DecodeFailure::Unsealable {
        subject: subject.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(payload: &str) -> Event {
        Event {
            aggregate: strata_event::AggregateRef::new("acme", "customer", "c-1").unwrap(),
            event_type: strata_event::EventType::new("customer.registered").unwrap(),
            sequence: 1,
            revision: 1,
            created_at: chrono::DateTime::UNIX_EPOCH,
            creator: strata_event::Creator::new("t").unwrap(),
            owner: strata_event::Owner::new("o").unwrap(),
            position: strata_event::Position::ZERO,
            in_tx_order: 0,
            raw_payload: strata_event::Payload::from_json(payload).unwrap(),
            metadata: strata_event::Metadata::default(),
        }
    }

    #[test]
    fn sealed_objects_are_found_in_any_spelling_and_only_there() {
        // As serde_json writes it, as jsonb writes it, and pretty-printed.
        for payload in [
            r#"{"email":{"strata.sealed":"1:AAAA:c-1"},"plan":"gold"}"#,
            r#"{"plan": "gold", "email": {"strata.sealed": "1:AAAA:c-1"}}"#,
            "{ \"email\": { \"strata.sealed\" : \"1:AAAA:c-1\" } }",
            // The subject left out: the event's aggregate.
            r#"{"email":{"strata.sealed":"1:AAAA:"}}"#,
            "{ \"email\": { \"strata.sealed\" : \"1:AAAA:\" } }",
        ] {
            let event = event(payload);
            let sealed = Sealed::find(&event).unwrap().expect(payload);
            let subjects: Vec<String> = sealed
                .subjects()
                .unwrap()
                .into_iter()
                .map(SubjectId::into_string)
                .collect();
            assert_eq!(subjects, ["c-1"], "{payload}");
        }
        // The tag inside a string value is not a sealed field.
        let mention = event(r#"{"note":"{\"strata.sealed\": 1}"}"#);
        assert!(Sealed::find(&mention).unwrap().is_none());
        assert!(
            Sealed::find(&event(r#"{"plan":"gold"}"#))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_erased_subjects_fields_become_the_mark_in_place() {
        let event = event(
            r#"{"a":{"strata.sealed":"1:AAAA:c-1"},"b":[{"strata.sealed":"1:AAAA:c-1"}],"c":1}"#,
        );
        let erased = Cached {
            erased: true,
            keys: Vec::new(),
            fetched: std::time::Instant::now(),
        };
        let instance = InstanceId::new("acme").unwrap();
        let mut opened = Vec::new();
        let text = Sealed::find(&event)
            .unwrap()
            .unwrap()
            .open(&instance, &|_| Some(&erased), &mut opened)
            .unwrap();
        assert_eq!(
            text,
            format!(r#"{{"a":{ERASED_TEXT},"b":[{ERASED_TEXT}],"c":1}}"#)
        );
        assert!(opened.is_empty());
    }
}
