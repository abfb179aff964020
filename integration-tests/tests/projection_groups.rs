//! Projections that read the same events share each fetch: a run takes along the queued
//! projections with the same reads in the same instance and reads each batch of events once for
//! all of them. Each still ends with the read model a lone run gives, and projections with other
//! reads are not affected.
//!
//! (The skip and kill tests of `projection_processes.rs` run three projections with the same
//! reads in several processes under late commits, so they check the shared path on PostgreSQL.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use strata_event::{AggregateRef, Command, Event, IdempotencyKey, InstanceId, Position, Sequence};
use strata_projection::{
    MemoryProjections, Projection, ProjectionConfig, ProjectionRuntime, Reads, ReduceError,
    RuntimeConfig, SqlValue, Statement,
};
use strata_query::Query;
use strata_store::{EventStore, MemoryStore, Pushed, Result};
use tokio::sync::broadcast;

/// A memory store that counts the event reads (streams) it serves, and when `announces` is false
/// keeps its pushes to itself (as when they come from a process whose notices are lost): only the
/// projection runtime's ticks then find them.
#[derive(Clone)]
struct CountingStore {
    inner: MemoryStore,
    reads: Arc<AtomicU64>,
    announces: bool,
}

impl EventStore for CountingStore {
    async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        self.inner.push(commands).await
    }
    async fn push_idempotent(
        &self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
    ) -> Result<Vec<Event>> {
        self.inner.push_idempotent(key, commands).await
    }
    async fn recorded_push(&self, key: &IdempotencyKey) -> Result<Option<Vec<Event>>> {
        self.inner.recorded_push(key).await
    }
    fn stream<'a>(&'a self, query: &'a Query) -> BoxStream<'a, Result<Event>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.stream(query)
    }
    async fn latest_position(&self, query: &Query) -> Result<Option<Position>> {
        self.inner.latest_position(query).await
    }
    async fn instance_ids(&self, query: &Query) -> Result<Vec<InstanceId>> {
        self.inner.instance_ids(query).await
    }
    async fn instance_heads(&self) -> Result<Vec<(InstanceId, Position)>> {
        self.inner.instance_heads().await
    }
    fn subscribe_pushes(&self) -> Option<broadcast::Receiver<Pushed>> {
        self.announces
            .then(|| self.inner.subscribe_pushes())
            .flatten()
    }
    async fn current_sequence(&self, aggregate: &AggregateRef) -> Result<Sequence> {
        self.inner.current_sequence(aggregate).await
    }
    async fn commit_horizon(&self) -> Result<Position> {
        self.inner.commit_horizon().await
    }
}

/// The latest sequence per aggregate of one type, under the projection's name.
struct Latest {
    name: String,
    aggregate_type: &'static str,
    requeue_every: Duration,
}

impl Projection for Latest {
    fn name(&self) -> &str {
        &self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate(self.aggregate_type)
    }
    fn reduce(&self, event: &Event) -> std::result::Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            "latest",
            vec![
                ("projection", self.name.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![("sequence", event.sequence.into())],
        )])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "latest",
            vec![("projection", self.name.as_str().into())],
        )]
    }
    fn config(&self) -> ProjectionConfig {
        // Small batches, so a run takes several, some of them cut by the limit.
        ProjectionConfig {
            bulk_limit: 10,
            requeue_every: self.requeue_every,
            ..ProjectionConfig::default()
        }
    }
}

const SAME_READS: usize = 8;
const USERS: usize = 20;
const EVENTS_PER_PUSH: usize = 19;
const PUSHES: usize = 5;

fn table(read_models: &MemoryProjections, name: &str) -> BTreeMap<String, i64> {
    read_models
        .rows("latest")
        .iter()
        .filter(|row| row.get("projection") == Some(&SqlValue::from(name)))
        .filter_map(|row| match (row.get("id"), row.get("sequence")) {
            (Some(SqlValue::Text(id)), Some(SqlValue::BigInt(sequence))) => {
                Some((id.clone(), *sequence))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_with_the_same_reads_fetch_each_batch_once_and_each_gets_every_event() {
    let store = CountingStore {
        inner: MemoryStore::new(),
        reads: Arc::default(),
        announces: true,
    };
    let read_models = MemoryProjections::new();
    let mut builder =
        ProjectionRuntime::builder(store.clone(), read_models.clone()).config(RuntimeConfig {
            // One run at a time, and long enough a pause that every trigger of the pushes below
            // lands before the first run: the first run then takes all eight along.
            max_parallel_batches: 1,
            trigger_coalesce: Duration::from_millis(200),
            ..RuntimeConfig::default()
        });
    for n in 0..SAME_READS {
        builder = builder
            .register(Latest {
                name: format!("users_{n}"),
                aggregate_type: "user",
                requeue_every: ProjectionConfig::default().requeue_every,
            })
            .expect("register");
    }
    builder = builder
        .register(Latest {
            name: "orgs".into(),
            aggregate_type: "org",
            requeue_every: ProjectionConfig::default().requeue_every,
        })
        .expect("register");
    let runtime = builder.start().await.expect("start");
    let reads_before = store.reads.load(Ordering::SeqCst);

    let mut expected_users = BTreeMap::new();
    let mut expected_orgs = BTreeMap::new();
    for push in 0..PUSHES {
        let mut commands = Vec::new();
        for n in 0..EVENTS_PER_PUSH {
            let id = format!("u{}", (push * EVENTS_PER_PUSH + n) % USERS);
            commands.push(
                Command::builder("tenant", "user", id, "user.changed")
                    .creator("test")
                    .owner("org")
                    .build()
                    .expect("command"),
            );
        }
        commands.push(
            Command::builder("tenant", "org", format!("o{push}"), "org.added")
                .creator("test")
                .owner("org")
                .build()
                .expect("command"),
        );
        for event in store.push(commands).await.expect("push") {
            let expected = if event.aggregate.aggregate_type.as_str() == "user" {
                &mut expected_users
            } else {
                &mut expected_orgs
            };
            expected.insert(
                event.aggregate.aggregate_id.as_str().to_owned(),
                event.sequence as i64,
            );
        }
    }

    // Every projection gets every event of its reads.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = (0..SAME_READS)
            .all(|n| table(&read_models, &format!("users_{n}")) == expected_users)
            && table(&read_models, "orgs") == expected_orgs;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "projections did not catch up: {:?} vs {:?}",
            table(&read_models, "users_0"),
            expected_users
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let runs triggered meanwhile finish, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = store.reads.load(Ordering::SeqCst) - reads_before;
    runtime
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .expect("shut down");

    // 95 user events in batches of 10 take each projection at least 10 fetches of its own: 80 for
    // the eight. Shared, the eight need about 10 between them (plus a few empty runs); the orgs
    // projection, alone with its reads, a few more.
    let unshared = (SAME_READS * (PUSHES * EVENTS_PER_PUSH).div_ceil(10)) as u64;
    assert!(
        reads < unshared / 2,
        "{reads} event reads; without sharing it would be at least {unshared}"
    );
    eprintln!("{reads} event reads for {SAME_READS} projections with the same reads and one other");
}

/// Ticks are the safety net for lost notices: they find events nobody announced. And they pass
/// over the instances where nothing happened since a run found the projection complete there,
/// except on every sixth tick, which checks them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_find_unannounced_events_and_pass_over_idle_instances() {
    const INSTANCES: usize = 10;
    let store = CountingStore {
        inner: MemoryStore::new(),
        reads: Arc::default(),
        announces: false,
    };
    let read_models = MemoryProjections::new();
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(Latest {
            name: "users".into(),
            aggregate_type: "user",
            requeue_every: Duration::from_millis(100),
        })
        .expect("register")
        .start()
        .await
        .expect("start");
    let push = |instance: usize, sequence: u64| {
        let store = store.clone();
        async move {
            let command = Command::builder(
                format!("tenant-{instance}"),
                "user",
                format!("u-{instance}"),
                "user.changed",
            )
            .creator("test")
            .owner("org")
            .build()
            .expect("command");
            let stored = store.push(vec![command]).await.expect("push");
            assert_eq!(stored[0].sequence, sequence);
        }
    };
    let wait_for = |expected: BTreeMap<String, i64>| {
        let read_models = read_models.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while table(&read_models, "users") != expected {
                assert!(
                    Instant::now() < deadline,
                    "the ticks did not apply the unannounced events: {:?}",
                    table(&read_models, "users")
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut expected = BTreeMap::new();
    for instance in 0..INSTANCES {
        push(instance, 1).await;
        expected.insert(format!("u-{instance}"), 1);
    }
    wait_for(expected.clone()).await;

    // Idle: about twelve ticks, two of them sweeps. Checking every instance on every tick would
    // be about 120 event reads; passing over the complete ones leaves the sweeps' 20.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = store.reads.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let idle_reads = store.reads.load(Ordering::SeqCst) - before;
    assert!(
        idle_reads <= 40,
        "{idle_reads} event reads in 1.2 s of idle ticks over {INSTANCES} instances"
    );

    // An instance passed over is not forgotten: its next event is applied at the next tick.
    push(3, 2).await;
    expected.insert("u-3".into(), 2);
    wait_for(expected).await;
    runtime
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .expect("shut down");
    eprintln!("{idle_reads} event reads in 1.2 s of idle ticks over {INSTANCES} instances");
}
