//! The [`Vault`]: seals declared personal fields when events are pushed, opens them when events
//! are read, and erases subjects.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use strata_event::{Command, Event, InstanceId, Payload, SubjectId};
use strata_query::Query;
use strata_store::{Erasure, EventStore, SubjectKeyStore, SubjectKeys, WrappedKey};

use super::cipher::{DataKey, DerivedKey};
use super::erasure::{ERASURE_AGGREGATE_TYPE, ERASURE_EVENT_TYPE};
use super::error::KeyError;
use super::format;
use super::key_cache::{Cached, KeyCache};
use super::keyring::Keyring;
use super::open::Sealed;
use crate::context::Context;
use crate::error::{DecodeFailure, EncodeError};
use crate::event::{EventSpec, SubjectOf};

/// How long a fetched key is used before the store is asked again, by default.
pub const DEFAULT_KEYS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Keys of personal data for the typed layer: it seals the fields an event's table declares
/// personal when the event is pushed, opens them when events are read, and erases subjects.
///
/// Give it to the repository ([`Repository::with_vault`](crate::Repository::with_vault)) and to
/// typed projections ([`TypedProjection::vault`](crate::TypedProjection::vault)); every read
/// through them then decrypts, and reads [`Personal::Erased`](crate::Personal::Erased) where a
/// subject was erased.
///
/// Keys live in the store ([`SubjectKeyStore`]: `MemoryStore` and `PgStore` both), wrapped by
/// the [`Keyring`]'s current master key. A process keeps unwrapped keys for
/// [`fresh_for`](Vault::fresh_for) (1 s by default) before asking the store again: an erasure by
/// this process is seen at once, one by another process within that time.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SubjectKeyStore>,
    keyring: Keyring,
    fresh_for: Duration,
    cache: KeyCache,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.inner.store)
            .field("keyring", &self.inner.keyring)
            .field("fresh_for", &self.inner.fresh_for)
            .finish_non_exhaustive()
    }
}

/// Why a payload could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    Keys(KeyError),
    Failure(DecodeFailure),
}

/// What a master key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Keys rewrapped by the current master key.
    pub rewrapped: u64,
    /// Keys that changed under the rotation (erased, or rewrapped by another rotation) and were
    /// left to their new state.
    pub skipped: u64,
}

impl Vault {
    /// A vault over the keys in `store`, wrapping new keys with `keyring`'s current master key.
    ///
    /// Made inside a Tokio runtime, it also listens for erasures the store announces (every
    /// erasure through the same store, and on PostgreSQL other processes' through
    /// `LISTEN strata_erased`, on one query connection while the vault lives) and forgets those
    /// subjects' keys at once; `fresh_for` then only bounds what a lost notice can delay.
    pub fn new(store: impl SubjectKeyStore + 'static, keyring: Keyring) -> Vault {
        Vault::start(Arc::new(store), keyring, DEFAULT_KEYS_FRESH_FOR)
    }

    /// Uses a fetched key for `fresh_for` before asking the store again: the longest another
    /// process's erasure may go unnoticed here when its notice is lost (a dropped connection).
    /// `Duration::ZERO` asks on every read.
    #[must_use]
    pub fn fresh_for(self, fresh_for: Duration) -> Vault {
        Vault::start(
            self.inner.store.clone(),
            self.inner.keyring.clone(),
            fresh_for,
        )
    }

    fn start(store: Arc<dyn SubjectKeyStore>, keyring: Keyring, fresh_for: Duration) -> Vault {
        let inner = Arc::new(Inner {
            store,
            keyring,
            fresh_for,
            cache: KeyCache::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Some(notices) = inner.store.erasures()
        {
            runtime.spawn(forget_erased(Arc::downgrade(&inner), notices));
        }
        Vault { inner }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The command that stores `event` on `aggregate_id` of `instance_id`, its personal fields
    /// sealed: [`command`](crate::command) for events that hold personal data.
    pub async fn command<E: crate::DomainEvent>(
        &self,
        event: &E,
        instance_id: &str,
        aggregate_id: &str,
        context: &Context,
    ) -> Result<Command, crate::DomainError> {
        let mut prepared = vec![crate::command::prepare(event, instance_id, aggregate_id)?];
        self.seal(&mut prepared).await?;
        let [prepared] = <[_; 1]>::try_from(prepared).map_err(|_| EncodeError::Serialize {
            target: std::any::type_name::<E>(),
            reason: "sealing changed the number of commands".to_owned(),
        })?;
        Ok(crate::command::finish(prepared, event, context, &|_| None)?)
    }

    /// `event` with its sealed fields opened (or marked erased): for readers of raw events.
    pub async fn open(&self, event: Event) -> Result<Event, crate::DomainError> {
        match self.open_payload(&event, &mut Vec::new()).await {
            Ok(None) => Ok(event),
            Ok(Some(opened)) => Ok(Event {
                raw_payload: Payload::from_trusted_json(opened),
                ..event
            }),
            Err(OpenError::Keys(err)) => Err(err.into()),
            Err(OpenError::Failure(failure)) => {
                Err(crate::DecodeError::new::<Value>(&event, failure).into())
            }
        }
    }

    /// Erases `subject_id` of `instance_id` ([`erase_subject`]) and forgets what this process
    /// knew of its keys. From then on every read of its sealed fields returns
    /// [`Personal::Erased`](crate::Personal::Erased) (other vaults forget the keys on the store's
    /// erasure notice, or within their [`fresh_for`](Vault::fresh_for) if it is lost), and
    /// pushing personal data of the subject fails with
    /// [`Error::SubjectErased`](strata_store::Error). Erasing twice changes nothing.
    pub async fn erase(
        &self,
        instance_id: &str,
        subject_id: &str,
        context: &Context,
    ) -> Result<Erasure, KeyError> {
        let erasure =
            erase_subject(self.inner.store.as_ref(), instance_id, subject_id, context).await;
        if let (Ok(instance), Ok(subject)) =
            (InstanceId::new(instance_id), SubjectId::new(subject_id))
        {
            // Whatever the outcome, the next read asks the store.
            self.forget_cached(&instance, &subject);
        }
        erasure
    }

    /// [`reapply_erasures`] through this vault's key store, forgetting what this process knew.
    pub async fn reapply_erasures<S: EventStore>(
        &self,
        store: &S,
        instance_id: Option<&str>,
    ) -> Result<u64, KeyError> {
        let deleted = reapply_erasures(store, self.inner.store.as_ref(), instance_id).await?;
        self.inner.cache.clear();
        Ok(deleted)
    }

    /// Adds a new key version for `subject_id`: personal data pushed from now on through this
    /// vault is sealed with it (through other vaults once they next fetch the subject's keys);
    /// data sealed with older versions stays readable. Returns the new version.
    pub async fn rotate_subject_key(
        &self,
        instance_id: &str,
        subject_id: &str,
    ) -> Result<u32, KeyError> {
        let instance = InstanceId::new(instance_id)?;
        let subject = SubjectId::new(subject_id)?;
        let cached = self
            .subjects(&instance, std::slice::from_ref(&subject), Freshness::Now)
            .await?;
        let next = cached
            .first()
            .and_then(|cached| cached.keys.last())
            .map_or(1, |key| key.version() + 1);
        self.create_key(&instance, &subject, next).await?;
        self.forget_cached(&instance, &subject);
        Ok(next)
    }

    /// Rewraps every key not wrapped by the keyring's current master key with it, in batches,
    /// each key by compare-and-swap: readers holding both master keys read throughout. Returns
    /// what it did.
    pub async fn rotate_master_key(&self) -> Result<Rotation, KeyError> {
        let current = self.inner.keyring.current();
        let mut rotation = Rotation::default();
        let mut refused: BTreeSet<(InstanceId, SubjectId, u32)> = BTreeSet::new();
        loop {
            let batch = self
                .inner
                .store
                .keys_not_wrapped_by(current.id(), 500 + refused.len() as u32)
                .await?;
            let todo: Vec<WrappedKey> = batch
                .into_iter()
                .filter(|key| {
                    !refused.contains(&(
                        key.instance_id.clone(),
                        key.subject_id.clone(),
                        key.version,
                    ))
                })
                .collect();
            if todo.is_empty() {
                return Ok(rotation);
            }
            for old in todo {
                let key = self.unwrap_key(&old)?;
                let new = WrappedKey {
                    master_key_id: current.id().to_owned(),
                    wrapped: key.wrap(current, &old.instance_id, &old.subject_id),
                    ..old.clone()
                };
                if self.inner.store.rewrap_key(&old, &new).await? {
                    rotation.rewrapped += 1;
                } else {
                    // Erased or rewrapped meanwhile: whatever it is now is not this rotation's.
                    rotation.skipped += 1;
                    refused.insert((old.instance_id, old.subject_id, old.version));
                }
            }
        }
    }

    /// Seals the personal fields of `prepared` commands (fetching or creating their subjects'
    /// keys, one store call per instance).
    pub(crate) async fn seal(
        &self,
        prepared: &mut [crate::command::Prepared],
    ) -> Result<(), crate::DomainError> {
        let mut wanted: HashMap<InstanceId, Vec<SubjectId>> = HashMap::new();
        for item in prepared.iter_mut() {
            if item.spec.personal.is_empty() {
                continue;
            }
            let subject = subject_of(item.spec, item.payload(), &item.aggregate_id)?;
            let subjects = wanted.entry(item.instance_id.clone()).or_default();
            if !subjects.contains(&subject) {
                subjects.push(subject.clone());
            }
            item.subject = Some(subject);
        }
        for (instance, subjects) in wanted {
            let keys = self.writing_keys(&instance, &subjects).await?;
            for item in prepared.iter_mut() {
                if item.instance_id != instance {
                    continue;
                }
                let Some(subject) = item.subject.clone() else {
                    continue;
                };
                let key = keys.get(&subject).ok_or_else(|| {
                    KeyError::Store(strata_store::Error::SubjectErased {
                        instance_id: instance.clone(),
                        subject_id: subject.clone(),
                    })
                })?;
                item.seal_with(key)?;
            }
        }
        Ok(())
    }

    /// The current key of each subject, created when it has none.
    async fn writing_keys(
        &self,
        instance: &InstanceId,
        subjects: &[SubjectId],
    ) -> Result<HashMap<SubjectId, DataKey>, KeyError> {
        // Any age: data sealed with a key another process has just erased is unreadable anyway,
        // so writers need not ask the store on every push.
        let cached = self.subjects(instance, subjects, Freshness::Any).await?;
        let mut keys = HashMap::with_capacity(subjects.len());
        for (subject, cached) in subjects.iter().zip(cached) {
            if cached.erased {
                return Err(KeyError::Store(strata_store::Error::SubjectErased {
                    instance_id: instance.clone(),
                    subject_id: subject.clone(),
                }));
            }
            let key = match cached.keys.last() {
                Some(key) => key.clone(),
                None => {
                    let key = self.create_key(instance, subject, 1).await?;
                    // Its only key: later pushes find it here.
                    self.inner.cache.insert_all(
                        instance.as_str(),
                        [(
                            subject.as_str().to_owned(),
                            Arc::new(Cached {
                                erased: false,
                                keys: vec![key.clone()],
                                fetched: Instant::now(),
                            }),
                        )],
                        self.inner.fresh_for,
                    );
                    key
                }
            };
            keys.insert(subject.clone(), key);
        }
        Ok(keys)
    }

    /// Creates `subject`'s key of `version` (or takes the one another writer stored first).
    async fn create_key(
        &self,
        instance: &InstanceId,
        subject: &SubjectId,
        version: u32,
    ) -> Result<DataKey, KeyError> {
        let current = self.inner.keyring.current();
        let fresh = DataKey::generate(version);
        let stored = self
            .inner
            .store
            .create_subject_key(WrappedKey {
                instance_id: instance.clone(),
                subject_id: subject.clone(),
                version,
                master_key_id: current.id().to_owned(),
                wrapped: fresh.wrap(current, instance, subject),
            })
            .await?;
        let key = self.unwrap_key(&stored)?;
        self.forget_cached(instance, subject);
        Ok(key)
    }

    /// The text of `event`'s payload with its sealed fields opened (`None` when it has none),
    /// adding the subjects whose data it opened to `opened` (each once).
    pub(crate) async fn open_payload(
        &self,
        event: &Event,
        opened: &mut Vec<SubjectId>,
    ) -> Result<Option<String>, OpenError> {
        let Some(sealed) = Sealed::find(event).map_err(OpenError::Failure)? else {
            return Ok(None);
        };
        let instance = &event.aggregate.instance_id;
        // The usual case: every key is in memory and fresh; no allocation to find them, and each
        // looked up once.
        {
            let cache = self.inner.cache.read();
            let now = Instant::now();
            let fresh = |subject: &str| {
                cache
                    .get(instance.as_str(), subject)
                    .filter(|cached| now.duration_since(cached.fetched) < self.inner.fresh_for)
            };
            match sealed.open(instance, &fresh, opened) {
                // A key not in memory (or stale): fetch below.
                Err(DecodeFailure::KeysUnavailable { .. }) => {}
                opened => return opened.map(Some).map_err(OpenError::Failure),
            }
        }
        let subjects = sealed.subjects().map_err(OpenError::Failure)?;
        let cached = self
            .subjects(instance, &subjects, Freshness::Cached)
            .await
            .map_err(OpenError::Keys)?;
        let lookup = |subject: &str| {
            subjects
                .iter()
                .position(|known| known.as_str() == subject)
                .map(|index| cached[index].as_ref())
        };
        let payload = sealed
            .open(instance, &lookup, opened)
            .map_err(OpenError::Failure)?;
        Ok(Some(payload))
    }

    /// [`open_payload`](Vault::open_payload) from what the vault holds in memory, for the
    /// projection runtime's synchronous reducers after [`warm`](Vault::warm).
    #[cfg_attr(not(feature = "projection"), allow(dead_code))]
    pub(crate) fn open_payload_cached(
        &self,
        event: &Event,
        opened: &mut Vec<SubjectId>,
    ) -> Result<Option<String>, DecodeFailure> {
        let Some(sealed) = Sealed::find(event)? else {
            return Ok(None);
        };
        let instance = &event.aggregate.instance_id;
        let cache = self.inner.cache.read();
        let lookup = |subject: &str| cache.get(instance.as_str(), subject);
        Ok(Some(sealed.open(instance, &lookup, opened)?))
    }

    /// Fetches the keys `events` need into memory (one store call per instance), so
    /// [`open_payload_cached`](Vault::open_payload_cached) finds them. A failure is logged: the
    /// events then fail to open and take the runtime's retry path.
    #[cfg_attr(not(feature = "projection"), allow(dead_code))]
    pub(crate) async fn warm(&self, events: &[Arc<Event>]) {
        let mut wanted: HashMap<&InstanceId, Vec<SubjectId>> = HashMap::new();
        for event in events {
            if let Ok(Some(sealed)) = Sealed::find(event)
                && let Ok(subjects) = sealed.subjects()
            {
                let entry = wanted.entry(&event.aggregate.instance_id).or_default();
                for subject in subjects {
                    if !entry.contains(&subject) {
                        entry.push(subject);
                    }
                }
            }
        }
        for (instance, subjects) in wanted {
            if let Err(err) = self.subjects(instance, &subjects, Freshness::Cached).await {
                tracing::warn!(error = %err, instance = %instance, "personal-data keys could not be fetched for a projection batch");
            }
        }
    }

    /// The key that seals a snapshot holding the data of `subjects` in the clear: derived from
    /// all their keys, so it is gone once any of them is erased (`None`).
    #[cfg_attr(not(feature = "snapshots"), allow(dead_code))]
    pub(crate) async fn snapshot_key(
        &self,
        instance: &InstanceId,
        subjects: &[SubjectId],
    ) -> Result<Option<DerivedKey>, KeyError> {
        let mut sorted = subjects.to_vec();
        sorted.sort();
        sorted.dedup();
        let cached = self.subjects(instance, &sorted, Freshness::Cached).await?;
        let mut hasher = Sha256::new();
        hasher.update(b"strata.snapshot/1\0");
        hasher.update(instance.as_str().as_bytes());
        for (subject, cached) in sorted.iter().zip(&cached) {
            if cached.erased || cached.keys.is_empty() {
                return Ok(None);
            }
            hasher.update([0]);
            hasher.update(subject.as_str().as_bytes());
            for key in &cached.keys {
                key.feed(&mut hasher);
            }
        }
        Ok(Some(DerivedKey::from_hasher(hasher)))
    }

    /// What the vault knows of each of `subjects` (in order), from memory when fresh enough,
    /// otherwise from the store in one call.
    async fn subjects(
        &self,
        instance: &InstanceId,
        subjects: &[SubjectId],
        freshness: Freshness,
    ) -> Result<Vec<Arc<Cached>>, KeyError> {
        let now = Instant::now();
        let mut found: Vec<Option<Arc<Cached>>> = {
            let cache = self.inner.cache.read();
            subjects
                .iter()
                .map(|subject| {
                    let cached = cache.shared(instance.as_str(), subject.as_str())?;
                    let usable = match freshness {
                        Freshness::Cached => {
                            now.duration_since(cached.fetched) < self.inner.fresh_for
                        }
                        Freshness::Any => !cached.keys.is_empty() || cached.erased,
                        Freshness::Now => false,
                    };
                    usable.then(|| cached.clone())
                })
                .collect()
        };
        let missing: Vec<SubjectId> = subjects
            .iter()
            .zip(&found)
            .filter(|(_, cached)| cached.is_none())
            .map(|(subject, _)| subject.clone())
            .collect();
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        let fetched = self.inner.store.subject_keys(instance, &missing).await?;
        let mut fresh: HashMap<SubjectId, Arc<Cached>> = HashMap::with_capacity(fetched.len());
        for SubjectKeys {
            subject_id,
            keys,
            erased,
        } in fetched
        {
            let keys = keys
                .iter()
                .map(|wrapped| self.unwrap_key(wrapped))
                .collect::<Result<Vec<DataKey>, KeyError>>()?;
            fresh.insert(
                subject_id,
                Arc::new(Cached {
                    erased,
                    keys,
                    fetched: now,
                }),
            );
        }
        {
            self.inner.cache.insert_all(
                instance.as_str(),
                fresh
                    .iter()
                    .map(|(subject, cached)| (subject.as_str().to_owned(), cached.clone())),
                self.inner.fresh_for,
            );
        }
        for (slot, subject) in found.iter_mut().zip(subjects) {
            if slot.is_none() {
                *slot = fresh.get(subject).cloned();
            }
        }
        // A store that left a subject out answered wrongly; treat it as having nothing.
        Ok(found
            .into_iter()
            .map(|cached| {
                cached.unwrap_or_else(|| {
                    Arc::new(Cached {
                        erased: false,
                        keys: Vec::new(),
                        fetched: now,
                    })
                })
            })
            .collect())
    }

    fn unwrap_key(&self, wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        let master = self
            .inner
            .keyring
            .get(&wrapped.master_key_id)
            .ok_or_else(|| KeyError::MasterKeyUnknown {
                instance_id: wrapped.instance_id.clone(),
                subject_id: wrapped.subject_id.clone(),
                master_key_id: wrapped.master_key_id.clone(),
            })?;
        DataKey::unwrap_with(
            master,
            &wrapped.instance_id,
            &wrapped.subject_id,
            wrapped.version,
            &wrapped.wrapped,
        )
        .ok_or_else(|| KeyError::KeyDoesNotOpen {
            instance_id: wrapped.instance_id.clone(),
            subject_id: wrapped.subject_id.clone(),
            master_key_id: wrapped.master_key_id.clone(),
        })
    }

    fn forget_cached(&self, instance: &InstanceId, subject: &SubjectId) {
        self.inner.cache.remove(instance.as_str(), subject.as_str());
    }
}

/// Forgets the keys of every subject the store announces erased, until the vault is dropped.
async fn forget_erased(
    vault: std::sync::Weak<Inner>,
    mut notices: tokio::sync::broadcast::Receiver<strata_store::ErasedSubject>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let notice = tokio::select! {
            notice = notices.recv() => notice,
            // A dropped vault stops listening soon, not at the next erasure.
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if vault.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        let Some(inner) = vault.upgrade() else {
            return;
        };
        match notice {
            Ok(erased) => inner
                .cache
                .remove(erased.instance_id.as_str(), erased.subject_id.as_str()),
            // Some notices were missed: forget everything rather than guess.
            Err(RecvError::Lagged(_)) => inner.cache.clear(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Whether a key in memory may be used, or the store must be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Within `fresh_for`.
    Cached,
    /// Whatever its age (writing: a key erased meanwhile only makes the new data unreadable).
    Any,
    /// Ask the store.
    Now,
}

/// The subject whose data `payload` of an event of `spec` on `aggregate_id` holds.
pub(crate) fn subject_of(
    spec: &EventSpec,
    payload: Option<&Value>,
    aggregate_id: &str,
) -> Result<SubjectId, EncodeError> {
    let subject = match spec.subject {
        SubjectOf::AggregateId => aggregate_id,
        SubjectOf::Field(field) => payload
            .and_then(|payload| payload.get(field))
            .and_then(Value::as_str)
            .ok_or(EncodeError::Subject {
                event_type: spec.event_type,
                reason: format!("its subject field {field:?} is not a string in the payload"),
            })?,
    };
    SubjectId::new(subject).map_err(|err| EncodeError::Subject {
        event_type: spec.event_type,
        reason: err.to_string(),
    })
}

/// Seals `value` (a field's JSON) with `key` for `subject` of `instance`; the subject is left out
/// of the sealed string when it is the event's aggregate (`is_aggregate`), as readers assume.
pub(crate) fn seal_value(
    instance: &str,
    subject: &SubjectId,
    is_aggregate: bool,
    key: &DataKey,
    value: &Value,
) -> Value {
    let plaintext = value.to_string();
    let sealed = key.seal(instance, subject.as_str(), plaintext.as_bytes());
    let written = if is_aggregate { "" } else { subject.as_str() };
    format::sealed_value(written, key.version(), &STANDARD_NO_PAD.encode(sealed))
}

/// Erases `subject_id` of `instance_id` in `keys`: deletes its keys, records it as erased and
/// pushes the record (an event on aggregate `strata.subject`/`subject_id` by `context`'s creator)
/// in one transaction. Needs no master key: an operator erases without being able to read.
pub async fn erase_subject<K: SubjectKeyStore + ?Sized>(
    keys: &K,
    instance_id: &str,
    subject_id: &str,
    context: &Context,
) -> Result<Erasure, KeyError> {
    let instance = InstanceId::new(instance_id)?;
    let subject = SubjectId::new(subject_id)?;
    let mut record = Command::builder(
        instance_id,
        ERASURE_AGGREGATE_TYPE,
        subject_id,
        ERASURE_EVENT_TYPE,
    )
    .creator(context.creator())
    .owner(context.owner());
    if !context.metadata().is_empty() {
        record = record.metadata(context.metadata().clone());
    }
    let record = record.build().map_err(strata_store::Error::from)?;
    Ok(keys.erase_subject(&instance, &subject, record).await?)
}

/// Erases again in `keys` every subject whose erasure `store` records in `instance_id` (every
/// instance when `None`): after keys came back from a backup older than the events. Returns the
/// keys deleted (0 when nothing had come back).
pub async fn reapply_erasures<S: EventStore, K: SubjectKeyStore + ?Sized>(
    store: &S,
    keys: &K,
    instance_id: Option<&str>,
) -> Result<u64, KeyError> {
    let builder = match instance_id {
        Some(instance) => Query::builder().instance(instance),
        None => Query::builder().all_instances(),
    };
    let query = builder
        .aggregate_types([ERASURE_AGGREGATE_TYPE])
        .event_types([ERASURE_EVENT_TYPE])
        .build()
        .map_err(strata_store::Error::from)?;
    let mut deleted = 0;
    let mut records = store.stream(&query);
    while let Some(event) = records.next().await {
        let event = event?;
        let subject = SubjectId::new(event.aggregate.aggregate_id.as_str())?;
        deleted += keys
            .forget_subject(&event.aggregate.instance_id, &subject)
            .await?;
    }
    Ok(deleted)
}
