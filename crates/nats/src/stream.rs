//! Creating the stream a sink publishes into, when a service wants to own it. Nothing here runs
//! unless called: building a sink never touches the broker.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config, Info, StorageType};

use crate::error::{Error, Result};

/// The duplicate window [`ensure_stream`] gives a stream it creates (JetStream's own default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Makes sure stream `name` exists and captures `subjects` (filters such as `strata.>`), and
/// returns what the server says about it.
///
/// A missing stream is created with file storage and a duplicate window of
/// [`DEFAULT_DUPLICATE_WINDOW`]; an existing one is left as its owner configured it (limits,
/// replicas, window), and only checked: when one of `subjects` is not covered by its subjects the
/// answer is [`Error::StreamMissesSubject`] rather than an edit of someone else's stream. For
/// other settings, create the stream yourself with `Context::create_stream`.
pub async fn ensure_stream(context: &Context, name: &str, subjects: &[&str]) -> Result<Info> {
    let failed = |source: async_nats::Error| Error::Stream {
        name: name.to_owned(),
        source,
    };
    let config = Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|&subject| subject.to_owned()).collect(),
        storage: StorageType::File,
        duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        ..Config::default()
    };
    let mut stream = context
        .get_or_create_stream(config)
        .await
        .map_err(|err| failed(err.into()))?;
    let info = stream
        .info()
        .await
        .map_err(|err| failed(err.into()))?
        .clone();
    for subject in subjects {
        let covered = info
            .config
            .subjects
            .iter()
            .any(|filter| covers(filter, subject));
        if !covered {
            return Err(Error::StreamMissesSubject {
                name: name.to_owned(),
                captured: info.config.subjects.clone(),
                missing: (*subject).to_owned(),
            });
        }
    }
    Ok(info)
}

/// Whether every subject `subject` matches is matched by `filter` (both may hold wildcards):
/// `>` covers one or more remaining tokens, `*` one token (or a `*`), a literal itself.
fn covers(filter: &str, subject: &str) -> bool {
    let mut filter = filter.split('.');
    let mut subject = subject.split('.');
    loop {
        match (filter.next(), subject.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(wanted), Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn filters_cover_what_they_match_and_nothing_wider() {
        assert!(covers("strata.>", "strata.>"));
        assert!(covers("strata.>", "strata.acme.>"));
        assert!(covers("strata.>", "strata.*.user.*"));
        assert!(covers("strata.*.user.*", "strata.acme.user.user:added"));
        assert!(covers("strata.*.user.*", "strata.*.user.*"));
        assert!(!covers("strata.*.user.*", "strata.>"));
        assert!(!covers("strata.acme.>", "strata.>"));
        assert!(!covers("strata.>", "strata"));
        assert!(!covers("strata", "strata.>"));
        assert!(!covers("orders.>", "strata.>"));
    }
}
