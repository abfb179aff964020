//! Where the keys of personal data live: per-subject data keys, stored wrapped (encrypted by a
//! master key the service holds), and the record of which subjects were erased.
//!
//! The store never sees a key in the clear and does no cryptography: it keeps wrapped bytes, hands
//! them out, deletes them when a subject is erased, and swaps them when the master key rotates.
//! Encrypting and decrypting is the typed layer's job (`strata-domain`'s `Vault`).
//!
//! What a backend guarantees:
//!
//! - **Erasure is atomic and final.** [`SubjectKeyStore::erase_subject`] deletes every key of the
//!   subject, records the subject as erased and pushes the caller's record of it (an event) in one
//!   transaction; afterwards no key of the subject can be created again
//!   ([`Error::SubjectErased`]).
//! - **One key per (subject, version).** Two processes creating a subject's first key at once
//!   both end up with the one that was stored first.
//! - **Rotation is a compare-and-swap** per key, so readers always find a key some master key in
//!   the keyring can unwrap.

use futures::future::BoxFuture;
use strata_event::{Command, Event, InstanceId, SubjectId};

use crate::error::{Error, Result};

/// One data key of a subject, wrapped by a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The instance the subject lives in.
    pub instance_id: InstanceId,
    /// Whose data the key encrypts.
    pub subject_id: SubjectId,
    /// The key's version: 1 first, higher after a subject key rotation. Data encrypted with an
    /// older version stays readable while that version exists.
    pub version: u32,
    /// The id of the master key that wrapped it.
    pub master_key_id: String,
    /// The wrapped key: nonce and ciphertext, opaque to the store.
    pub wrapped: Vec<u8>,
}

/// What the store holds for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKeys {
    /// The subject.
    pub subject_id: SubjectId,
    /// Its keys, oldest version first; empty when it has none (never had any, or erased).
    pub keys: Vec<WrappedKey>,
    /// Whether the subject was erased: its keys are gone for good.
    pub erased: bool,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    /// The keys deleted (0 when the subject had none or was erased before).
    pub keys_deleted: u64,
    /// The recorded event, or `None` when the subject had been erased before (and its first
    /// erasure's event is the record).
    pub recorded: Option<Event>,
}

/// A subject whose keys were just deleted (erased, or forgotten again), as a store announces it to
/// every vault on it, in this process and, where the backend can, in others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedSubject {
    /// The subject's instance.
    pub instance_id: InstanceId,
    /// The subject.
    pub subject_id: SubjectId,
}

/// How many erasure notices a vault may fall behind before it misses some (it then forgets every
/// key it holds).
pub const ERASURE_NOTICE_CAPACITY: usize = 256;

/// The longest id a master key may have.
pub const MAX_MASTER_KEY_ID_LEN: usize = 64;

/// The keys of personal data, on the same storage as the events (so an erasure and its record
/// commit together). Implemented by every backend; object safe, so the typed layer holds it as
/// `Arc<dyn SubjectKeyStore>`.
pub trait SubjectKeyStore: Send + Sync + std::fmt::Debug {
    /// The keys of each of `subjects` in `instance_id`, in the order asked (duplicates once).
    fn subject_keys<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subjects: &'a [SubjectId],
    ) -> BoxFuture<'a, Result<Vec<SubjectKeys>>>;

    /// Stores `key` unless the subject already has a key of that version, and returns the key the
    /// store holds for that version (`key`, or the one another writer stored first). Fails with
    /// [`Error::SubjectErased`] when the subject was erased.
    fn create_subject_key<'a>(&'a self, key: WrappedKey) -> BoxFuture<'a, Result<WrappedKey>>;

    /// Erases `subject_id` in `instance_id`: deletes its keys, records it as erased and pushes
    /// `record` (an event of the erasure, in the same instance), in one transaction. Erasing an
    /// erased subject changes nothing and pushes nothing.
    fn erase_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
        record: Command,
    ) -> BoxFuture<'a, Result<Erasure>>;

    /// Records `subject_id` as erased and deletes its keys without pushing anything: replaying an
    /// erasure recorded earlier (after keys were restored from an older backup). Returns the keys
    /// deleted.
    fn forget_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Up to `limit` keys (of any instance) wrapped by a master key other than `master_key_id`:
    /// the next ones a rotation to `master_key_id` rewraps.
    fn keys_not_wrapped_by<'a>(
        &'a self,
        master_key_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<WrappedKey>>>;

    /// Replaces `old` by `new` (the same key wrapped by another master key) if the store still
    /// holds `old` exactly; returns whether it did.
    fn rewrap_key<'a>(
        &'a self,
        old: &'a WrappedKey,
        new: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Notices of subjects whose keys were deleted, from this store's erasures and, where the
    /// backend can hear them, other processes'; `None` when it announces nothing. A vault forgets
    /// the keys it holds for them at once, instead of after its `fresh_for`.
    fn erasures(&self) -> Option<tokio::sync::broadcast::Receiver<ErasedSubject>> {
        None
    }
}

/// Checks what a backend is asked to store about a key.
pub fn validate_key(key: &WrappedKey) -> Result<()> {
    if key.version == 0 || key.version > i32::MAX as u32 {
        return Err(Error::invalid_input(format!(
            "a subject key's version is 1 to {}, not {}",
            i32::MAX,
            key.version
        )));
    }
    validate_master_key_id(&key.master_key_id)?;
    if key.wrapped.is_empty() || key.wrapped.len() > 1024 {
        return Err(Error::invalid_input(format!(
            "a wrapped key is 1 to 1024 bytes, not {}",
            key.wrapped.len()
        )));
    }
    Ok(())
}

/// Checks a rewrap: `new` is a valid key of the same subject and version as `old`.
pub fn validate_rewrap(old: &WrappedKey, new: &WrappedKey) -> Result<()> {
    validate_key(new)?;
    if (&old.instance_id, &old.subject_id, old.version)
        != (&new.instance_id, &new.subject_id, new.version)
    {
        return Err(Error::invalid_input(
            "a rewrapped key keeps its subject and version",
        ));
    }
    Ok(())
}

/// Checks an erasure's record: one valid command in the subject's instance, with no expected
/// sequence or unique constraint (an erasure must not fail on either).
pub fn validate_erasure_record(instance_id: &InstanceId, record: &Command) -> Result<()> {
    crate::store::validate_push(std::slice::from_ref(record))?;
    if record.aggregate().instance_id != *instance_id {
        return Err(Error::invalid_input(
            "an erasure's record is pushed to the subject's instance",
        ));
    }
    if record.expected_sequence().is_some() || !record.unique_constraints().is_empty() {
        return Err(Error::invalid_input(
            "an erasure's record carries no expected sequence or unique constraint",
        ));
    }
    Ok(())
}

/// Checks a master key id: 1 to [`MAX_MASTER_KEY_ID_LEN`] printable ASCII characters.
pub fn validate_master_key_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_MASTER_KEY_ID_LEN
        || !id.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(Error::invalid_input(format!(
            "a master key id is 1 to {MAX_MASTER_KEY_ID_LEN} printable ASCII characters, not {id:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(version: u32, master: &str, wrapped: usize) -> WrappedKey {
        WrappedKey {
            instance_id: InstanceId::new("acme").unwrap(),
            subject_id: SubjectId::new("u-1").unwrap(),
            version,
            master_key_id: master.to_owned(),
            wrapped: vec![7; wrapped],
        }
    }

    #[test]
    fn bad_keys_rewraps_and_records_are_refused_alike_on_every_backend() {
        assert!(validate_key(&key(1, "m1", 60)).is_ok());
        for bad in [
            key(0, "m1", 60),
            key(i32::MAX as u32 + 1, "m1", 60),
            key(1, "", 60),
            key(1, "has space", 60),
            key(1, &"m".repeat(MAX_MASTER_KEY_ID_LEN + 1), 60),
            key(1, "m1", 0),
            key(1, "m1", 1025),
        ] {
            assert!(
                matches!(validate_key(&bad), Err(Error::InvalidInput { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_rewrap(&key(1, "m1", 60), &key(1, "m2", 60)).is_ok());
        assert!(validate_rewrap(&key(1, "m1", 60), &key(2, "m2", 60)).is_err());

        let acme = InstanceId::new("acme").unwrap();
        let record = |instance: &str| {
            Command::builder(instance, "strata.subject", "u-1", "strata.subject.erased")
                .creator("dpo")
                .owner("org")
        };
        assert!(validate_erasure_record(&acme, &record("acme").build().unwrap()).is_ok());
        assert!(validate_erasure_record(&acme, &record("other").build().unwrap()).is_err());
        let expecting = record("acme").expect_sequence(0).build().unwrap();
        assert!(validate_erasure_record(&acme, &expecting).is_err());
    }
}
