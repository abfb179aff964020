//! The memory connector: one moka map per index from key to object, in this process only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache as Moka;

use crate::config::CacheConfig;

/// One stored object: the value, the keys it was stored under (so invalidation finds them all),
/// and its own clock, because expiry is per object while moka's time-to-idle would be per key.
struct Stored<V> {
    value: V,
    keys: Vec<(usize, String)>,
    created: Instant,
    /// Nanoseconds after `created` of the last read.
    last_used: AtomicU64,
    /// Cleared when the object is removed or any of its keys is evicted for room: from then on
    /// none of its other keys finds it, so eviction can never leave a partial ("ghost") object.
    alive: AtomicBool,
}

/// A hit is one lock-free moka lookup, an atomic load (plus a clock read when the cache has ages)
/// and a clone of the value.
///
/// Capacity is counted in keys (`max_entries` per index): moka evicts the least useful. Expired
/// objects are never returned; their keys go when moka's time-to-live (`max_age`) removes them,
/// when a read finds them, or on [`MemoryConnector::prune`].
pub(crate) struct MemoryConnector<V> {
    /// Indexed by the index's position in `Index::ALL`.
    keys: Vec<Moka<String, Arc<Stored<V>>>>,
    max_age: Option<Duration>,
    last_use_age: Option<Duration>,
    /// Serialises writers: without it two concurrent sets sharing a key could each miss the
    /// other's object and leave a ghost reachable through its other keys. Reads never take it.
    writes: Mutex<()>,
}

impl<V> std::fmt::Debug for MemoryConnector<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: u64 = self.keys.iter().map(Moka::entry_count).sum();
        f.debug_struct("MemoryConnector")
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// Reads refresh the last-use time at most this often, so hot objects read from many threads do
/// not bounce its cache line on every hit. An idle object may expire this much early, never late.
const TOUCH_GRANULARITY_NANOS: u64 = 1_000_000;

impl<V: Clone + Send + Sync + 'static> MemoryConnector<V> {
    pub(crate) fn new(config: &CacheConfig, index_count: usize) -> Self {
        let keys = (0..index_count)
            .map(|_| {
                // LRU, not moka's default TinyLFU: TinyLFU may refuse a new key outright, and
                // each index decides alone, so an object survived only where every index happened
                // to keep its key (after heavy churn, sometimes none did, and a `set` was not
                // readable right after). Under LRU all keys of an object, written together, age
                // together, and what was just set is there.
                let mut builder = Moka::builder()
                    .max_capacity(config.max_entries)
                    .eviction_policy(EvictionPolicy::lru())
                    .eviction_listener(|_key, stored: Arc<Stored<V>>, cause| {
                        // Only eviction for room takes an object away behind our back; the
                        // other causes are our own removals, replacements and expiry.
                        if cause == RemovalCause::Size {
                            stored.alive.store(false, Ordering::Release);
                        }
                    });
                if let Some(max_age) = config.max_age {
                    // All keys of an object are written with it, so they expire with it.
                    builder = builder.time_to_live(max_age);
                }
                builder.build()
            })
            .collect();
        MemoryConnector {
            keys,
            max_age: config.max_age,
            last_use_age: config.last_use_age,
            writes: Mutex::new(()),
        }
    }

    pub(crate) fn get(&self, index: usize, key: &str) -> Option<V> {
        let stored = self.keys.get(index)?.get(key)?;
        if self.is_live(&stored, true) {
            return Some(stored.value.clone());
        }
        self.remove_key_if(index, key, &stored);
        None
    }

    /// Whether `stored` may be returned; with `touch`, records the read.
    fn is_live(&self, stored: &Stored<V>, touch: bool) -> bool {
        if !stored.alive.load(Ordering::Acquire) {
            return false;
        }
        if self.max_age.is_none() && self.last_use_age.is_none() {
            return true;
        }
        let age = stored.created.elapsed();
        if self.max_age.is_some_and(|max_age| max_age <= age) {
            return false;
        }
        let Some(last_use_age) = self.last_use_age else {
            return true;
        };
        let now = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
        let last_used = stored.last_used.load(Ordering::Relaxed);
        let idle = Duration::from_nanos(now.saturating_sub(last_used));
        if last_use_age <= idle {
            return false;
        }
        if touch && TOUCH_GRANULARITY_NANOS <= now.saturating_sub(last_used) {
            stored.last_used.fetch_max(now, Ordering::Relaxed);
        }
        true
    }

    pub(crate) fn set(&self, keys: Vec<(usize, String)>, value: V) {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut previous: Vec<Arc<Stored<V>>> = Vec::new();
        for (index, key) in &keys {
            if let Some(found) = self.keys[*index].get(key.as_str())
                && !previous.iter().any(|seen| Arc::ptr_eq(seen, &found))
            {
                previous.push(found);
            }
        }
        let stored = Arc::new(Stored {
            value,
            keys,
            created: Instant::now(),
            last_used: AtomicU64::new(0),
            alive: AtomicBool::new(true),
        });
        // Overwrite the keys in place first, then retire what they found: an insert over a
        // present key replaces it, where a remove followed by an insert leaves a tombstone in
        // moka's map, and the tombstones of a stream of replacements make the map rehash every key
        // it holds (most of a set's time, measured). A reader meanwhile finds the old object or
        // the new one, never neither.
        for (index, key) in &stored.keys {
            self.keys[*index].insert(key.clone(), Arc::clone(&stored));
        }
        for old in previous {
            old.alive.store(false, Ordering::Release);
            for (index, key) in &old.keys {
                if !stored.keys.iter().any(|(i, k)| i == index && k == key) {
                    self.remove_key_if(*index, key, &old);
                }
            }
        }
    }

    pub(crate) fn invalidate(&self, index: usize, keys: &[String]) {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if let Some(stored) = self.keys[index].get(key.as_str()) {
                self.remove_object(&stored);
                self.remove_key_if(index, key, &stored);
            }
        }
    }

    pub(crate) fn delete(&self, index: usize, keys: &[String]) {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            let Some(stored) = self.keys[index].remove(key.as_str()) else {
                continue;
            };
            // An object no key points at any more could never be found: drop it now rather than
            // let it take room until it expires.
            let still_reachable = stored.keys.iter().any(|(i, k)| {
                self.keys[*i]
                    .get(k.as_str())
                    .is_some_and(|other| Arc::ptr_eq(&other, &stored))
            });
            if !still_reachable {
                stored.alive.store(false, Ordering::Release);
            }
        }
    }

    pub(crate) fn truncate(&self) {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        for keys in &self.keys {
            for (_, stored) in keys.iter() {
                stored.alive.store(false, Ordering::Release);
            }
            keys.invalidate_all();
        }
    }

    pub(crate) fn prune(&self) {
        let _writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, keys) in self.keys.iter().enumerate() {
            for (key, stored) in keys.iter() {
                if !self.is_live(&stored, false) {
                    self.remove_key_if(index, &key, &stored);
                }
            }
            keys.run_pending_tasks();
        }
    }

    /// Marks an object dead and removes every key that still points at it.
    fn remove_object(&self, stored: &Arc<Stored<V>>) {
        stored.alive.store(false, Ordering::Release);
        for (index, key) in &stored.keys {
            self.remove_key_if(*index, key, stored);
        }
    }

    /// Removes `key` only if it still points at `stored`: a concurrent set may have moved it.
    fn remove_key_if(&self, index: usize, key: &str, stored: &Arc<Stored<V>>) {
        self.keys[index]
            .entry_by_ref(key)
            .and_compute_with(|entry| match entry {
                Some(entry) if Arc::ptr_eq(entry.value(), stored) => Op::Remove,
                _ => Op::Nop,
            });
    }
}
