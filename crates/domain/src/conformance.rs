//! The typed layer's conformance suite: every promise of the crate docs as a case any store runs
//! against itself, so the typed layer is proven on each backend, not only on memory.
//!
//! ```text
//! strata_domain::conformance_tests!(async { strata_store::MemoryStore::new() });
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation here is a failed test.

mod personal;

pub use self::personal::{
    erasing_a_subject_erases_every_read, master_key_rotation_keeps_every_read,
    personal_fields_are_sealed_and_read_back, typed_subscriptions_open_personal_data,
};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_cache::{Cache, CacheConfig};
use strata_event::{AggregateRef, Command, InstanceId};
use strata_projection::{MemoryProjections, ProjectionRuntime, ReduceError, SqlValue, Statement};
use strata_query::{Query, QueryError};
use strata_store::{ErrorKind, EventStore};

use crate::{
    Aggregate, Change, Context, DecodeFailure, DomainError, DomainEvent, EncodeError, Envelope,
    EventSpec, Repository, Snapshots, Typed, TypedProjection, Unique, UnknownEvents, Upcaster,
    WriteModel,
};

/// Writes one `#[tokio::test]` per case around `$make`, a future yielding a fresh store.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            every_variant_shape_round_trips,
            unknown_event_types_fail_or_are_skipped,
            old_revisions_are_upcast_everywhere,
            newer_revisions_and_missing_upcasters_are_typed_errors,
            execute_pushes_with_the_loaded_sequence,
            a_rejected_command_stores_nothing,
            concurrent_executes_conflict_and_retrying_decides_again,
            unique_constraints_travel_with_typed_events,
            write_models_expect_every_aggregate_they_push_to,
            write_models_expect_named_aggregates_to_be_new,
            decide_retrying_loads_again_after_a_conflict,
            snapshots_cost_only_reading_more_events,
            bad_input_is_a_typed_error_and_stores_nothing,
            metadata_flows_from_the_context_and_causes_pass_it_on,
            keyed_calls_store_once_and_return_the_first_outcome,
            concurrent_keyed_calls_store_one_copy,
            personal_fields_are_sealed_and_read_back,
            erasing_a_subject_erases_every_read,
            master_key_rotation_keeps_every_read,
            typed_subscriptions_open_personal_data,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $make.await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

const INSTANCE: &str = "acme";

fn context() -> Context {
    Context::new("tester", "org-1")
}

/// Revision 3 of a user's events: revision 1 had `name`, revision 2 split it, revision 3
/// renamed `mail` to `email`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum UserEvent {
    #[serde(rename = "user.added")]
    Added {
        given_name: String,
        family_name: String,
        email: String,
    },
    #[serde(rename = "user.renamed")]
    Renamed(Name),
    #[serde(rename = "user.tagged")]
    Tagged(String, u32),
    #[serde(rename = "user.locked")]
    Locked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Name {
    given_name: String,
}

fn split_name(mut payload: Value) -> Result<Value, String> {
    let fields = payload.as_object_mut().ok_or("not an object")?;
    let name = fields
        .remove("name")
        .and_then(|name| name.as_str().map(str::to_owned));
    let name = name.ok_or("no name")?;
    let (given, family) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    fields.insert("given_name".into(), json!(given));
    fields.insert("family_name".into(), json!(family));
    Ok(payload)
}

fn rename_mail(mut payload: Value) -> Result<Value, String> {
    let object = payload.as_object_mut().ok_or("not an object")?;
    let mail = object.remove("mail").unwrap_or(json!(""));
    object.insert("email".into(), mail);
    Ok(payload)
}

impl DomainEvent for UserEvent {
    const AGGREGATE_TYPE: &'static str = "user";
    const EVENTS: &'static [EventSpec] = &[
        EventSpec::new("user.added").revision(3),
        EventSpec::new("user.renamed"),
        EventSpec::new("user.tagged"),
        EventSpec::new("user.locked"),
    ];
    const UPCASTERS: &'static [Upcaster] = &[
        Upcaster::new("user.added", 1, split_name),
        Upcaster::new("user.added", 2, rename_mail),
    ];
}

fn alice() -> UserEvent {
    UserEvent::Added {
        given_name: "Alice".into(),
        family_name: "Liddell".into(),
        email: "alice@example.com".into(),
    }
}

/// What an old build stored: `user.added` at revision 1.
fn revision_one(aggregate_id: &str) -> Command {
    Command::builder(INSTANCE, "user", aggregate_id, "user.added")
        .revision(1)
        .payload(&json!({ "name": "Alice Liddell", "mail": "alice@example.com" }))
        .creator("old-build")
        .owner("org-1")
        .build()
        .unwrap()
}

/// A counter: the aggregate the concurrency cases fight over.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    #[serde(rename = "counter.incremented")]
    Incremented { to: u64 },
}

impl DomainEvent for CounterEvent {
    const AGGREGATE_TYPE: &'static str = "counter";
    const EVENTS: &'static [EventSpec] = &[EventSpec::new("counter.incremented")];
}

#[derive(Debug, Clone)]
enum CounterCommand {
    Increment,
    IncrementBeyond(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("the counter is at {0}")]
struct TooLow(u64);

impl Aggregate for Counter {
    type Event = CounterEvent;
    type Command = CounterCommand;
    type Error = TooLow;

    fn handle(&self, command: CounterCommand) -> Result<Vec<CounterEvent>, TooLow> {
        match command {
            CounterCommand::IncrementBeyond(limit) if self.value < limit => Err(TooLow(self.value)),
            _ => Ok(vec![CounterEvent::Incremented { to: self.value + 1 }]),
        }
    }

    fn apply(&mut self, event: Envelope<CounterEvent>) {
        let CounterEvent::Incremented { to } = event.payload;
        self.value = to;
    }
}

/// The state of a user, as an aggregate: what the upcast case folds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct User {
    given_name: String,
    email: String,
    locked: bool,
}

impl Aggregate for User {
    type Event = UserEvent;
    type Command = UserEvent;
    type Error = std::convert::Infallible;

    fn handle(&self, command: UserEvent) -> Result<Vec<UserEvent>, Self::Error> {
        Ok(vec![command])
    }

    fn apply(&mut self, event: Envelope<UserEvent>) {
        match event.payload {
            UserEvent::Added {
                given_name, email, ..
            } => {
                self.given_name = given_name;
                self.email = email;
            }
            UserEvent::Renamed(name) => self.given_name = name.given_name,
            UserEvent::Tagged(..) => {}
            UserEvent::Locked => self.locked = true,
        }
    }
}

/// Every user of the instance, as a write model.
#[derive(Debug, Default)]
struct Directory {
    emails: Vec<String>,
}

impl WriteModel for Directory {
    type Event = UserEvent;

    fn query(&self) -> Result<Query, QueryError> {
        Query::builder()
            .instance(INSTANCE)
            .aggregate_types(["user"])
            .build()
    }

    fn apply(&mut self, event: Envelope<UserEvent>) {
        if let UserEvent::Added { email, .. } = event.payload {
            self.emails.push(email);
        }
    }
}

/// Two counters read together: a write model over several aggregates.
#[derive(Debug, Default)]
struct Pair {
    total: u64,
}

impl WriteModel for Pair {
    type Event = CounterEvent;

    fn query(&self) -> Result<Query, QueryError> {
        Query::builder()
            .instance(INSTANCE)
            .aggregate_types(["counter"])
            .aggregate_ids(["left", "right"])
            .build()
    }

    fn apply(&mut self, _: Envelope<CounterEvent>) {
        self.total += 1;
    }
}

/// Emails by user, as a typed projection.
struct Emails;

impl TypedProjection for Emails {
    type Event = UserEvent;

    fn name(&self) -> &str {
        "typed_emails"
    }

    fn reduce(&self, event: &Envelope<UserEvent>) -> Result<Vec<Statement>, ReduceError> {
        let UserEvent::Added { email, .. } = &event.payload else {
            return Ok(Vec::new());
        };
        Ok(vec![Statement::upsert(
            "typed_emails",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![("email", email.as_str().into())],
        )])
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "typed_emails",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
}

/// Struct, newtype, tuple and unit variants become commands at the table's revision and decode back equal.
pub async fn every_variant_shape_round_trips<S: EventStore + Clone + 'static>(store: &S) {
    let events = [
        alice(),
        UserEvent::Renamed(Name {
            given_name: "Al".into(),
        }),
        UserEvent::Tagged("vip".into(), 7),
        UserEvent::Locked,
    ];
    let commands: Vec<Command> = events
        .iter()
        .map(|event| crate::command(event, INSTANCE, "u-1", &context()).unwrap())
        .collect();
    assert_eq!(commands[0].revision(), 3, "the table's revision is written");
    assert_eq!(
        commands[0].payload().decode::<Value>().unwrap(),
        json!({ "given_name": "Alice", "family_name": "Liddell", "email": "alice@example.com" }),
        "the payload is the variant's content, without a wrapper"
    );
    assert_eq!(
        commands[3].payload().json(),
        None,
        "a unit variant has no payload"
    );
    store.push(commands).await.unwrap();

    let stored = store
        .query(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap();
    let decoded: Vec<UserEvent> = stored
        .into_iter()
        .map(|event| Envelope::<UserEvent>::decode(event).unwrap().payload)
        .collect();
    assert_eq!(decoded, events);
}

/// An event type the table lacks is a typed error, or skipped when asked; aggregates fail on it, write models skip it.
pub async fn unknown_event_types_fail_or_are_skipped<S: EventStore + Clone + 'static>(store: &S) {
    let newer = Command::builder(INSTANCE, "user", "u-1", "user.promoted")
        .creator("newer-build")
        .owner("org-1")
        .build()
        .unwrap();
    let other_type = Command::builder(INSTANCE, "group", "u-1", "user.locked")
        .creator("newer-build")
        .owner("org-1")
        .build()
        .unwrap();
    let stored = store.push(vec![newer, other_type]).await.unwrap();
    for event in stored {
        let err = Envelope::<UserEvent>::decode(event.clone()).unwrap_err();
        assert_eq!(err.failure, DecodeFailure::UnknownEventType);
        assert_eq!(err.aggregate, event.aggregate, "the error names the event");
        assert!(
            Envelope::<UserEvent>::decode_known(event.clone())
                .unwrap()
                .is_none()
        );
        assert!(
            Envelope::<UserEvent>::decode_with(event, UnknownEvents::Skip)
                .unwrap()
                .is_none()
        );
    }
    // An aggregate fails to load over an event it does not know (its default)…
    let err = Repository::new(store.clone())
        .load::<User>(INSTANCE, "u-1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::Decode(ref decode) if decode.failure == DecodeFailure::UnknownEventType)
    );
    // …while a write model skips it (its default).
    let directory = Repository::new(store.clone())
        .load_model(Directory::default())
        .await
        .unwrap();
    assert!(directory.state.emails.is_empty());
    let aggregate = AggregateRef::new(INSTANCE, "user", "u-1").unwrap();
    assert_eq!(
        directory.version(&aggregate),
        Some(1),
        "skipped events still count as seen"
    );
}

/// Events stored at revision 1 read as revision 3 through decoding, aggregates, write models and projections, and stay stored as written.
pub async fn old_revisions_are_upcast_everywhere<S: EventStore + Clone + 'static>(store: &S) {
    let stored = store
        .push(vec![revision_one("u-1"), revision_one("u-2")])
        .await
        .unwrap();
    let expected = alice();

    // Decoding.
    let envelope = Envelope::<UserEvent>::decode(stored[0].clone()).unwrap();
    assert_eq!(envelope.payload, expected);
    assert_eq!(
        envelope.stored_revision, 1,
        "the stored event is not rewritten"
    );

    // Aggregates.
    let repository = Repository::new(store.clone());
    let user = repository.load::<User>(INSTANCE, "u-1").await.unwrap();
    assert_eq!(user.state.given_name, "Alice");
    assert_eq!(user.state.email, "alice@example.com");

    // Write models.
    let directory = repository.load_model(Directory::default()).await.unwrap();
    assert_eq!(
        directory.state.emails,
        ["alice@example.com", "alice@example.com"]
    );

    // Projections.
    let read_models = MemoryProjections::new();
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(Typed(Emails))
        .unwrap()
        .start()
        .await
        .unwrap();
    runtime
        .catch_up(
            "typed_emails",
            &InstanceId::new(INSTANCE).unwrap(),
            stored[1].position,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let rows = read_models.rows("typed_emails");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|row| row.get("email") == Some(&SqlValue::from("alice@example.com")))
    );
    runtime.shutdown(Duration::from_secs(10)).await.unwrap();

    // The store still holds revision 1.
    let raw = store
        .query(&Query::aggregate(&stored[0].aggregate))
        .await
        .unwrap();
    assert_eq!(raw[0].revision, 1);
    assert_eq!(raw[0].raw_payload, stored[0].raw_payload);
}

/// A newer revision, a missing upcaster and a failing upcaster each give their own typed error.
pub async fn newer_revisions_and_missing_upcasters_are_typed_errors<
    S: EventStore + Clone + 'static,
>(
    store: &S,
) {
    let newer = Command::builder(INSTANCE, "user", "u-1", "user.added")
        .revision(4)
        .payload(&json!({}))
        .creator("newer-build")
        .owner("org-1")
        .build()
        .unwrap();
    let no_step = Command::builder(INSTANCE, "user", "u-2", "user.renamed")
        .revision(0)
        .payload(&json!({}))
        .creator("ancient-build")
        .owner("org-1")
        .build()
        .unwrap();
    let failing_step = Command::builder(INSTANCE, "user", "u-3", "user.added")
        .revision(1)
        .payload(&json!({ "mail": "no name" }))
        .creator("old-build")
        .owner("org-1")
        .build()
        .unwrap();
    let stored = store
        .push(vec![newer, no_step, failing_step])
        .await
        .unwrap();
    let failures: Vec<DecodeFailure> = stored
        .into_iter()
        .map(|event| Envelope::<UserEvent>::decode(event).unwrap_err().failure)
        .collect();
    assert_eq!(
        failures,
        [
            DecodeFailure::NewerRevision { known: 3 },
            DecodeFailure::MissingUpcaster { from: 0 },
            DecodeFailure::Upcast {
                from: 1,
                reason: "no name".into()
            },
        ]
    );
}

/// `execute` pushes what the aggregate decided, numbered after what it loaded.
pub async fn execute_pushes_with_the_loaded_sequence<S: EventStore + Clone + 'static>(store: &S) {
    let repository = Repository::new(store.clone());
    for expected in 1..=3 {
        let stored = repository
            .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &context())
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].sequence, expected);
        assert_eq!(
            stored[0].payload,
            CounterEvent::Incremented { to: expected }
        );
        assert_eq!(stored[0].creator.as_str(), "tester");
        assert_eq!(stored[0].owner.as_str(), "org-1");
    }
    let loaded = repository.load::<Counter>(INSTANCE, "c-1").await.unwrap();
    assert_eq!((loaded.state.value, loaded.sequence()), (3, 3));
    let fresh = repository.load::<Counter>(INSTANCE, "c-2").await.unwrap();
    assert_eq!((fresh.state.value, fresh.sequence()), (0, 0));
}

/// A command the aggregate refuses returns its error and stores nothing.
pub async fn a_rejected_command_stores_nothing<S: EventStore + Clone + 'static>(store: &S) {
    let repository = Repository::new(store.clone());
    let err = repository
        .execute::<Counter>(
            INSTANCE,
            "c-1",
            CounterCommand::IncrementBeyond(5),
            &context(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Rejected(TooLow(0))), "{err:?}");
    assert!(store.query(&Query::all()).await.unwrap().is_empty());
}

/// A decision on a stale state conflicts; retrying writers each decide on the newest state.
pub async fn concurrent_executes_conflict_and_retrying_decides_again<S>(store: &S)
where
    S: EventStore + Clone + 'static,
{
    // Without retries, a writer that loaded a stale state is refused, never overwrites.
    let repository = Repository::new(store.clone());
    let stale = repository.load::<Counter>(INSTANCE, "c-1").await.unwrap();
    repository
        .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &context())
        .await
        .unwrap();
    let decided = stale.state.handle(CounterCommand::Increment).unwrap();
    let err = repository
        .push(
            &stale,
            decided
                .into_iter()
                .map(|event| Change::new(INSTANCE, "c-1", event))
                .collect(),
            &context(),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    // With retries, 8 writers each increment once: the counter ends at 1 + 8, every value once.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let repository = repository.clone();
            tokio::spawn(async move {
                repository
                    .execute_retrying::<Counter>(
                        INSTANCE,
                        "c-1",
                        CounterCommand::Increment,
                        &context(),
                        1000,
                    )
                    .await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let events = store
        .query(&Query::aggregate(
            &AggregateRef::new(INSTANCE, "counter", "c-1").unwrap(),
        ))
        .await
        .unwrap();
    let values: Vec<u64> = events
        .into_iter()
        .map(|event| {
            let CounterEvent::Incremented { to } =
                Envelope::<CounterEvent>::decode(event).unwrap().payload;
            to
        })
        .collect();
    assert_eq!(values, (1..=9).collect::<Vec<u64>>());
}

/// Unique constraints declared by typed events are claimed with the push.
pub async fn unique_constraints_travel_with_typed_events<S: EventStore + Clone + 'static>(
    store: &S,
) {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    enum Account {
        #[serde(rename = "account.opened")]
        Opened { handle: String },
    }
    impl DomainEvent for Account {
        const AGGREGATE_TYPE: &'static str = "account";
        const EVENTS: &'static [EventSpec] = &[EventSpec::new("account.opened")];
        fn unique_constraints(&self) -> Vec<Unique> {
            let Account::Opened { handle } = self;
            vec![Unique::add("handle", handle, "errors.handle_taken")]
        }
    }
    let repository = Repository::new(store.clone());
    let open = |id: &str| {
        Change::new(
            INSTANCE,
            id,
            Account::Opened {
                handle: "alice".into(),
            },
        )
    };
    let nothing = repository.load_model(Directory::default()).await.unwrap();
    repository
        .push(&nothing, vec![open("a-1")], &context())
        .await
        .unwrap();
    let err = repository
        .push(&nothing, vec![open("a-2")], &context())
        .await
        .unwrap_err();
    match err {
        DomainError::Store(strata_store::Error::UniqueConstraintViolation {
            error_message_id,
            ..
        }) => assert_eq!(error_message_id, "errors.handle_taken"),
        other => panic!("expected a unique-constraint violation, got {other:?}"),
    }
}

/// A push from a write model conflicts when any aggregate it writes to moved since the load.
pub async fn write_models_expect_every_aggregate_they_push_to<S: EventStore + Clone + 'static>(
    store: &S,
) {
    let repository = Repository::new(store.clone());
    for id in ["left", "right"] {
        repository
            .execute::<Counter>(INSTANCE, id, CounterCommand::Increment, &context())
            .await
            .unwrap();
    }
    let pair = repository.load_model(Pair::default()).await.unwrap();
    assert_eq!(pair.state.total, 2);
    let left = AggregateRef::new(INSTANCE, "counter", "left").unwrap();
    assert_eq!(pair.version(&left), Some(1));

    // Another writer moves `right`: a push to both, decided on the old pair, is refused whole.
    repository
        .execute::<Counter>(INSTANCE, "right", CounterCommand::Increment, &context())
        .await
        .unwrap();
    let both = vec![
        Change::new(INSTANCE, "left", CounterEvent::Incremented { to: 2 }),
        Change::new(INSTANCE, "right", CounterEvent::Incremented { to: 2 }),
    ];
    let err = repository
        .push(&pair, both.clone(), &context())
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(
        store.query(&Query::aggregate(&left)).await.unwrap().len(),
        1,
        "nothing of the refused push was stored"
    );

    // Loaded again, the same push goes through.
    let pair = repository.load_model(Pair::default()).await.unwrap();
    let stored = repository.push(&pair, both, &context()).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|event| event.sequence)
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

/// An aggregate the model's query names by id, unseen, is expected to still be new.
pub async fn write_models_expect_named_aggregates_to_be_new<S: EventStore + Clone + 'static>(
    store: &S,
) {
    let repository = Repository::new(store.clone());
    // Two deciders load the empty pair and both create `left`: only the first may.
    let first = repository.load_model(Pair::default()).await.unwrap();
    let second = repository.load_model(Pair::default()).await.unwrap();
    let create = vec![Change::new(
        INSTANCE,
        "left",
        CounterEvent::Incremented { to: 1 },
    )];
    repository
        .push(&first, create.clone(), &context())
        .await
        .unwrap();
    let err = repository
        .push(&second, create, &context())
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");

    // An aggregate the model does not name is pushed to without an expectation.
    let elsewhere = vec![Change::new(
        INSTANCE,
        "elsewhere",
        CounterEvent::Incremented { to: 1 },
    )];
    repository
        .push(&second, elsewhere.clone(), &context())
        .await
        .unwrap();
    repository
        .push(&second, elsewhere, &context())
        .await
        .unwrap();
}

/// Concurrent deciders with retries each decide once on the newest model.
pub async fn decide_retrying_loads_again_after_a_conflict<S>(store: &S)
where
    S: EventStore + Clone + 'static,
{
    let repository = Repository::new(store.clone());
    // Eight deciders each add one to whichever counter of the pair is lower.
    let deciders: Vec<_> = (0..8)
        .map(|_| {
            let repository = repository.clone();
            tokio::spawn(async move {
                repository
                    .decide_retrying(
                        Pair::default,
                        |pair: &Pair| {
                            Ok::<_, std::convert::Infallible>(vec![Change::new(
                                INSTANCE,
                                if pair.total.is_multiple_of(2) {
                                    "left"
                                } else {
                                    "right"
                                },
                                CounterEvent::Incremented { to: pair.total + 1 },
                            )])
                        },
                        &context(),
                        1000,
                    )
                    .await
            })
        })
        .collect();
    for decider in deciders {
        decider.await.unwrap().unwrap();
    }
    let pair = repository.load_model(Pair::default()).await.unwrap();
    assert_eq!(pair.state.total, 8);
    for id in ["left", "right"] {
        let aggregate = AggregateRef::new(INSTANCE, "counter", id).unwrap();
        assert_eq!(
            pair.version(&aggregate),
            Some(4),
            "{id} got every other decision"
        );
    }
}

/// Snapshots shorten loads, and a snapshot the store or the build cannot back is ignored.
pub async fn snapshots_cost_only_reading_more_events<S: EventStore + Clone + 'static>(store: &S) {
    let cache: Cache<crate::SnapshotEntry> =
        Cache::memory("snapshots", CacheConfig::default()).unwrap();
    let repository =
        Repository::new(store.clone()).with_snapshots(Snapshots::new(cache.clone()).every(10));
    for _ in 0..25 {
        repository
            .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &context())
            .await
            .unwrap();
    }
    // Loads that read 10 events wrote snapshots at 10 and 20; a load now reads only 21 to 25.
    let loaded = repository.load::<Counter>(INSTANCE, "c-1").await.unwrap();
    assert_eq!((loaded.state.value, loaded.sequence()), (25, 25));
    assert_eq!(loaded.events_read(), 5);

    // A snapshot for a store that does not have its base event (the cache outlived the data) is
    // ignored: the aggregate is loaded from the events it really has.
    let other = strata_store::MemoryStore::new();
    let elsewhere =
        Repository::new(other.clone()).with_snapshots(Snapshots::new(cache.clone()).every(10));
    for _ in 0..3 {
        Repository::new(other.clone())
            .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &context())
            .await
            .unwrap();
    }
    let loaded = elsewhere.load::<Counter>(INSTANCE, "c-1").await.unwrap();
    assert_eq!((loaded.state.value, loaded.sequence()), (3, 3));
    assert_eq!(loaded.events_read(), 3);

    // A build whose state changed shape never reads the old snapshot.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct CounterV2 {
        count: u64,
    }
    impl Aggregate for CounterV2 {
        type Event = CounterEvent;
        type Command = CounterCommand;
        type Error = TooLow;
        const SNAPSHOT_VERSION: u32 = 2;
        fn handle(&self, _: CounterCommand) -> Result<Vec<CounterEvent>, TooLow> {
            Ok(Vec::new())
        }
        fn apply(&mut self, _: Envelope<CounterEvent>) {
            self.count += 1;
        }
    }
    let loaded = repository.load::<CounterV2>(INSTANCE, "c-1").await.unwrap();
    assert_eq!((loaded.state.count, loaded.events_read()), (25, 25));

    // A load that skipped an event it does not know writes no snapshot: a build that knows the
    // type must not start from a state that missed it.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Lenient {
        count: u64,
    }
    impl Aggregate for Lenient {
        type Event = CounterEvent;
        type Command = CounterCommand;
        type Error = TooLow;
        const UNKNOWN_EVENTS: UnknownEvents = UnknownEvents::Skip;
        fn handle(&self, _: CounterCommand) -> Result<Vec<CounterEvent>, TooLow> {
            Ok(Vec::new())
        }
        fn apply(&mut self, _: Envelope<CounterEvent>) {
            self.count += 1;
        }
    }
    let newer = Command::builder(INSTANCE, "counter", "c-1", "counter.reset")
        .creator("newer-build")
        .owner("org-1")
        .build()
        .unwrap();
    store.push(vec![newer]).await.unwrap();
    for _ in 0..2 {
        let loaded = repository.load::<Lenient>(INSTANCE, "c-1").await.unwrap();
        assert_eq!((loaded.state.count, loaded.events_read()), (25, 26));
    }
}

/// Invalid ids, contexts and event types are typed errors that store nothing.
pub async fn bad_input_is_a_typed_error_and_stores_nothing<S: EventStore + Clone + 'static>(
    store: &S,
) {
    let repository = Repository::new(store.clone());
    let err = repository.load::<Counter>(INSTANCE, "").await.unwrap_err();
    assert_eq!(err.store_kind(), Some(ErrorKind::InvalidInput), "{err:?}");
    let err = repository
        .execute::<Counter>(
            INSTANCE,
            &"x".repeat(300),
            CounterCommand::Increment,
            &context(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.store_kind(), Some(ErrorKind::InvalidInput), "{err:?}");
    let err = repository
        .execute::<Counter>(
            INSTANCE,
            "c-1",
            CounterCommand::Increment,
            &Context::new("", "org"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::Encode(EncodeError::Invalid(_))),
        "an empty creator is refused: {err:?}"
    );

    // A variant missing from the table, and a type that is no enum.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    enum Forgotten {
        #[serde(rename = "forgotten.listed")]
        Listed,
        #[serde(rename = "forgotten.unlisted")]
        Unlisted,
    }
    impl DomainEvent for Forgotten {
        const AGGREGATE_TYPE: &'static str = "forgotten";
        const EVENTS: &'static [EventSpec] = &[EventSpec::new("forgotten.listed")];
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct NotAnEnum {
        field: u8,
    }
    impl DomainEvent for NotAnEnum {
        const AGGREGATE_TYPE: &'static str = "struct";
        const EVENTS: &'static [EventSpec] = &[EventSpec::new("struct.event")];
    }
    assert!(crate::command(&Forgotten::Listed, INSTANCE, "f", &context()).is_ok());
    assert!(matches!(
        crate::command(&Forgotten::Unlisted, INSTANCE, "f", &context()),
        Err(EncodeError::NotInTable {
            event_type: "forgotten.unlisted",
            ..
        })
    ));
    assert!(matches!(
        crate::command(&NotAnEnum { field: 1 }, INSTANCE, "s", &context()),
        Err(EncodeError::Serialize { .. })
    ));
    assert!(store.query(&Query::all()).await.unwrap().is_empty());
}

/// The context's correlation id and headers reach the stored events; a context made with
/// `caused_by` inherits the correlation and names the event as its cause.
pub async fn metadata_flows_from_the_context_and_causes_pass_it_on<S>(store: &S)
where
    S: EventStore + Clone + 'static,
{
    let repository = Repository::new(store.clone());
    let request = context()
        .correlation_id("req-1")
        .header("tenant-tier", "gold");
    let first = repository
        .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &request)
        .await
        .unwrap();
    assert_eq!(first[0].metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(
        first[0]
            .metadata
            .headers
            .get("tenant-tier")
            .map(String::as_str),
        Some("gold")
    );

    // A handler reacting to the event passes nothing by hand.
    let reaction = context().caused_by(&first[0]);
    let second = repository
        .execute::<Counter>(INSTANCE, "c-2", CounterCommand::Increment, &reaction)
        .await
        .unwrap();
    assert_eq!(second[0].metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(
        second[0].metadata.causation_id.as_deref(),
        Some("counter/c-1/1")
    );
    assert_eq!(second[0].metadata.causation_id, Some(first[0].id()));
    assert_eq!(
        request
            .clone()
            .idempotency_key("k")
            .caused_by(&first[0])
            .key(),
        None,
        "a reaction is another call than the one the key named"
    );

    // An event without a correlation id starts one.
    let third = repository
        .execute::<Counter>(INSTANCE, "c-3", CounterCommand::Increment, &context())
        .await
        .unwrap();
    let started = context().caused_by(&third[0]);
    assert_eq!(
        started.metadata().correlation_id.as_deref(),
        Some("counter/c-3/1")
    );

    // The request's events are found by its correlation id, and read back as pushed.
    let correlated = store
        .query(
            &Query::builder()
                .instance(INSTANCE)
                .correlation_id("req-1")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let decoded: Vec<Envelope<CounterEvent>> = correlated
        .into_iter()
        .map(|event| Envelope::decode(event).unwrap())
        .collect();
    assert_eq!(decoded, [first[0].clone(), second[0].clone()]);
}

/// A keyed call retried after its answer was lost returns the first attempt's events and stores
/// nothing, though the retry loads a state that holds them; the key on another aggregate is a
/// reused key.
pub async fn keyed_calls_store_once_and_return_the_first_outcome<S>(store: &S)
where
    S: EventStore + Clone + 'static,
{
    let repository = Repository::new(store.clone());
    let keyed = context().idempotency_key("request-7");
    let first = repository
        .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &keyed)
        .await
        .unwrap();
    for _ in 0..3 {
        let again = repository
            .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &keyed)
            .await
            .unwrap();
        assert_eq!(again, first, "a retry returns the first outcome");
    }
    let c1 = AggregateRef::new(INSTANCE, "counter", "c-1").unwrap();
    assert_eq!(store.query(&Query::aggregate(&c1)).await.unwrap().len(), 1);

    // Without the key, the same call is a new operation.
    repository
        .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &context())
        .await
        .unwrap();
    assert_eq!(store.query(&Query::aggregate(&c1)).await.unwrap().len(), 2);

    // The key on another aggregate names another operation: refused, nothing stored.
    let err = repository
        .execute::<Counter>(INSTANCE, "c-2", CounterCommand::Increment, &keyed)
        .await
        .unwrap_err();
    assert_eq!(
        err.store_kind(),
        Some(ErrorKind::IdempotencyKeyReused),
        "{err:?}"
    );
    let c2 = AggregateRef::new(INSTANCE, "counter", "c-2").unwrap();
    assert!(
        store
            .query(&Query::aggregate(&c2))
            .await
            .unwrap()
            .is_empty()
    );

    // Write-model pushes and decisions honour the key too.
    let decided = context().idempotency_key("request-8");
    let decide = |pair: &Pair| {
        Ok::<_, std::convert::Infallible>(vec![Change::new(
            INSTANCE,
            "left",
            CounterEvent::Incremented { to: pair.total + 1 },
        )])
    };
    let once = repository
        .decide_retrying(Pair::default, decide, &decided, 3)
        .await
        .unwrap();
    let twice = repository
        .decide_retrying(Pair::default, decide, &decided, 3)
        .await
        .unwrap();
    assert_eq!(once, twice);
    let left = AggregateRef::new(INSTANCE, "counter", "left").unwrap();
    assert_eq!(
        store.query(&Query::aggregate(&left)).await.unwrap().len(),
        1
    );
}

/// Many tasks retrying one keyed call at once store one copy and all return it.
pub async fn concurrent_keyed_calls_store_one_copy<S>(store: &S)
where
    S: EventStore + Clone + 'static,
{
    let repository = Repository::new(store.clone());
    let keyed = context().idempotency_key("request-9");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let repository = repository.clone();
            let keyed = keyed.clone();
            tokio::spawn(async move {
                repository
                    .execute::<Counter>(INSTANCE, "c-1", CounterCommand::Increment, &keyed)
                    .await
            })
        })
        .collect();
    // An attempt that loaded before the winner stored, and pushed after, conflicts on the
    // store and is answered with the winner's outcome: every attempt gets the same events.
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap().unwrap());
    }
    assert!(outcomes.iter().all(|outcome| outcome == &outcomes[0]));
    let c1 = AggregateRef::new(INSTANCE, "counter", "c-1").unwrap();
    assert_eq!(store.query(&Query::aggregate(&c1)).await.unwrap().len(), 1);
}

/// Panics unless every `pub async fn` case of this file is listed in the macro.
pub fn assert_every_case_listed() {
    strata_store::conformance::assert_every_case_listed(
        concat!(
            include_str!("conformance.rs"),
            include_str!("conformance/personal.rs")
        ),
        "strata_domain::conformance_tests!",
    );
}
