//! The storage trait every backend implements.

use std::future::Future;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use strata_event::{AggregateRef, Command, Event, IdempotencyKey, InstanceId, Position, Sequence};
use strata_query::Query;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::subscription::{StartFrom, SubscribeOptions, Subscription};

/// Most commands one push may carry. A larger import should be split; one push is one transaction
/// and holds its aggregates' locks until it commits.
pub const MAX_COMMANDS_PER_PUSH: usize = 10_000;

/// An event store: atomic pushes and ordered reads (see the crate docs for the guarantees).
///
/// Methods return `Send` futures so a store can be shared across tasks (`Arc<S>` or a cheap `Clone`;
/// both backends are `Clone`).
pub trait EventStore: Send + Sync {
    /// Stores all `commands` atomically and returns the stored events in command order.
    ///
    /// An empty push stores nothing and returns nothing.
    fn push(&self, commands: Vec<Command>) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// Pushes `commands` like [`EventStore::push`], under an idempotency `key`, so that a caller who
    /// does not know whether an earlier attempt committed (it failed with
    /// [`Error::Unavailable`]) can simply push again.
    ///
    /// - The first successful push with the key stores its events and records the key, with the
    ///   [`push_fingerprint`](crate::push_fingerprint) of the commands, in the same transaction:
    ///   either both exist or neither does.
    /// - A later push with the key and the same commands (the same fingerprint) writes nothing and
    ///   returns exactly the events the first push stored: equal [`Event`] values, with their
    ///   sequences, positions and `created_at`. Concurrent pushes with one key store one copy.
    /// - A later push with the key and other commands fails with [`Error::IdempotencyKeyReused`] and
    ///   writes nothing.
    /// - A push that fails (a conflict, a unique-constraint clash, invalid input) records no key:
    ///   it wrote nothing, so retrying it is safe anyway, and a retry is checked afresh.
    /// - An empty push stores and records nothing.
    /// - Keys are scoped by [`IdempotencyKey::instance_id`] (the commands may touch any instance)
    ///   and kept for the backend's retention (24 hours by default,
    ///   [`DEFAULT_IDEMPOTENCY_RETENTION`](crate::DEFAULT_IDEMPOTENCY_RETENTION)); a key older than
    ///   that is treated as absent, and the next push with it is a first push again.
    fn push_idempotent(
        &self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// The events the push recorded under `key` stored, while the key is live; `None` when it is
    /// absent or expired. A caller retrying a whole operation (load, decide, push) asks this
    /// first: its new decision would differ from the first attempt's, whose events it now loads.
    fn recorded_push(
        &self,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Vec<Event>>>> + Send;

    /// Streams the events `query` selects, in its order.
    fn stream<'a>(&'a self, query: &'a Query) -> BoxStream<'a, Result<Event>>;

    /// Collects the events `query` selects, in its order.
    fn query(&self, query: &Query) -> impl Future<Output = Result<Vec<Event>>> + Send {
        async move { self.stream(query).try_collect().await }
    }

    /// The highest position among the events `query` selects (its order and limit ignored),
    /// or `None` when it selects nothing.
    fn latest_position(
        &self,
        query: &Query,
    ) -> impl Future<Output = Result<Option<Position>>> + Send;

    /// The distinct instances among the events `query` selects (its order, offset and limit
    /// ignored), sorted by id.
    fn instance_ids(&self, query: &Query) -> impl Future<Output = Result<Vec<InstanceId>>> + Send;

    /// Every instance that has events, with the position of its latest event, sorted by id. The
    /// projection runtime's tick uses it to pass over the instances where nothing happened since
    /// it last found a projection complete there. The default asks [`EventStore::instance_ids`]
    /// and then [`EventStore::latest_position`] once per instance; a backend should answer it in
    /// one go.
    fn instance_heads(&self) -> impl Future<Output = Result<Vec<(InstanceId, Position)>>> + Send {
        async move {
            let mut heads = Vec::new();
            for instance in self.instance_ids(&Query::all()).await? {
                let in_instance = Query::builder().instance(instance.as_str()).build()?;
                if let Some(head) = self.latest_position(&in_instance).await? {
                    heads.push((instance, head));
                }
            }
            Ok(heads)
        }
    }

    /// How many events `query` selects (its order, offset and limit ignored). Projections use it
    /// to report how far behind they are.
    fn count(&self, query: &Query) -> impl Future<Output = Result<u64>> + Send {
        async move {
            let unbounded = Query::clone(query);
            let events: Vec<Event> = self.stream(&unbounded).try_collect().await?;
            Ok(events.len() as u64)
        }
    }

    /// Subscribes to this store's successful pushes, as they commit, and to other processes'
    /// pushes where the store can hear them (PostgreSQL: `LISTEN`). Projection runtimes use it to
    /// run right after a push; a store that cannot tell returns `None` (the runtime then relies on
    /// its other triggers).
    fn subscribe_pushes(&self) -> Option<broadcast::Receiver<Pushed>> {
        None
    }

    /// The events `query` selects as a live stream: those stored after `from` first, then each as
    /// its push commits, in `(position, in_tx_order)` order, each once, none skipped, however late
    /// a push commits (the stream reads only below the [commit
    /// horizon](EventStore::commit_horizon)). See [`Subscription`] for errors, backpressure and
    /// stopping, and [`EventStore::subscribe_with`] for the settings.
    ///
    /// Refuses ([`Error::InvalidInput`]) a descending query, a limit, an offset, a
    /// `resume_after` (give the cursor as [`StartFrom::After`]) and an aggregate exclusion. It
    /// returns once the start is fixed ([`StartFrom::Now`] reads the horizon), so an event pushed
    /// after it returns is always delivered. Call it inside a Tokio runtime: the stream is read by
    /// a task of its own.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use strata_event::Command;
    /// use strata_query::Query;
    /// use strata_store::{EventStore, MemoryStore, StartFrom};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let users = Query::builder().instance("acme").aggregate_types(["user"]).build()?;
    /// let mut subscription = store.subscribe(&users, StartFrom::Beginning).await?;
    ///
    /// let added = Command::builder("acme", "user", "u-1", "user.added")
    ///     .creator("admin")
    ///     .owner("acme")
    ///     .build()?;
    /// store.push(vec![added]).await?;
    ///
    /// let event = subscription.next().await.expect("the stream is live")?;
    /// assert_eq!(event.event_type.as_str(), "user.added");
    /// # Ok(())
    /// # }
    /// ```
    fn subscribe(
        &self,
        query: &Query,
        from: StartFrom,
    ) -> impl Future<Output = Result<Subscription>> + Send
    where
        Self: Clone + Sized + 'static,
    {
        self.subscribe_with(query, from, SubscribeOptions::default())
    }

    /// [`EventStore::subscribe`] with `options` (buffer size, poll interval, retry pause).
    fn subscribe_with(
        &self,
        query: &Query,
        from: StartFrom,
        options: SubscribeOptions,
    ) -> impl Future<Output = Result<Subscription>> + Send
    where
        Self: Clone + Sized + 'static,
    {
        Subscription::start(self.clone(), query.clone(), from, options)
    }

    /// The aggregate's current sequence: that of its last event, `0` when it has none.
    fn current_sequence(
        &self,
        aggregate: &AggregateRef,
    ) -> impl Future<Output = Result<Sequence>> + Send;

    /// The *commit horizon*: every event positioned strictly below it is visible now, and no event
    /// positioned below it can appear later. Projections read up to it and never skip an event whose
    /// push committed late (see `docs/position.md`).
    fn commit_horizon(&self) -> impl Future<Output = Result<Position>> + Send;
}

/// A push that committed: which instances it wrote to and where. A store that hears other
/// processes' pushes passes them on too (without their position); one with no instances means
/// notices may have been lost, and a subscriber should check everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The instances the push wrote to, without duplicates; empty when notices may have been lost.
    pub instance_ids: Vec<InstanceId>,
    /// The position of its events, when the push was this process's own.
    pub position: Option<Position>,
}

impl Pushed {
    /// Describes the stored `events` of one push (`None` when it stored nothing).
    pub fn of(events: &[Event]) -> Option<Pushed> {
        let first = events.first()?;
        let mut instance_ids: Vec<InstanceId> = Vec::new();
        for event in events {
            if !instance_ids.contains(&event.aggregate.instance_id) {
                instance_ids.push(event.aggregate.instance_id.clone());
            }
        }
        Some(Pushed {
            instance_ids,
            position: Some(first.position),
        })
    }
}

/// How many push notices a subscriber may fall behind before it misses some (it then learns it
/// lagged, and a projection runtime simply re-checks everything).
pub const PUSH_NOTICE_CAPACITY: usize = 1024;

/// Checks what no single command can check on its own. Backends call it before touching storage.
pub fn validate_push(commands: &[Command]) -> Result<()> {
    if commands.len() > MAX_COMMANDS_PER_PUSH {
        return Err(Error::invalid_input(format!(
            "a push of {} commands exceeds the maximum of {MAX_COMMANDS_PER_PUSH}",
            commands.len()
        )));
    }
    Ok(())
}
