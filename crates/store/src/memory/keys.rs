//! [`SubjectKeyStore`] in memory: keys and erased subjects beside the events, under the store's
//! one lock, so an erasure and its recorded event are one step.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use strata_event::{Command, InstanceId, SubjectId};

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::keys::{
    ErasedSubject, Erasure, SubjectKeyStore, SubjectKeys, WrappedKey, validate_erasure_record,
    validate_key, validate_master_key_id, validate_rewrap,
};
use crate::store::Pushed;

type Subject = (InstanceId, SubjectId);

impl MemoryStore {
    fn announce_erasure(&self, instance_id: &InstanceId, subject_id: &SubjectId) {
        // No vault listening is not an error.
        let _ = self.erasures.send(ErasedSubject {
            instance_id: instance_id.clone(),
            subject_id: subject_id.clone(),
        });
    }
}

/// The keys of every subject (by version) and the subjects erased.
#[derive(Debug, Default)]
pub(super) struct SubjectKeyState {
    keys: HashMap<Subject, Vec<WrappedKey>>,
    erased: HashSet<Subject>,
}

impl SubjectKeyStore for MemoryStore {
    fn subject_keys<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subjects: &'a [SubjectId],
    ) -> BoxFuture<'a, Result<Vec<SubjectKeys>>> {
        let state = self.lock();
        let mut seen = HashSet::new();
        let found = subjects
            .iter()
            .filter(|subject| seen.insert(*subject))
            .map(|subject| {
                let id = (instance_id.clone(), subject.clone());
                SubjectKeys {
                    subject_id: subject.clone(),
                    keys: state
                        .subject_keys
                        .keys
                        .get(&id)
                        .cloned()
                        .unwrap_or_default(),
                    erased: state.subject_keys.erased.contains(&id),
                }
            })
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn create_subject_key<'a>(&'a self, key: WrappedKey) -> BoxFuture<'a, Result<WrappedKey>> {
        let outcome = validate_key(&key).and_then(|()| {
            let mut state = self.lock();
            let id = (key.instance_id.clone(), key.subject_id.clone());
            if state.subject_keys.erased.contains(&id) {
                return Err(Error::SubjectErased {
                    instance_id: id.0,
                    subject_id: id.1,
                });
            }
            let versions = state.subject_keys.keys.entry(id).or_default();
            if let Some(stored) = versions.iter().find(|stored| stored.version == key.version) {
                return Ok(stored.clone());
            }
            versions.push(key.clone());
            versions.sort_by_key(|stored| stored.version);
            Ok(key)
        });
        Box::pin(std::future::ready(outcome))
    }

    fn erase_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
        record: Command,
    ) -> BoxFuture<'a, Result<Erasure>> {
        let outcome = (|| {
            validate_erasure_record(instance_id, &record)?;
            let mut state = self.lock();
            let id = (instance_id.clone(), subject_id.clone());
            if state.subject_keys.erased.contains(&id) {
                return Ok((0, Vec::new()));
            }
            // The push checks everything before it changes anything: when it fails, the keys
            // are still there.
            let stored = state.push(vec![record])?;
            let deleted = state
                .subject_keys
                .keys
                .remove(&id)
                .map_or(0, |keys| keys.len());
            state.subject_keys.erased.insert(id);
            Ok((deleted as u64, stored))
        })();
        let outcome = match outcome {
            Ok((keys_deleted, stored)) => {
                if let Some(pushed) = Pushed::of(&stored) {
                    let _ = self.pushes.send(pushed);
                }
                self.announce_erasure(instance_id, subject_id);
                Ok(Erasure {
                    keys_deleted,
                    recorded: stored.into_iter().next(),
                })
            }
            Err(err) => Err(err),
        };
        Box::pin(std::future::ready(outcome))
    }

    fn forget_subject<'a>(
        &'a self,
        instance_id: &'a InstanceId,
        subject_id: &'a SubjectId,
    ) -> BoxFuture<'a, Result<u64>> {
        let mut state = self.lock();
        let id = (instance_id.clone(), subject_id.clone());
        let deleted = state
            .subject_keys
            .keys
            .remove(&id)
            .map_or(0, |keys| keys.len());
        state.subject_keys.erased.insert(id);
        drop(state);
        self.announce_erasure(instance_id, subject_id);
        Box::pin(std::future::ready(Ok(deleted as u64)))
    }

    fn keys_not_wrapped_by<'a>(
        &'a self,
        master_key_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<WrappedKey>>> {
        let outcome = validate_master_key_id(master_key_id).map(|()| {
            let state = self.lock();
            let mut found: Vec<WrappedKey> = state
                .subject_keys
                .keys
                .values()
                .flatten()
                .filter(|key| key.master_key_id != master_key_id)
                .cloned()
                .collect();
            found.sort_by(|a, b| {
                (&a.instance_id, &a.subject_id, a.version).cmp(&(
                    &b.instance_id,
                    &b.subject_id,
                    b.version,
                ))
            });
            found.truncate(limit as usize);
            found
        });
        Box::pin(std::future::ready(outcome))
    }

    fn erasures(&self) -> Option<tokio::sync::broadcast::Receiver<ErasedSubject>> {
        Some(self.erasures.subscribe())
    }

    fn rewrap_key<'a>(
        &'a self,
        old: &'a WrappedKey,
        new: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<bool>> {
        let outcome = validate_rewrap(old, new).map(|()| {
            let mut state = self.lock();
            let id = (old.instance_id.clone(), old.subject_id.clone());
            let stored =
                state.subject_keys.keys.get_mut(&id).and_then(|versions| {
                    versions.iter_mut().find(|key| key.version == old.version)
                });
            match stored {
                // Compare-and-swap: only the exact wrapping the rotation read is replaced.
                Some(stored) if stored == old => {
                    *stored = new.clone();
                    true
                }
                _ => false,
            }
        });
        Box::pin(std::future::ready(outcome))
    }
}
