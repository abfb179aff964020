//! What one event becomes on the wire: its identity in headers, its JSON form as the body.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use strata_event::Event;

/// Header with the event's identity as JetStream's message id, see [`message_id`].
pub const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";
/// Header with the event's instance.
pub const INSTANCE_HEADER: &str = "Strata-Instance";
/// Header with the event's aggregate type.
pub const AGGREGATE_TYPE_HEADER: &str = "Strata-Aggregate-Type";
/// Header with the event's aggregate id.
pub const AGGREGATE_ID_HEADER: &str = "Strata-Aggregate-Id";
/// Header with the event's sequence in its aggregate (1, 2, 3…).
pub const SEQUENCE_HEADER: &str = "Strata-Sequence";
/// Header with the event's place in the store's total order, as cursor text
/// (`position:in_tx_order`, see `strata_event::Cursor`).
pub const POSITION_HEADER: &str = "Strata-Position";
/// Header with the event's type.
pub const EVENT_TYPE_HEADER: &str = "Strata-Event-Type";

/// The event's identity as one text, `instance/aggregate_type/aggregate_id/sequence`, sent as
/// `Nats-Msg-Id`: JetStream drops a message whose id it stored within the stream's duplicate
/// window, so a re-publish after a crash or a lost acknowledgement is not stored twice.
///
/// `%`, `/` and whitespace in the instance and the aggregate id are written `%XX`, so two events
/// never share an id (`a/b` + `c` and `a` + `b/c` would otherwise) and no NATS header parser
/// trims it.
///
/// ```
/// # fn main() -> Result<(), serde_json::Error> {
/// # let event: strata_event::Event = serde_json::from_value(serde_json::json!({
/// #     "aggregate": { "instance_id": "acme", "aggregate_type": "user", "aggregate_id": "u/1" },
/// #     "event_type": "user.added", "sequence": 3, "revision": 1,
/// #     "created_at": "2026-01-01T00:00:00Z", "creator": "admin", "owner": "acme",
/// #     "position": "1731582100.784168", "in_tx_order": 0, "payload": { "name": "alice" },
/// # }))?;
/// // The third event of user `u/1` in instance `acme`:
/// assert_eq!(strata_nats::message_id(&event), "acme/user/u%2F1/3");
/// # Ok(())
/// # }
/// ```
pub fn message_id(event: &Event) -> String {
    let aggregate = &event.aggregate;
    format!(
        "{}/{}/{}/{}",
        id_part(aggregate.instance_id.as_str()),
        aggregate.aggregate_type,
        id_part(aggregate.aggregate_id.as_str()),
        event.sequence
    )
}

/// The message for `event`: identity headers, and the body, the event's JSON form (`Event`'s
/// serde form, which `serde_json::from_slice::<strata_event::Event>` reads back).
pub(crate) fn message(event: &Event) -> Result<PublishMessage, serde_json::Error> {
    let body = serde_json::to_vec(event)?;
    Ok(PublishMessage::build()
        .payload(body.into())
        .headers(headers(event)))
}

fn headers(event: &Event) -> HeaderMap {
    let aggregate = &event.aggregate;
    let mut headers = HeaderMap::new();
    headers.insert(MESSAGE_ID_HEADER, message_id(event));
    headers.insert(INSTANCE_HEADER, aggregate.instance_id.as_str());
    headers.insert(AGGREGATE_TYPE_HEADER, aggregate.aggregate_type.as_str());
    headers.insert(AGGREGATE_ID_HEADER, aggregate.aggregate_id.as_str());
    headers.insert(SEQUENCE_HEADER, event.sequence.to_string());
    headers.insert(POSITION_HEADER, event.cursor().to_string());
    headers.insert(EVENT_TYPE_HEADER, event.event_type.as_str());
    headers
}

/// `text` with `%`, `/` and whitespace written `%XX` (each byte of their UTF-8).
fn id_part(text: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c == '%' || c == '/' || c.is_whitespace();
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut part = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            let mut utf8 = [0; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                part.push_str(&format!("%{byte:02X}"));
            }
        } else {
            part.push(c);
        }
    }
    std::borrow::Cow::Owned(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parts_escape_only_what_would_make_ids_ambiguous_or_trimmed() {
        assert_eq!(id_part("acme"), "acme");
        assert_eq!(id_part("a/b"), "a%2Fb");
        assert_eq!(id_part("100%"), "100%25");
        assert_eq!(id_part(" x\u{a0}"), "%20x%C2%A0");
        assert_eq!(id_part("é.*"), "é.*");
        // The two ways to split `a/b/c` into instance and id no longer meet.
        assert_ne!(
            format!("{}/t/{}", id_part("a/b"), id_part("c")),
            format!("{}/t/{}", id_part("a"), id_part("b/c"))
        );
    }
}
