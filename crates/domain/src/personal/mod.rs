//! Personal data: fields sealed per subject and erased by deleting the subject's keys
//! (crypto-shredding), while the events themselves stay append-only.
//!
//! - `field.rs`: [`Personal<T>`], the field type that reads as erased instead of failing.
//! - `format.rs`: how a sealed field and the erased mark look in a stored payload.
//! - `erasure.rs`: the event that records an erasure, on the `strata.subject` aggregate.
//! - `read.rs`: decoding with or without a vault, for every typed read path.
//! - With feature `personal-data`: `keyring.rs` (master keys), `cipher.rs` (AES-256-GCM),
//!   `key_cache.rs` (unwrapped keys in memory), `open.rs` (opening sealed fields in a payload's text), `vault.rs` (the [`Vault`] that seals,
//!   opens, erases and rotates), `error.rs`.
//!
//! `docs/personal-data.md` is the guide: declaring fields, erasing, rotating, what a service must
//! still do itself.

mod erasure;
mod field;
pub(crate) mod format;
mod read;

#[cfg(feature = "personal-data")]
mod cipher;
#[cfg(feature = "personal-data")]
mod error;
#[cfg(feature = "personal-data")]
mod key_cache;
#[cfg(feature = "personal-data")]
mod keyring;
#[cfg(feature = "personal-data")]
mod open;
#[cfg(feature = "personal-data")]
mod vault;

pub use self::erasure::{ERASURE_AGGREGATE_TYPE, ERASURE_EVENT_TYPE, ErasureRecord};
pub use self::field::Personal;
pub(crate) use self::read::ReadKeys;

#[cfg(feature = "personal-data")]
pub(crate) use self::cipher::DataKey;
#[cfg(feature = "personal-data")]
pub use self::error::KeyError;
#[cfg(feature = "personal-data")]
pub use self::keyring::{Keyring, MasterKey};
#[cfg(feature = "personal-data")]
pub use self::vault::{DEFAULT_KEYS_FRESH_FOR, Rotation, Vault, erase_subject, reapply_erasures};
#[cfg(feature = "personal-data")]
pub(crate) use self::vault::{OpenError, seal_value};
