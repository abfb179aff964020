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
}

/// Checks what a backend is asked to store about a key.
pub fn validate_key(key: &WrappedKey) -> Result<()> {
    if key.version == 0 {
        return Err(Error::invalid_input("a subject key's version starts at 1"));
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
