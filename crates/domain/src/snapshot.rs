//! Snapshots: an aggregate's state at sequence N kept in a `strata-cache` cache, so a load reads
//! only the events after N.
//!
//! A snapshot is meant to cost only reading more events, never a wrong state:
//!
//! - it is keyed by the aggregate **and its format**: the state's Rust type,
//!   [`Aggregate::SNAPSHOT_VERSION`], and a fingerprint of the event table and upcasters, so a
//!   build that reads events differently never finds an older build's snapshot, and one that does
//!   find a snapshot it cannot decode ignores it. What the format cannot see is a change to what
//!   `apply` does, or to a state field serde fills in by itself (`#[serde(default)]`,
//!   `#[serde(skip)]`, an `Option` added): bump `SNAPSHOT_VERSION` with any such change;
//! - a load that skipped an event (a type its table does not list, under
//!   [`UnknownEvents::Skip`](crate::UnknownEvents::Skip)) writes no snapshot, so a newer build that
//!   knows the type never starts from a state that missed it;
//! - it names its aggregate, and a snapshot found for another (a key collision) is ignored;
//! - it records the position of the event at N, and the load re-reads that event: when the store
//!   no longer has it (the instance was removed and written again, the cache outlived a restore),
//!   the snapshot is ignored and the aggregate loaded from its first event;
//! - a cache that fails or evicts is a miss, by the cache's own contract;
//! - a state holding personal data in the clear (opened through a `Vault`) is stored sealed with a
//!   key derived from the keys of every subject whose data it holds: once any of them is erased
//!   the snapshot cannot be opened, is deleted when next found, and the load folds the events,
//!   which now read as erased. The cache never holds personal data in the clear.

use serde::{Deserialize, Serialize};
use strata_cache::{Cache, Entry, Index};
use strata_event::{AggregateRef, Cursor, Position, Sequence};
use strata_store::EventStore;

use futures::StreamExt;

use crate::aggregate::Aggregate;
use crate::event::DomainEvent;
use crate::personal::ReadKeys;
use crate::repository::{DomainError, aggregate_query, apply_event, load_aggregate_after};
use crate::write_model::Loaded;

/// Where snapshots live and how often they are written.
///
/// ```
/// use strata_cache::{Cache, CacheConfig};
/// use strata_domain::{Repository, SnapshotEntry, Snapshots};
/// use strata_store::MemoryStore;
///
/// let cache: Cache<SnapshotEntry> = Cache::memory("snapshots", CacheConfig::default())?;
/// let repository = Repository::new(MemoryStore::new()).with_snapshots(Snapshots::new(cache).every(100));
/// # let _ = repository;
/// # Ok::<(), strata_cache::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Snapshots {
    cache: Cache<SnapshotEntry>,
    every: u64,
}

impl Snapshots {
    /// Snapshots in `cache`, written when a load read at least 100 events past the last one.
    pub fn new(cache: Cache<SnapshotEntry>) -> Self {
        Snapshots { cache, every: 100 }
    }

    /// Write a snapshot when a load read at least `events` events past the last one (at least 1).
    #[must_use]
    pub fn every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    pub(crate) async fn load<A: Aggregate, S: EventStore>(
        &self,
        store: &S,
        aggregate: AggregateRef,
        keys: ReadKeys<'_>,
    ) -> Result<Loaded<A>, DomainError> {
        let format = format_of::<A>();
        let key = key_of(&format, &aggregate);
        let from_snapshot = match self.cache.get(SnapshotIndex::Aggregate, &key).await {
            Some(entry) => {
                let found = from_snapshot::<A, S>(store, &aggregate, &format, entry, keys).await?;
                if let Found::Unreadable = found {
                    // Sealed for a subject since erased: delete it rather than keep ciphertext
                    // nobody can read.
                    self.cache.delete(SnapshotIndex::Aggregate, &[&key]).await;
                }
                found.into_loaded()
            }
            None => None,
        };
        let loaded = match from_snapshot {
            Some(loaded) => loaded,
            None => {
                load_aggregate_after(store, aggregate.clone(), Loaded::new(A::default()), keys)
                    .await?
            }
        };
        if loaded.events_read() >= self.every
            && loaded.skipped == 0
            && let Some(last) = loaded.last_cursor()
        {
            self.save(key, format, &aggregate, &loaded, last, keys)
                .await;
        }
        Ok(loaded)
    }

    async fn save<A: Aggregate>(
        &self,
        key: String,
        format: String,
        aggregate: &AggregateRef,
        loaded: &Loaded<A>,
        last: Cursor,
        keys: ReadKeys<'_>,
    ) {
        let state = match serde_json::to_string(&loaded.state) {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(error = %err, "an aggregate state did not serialise; no snapshot written");
                return;
            }
        };
        let Some(state) = seal_state(keys, aggregate, &loaded.subjects, state).await else {
            return;
        };
        let entry = SnapshotEntry {
            key,
            format,
            aggregate: aggregate.to_string(),
            sequence: loaded.sequence(),
            position: last.position.to_string(),
            in_tx_order: last.in_tx_order,
            subjects: loaded
                .subjects
                .iter()
                .map(|subject| subject.as_str().to_owned())
                .collect(),
            state,
        };
        if let Err(err) = self.cache.set(entry).await {
            tracing::warn!(error = %err, "a snapshot could not be written");
        }
    }
}

/// What a snapshot found in the cache gave.
enum Found<A> {
    /// The loaded aggregate from the snapshot plus the events after it.
    Loaded(Loaded<A>),
    /// Ignored (another format, a state that no longer decodes, a base event the store lacks).
    Ignored,
    /// Sealed with keys that are gone: a subject of its state was erased.
    Unreadable,
}

impl<A> Found<A> {
    fn into_loaded(self) -> Option<Loaded<A>> {
        match self {
            Found::Loaded(loaded) => Some(loaded),
            Found::Ignored | Found::Unreadable => None,
        }
    }
}

/// The loaded aggregate from `entry` plus the events after it, unless the snapshot must be
/// ignored.
async fn from_snapshot<A: Aggregate, S: EventStore>(
    store: &S,
    aggregate: &AggregateRef,
    format: &str,
    entry: SnapshotEntry,
    keys: ReadKeys<'_>,
) -> Result<Found<A>, DomainError> {
    if entry.format != format || entry.aggregate != aggregate.to_string() || entry.sequence == 0 {
        return Ok(Found::Ignored);
    }
    let Ok(position) = entry.position.parse::<Position>() else {
        return Ok(Found::Ignored);
    };
    let Some(state) = open_state(keys, aggregate, &entry).await? else {
        return Ok(Found::Unreadable);
    };
    let Ok(state) = serde_json::from_str::<A>(&state) else {
        tracing::debug!(aggregate = %aggregate, "a snapshot no longer decodes; ignored");
        return Ok(Found::Ignored);
    };
    // Read from the snapshot's own event on, to prove the store still has it.
    let query = aggregate_query(aggregate, entry.sequence - 1)?;
    let mut events = store.stream(&query);
    let base_matches = match events.next().await {
        Some(first) => {
            let first = first?;
            first.sequence == entry.sequence
                && first.position == position
                && first.in_tx_order == entry.in_tx_order
        }
        None => false,
    };
    if !base_matches {
        tracing::debug!(aggregate = %aggregate, "a snapshot's base event is gone; ignored");
        return Ok(Found::Ignored);
    }
    let mut loaded = Loaded::new(state);
    loaded.versions.insert(aggregate.clone(), entry.sequence);
    loaded.expected_new = vec![aggregate.clone()];
    loaded.last = Some(Cursor::new(position, entry.in_tx_order));
    loaded.subjects = entry
        .subjects
        .iter()
        .filter_map(|subject| strata_event::SubjectId::new(subject.as_str()).ok())
        .collect();
    while let Some(event) = events.next().await {
        apply_event(&mut loaded, event?, keys).await?;
    }
    Ok(Found::Loaded(loaded))
}

/// The state as the cache stores it: as is when it holds nobody's personal data, sealed with the
/// key derived from its subjects' keys otherwise (`None`: no snapshot can be written, a subject
/// was erased meanwhile or there is no vault).
async fn seal_state(
    keys: ReadKeys<'_>,
    aggregate: &AggregateRef,
    subjects: &[strata_event::SubjectId],
    state: String,
) -> Option<String> {
    if subjects.is_empty() {
        return Some(state);
    }
    #[cfg(feature = "personal-data")]
    if let Some(vault) = keys.vault {
        use base64::Engine;
        let key = match vault.snapshot_key(&aggregate.instance_id, subjects).await {
            Ok(Some(key)) => key,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(error = %err, "no snapshot written: its subjects' keys were not available");
                return None;
            }
        };
        let sealed = key.seal(aggregate.to_string().as_bytes(), state.as_bytes());
        return Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed));
    }
    let _ = (keys, aggregate);
    None
}

/// The state of `entry` in the clear; `None` when it is sealed and cannot be opened (a subject
/// erased, no vault).
async fn open_state(
    keys: ReadKeys<'_>,
    aggregate: &AggregateRef,
    entry: &SnapshotEntry,
) -> Result<Option<String>, DomainError> {
    if entry.subjects.is_empty() {
        return Ok(Some(entry.state.clone()));
    }
    #[cfg(feature = "personal-data")]
    if let Some(vault) = keys.vault {
        use base64::Engine;
        let subjects: Vec<strata_event::SubjectId> = entry
            .subjects
            .iter()
            .filter_map(|subject| strata_event::SubjectId::new(subject.as_str()).ok())
            .collect();
        let Some(key) = vault
            .snapshot_key(&aggregate.instance_id, &subjects)
            .await?
        else {
            return Ok(None);
        };
        let Ok(sealed) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&entry.state)
        else {
            return Ok(None);
        };
        return Ok(key
            .open(aggregate.to_string().as_bytes(), &sealed)
            .and_then(|state| String::from_utf8(state).ok()));
    }
    let _ = (keys, aggregate);
    Ok(None)
}

/// The snapshot format of `A`: its Rust type, snapshot version, and a fingerprint of how it reads
/// events (its event table and upcast steps), so changing either forgets old snapshots.
pub(crate) fn format_of<A: Aggregate>() -> String {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new()` has fixed keys: the same table hashes alike in every process of a
    // build. (A toolchain that hashes differently only forgets snapshots, which costs reading.)
    let mut hasher = std::hash::DefaultHasher::new();
    for spec in <A::Event as DomainEvent>::EVENTS {
        spec.event_type.hash(&mut hasher);
        spec.aggregate_type_or(<A::Event as DomainEvent>::AGGREGATE_TYPE)
            .hash(&mut hasher);
        spec.revision.hash(&mut hasher);
    }
    for step in <A::Event as DomainEvent>::UPCASTERS {
        step.event_type.hash(&mut hasher);
        step.from.hash(&mut hasher);
    }
    format!(
        "{}@{}#{:016x}",
        std::any::type_name::<A>(),
        A::SNAPSHOT_VERSION,
        hasher.finish()
    )
}

/// The cache key: format and aggregate, so builds with different formats never share a key.
fn key_of(format: &str, aggregate: &AggregateRef) -> String {
    format!(
        "{format}|{}|{}|{}",
        aggregate.instance_id, aggregate.aggregate_type, aggregate.aggregate_id
    )
}

/// A snapshot as the cache stores it. Opaque: made and read by [`Snapshots`] only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    key: String,
    format: String,
    /// The aggregate, compared on read: keys are built from ids that may contain the separator.
    aggregate: String,
    sequence: Sequence,
    /// The base event's position as text: `Position` deserialises through `deserialize_any`,
    /// which the cache's bincode cannot.
    position: String,
    in_tx_order: u32,
    /// The subjects whose personal data the state holds; when any, `state` is sealed.
    subjects: Vec<String>,
    /// The state as JSON: self-describing, so a changed state type fails to decode rather than
    /// decoding into something else. Sealed (base64) when `subjects` is not empty.
    state: String,
}

/// The one index snapshots are found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotIndex {
    /// Format and aggregate.
    Aggregate,
}

impl Index for SnapshotIndex {
    const ALL: &'static [Self] = &[SnapshotIndex::Aggregate];

    fn name(self) -> &'static str {
        "aggregate"
    }
}

impl Entry for SnapshotEntry {
    type Index = SnapshotIndex;

    fn keys(&self, _: SnapshotIndex) -> Vec<String> {
        vec![self.key.clone()]
    }
}
