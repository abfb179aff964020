//! What managing personal-data keys can meet.

use strata_event::{InstanceId, SubjectId};
use thiserror::Error;

/// A key operation failed: the store, or a master key that cannot do what was asked.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The store refused or failed ([`Error::SubjectErased`](strata_store::Error) when writing
    /// personal data of an erased subject; `Unavailable` when it cannot be reached).
    #[error(transparent)]
    Store(#[from] strata_store::Error),
    /// A master key was given wrong (its id or its bytes).
    #[error("invalid master key: {reason}")]
    InvalidMasterKey {
        /// What is wrong.
        reason: String,
    },
    /// A stored key is wrapped by a master key this process's keyring does not hold: add it as a
    /// previous key ([`Keyring::with_previous`](crate::Keyring::with_previous)).
    #[error(
        "the key of subject {subject_id} (instance {instance_id}) is wrapped by master key \
         {master_key_id:?}, which the keyring does not hold"
    )]
    MasterKeyUnknown {
        /// The subject's instance.
        instance_id: InstanceId,
        /// The subject.
        subject_id: SubjectId,
        /// The master key it needs.
        master_key_id: String,
    },
    /// A stored key does not open with the master key of its id: the master key's bytes are not
    /// the ones that wrapped it, or the row was altered.
    #[error(
        "the key of subject {subject_id} (instance {instance_id}) does not open with master key \
         {master_key_id:?}"
    )]
    KeyDoesNotOpen {
        /// The subject's instance.
        instance_id: InstanceId,
        /// The subject.
        subject_id: SubjectId,
        /// The master key tried.
        master_key_id: String,
    },
    /// An id given to a key operation was not valid.
    #[error(transparent)]
    Invalid(#[from] strata_event::ValidationError),
}
