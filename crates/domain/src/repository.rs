//! The repository: load, decide, push, on any [`EventStore`].

use futures::StreamExt;
use strata_event::{AggregateRef, Command, Event, IdempotencyKey, Sequence};
use strata_query::Query;
use strata_store::{ErrorKind, EventStore};
use tracing::Instrument;

use crate::aggregate::Aggregate;
use crate::command::{Prepared, finish, prepare};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::{DecodeError, EncodeError};
use crate::event::DomainEvent;
use crate::personal::ReadKeys;
use crate::write_model::{Loaded, WriteModel};

/// What a repository call can meet. `R` is the aggregate's or decision's own refusal
/// ([`DomainError::Rejected`]); loads, which decide nothing, use the default, which cannot happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError<R = std::convert::Infallible> {
    /// The store refused or failed (a conflict, a unique constraint, bad input, unavailable).
    #[error(transparent)]
    Store(#[from] strata_store::Error),
    /// A stored event could not be read as the typed event (boxed: it names the event in full,
    /// and the happy path should not pay for its size).
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// A typed event could not become a command.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The aggregate or decision refused the command; nothing was stored. Displays as the
    /// refusal itself.
    #[error(transparent)]
    Rejected(R),
    /// A personal-data key could not be used: a master key the keyring lacks, or a stored key that
    /// does not open (store failures are [`DomainError::Store`]).
    #[cfg(feature = "personal-data")]
    #[error(transparent)]
    Keys(crate::personal::KeyError),
}

#[cfg(feature = "personal-data")]
impl<R> From<crate::personal::KeyError> for DomainError<R> {
    fn from(err: crate::personal::KeyError) -> Self {
        match err {
            crate::personal::KeyError::Store(err) => DomainError::Store(err),
            other => DomainError::Keys(other),
        }
    }
}

impl<R> DomainError<R> {
    /// The store error's kind, when the store refused or failed.
    pub fn store_kind(&self) -> Option<ErrorKind> {
        match self {
            DomainError::Store(err) => Some(err.kind()),
            _ => None,
        }
    }

    /// Whether an expected sequence was stale: loading again and deciding again may succeed.
    pub fn is_conflict(&self) -> bool {
        self.store_kind() == Some(ErrorKind::Conflict)
    }
}

impl<R> From<DecodeError> for DomainError<R> {
    fn from(err: DecodeError) -> Self {
        DomainError::Decode(Box::new(err))
    }
}

impl DomainError {
    /// This error in a call that may also be rejected with `R`: lets `?` carry the error of a
    /// load or push into a function returning `DomainError<R>` (`.map_err(DomainError::widen)`).
    pub fn widen<R>(self) -> DomainError<R> {
        match self {
            DomainError::Store(err) => DomainError::Store(err),
            DomainError::Decode(err) => DomainError::Decode(err),
            DomainError::Encode(err) => DomainError::Encode(err),
            #[cfg(feature = "personal-data")]
            DomainError::Keys(err) => DomainError::Keys(err),
            DomainError::Rejected(never) => match never {},
        }
    }
}

fn widen<T>(err: DomainError) -> DomainError<T> {
    err.widen()
}

/// A change a decision makes: `event` for aggregate `aggregate_id` of `instance_id` (its aggregate
/// type from the event's table).
#[derive(Debug, Clone, PartialEq)]
pub struct Change<E> {
    /// The instance.
    pub instance_id: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// What happened.
    pub event: E,
}

impl<E> Change<E> {
    /// `event` for aggregate `aggregate_id` of `instance_id`.
    pub fn new(instance_id: impl Into<String>, aggregate_id: impl Into<String>, event: E) -> Self {
        Change {
            instance_id: instance_id.into(),
            aggregate_id: aggregate_id.into(),
            event,
        }
    }
}

/// Loads aggregates and write models from a store and pushes what they decide, with optimistic
/// concurrency. Cheap to clone when the store is.
#[derive(Debug, Clone)]
pub struct Repository<S> {
    store: S,
    #[cfg(feature = "snapshots")]
    snapshots: Option<crate::snapshot::Snapshots>,
    #[cfg(feature = "personal-data")]
    vault: Option<crate::personal::Vault>,
}

impl<S: EventStore> Repository<S> {
    /// A repository over `store`.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            #[cfg(feature = "snapshots")]
            snapshots: None,
            #[cfg(feature = "personal-data")]
            vault: None,
        }
    }

    /// Seals the personal fields of what it pushes and opens them in what it loads, with `vault`
    /// (feature `personal-data`). Without one, events that declare personal fields refuse to
    /// encode, and sealed events refuse to decode.
    #[cfg(feature = "personal-data")]
    #[must_use]
    pub fn with_vault(mut self, vault: crate::personal::Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The vault, if any.
    #[cfg(feature = "personal-data")]
    pub fn vault(&self) -> Option<&crate::personal::Vault> {
        self.vault.as_ref()
    }

    fn read_keys(&self) -> ReadKeys<'_> {
        ReadKeys {
            #[cfg(feature = "personal-data")]
            vault: self.vault.as_ref(),
            #[cfg(not(feature = "personal-data"))]
            _none: std::marker::PhantomData,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Loads aggregates through `snapshots` (feature `snapshots`): from a cached state plus the
    /// events after it, writing a new snapshot when a load had to read many events.
    #[cfg(feature = "snapshots")]
    #[must_use]
    pub fn with_snapshots(mut self, snapshots: crate::snapshot::Snapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Loads aggregate `aggregate_id` of `instance_id`: every event folded into `A`'s state. An
    /// aggregate with no events loads as `A::default()` at sequence 0.
    pub async fn load<A: Aggregate>(
        &self,
        instance_id: &str,
        aggregate_id: &str,
    ) -> Result<Loaded<A>, DomainError> {
        let aggregate = AggregateRef::new(
            instance_id,
            <A::Event as DomainEvent>::AGGREGATE_TYPE,
            aggregate_id,
        )
        .map_err(strata_store::Error::from)?;
        let span = tracing::info_span!(
            "strata.load",
            otel.name = "load",
            strata.instance_id = instance_id,
            strata.aggregate_type = <A::Event as DomainEvent>::AGGREGATE_TYPE,
            strata.aggregate_id = aggregate_id,
            strata.events_read = tracing::field::Empty,
        );
        let loading = async {
            #[cfg(feature = "snapshots")]
            if let Some(snapshots) = &self.snapshots {
                return snapshots
                    .load::<A, S>(&self.store, aggregate, self.read_keys())
                    .await;
            }
            self.load_after::<A>(aggregate, Loaded::new(A::default()))
                .await
        };
        let loaded = loading.instrument(span.clone()).await?;
        span.record("strata.events_read", loaded.events_read());
        Ok(loaded)
    }

    /// Folds the events of `aggregate` past what `loaded` already holds into it.
    pub(crate) async fn load_after<A: Aggregate>(
        &self,
        aggregate: AggregateRef,
        loaded: Loaded<A>,
    ) -> Result<Loaded<A>, DomainError> {
        load_aggregate_after(&self.store, aggregate, loaded, self.read_keys()).await
    }

    /// Loads the aggregate, lets it [`handle`](Aggregate::handle) `command`, and pushes the events
    /// it decided with the loaded sequence as the expected sequence. Returns the stored events.
    ///
    /// A concurrent change to the aggregate makes it fail with a conflict
    /// ([`DomainError::is_conflict`]); it never retries on its own (see
    /// [`execute_retrying`](Repository::execute_retrying)).
    ///
    /// With an [idempotency key](Context::idempotency_key) in `context`, a call whose earlier
    /// attempt stored its events (its answer lost to a timeout or `Unavailable`) returns those
    /// events and stores nothing, before loading or deciding: the retry would decide on a state
    /// that already holds them. The key names one operation; an outcome recorded under it for
    /// another aggregate is [`Error::IdempotencyKeyReused`](strata_store::Error).
    pub async fn execute<A: Aggregate>(
        &self,
        instance_id: &str,
        aggregate_id: &str,
        command: A::Command,
        context: &Context,
    ) -> Result<Vec<Envelope<A::Event>>, DomainError<A::Error>> {
        let aggregate = AggregateRef::new(
            instance_id,
            <A::Event as DomainEvent>::AGGREGATE_TYPE,
            aggregate_id,
        )
        .map_err(strata_store::Error::from)?;
        // Before loading: a retry would decide on a state that already holds the first attempt's
        // events (and might refuse, "already done").
        if let Some(key) = context
            .key_for(instance_id)
            .map_err(strata_store::Error::from)?
            && let Some(recorded) = self.store.recorded_push(&key).await?
        {
            return recorded_outcome(&key, recorded, &[aggregate], self.read_keys())
                .await
                .map_err(widen);
        }
        let loaded = self
            .load::<A>(instance_id, aggregate_id)
            .await
            .map_err(widen)?;
        let events = loaded
            .state
            .handle(command)
            .map_err(DomainError::Rejected)?;
        let expected = loaded.sequence();
        let changes = events
            .into_iter()
            .map(|event| Change::new(instance_id, aggregate_id, event))
            .collect();
        // Only the loaded aggregate is expected at the loaded sequence; an event whose table row
        // sends it to another aggregate type is pushed without an expectation.
        self.push_changes(changes, context, |pushed| {
            (pushed == &aggregate).then_some(expected)
        })
        .await
        .map_err(widen)
    }

    /// [`execute`](Repository::execute), loading and deciding again after a conflict, at most
    /// `attempts` times in all. Safe because `handle` decides from the loaded state alone: the
    /// retry decides on the newer state, never pushes the old decision.
    pub async fn execute_retrying<A: Aggregate>(
        &self,
        instance_id: &str,
        aggregate_id: &str,
        command: A::Command,
        context: &Context,
        attempts: u32,
    ) -> Result<Vec<Envelope<A::Event>>, DomainError<A::Error>>
    where
        A::Command: Clone,
    {
        let mut attempt = 1;
        loop {
            match self
                .execute::<A>(instance_id, aggregate_id, command.clone(), context)
                .await
            {
                Err(err) if err.is_conflict() && attempt < attempts => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    /// Runs `model`'s query and folds every event into it, recording the sequence of each
    /// aggregate it saw.
    pub async fn load_model<W: WriteModel>(&self, model: W) -> Result<Loaded<W>, DomainError> {
        let query = model.query().map_err(strata_store::Error::from)?;
        let mut loaded = Loaded::new(model);
        loaded.expected_new = named_aggregates(&query);
        let keys = self.read_keys();
        let mut events = self.store.stream(&query);
        while let Some(event) = events.next().await {
            let event = event?;
            loaded.saw(&event.aggregate, event.sequence, event.cursor());
            let envelope = keys
                .decode(event, W::UNKNOWN_EVENTS, &mut loaded.subjects)
                .await?;
            if let Some(envelope) = envelope {
                loaded.fold(envelope);
            }
        }
        Ok(loaded)
    }

    /// Pushes `changes` decided on `loaded`: each command expects its aggregate at the sequence
    /// the load saw ([`Loaded::version`]); an aggregate the load knows nothing about is pushed to
    /// without an expectation. One atomic push; returns the stored events.
    pub async fn push<T, E: DomainEvent>(
        &self,
        loaded: &Loaded<T>,
        changes: Vec<Change<E>>,
        context: &Context,
    ) -> Result<Vec<Envelope<E>>, DomainError> {
        self.push_changes(changes, context, |aggregate| loaded.version(aggregate))
            .await
    }

    /// Loads `make()`, lets `decide` choose the changes, and pushes them as
    /// [`push`](Repository::push) does; after a conflict, loads and decides again, at most
    /// `attempts` times in all. Safe only because `decide` is a function of the loaded model.
    pub async fn decide_retrying<W, E, R, M, D>(
        &self,
        make: M,
        decide: D,
        context: &Context,
        attempts: u32,
    ) -> Result<Vec<Envelope<E>>, DomainError<R>>
    where
        W: WriteModel,
        E: DomainEvent,
        M: Fn() -> W,
        D: Fn(&W) -> Result<Vec<Change<E>>, R>,
    {
        let mut attempt = 1;
        loop {
            let loaded = self.load_model(make()).await.map_err(widen)?;
            // A retry after a lost answer loads a model that holds the first attempt's events:
            // when the key recorded a push to aggregates this model reads, that was this
            // decision, and deciding again would differ (or find nothing left to do).
            if let Some(instance_id) = keyed_instance(&loaded.state, context)
                && let Some(key) = context
                    .key_for(&instance_id)
                    .map_err(|err| DomainError::Store(err.into()))?
                && let Some(recorded) = self.store.recorded_push(&key).await?
            {
                let seen: Vec<AggregateRef> = loaded
                    .versions
                    .keys()
                    .chain(&loaded.expected_new)
                    .cloned()
                    .collect();
                return recorded_outcome(&key, recorded, &seen, self.read_keys())
                    .await
                    .map_err(widen);
            }
            let changes = decide(&loaded.state).map_err(DomainError::Rejected)?;
            match self.push(&loaded, changes, context).await {
                Err(err) if err.is_conflict() && attempt < attempts => attempt += 1,
                outcome => return outcome.map_err(widen),
            }
        }
    }

    /// Builds one command per change, expecting what `expected` says, and pushes them together.
    async fn push_changes<E: DomainEvent>(
        &self,
        changes: Vec<Change<E>>,
        context: &Context,
        expected: impl Fn(&AggregateRef) -> Option<Sequence>,
    ) -> Result<Vec<Envelope<E>>, DomainError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let key = context
            .key_for(&changes[0].instance_id)
            .map_err(strata_store::Error::from)?;
        #[cfg_attr(not(feature = "personal-data"), allow(unused_mut))]
        let mut prepared = changes
            .iter()
            .map(|change| prepare(&change.event, &change.instance_id, &change.aggregate_id))
            .collect::<Result<Vec<Prepared>, EncodeError>>()?;
        #[cfg(feature = "personal-data")]
        if let Some(vault) = &self.vault
            && prepared.iter().any(|item| !item.spec.personal.is_empty())
        {
            vault.seal(&mut prepared).await?;
        }
        let commands = prepared
            .into_iter()
            .zip(&changes)
            .map(|(prepared, change)| finish(prepared, &change.event, context, &expected))
            .collect::<Result<Vec<Command>, EncodeError>>()?;
        let aggregates: Vec<AggregateRef> = commands
            .iter()
            .map(|command| command.aggregate().clone())
            .collect();
        let stored = match &key {
            None => self.store.push(commands).await?,
            Some(key) => match self.store.push_idempotent(key, commands).await {
                // Another attempt with this key stored first (an identical push is replayed by
                // the store itself): when it wrote to these aggregates it was this operation,
                // decided on an older state, and its outcome is the operation's.
                Err(
                    err @ (strata_store::Error::IdempotencyKeyReused { .. }
                    | strata_store::Error::Conflict { .. }),
                ) => match self.store.recorded_push(key).await? {
                    Some(recorded) => {
                        return recorded_outcome(key, recorded, &aggregates, self.read_keys())
                            .await;
                    }
                    None => return Err(err.into()),
                },
                outcome => outcome?,
            },
        };
        Ok(stored
            .into_iter()
            .zip(changes)
            .map(|(event, change)| Envelope::wrap(event, change.event))
            .collect())
    }
}

/// The instance a keyed decision looks an earlier attempt up in: the one its model's query reads,
/// when it reads exactly one (a keyed push is scoped to the instance of its first change, so a
/// keyed decision stays in one instance).
fn keyed_instance<W: WriteModel>(model: &W, context: &Context) -> Option<String> {
    context.idempotency_key.as_ref()?;
    let query = model.query().ok()?;
    match query.instance_ids() {
        [instance] if !query.spans_all_instances() => Some(instance.as_str().to_owned()),
        _ => None,
    }
}

/// The outcome of a keyed call whose key already has `recorded` events: those events, decoded,
/// when they are on the aggregates this call writes to (`aggregates`; an earlier attempt of the
/// same operation); otherwise the key names another operation, and reusing it is refused. Checked
/// on the raw events, so another operation's events of other types are never decoded.
async fn recorded_outcome<E: DomainEvent>(
    key: &IdempotencyKey,
    recorded: Vec<Event>,
    aggregates: &[AggregateRef],
    keys: ReadKeys<'_>,
) -> Result<Vec<Envelope<E>>, DomainError> {
    if recorded
        .iter()
        .any(|event| !aggregates.contains(&event.aggregate))
    {
        return Err(strata_store::Error::IdempotencyKeyReused {
            instance_id: key.instance_id().clone(),
            key: key.key().to_owned(),
        }
        .into());
    }
    let mut decoded = Vec::with_capacity(recorded.len());
    for event in recorded {
        let aggregate = event.aggregate.clone();
        let sequence = event.sequence;
        match keys
            .decode::<E>(event, crate::UnknownEvents::Fail, &mut Vec::new())
            .await?
        {
            Some(envelope) => decoded.push(envelope),
            // Fail never skips; an unknown type reaches here only through a store that lied.
            None => {
                return Err(strata_store::Error::Backend {
                    message: format!(
                        "a recorded event of {aggregate} (sequence {sequence}) did not decode"
                    ),
                    source: None,
                }
                .into());
            }
        }
    }
    Ok(decoded)
}

/// Folds the events of `aggregate` with a sequence past `loaded`'s into it.
pub(crate) async fn load_aggregate_after<A: Aggregate, S: EventStore>(
    store: &S,
    aggregate: AggregateRef,
    mut loaded: Loaded<A>,
    keys: ReadKeys<'_>,
) -> Result<Loaded<A>, DomainError> {
    let after = loaded.sequence();
    let query = aggregate_query(&aggregate, after)?;
    loaded.expected_new = vec![aggregate.clone()];
    // Streamed, not collected: PostgreSQL's stream fetches on a task of its own, so each event is
    // decoded and folded while the next rows arrive (R1-typed: 0.94 of the untyped read streamed,
    // 0.80 collected first, in the same run).
    let mut events = store.stream(&query);
    while let Some(event) = events.next().await {
        apply_event(&mut loaded, event?, keys).await?;
    }
    Ok(loaded)
}

/// Folds one stored event of an aggregate into its loaded state.
pub(crate) async fn apply_event<A: Aggregate>(
    loaded: &mut Loaded<A>,
    event: Event,
    keys: ReadKeys<'_>,
) -> Result<(), DomainError> {
    loaded.saw(&event.aggregate, event.sequence, event.cursor());
    let envelope = keys
        .decode(event, A::UNKNOWN_EVENTS, &mut loaded.subjects)
        .await?;
    match envelope {
        Some(envelope) => loaded.state.apply(envelope),
        None => loaded.skipped += 1,
    }
    Ok(())
}

/// The events of `aggregate` with a sequence above `after`, in order.
pub(crate) fn aggregate_query(
    aggregate: &AggregateRef,
    after: Sequence,
) -> Result<Query, strata_store::Error> {
    if after == 0 {
        return Ok(Query::aggregate(aggregate));
    }
    Ok(Query::builder()
        .instance(aggregate.instance_id.as_str())
        .aggregate_types([aggregate.aggregate_type.as_str()])
        .aggregate_ids([aggregate.aggregate_id.as_str()])
        .sequence_greater_than(after)
        .build()?)
}

/// The aggregates `query` names completely (one instance, and its aggregate types and ids listed):
/// a load that saw none of their events expects them to still have none.
fn named_aggregates(query: &Query) -> Vec<AggregateRef> {
    // Only a query that reads the named aggregates whole: one that filters their events (by type,
    // owner, position, limit…) may see none of an aggregate that has some, and expecting it new
    // would make every push conflict.
    let reads_whole_aggregates = !query.spans_all_instances()
        && query.any_of().is_empty()
        && query.event_types().is_empty()
        && query.owners().is_empty()
        && query.creators().is_empty()
        && query.position_after().is_none()
        && query.position_at_or_before().is_none()
        && query.position_before().is_none()
        && query.sequence_greater_than().is_none()
        && query.created_after().is_none()
        && query.created_before().is_none()
        && query.payload_contains().is_none()
        && query.exclusion().is_none()
        && query.correlation_id().is_none()
        && query.resume_after().is_none()
        && query.limit().is_none()
        && query.offset() == 0;
    if !reads_whole_aggregates {
        return Vec::new();
    }
    let mut named = Vec::new();
    for instance in query.instance_ids() {
        for aggregate_type in query.aggregate_types() {
            for aggregate_id in query.aggregate_ids() {
                named.push(AggregateRef {
                    instance_id: instance.clone(),
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                });
            }
        }
    }
    named
}

impl<A: Aggregate> Loaded<A> {
    /// The aggregate's sequence as loaded: that of its last event, 0 when it has none.
    pub fn sequence(&self) -> Sequence {
        self.versions.values().copied().max().unwrap_or(0)
    }
}
