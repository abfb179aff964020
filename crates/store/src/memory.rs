//! The in-memory backend: the same semantics as PostgreSQL, for tests and embedded use.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt};
use strata_event::{
    AggregateRef, Command, Event, IdempotencyKey, InstanceId, Position, Sequence,
    UniqueConstraintOp, UniqueType,
};
use strata_query::{Order, Query};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::idempotency::{DEFAULT_IDEMPOTENCY_RETENTION, push_fingerprint};
use crate::store::{EventStore, PUSH_NOTICE_CAPACITY, Pushed, validate_push};
use crate::telemetry::{self, SYSTEM_MEMORY};

mod keys;

/// An event store held in memory, shared by clones.
///
/// Every push runs under one lock, which makes it atomic and serialises pushes; positions count
/// pushes from 1. Reads copy the matching events out under the same lock. It is meant for tests,
/// examples and embedded use with modest volumes; nothing survives the process.
///
/// Idempotency keys are kept for [`DEFAULT_IDEMPOTENCY_RETENTION`] unless the store was made with
/// [`MemoryStore::with_idempotency_retention`].
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    pushes: broadcast::Sender<Pushed>,
    /// Subjects whose keys were deleted, for every vault on this store.
    erasures: broadcast::Sender<crate::keys::ErasedSubject>,
    idempotency_retention: Duration,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Arc::default(),
            pushes: broadcast::channel(PUSH_NOTICE_CAPACITY).0,
            erasures: broadcast::channel(crate::keys::ERASURE_NOTICE_CAPACITY).0,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// All events in `(position, in_tx_order)` order.
    events: Vec<Event>,
    /// Per aggregate: indexes into `events`, in sequence order.
    aggregates: HashMap<AggregateRef, Vec<usize>>,
    unique_constraints: HashSet<UniqueKey>,
    last_position: u64,
    /// Idempotency keys by (instance, key), with what their first push stored.
    idempotency_keys: HashMap<(InstanceId, String), RecordedKey>,
    /// How many keys were left after the last sweep of expired ones: the next sweep waits until
    /// the map has doubled, so sweeping costs O(1) per keyed push on average.
    keys_after_sweep: usize,
    /// The personal-data keys and erased subjects (see `memory/keys.rs`).
    subject_keys: keys::SubjectKeyState,
}

type UniqueKey = (InstanceId, UniqueType, String);

/// An idempotency key's record: the fingerprint of the commands it was first pushed with, and the
/// events that push stored (returned as they are to every replay).
#[derive(Debug)]
struct RecordedKey {
    fingerprint: String,
    events: Vec<Event>,
    recorded_at: Instant,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps idempotency keys for `retention` instead of
    /// [`DEFAULT_IDEMPOTENCY_RETENTION`] (a tiny one lets tests watch keys expire).
    pub fn with_idempotency_retention(retention: Duration) -> Self {
        MemoryStore {
            idempotency_retention: retention,
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // NOTE: a panic while holding the lock cannot leave a half-applied push behind (every push
        // checks everything before it mutates), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `(instance, unique_type, value)` is currently taken. For tests and diagnostics.
    pub fn has_unique_constraint(&self, instance_id: &str, unique_type: &str, value: &str) -> bool {
        self.lock()
            .unique_constraints
            .iter()
            .any(|(i, t, v)| i.as_str() == instance_id && t.as_str() == unique_type && v == value)
    }
}

impl State {
    fn current_sequence(&self, aggregate: &AggregateRef) -> Sequence {
        self.aggregates
            .get(aggregate)
            .map_or(0, |indexes| indexes.len() as Sequence)
    }

    fn push(&mut self, commands: Vec<Command>) -> Result<Vec<Event>> {
        validate_push(&commands)?;
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        // Everything is checked before anything changes, so an error leaves the store untouched.
        for command in &commands {
            if let Some(expected) = command.expected_sequence() {
                let actual = self.current_sequence(command.aggregate());
                if expected != actual {
                    return Err(Error::Conflict {
                        aggregate: command.aggregate().clone(),
                        expected,
                        actual,
                    });
                }
            }
        }
        let (removals, cleared_instances, additions) = self.plan_unique_constraints(&commands)?;

        self.unique_constraints
            .retain(|key| !cleared_instances.contains(&key.0) && !removals.contains(key));
        self.unique_constraints.extend(additions);

        self.last_position += 1;
        let position = Position::from(self.last_position);
        let created_at = Utc::now();
        let mut stored = Vec::with_capacity(commands.len());
        for (in_tx_order, command) in commands.into_iter().enumerate() {
            let aggregate = command.aggregate().clone();
            let indexes = self.aggregates.entry(aggregate.clone()).or_default();
            let event = Event {
                aggregate,
                event_type: command.event_type().clone(),
                sequence: indexes.len() as Sequence + 1,
                revision: command.revision(),
                created_at,
                creator: command.creator().clone(),
                owner: command.owner().clone(),
                position,
                in_tx_order: in_tx_order as u32,
                raw_payload: command.payload().clone(),
                metadata: command.metadata().clone(),
            };
            indexes.push(self.events.len());
            self.events.push(event.clone());
            stored.push(event);
        }
        Ok(stored)
    }

    /// [`EventStore::push_idempotent`] under the lock: a live key answers from its record, anything
    /// else is a push that records the key when it succeeds.
    fn push_idempotent(
        &mut self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
        retention: Duration,
    ) -> Result<Vec<Event>> {
        validate_push(&commands)?;
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let fingerprint = push_fingerprint(&commands);
        let id = (key.instance_id().clone(), key.key().to_owned());
        let now = Instant::now();
        let live = |record: &RecordedKey| now.duration_since(record.recorded_at) < retention;
        match self.idempotency_keys.get(&id) {
            Some(record) if live(record) && record.fingerprint == fingerprint => {
                return Ok(record.events.clone());
            }
            Some(record) if live(record) => {
                return Err(Error::IdempotencyKeyReused {
                    instance_id: id.0,
                    key: id.1,
                });
            }
            // Absent or expired: a first push.
            _ => {}
        }
        let stored = self.push(commands)?;
        if self.idempotency_keys.len() >= 2 * self.keys_after_sweep + 64 {
            self.idempotency_keys.retain(|_, record| live(record));
            self.keys_after_sweep = self.idempotency_keys.len();
        }
        self.idempotency_keys.insert(
            id,
            RecordedKey {
                fingerprint,
                events: stored.clone(),
                recorded_at: now,
            },
        );
        Ok(stored)
    }

    /// Works out the push's unique-constraint changes, or the first clash. All removals apply before
    /// all additions.
    fn plan_unique_constraints(
        &self,
        commands: &[Command],
    ) -> Result<(HashSet<UniqueKey>, HashSet<InstanceId>, HashSet<UniqueKey>)> {
        let mut removals = HashSet::new();
        let mut cleared = HashSet::new();
        for command in commands {
            let instance = &command.aggregate().instance_id;
            for op in command.unique_constraints() {
                match op {
                    UniqueConstraintOp::Remove { unique_type, value } => {
                        removals.insert((instance.clone(), unique_type.clone(), value.clone()));
                    }
                    UniqueConstraintOp::RemoveAllOfInstance => {
                        cleared.insert(instance.clone());
                    }
                    UniqueConstraintOp::Add { .. } => {}
                }
            }
        }
        let mut additions = HashSet::new();
        for command in commands {
            let instance = &command.aggregate().instance_id;
            for op in command.unique_constraints() {
                let UniqueConstraintOp::Add {
                    unique_type,
                    value,
                    error_message_id,
                } = op
                else {
                    continue;
                };
                let key = (instance.clone(), unique_type.clone(), value.clone());
                let still_taken = self.unique_constraints.contains(&key)
                    && !removals.contains(&key)
                    && !cleared.contains(instance);
                if still_taken || additions.contains(&key) {
                    return Err(Error::UniqueConstraintViolation {
                        instance_id: instance.clone(),
                        unique_type: unique_type.clone(),
                        value: value.clone(),
                        error_message_id: error_message_id.clone(),
                    });
                }
                additions.insert(key);
            }
        }
        Ok((removals, cleared, additions))
    }

    /// The events `query` selects, in its order, before offset and limit.
    fn filtered<'a>(&'a self, query: &'a Query) -> impl Iterator<Item = &'a Event> + 'a {
        let excluded = query.excluded_aggregates(&self.events);
        let candidates: Box<dyn DoubleEndedIterator<Item = &Event>> = match query.single_aggregate()
        {
            // The per-aggregate index avoids a scan of the whole store.
            Some(aggregate) => Box::new(
                self.aggregates
                    .get(&aggregate)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|&index| &self.events[index]),
            ),
            None => Box::new(self.events.iter()),
        };
        let ordered: Box<dyn Iterator<Item = &Event>> = match query.order() {
            Order::Ascending => candidates,
            Order::Descending => Box::new(candidates.rev()),
        };
        ordered.filter(move |event| {
            query.matches(event)
                && excluded.as_ref().is_none_or(|excluded| {
                    !excluded.contains(&(
                        event.aggregate.instance_id.clone(),
                        event.aggregate.aggregate_id.clone(),
                    ))
                })
        })
    }

    fn select(&self, query: &Query) -> Vec<Event> {
        let limit = query.limit().map_or(usize::MAX, |limit| limit as usize);
        let offset = usize::try_from(query.offset()).unwrap_or(usize::MAX);
        self.filtered(query)
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }
}

impl EventStore for MemoryStore {
    async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        let span = telemetry::push_span(SYSTEM_MEMORY, &commands);
        telemetry::observe_push(SYSTEM_MEMORY, span, async move {
            let stored = self.lock().push(commands)?;
            if let Some(pushed) = Pushed::of(&stored) {
                // No subscriber is not an error: nobody is listening yet.
                let _ = self.pushes.send(pushed);
            }
            Ok(stored)
        })
        .await
    }

    async fn push_idempotent(
        &self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
    ) -> Result<Vec<Event>> {
        let span = telemetry::push_span(SYSTEM_MEMORY, &commands);
        telemetry::observe_push(SYSTEM_MEMORY, span, async move {
            let (stored, replayed) = {
                let mut state = self.lock();
                let before = state.last_position;
                let stored = state.push_idempotent(key, commands, self.idempotency_retention)?;
                (stored, state.last_position == before)
            };
            // A replay stored nothing, so there is nothing to announce.
            if !replayed && let Some(pushed) = Pushed::of(&stored) {
                let _ = self.pushes.send(pushed);
            }
            Ok(stored)
        })
        .await
    }

    async fn recorded_push(&self, key: &IdempotencyKey) -> Result<Option<Vec<Event>>> {
        let state = self.lock();
        let id = (key.instance_id().clone(), key.key().to_owned());
        Ok(state
            .idempotency_keys
            .get(&id)
            .filter(|record| record.recorded_at.elapsed() < self.idempotency_retention)
            .map(|record| record.events.clone()))
    }

    fn stream<'a>(&'a self, query: &'a Query) -> BoxStream<'a, Result<Event>> {
        let events = self.lock().select(query);
        stream::iter(events.into_iter().map(Ok)).boxed()
    }

    async fn query(&self, query: &Query) -> Result<Vec<Event>> {
        telemetry::observe_read(SYSTEM_MEMORY, "query", query, async {
            Ok(self.lock().select(query))
        })
        .await
    }

    async fn latest_position(&self, query: &Query) -> Result<Option<Position>> {
        let state = self.lock();
        Ok(state.filtered(query).map(|event| event.position).max())
    }

    async fn count(&self, query: &Query) -> Result<u64> {
        telemetry::observe_read(SYSTEM_MEMORY, "count", query, async {
            Ok(self.lock().filtered(query).count() as u64)
        })
        .await
    }

    fn subscribe_pushes(&self) -> Option<broadcast::Receiver<Pushed>> {
        Some(self.pushes.subscribe())
    }

    async fn current_sequence(&self, aggregate: &AggregateRef) -> Result<Sequence> {
        Ok(self.lock().current_sequence(aggregate))
    }

    async fn instance_ids(&self, query: &Query) -> Result<Vec<InstanceId>> {
        let state = self.lock();
        let distinct: BTreeSet<&InstanceId> = state
            .filtered(query)
            .map(|event| &event.aggregate.instance_id)
            .collect();
        Ok(distinct.into_iter().cloned().collect())
    }

    async fn instance_heads(&self) -> Result<Vec<(InstanceId, Position)>> {
        let state = self.lock();
        // Events are stored in position order, so an instance's last one is its head.
        let mut heads: BTreeMap<&InstanceId, Position> = BTreeMap::new();
        for event in &state.events {
            heads.insert(&event.aggregate.instance_id, event.position);
        }
        Ok(heads
            .into_iter()
            .map(|(instance, head)| (instance.clone(), head))
            .collect())
    }

    async fn commit_horizon(&self) -> Result<Position> {
        // Pushes are atomic under the lock, so everything stored is final: the horizon is just past
        // the last position handed out.
        Ok(Position::from(self.lock().last_position + 1))
    }
}
