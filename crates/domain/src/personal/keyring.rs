//! Master keys: the keys the service holds (from its secret store) that wrap every subject's data
//! key. Strata never stores them.

use std::fmt;

use aes_gcm::aead::{KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::KeyError;

/// A 256-bit master key and its id (stored beside every key it wraps, so a rotation knows what is
/// left to rewrap). `Debug` shows the id only.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    /// The master key `id` from 32 bytes.
    pub fn new(id: impl Into<String>, key: &[u8]) -> Result<Self, KeyError> {
        let id = id.into();
        strata_store::validate_master_key_id(&id).map_err(|err| KeyError::InvalidMasterKey {
            reason: err.to_string(),
        })?;
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| KeyError::InvalidMasterKey {
            reason: format!("a master key is 32 bytes, not {}", key.len()),
        })?;
        Ok(MasterKey { id, cipher })
    }

    /// The master key `id` from 32 bytes in standard base64.
    pub fn from_base64(id: impl Into<String>, key: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|err| KeyError::InvalidMasterKey {
                reason: format!("not base64: {err}"),
            })?;
        Self::new(id, &bytes)
    }

    /// Parses `id:base64` (how `STRATA_MASTER_KEY` and the CLI spell a master key).
    pub fn parse(spelled: &str) -> Result<Self, KeyError> {
        let (id, key) = spelled
            .split_once(':')
            .ok_or_else(|| KeyError::InvalidMasterKey {
                reason: "expected `id:base64-of-32-bytes`".to_owned(),
            })?;
        Self::from_base64(id, key)
    }

    /// A new random master key `id`, and its `id:base64` spelling to keep in a secret store.
    pub fn generate(id: impl Into<String>) -> Result<(Self, String), KeyError> {
        let id = id.into();
        let key: Key<Aes256Gcm> = Aes256Gcm::generate_key(&mut OsRng);
        let spelled = format!("{id}:{}", STANDARD.encode(key.as_slice()));
        Ok((Self::new(id, key.as_slice())?, spelled))
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The master keys a process holds: the current one wraps new keys (and a rotation rewraps to
/// it); previous ones still unwrap keys a rotation has not reached yet.
///
/// Rotating: deploy every process with the new key current and the old one previous, run
/// `strata keys rotate` (or [`Vault::rotate_master_key`](crate::Vault::rotate_master_key)), then
/// drop the old key.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring whose current master key is `current`.
    pub fn new(current: MasterKey) -> Self {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// Also unwraps keys wrapped by `previous`.
    #[must_use]
    pub fn with_previous(mut self, previous: MasterKey) -> Self {
        if previous.id != self.current.id && !self.previous.iter().any(|k| k.id == previous.id) {
            self.previous.push(previous);
        }
        self
    }

    /// The master key new keys are wrapped by.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The master key with id `id`.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn master_keys_refuse_bad_input_with_a_reason() {
        for (id, key) in [
            ("", [0u8; 32].as_slice()),
            ("a b", &[0u8; 32]),
            ("k", &[0u8; 31]),
        ] {
            assert!(matches!(
                MasterKey::new(id, key),
                Err(KeyError::InvalidMasterKey { .. })
            ));
        }
        for spelled in [
            "no-colon",
            "k:not base64!",
            "k:AAAA",
            ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(MasterKey::parse(spelled).is_err(), "{spelled}");
        }
        let (key, spelled) = MasterKey::generate("k1").unwrap();
        let parsed = MasterKey::parse(&spelled).unwrap();
        assert_eq!((key.id(), parsed.id()), ("k1", "k1"));
        assert!(!format!("{key:?}").contains(spelled.split(':').nth(1).unwrap()));
    }

    #[test]
    fn a_keyring_finds_current_and_previous_keys_once() {
        let (one, _) = MasterKey::generate("one").unwrap();
        let (two, _) = MasterKey::generate("two").unwrap();
        let ring = Keyring::new(two.clone())
            .with_previous(one.clone())
            .with_previous(one)
            .with_previous(two);
        assert_eq!(ring.current().id(), "two");
        assert_eq!(ring.get("one").map(MasterKey::id), Some("one"));
        assert!(ring.get("three").is_none());
        assert_eq!(ring.previous.len(), 1);
    }
}
