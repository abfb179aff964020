//! The errors every backend returns, so callers can branch on what happened without knowing where.

use std::sync::Arc;

use strata_event::{AggregateRef, InstanceId, Sequence, SubjectId, UniqueType, ValidationError};
use strata_query::QueryError;
use thiserror::Error;

/// `Result` with Strata's storage [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of a backend failure, shareable because one failed group commit answers many callers.
pub type BackendCause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store refused or failed an operation. Whatever the variant, a push that returns an error
/// has written nothing — except [`Error::Unavailable`] during a push, where the connection broke and
/// the outcome is unknown: the push is then either entirely stored or entirely absent.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// A command or value broke the event model's rules.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A query was malformed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Other bad input (e.g. a push larger than [`crate::MAX_COMMANDS_PER_PUSH`]).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// A command expected its aggregate at another sequence than the store has.
    #[error(
        "conflict on aggregate {aggregate}: expected sequence {expected}, but it is at {actual}"
    )]
    Conflict {
        /// The aggregate.
        aggregate: AggregateRef,
        /// What the command expected.
        expected: Sequence,
        /// What the store has.
        actual: Sequence,
    },
    /// A unique constraint the push adds is already taken (or added twice by the push).
    #[error(
        "unique constraint {unique_type} = {value:?} in instance {instance_id} is already taken ({error_message_id})"
    )]
    UniqueConstraintViolation {
        /// The instance the constraint lives in.
        instance_id: InstanceId,
        /// The constraint's type.
        unique_type: UniqueType,
        /// The clashing value.
        value: String,
        /// The caller-supplied message id from the command.
        error_message_id: String,
    },
    /// A push named an idempotency key that an earlier push in the instance recorded with other
    /// commands. Nothing was written: a key names one logical push, and these commands are not it.
    #[error("idempotency key {key:?} in instance {instance_id} was used for different commands")]
    IdempotencyKeyReused {
        /// The key's instance.
        instance_id: InstanceId,
        /// The key.
        key: String,
    },
    /// A subject whose personal data was erased cannot get a key again: its id names someone who
    /// asked to be forgotten. Nothing was written.
    #[error("subject {subject_id} of instance {instance_id} was erased")]
    SubjectErased {
        /// The subject's instance.
        instance_id: InstanceId,
        /// The subject.
        subject_id: SubjectId,
    },
    /// The instance was moved away from the database the push reached: a sharded store routed it
    /// by a directory older than the move (or during the move's final catch-up). Nothing was
    /// written. Reload the directory and push again, on the shard it names now.
    #[error(
        "instance {instance_id} moved to shard {to}, and nothing was written: reload the shard \
         directory and push there"
    )]
    InstanceMoved {
        /// The instance.
        instance_id: InstanceId,
        /// The name of the shard it moved to (or is moving to).
        to: String,
    },
    /// The storage cannot be reached right now (connection refused or lost, pool timed out, server
    /// shutting down). Retrying later may succeed.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BackendCause>,
    },
    /// The storage failed in a way retrying will not fix (a bug, a schema mismatch, a missing
    /// migration).
    #[error("storage error: {message}")]
    Backend {
        /// What happened.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BackendCause>,
    },
}

/// The kind of an [`Error`](enum@Error), for branching without matching every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Validation`], [`Error::Query`] or [`Error::InvalidInput`].
    InvalidInput,
    /// [`Error::Conflict`].
    Conflict,
    /// [`Error::UniqueConstraintViolation`].
    UniqueConstraintViolation,
    /// [`Error::IdempotencyKeyReused`].
    IdempotencyKeyReused,
    /// [`Error::SubjectErased`].
    SubjectErased,
    /// [`Error::InstanceMoved`].
    InstanceMoved,
    /// [`Error::Unavailable`].
    Unavailable,
    /// [`Error::Backend`].
    Backend,
}

impl ErrorKind {
    /// The kind's name in snake case (`unique_constraint_violation`): the `kind` label of
    /// `strata_push_errors_total` and the `error.type` of a failed operation's span.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::UniqueConstraintViolation => "unique_constraint_violation",
            ErrorKind::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorKind::SubjectErased => "subject_erased",
            ErrorKind::InstanceMoved => "instance_moved",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Backend => "backend",
        }
    }
}

impl Error {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Validation(_) | Error::Query(_) | Error::InvalidInput { .. } => {
                ErrorKind::InvalidInput
            }
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::UniqueConstraintViolation { .. } => ErrorKind::UniqueConstraintViolation,
            Error::IdempotencyKeyReused { .. } => ErrorKind::IdempotencyKeyReused,
            Error::SubjectErased { .. } => ErrorKind::SubjectErased,
            Error::InstanceMoved { .. } => ErrorKind::InstanceMoved,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same operation later may succeed. Only [`ErrorKind::Unavailable`] is.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    #[doc(hidden)]
    pub fn invalid_input(reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            reason: reason.into(),
        }
    }
}
