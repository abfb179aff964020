//! Which subject an event is published to: the default `<prefix>.<instance>.<aggregate type>.<event
//! type>`, or the caller's own mapping.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use strata_event::Event;

use crate::error::Error;

/// The first token of the default subjects.
pub const DEFAULT_SUBJECT_PREFIX: &str = "strata";

/// How an event's subject is chosen.
///
/// The default, [`Subjects::standard`], publishes to `strata.<instance>.<aggregate type>.<event
/// type>`, each part one token escaped by [`subject_token`]: `user.added` in aggregate type
/// `user` of instance `acme` goes to `strata.acme.user.user:added`, so `strata.acme.user.*` is
/// every event of acme's users and `strata.*.*.user:added` every sign-up. A stream must capture
/// the subjects (`strata.>`); a subject no stream captures fails its event (see the crate docs).
#[derive(Clone)]
pub struct Subjects(Mapping);

#[derive(Clone)]
enum Mapping {
    Standard { prefix: String },
    Custom(Arc<dyn Fn(&Event) -> String + Send + Sync>),
}

impl Subjects {
    /// `strata.<instance>.<aggregate type>.<event type>`.
    pub fn standard() -> Self {
        Subjects(Mapping::Standard {
            prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
        })
    }

    /// `<prefix>.<instance>.<aggregate type>.<event type>`. The prefix is one or more tokens
    /// (`shop`, `eu.shop`) of characters allowed in subjects, without wildcards.
    pub fn prefixed(prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        if let Err(reason) = check_subject(&prefix) {
            return Err(Error::InvalidSubjectPrefix { prefix, reason });
        }
        Ok(Subjects(Mapping::Standard { prefix }))
    }

    /// The subject `map` returns for each event. Escape the event's values with
    /// [`subject_token`] (ids are free text: dots, spaces, `*`). A subject that is not one
    /// NATS can publish to fails its event, with the reason, before anything is sent.
    ///
    /// ```
    /// use strata_nats::{Subjects, subject_token};
    ///
    /// // One subject per aggregate, e.g. for a stream that keeps the last message of each.
    /// let subjects = Subjects::custom(|event| {
    ///     format!(
    ///         "orders.{}.{}",
    ///         subject_token(event.aggregate.instance_id.as_str()),
    ///         subject_token(event.aggregate.aggregate_id.as_str()),
    ///     )
    /// });
    /// # let _ = subjects;
    /// ```
    pub fn custom(map: impl Fn(&Event) -> String + Send + Sync + 'static) -> Self {
        Subjects(Mapping::Custom(Arc::new(map)))
    }

    /// The subject of `event`, checked: the reason when NATS could not publish to it.
    pub(crate) fn subject(&self, event: &Event) -> Result<String, String> {
        let subject = match &self.0 {
            Mapping::Standard { prefix } => {
                let aggregate = &event.aggregate;
                format!(
                    "{prefix}.{}.{}.{}",
                    subject_token(aggregate.instance_id.as_str()),
                    subject_token(aggregate.aggregate_type.as_str()),
                    subject_token(event.event_type.as_str()),
                )
            }
            Mapping::Custom(map) => map(event),
        };
        check_subject(&subject)
            .map(|()| subject.clone())
            .map_err(|reason| format!("subject {subject:?} cannot be published to: {reason}"))
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::standard()
    }
}

impl fmt::Debug for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Mapping::Standard { prefix } => f
                .debug_struct("Subjects::Standard")
                .field("prefix", prefix)
                .finish(),
            Mapping::Custom(_) => f.write_str("Subjects::Custom(..)"),
        }
    }
}

/// `text` as one subject token that never collides with another text's: ASCII letters, digits,
/// `-` and `_` stay, `.` becomes `:` (so types read `user:added`), and every other byte of the
/// UTF-8 text becomes `%XX` (`:` is `%3A`, a space `%20`, `é` `%C3%A9`).
///
/// Injective on purpose: tenants `a.b` and `a:b` get tokens of their own, so a subscription to
/// one tenant's subjects never receives another's events. Readers should take ids from the
/// headers or the body, not by decoding subjects.
pub fn subject_token(text: &str) -> Cow<'_, str> {
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
    if text.bytes().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut token = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        match byte {
            b'.' => token.push(':'),
            byte if plain(byte) => token.push(char::from(byte)),
            byte => token.push_str(&format!("%{byte:02X}")),
        }
    }
    Cow::Owned(token)
}

/// Whether NATS can publish to `subject`: dot-separated tokens, none empty, no wildcard token,
/// no whitespace or control characters.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("it is empty".into());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or a control character".into());
    }
    for token in subject.split('.') {
        match token {
            "" => return Err("it has an empty token (two dots, or a dot at an end)".into()),
            "*" | ">" => return Err(format!("{token:?} is a wildcard, not a subject")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_plain_text_and_escape_the_rest_without_collisions() {
        assert_eq!(subject_token("acme-1_x"), "acme-1_x");
        assert_eq!(subject_token("user.added"), "user:added");
        assert_eq!(subject_token("a:b"), "a%3Ab");
        assert_eq!(subject_token("a b*>%"), "a%20b%2A%3E%25");
        assert_eq!(subject_token("é"), "%C3%A9");
        // Texts that a lossy replacement would merge stay apart.
        assert_ne!(subject_token("a.b"), subject_token("a:b"));
        assert_ne!(subject_token("a.b"), subject_token("a_b"));
        for token in ["a.b", "x y", "*", ">", "t\u{7f}"] {
            let escaped = subject_token(token);
            assert_eq!(check_subject(&escaped), Ok(()), "{escaped}");
            assert!(!escaped.contains('.'), "{escaped}");
        }
    }

    #[test]
    fn prefixes_and_custom_subjects_are_checked() {
        assert!(Subjects::prefixed("eu.shop").is_ok());
        for bad in ["", "a..b", "a.*", ">", "a b", ".a"] {
            assert!(
                matches!(
                    Subjects::prefixed(bad),
                    Err(Error::InvalidSubjectPrefix { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
