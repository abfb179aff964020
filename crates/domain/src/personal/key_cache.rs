//! The unwrapped keys a vault holds in memory, by instance and subject, looked up by `&str`
//! without allocating (reading a sealed event must cost little more than reading a plain one).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use super::cipher::DataKey;

/// How many subjects' keys a vault keeps in memory.
const CAPACITY: usize = 100_000;

/// What the vault knows of one subject.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) erased: bool,
    /// Oldest version first.
    pub(crate) keys: Vec<DataKey>,
    pub(crate) fetched: Instant,
}

impl Cached {
    pub(crate) fn key(&self, version: u32) -> Option<&DataKey> {
        self.keys.iter().find(|key| key.version() == version)
    }
}

type Subjects = HashMap<String, Arc<Cached>>;

/// Subjects' keys by instance, then subject.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    map: RwLock<HashMap<String, Subjects>>,
}

/// A read view of the cache, held while a payload is opened.
pub(crate) struct KeyCacheRead<'a>(RwLockReadGuard<'a, HashMap<String, Subjects>>);

impl KeyCacheRead<'_> {
    pub(crate) fn get(&self, instance: &str, subject: &str) -> Option<&Cached> {
        self.shared(instance, subject).map(Arc::as_ref)
    }

    pub(crate) fn shared(&self, instance: &str, subject: &str) -> Option<&Arc<Cached>> {
        self.0.get(instance)?.get(subject)
    }
}

impl KeyCache {
    pub(crate) fn read(&self) -> KeyCacheRead<'_> {
        KeyCacheRead(
            self.map
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Stores what was fetched for `instance`; over capacity, drops what is older than
    /// `fresh_for` first, everything if that is not enough.
    pub(crate) fn insert_all(
        &self,
        instance: &str,
        fresh: impl IntoIterator<Item = (String, Arc<Cached>)>,
        fresh_for: Duration,
    ) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let len: usize = map.values().map(HashMap::len).sum();
        if len >= CAPACITY {
            let now = Instant::now();
            for subjects in map.values_mut() {
                subjects.retain(|_, cached| now.duration_since(cached.fetched) < fresh_for);
            }
            if map.values().map(HashMap::len).sum::<usize>() >= CAPACITY {
                map.clear();
            }
        }
        map.entry(instance.to_owned()).or_default().extend(fresh);
    }

    pub(crate) fn remove(&self, instance: &str, subject: &str) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(subjects) = map.get_mut(instance) {
            subjects.remove(subject);
        }
    }

    pub(crate) fn clear(&self) {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}
