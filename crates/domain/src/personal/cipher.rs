//! The cryptography: AES-256-GCM with a random 96-bit nonce per message, for sealing fields under a
//! subject's data key and for wrapping data keys under a master key. Each ciphertext is bound (as
//! associated data) to where it belongs, so a ciphertext copied elsewhere does not open.

use aes_gcm::aead::{Aead, AeadCore, AeadInPlace, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use strata_event::{InstanceId, SubjectId};

use super::keyring::MasterKey;

const NONCE_LEN: usize = 12;

/// A subject's data key, in memory only.
#[derive(Clone)]
pub(crate) struct DataKey {
    version: u32,
    bytes: [u8; 32],
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random key of `version`.
    pub(crate) fn generate(version: u32) -> DataKey {
        let key: Key<Aes256Gcm> = Aes256Gcm::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(key.as_slice());
        DataKey::from_bytes(version, bytes)
    }

    fn from_bytes(version: u32, bytes: [u8; 32]) -> DataKey {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
        DataKey {
            version,
            bytes,
            cipher,
        }
    }

    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// Seals `plaintext` for `subject` of `instance`.
    pub(crate) fn seal(&self, instance: &str, subject: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut aad = [0u8; FIELD_AAD_MAX];
        let aad = field_aad(&mut aad, instance, subject, self.version);
        seal(&self.cipher, aad, plaintext)
    }

    /// Opens what [`seal`](DataKey::seal) made; `None` when it was altered or sealed elsewhere.
    #[cfg(test)]
    pub(crate) fn open(&self, instance: &str, subject: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buffer = sealed.to_vec();
        self.open_in_place(instance, subject, &mut buffer)
            .then_some(buffer)
    }

    /// Opens `buffer` (what [`seal`](DataKey::seal) made) into its plaintext, in place, without
    /// allocating; false when it was altered or sealed elsewhere (the buffer is then garbage).
    pub(crate) fn open_in_place(
        &self,
        instance: &str,
        subject: &str,
        buffer: &mut Vec<u8>,
    ) -> bool {
        if buffer.len() < NONCE_LEN + 16 {
            return false;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buffer[..NONCE_LEN]);
        buffer.drain(..NONCE_LEN);
        let mut aad = [0u8; FIELD_AAD_MAX];
        let aad = field_aad(&mut aad, instance, subject, self.version);
        self.cipher
            .decrypt_in_place(Nonce::from_slice(&nonce), aad, buffer)
            .is_ok()
    }

    /// This key wrapped by `master`.
    pub(crate) fn wrap(
        &self,
        master: &MasterKey,
        instance: &InstanceId,
        subject: &SubjectId,
    ) -> Vec<u8> {
        seal(
            master.cipher(),
            &key_aad(instance, subject, self.version),
            &self.bytes,
        )
    }

    /// Unwraps a key of `version` wrapped by `master`; `None` when it does not open.
    pub(crate) fn unwrap_with(
        master: &MasterKey,
        instance: &InstanceId,
        subject: &SubjectId,
        version: u32,
        wrapped: &[u8],
    ) -> Option<DataKey> {
        let bytes = open(
            master.cipher(),
            &key_aad(instance, subject, version),
            wrapped,
        )?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(DataKey::from_bytes(version, bytes))
    }

    #[cfg_attr(not(feature = "snapshots"), allow(dead_code))]
    /// Feeds this key into a derivation (the snapshot key of a state holding the subject's data).
    pub(crate) fn feed(&self, hasher: &mut Sha256) {
        hasher.update(self.version.to_be_bytes());
        hasher.update(self.bytes);
    }
}

/// A key derived from the data keys of every subject whose data a snapshot holds: erasing any of
/// them makes the snapshot unreadable.
#[cfg_attr(not(feature = "snapshots"), allow(dead_code))]
pub(crate) struct DerivedKey(Aes256Gcm);

#[cfg_attr(not(feature = "snapshots"), allow(dead_code))]
impl DerivedKey {
    pub(crate) fn from_hasher(hasher: Sha256) -> DerivedKey {
        let digest = hasher.finalize();
        DerivedKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&digest)))
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.0, aad, plaintext)
    }

    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, aad, sealed)
    }
}

fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    out.extend_from_slice(&nonce);
    // Encrypting into a Vec only fails when the message exceeds GCM's 64 GiB limit, which a
    // payload (1 MiB at most) cannot.
    if let Ok(ciphertext) = cipher.encrypt(
        &nonce,
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        out.extend_from_slice(&ciphertext);
    }
    out
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// The longest associated data of a field: the prefix, two ids of at most `MAX_ID_LEN` bytes,
/// two separators and the version.
const FIELD_AAD_MAX: usize = 16 + 2 * strata_event::MAX_ID_LEN + 2 + 4;

/// What a sealed field is bound to (its instance, subject and key version), written into `buffer`
/// on the stack: sealing and opening a field allocate nothing for it.
fn field_aad<'b>(
    buffer: &'b mut [u8; FIELD_AAD_MAX],
    instance: &str,
    subject: &str,
    version: u32,
) -> &'b [u8] {
    const PREFIX: &[u8] = b"strata.sealed/1\0";
    let parts: [&[u8]; 6] = [
        PREFIX,
        instance.as_bytes(),
        &[0],
        subject.as_bytes(),
        &[0],
        &version.to_be_bytes(),
    ];
    let mut at: usize = 0;
    for part in parts {
        let Some(end) = at
            .checked_add(part.len())
            .filter(|end| *end <= FIELD_AAD_MAX)
        else {
            // Ids are validated to MAX_ID_LEN, so this cannot happen; an empty slice would only
            // make the field fail to open, never open wrongly.
            return &[];
        };
        buffer[at..end].copy_from_slice(part);
        at = end;
    }
    &buffer[..at]
}

fn key_aad(instance: &InstanceId, subject: &SubjectId, version: u32) -> Vec<u8> {
    format!("strata.key/1\u{0}{instance}\u{0}{subject}\u{0}{version}").into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_sealed_field_opens_only_where_it_was_sealed() {
        let key = DataKey::generate(1);
        let sealed = key.seal("acme", "u-1", b"\"alice@example.com\"");
        assert_eq!(
            key.open("acme", "u-1", &sealed).unwrap(),
            b"\"alice@example.com\""
        );
        assert!(key.open("acme", "u-2", &sealed).is_none());
        assert!(key.open("other", "u-1", &sealed).is_none());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open("acme", "u-1", &altered).is_none());
        assert!(DataKey::generate(1).open("acme", "u-1", &sealed).is_none());
    }

    #[test]
    fn a_wrapped_key_unwraps_only_for_its_subject_and_version() {
        let (master, _) = MasterKey::generate("m1").unwrap();
        let instance = InstanceId::new("acme").unwrap();
        let subject = SubjectId::new("u-1").unwrap();
        let key = DataKey::generate(2);
        let wrapped = key.wrap(&master, &instance, &subject);
        let back = DataKey::unwrap_with(&master, &instance, &subject, 2, &wrapped).unwrap();
        assert_eq!(back.bytes, key.bytes);
        assert!(DataKey::unwrap_with(&master, &instance, &subject, 1, &wrapped).is_none());
        let other = SubjectId::new("u-2").unwrap();
        assert!(DataKey::unwrap_with(&master, &instance, &other, 2, &wrapped).is_none());
        let (stranger, _) = MasterKey::generate("m2").unwrap();
        assert!(DataKey::unwrap_with(&stranger, &instance, &subject, 2, &wrapped).is_none());
    }
}
