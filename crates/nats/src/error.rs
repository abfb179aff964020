//! What can go wrong setting a sink up. Publishing failures are not here: they are the
//! consumer's [`HandleError`](strata_projection::HandleError)s, recorded and retried by the
//! runtime.

use std::time::Duration;

/// A sink or stream could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The subject prefix is not one NATS can publish under.
    #[error("invalid subject prefix {prefix:?}: {reason}")]
    InvalidSubjectPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JetStream context waits for an acknowledgement at least as long as the runtime lets a
    /// batch take, so a broker that does not answer would abandon every batch instead of failing
    /// its first event.
    #[error(
        "the JetStream context waits {ack_timeout:?} for an acknowledgement, not less than the \
         consumer's transaction_duration of {transaction_duration:?}: lower the context's \
         timeout or raise transaction_duration"
    )]
    AckTimeoutTooLong {
        /// The context's timeout.
        ack_timeout: Duration,
        /// The consumer's bound on a batch.
        transaction_duration: Duration,
    },
    /// [`ensure_stream`](crate::ensure_stream) could not read or create the stream.
    #[error("could not ensure JetStream stream {name}")]
    Stream {
        /// The stream's name.
        name: String,
        /// What the server or the client said.
        #[source]
        source: async_nats::Error,
    },
    /// The stream exists but does not capture a subject it was asked to.
    #[error(
        "JetStream stream {name} exists but captures {captured:?}, not {missing:?}: add the \
         subject to the stream (`nats stream edit`) or publish under another prefix"
    )]
    StreamMissesSubject {
        /// The stream's name.
        name: String,
        /// What it captures.
        captured: Vec<String>,
        /// The subject it was asked to capture and does not list.
        missing: String,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
