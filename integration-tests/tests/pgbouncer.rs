//! Strata behind a real PgBouncer each test starts (`docs/pooling.md`): in transaction mode,
//! pushes, reads, errors, projections and migrations work through the fallback
//! (`strata_postgres::Pooler::TransactionPooling`, detected); in session mode `LISTEN` works.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::TryStreamExt;
use strata_event::{Command, Event, IdempotencyKey, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_integration_tests::pgbouncer::{PgBouncer, PoolMode};
use strata_postgres::{PgConfig, PgProjections, PgStore, PoolConfig, Pooler};
use strata_projection::{Projection, ProjectionRuntime, Reads, ReduceError, Statement};
use strata_query::Query;
use strata_store::{ErrorKind, EventStore};

const WAIT: Duration = Duration::from_secs(30);

/// Small pools: each test's PgBouncer has 4 server connections for its database, and these
/// clients share them.
fn config(pooler: Pooler) -> PgConfig {
    PgConfig {
        push_pool: PoolConfig::with_max(6),
        query_pool: PoolConfig::with_max(4),
        projection_pool: PoolConfig::with_max(4),
        pooler,
        ..PgConfig::default()
    }
}

fn command(instance: &str, id: &str) -> Command {
    Command::builder(instance, "user", id, "user.added")
        .creator("tester")
        .owner("org")
        .payload(&serde_json::json!({ "id": id }))
        .build()
        .expect("valid command")
}

fn everything(instance: &str) -> Query {
    Query::builder().instance(instance).build().expect("query")
}

/// Pushes from many tasks at once, then reads them back every way: what a service does.
async fn pushes_and_reads_from_many_tasks(store: &PgStore) {
    let mut tasks = Vec::new();
    for task in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                // A few hot aggregates, so pushes share lanes and group commits.
                let id = format!("u{}", (task + n) % 6);
                store.push(vec![command("i", &id)]).await?;
            }
            Ok::<_, strata_store::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("every push is stored");
    }
    let events = store.query(&everything("i")).await.expect("query");
    assert_eq!(events.len(), 240);
    for id in 0..6 {
        let sequences: Vec<u64> = events
            .iter()
            .filter(|event| event.aggregate.aggregate_id.as_str() == format!("u{id}"))
            .map(|event| event.sequence)
            .collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "u{id}'s sequences are gap-free");
    }
    let streamed: Vec<Event> = store
        .stream(&everything("i"))
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(streamed, events);
    assert_eq!(store.count(&everything("i")).await.expect("count"), 240);
    let latest = store
        .latest_position(&everything("i"))
        .await
        .expect("latest");
    assert_eq!(latest, events.last().map(|event| event.position));
    assert!(store.commit_horizon().await.expect("horizon") > events[239].position);
    let instances = store
        .instance_ids(&Query::builder().all_instances().build().expect("query"))
        .await
        .expect("instances");
    assert_eq!(instances, vec![InstanceId::new("i").expect("id")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_stores_concurrent_pushes_and_reads_them_back() {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let store = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect("connect");
    assert!(
        store.pools().transaction_pooling(),
        "transaction pooling is detected"
    );
    pushes_and_reads_from_many_tasks(&store).await;
}

/// The same store told it connects directly: the test above can fail. Without the fallback,
/// statements prepared on one server connection run on another, and many fail (or worse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fallback_transaction_pooling_breaks_statements() {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let store = PgStore::connect(&bouncer.url(&database), config(Pooler::Direct))
        .await
        .expect("connect");
    let mut tasks = Vec::new();
    for task in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for n in 0..10 {
                let query = everything("i");
                let pushed = store.push(vec![command("i", &format!("u{task}-{n}"))]);
                failures += usize::from(pushed.await.is_err());
                failures += usize::from(store.count(&query).await.is_err());
            }
            failures
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await.expect("task");
    }
    assert!(
        failures > 0,
        "named prepared statements behind transaction pooling should fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_types_conflicts_unique_violations_and_replays() {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let store = PgStore::connect(&bouncer.url(&database), config(Pooler::TransactionPooling))
        .await
        .expect("connect");
    store.push(vec![command("i", "a")]).await.expect("first");
    let stale = Command::builder("i", "user", "a", "user.added")
        .creator("tester")
        .owner("org")
        .payload(&serde_json::json!({}))
        .expect_sequence(0)
        .build()
        .expect("valid command");
    let conflict = store.push(vec![stale]).await.expect_err("stale sequence");
    assert_eq!(conflict.kind(), ErrorKind::Conflict);

    let claim = |id: &str| {
        Command::builder("i", "user", id, "user.added")
            .creator("tester")
            .owner("org")
            .payload(&serde_json::json!({}))
            .add_unique_constraint("username", "alice", "errors.username_taken")
            .build()
            .expect("valid command")
    };
    store.push(vec![claim("b")]).await.expect("claim");
    let taken = store.push(vec![claim("c")]).await.expect_err("taken");
    assert_eq!(taken.kind(), ErrorKind::UniqueConstraintViolation);

    let key = IdempotencyKey::new("i", "once").expect("key");
    let first = store
        .push_idempotent(&key, vec![command("i", "d")])
        .await
        .expect("keyed");
    let replay = store
        .push_idempotent(&key, vec![command("i", "d")])
        .await
        .expect("replayed");
    assert_eq!(replay, first);
    assert_eq!(
        store.recorded_push(&key).await.expect("recorded"),
        Some(first)
    );
    let reused = store
        .push_idempotent(&key, vec![command("i", "e")])
        .await
        .expect_err("another push with the key");
    assert_eq!(reused.kind(), ErrorKind::IdempotencyKeyReused);
    assert_eq!(store.count(&everything("i")).await.expect("count"), 3);
}

/// Records how many times each event was handled.
struct Handled;

impl Projection for Handled {
    fn name(&self) -> &str {
        "handled"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::sql(
            "INSERT INTO handled (aggregate_id, sequence, times) VALUES ($1, $2, 1) \
             ON CONFLICT (aggregate_id, sequence) DO UPDATE SET times = handled.times + 1",
            vec![
                event.aggregate.aggregate_id.as_str().into(),
                event.sequence.into(),
            ],
        )])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        vec![Statement::sql("DELETE FROM handled", Vec::new())]
    }
}

/// Two runtimes on two stores, all through the bouncer: leases are transactions holding
/// transaction-scoped locks, so each event is handled once, by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_projections_handle_every_event_exactly_once() {
    let database = TestDatabase::create().await;
    let admin = database.pool(1);
    sqlx::query(
        "CREATE TABLE handled (aggregate_id TEXT, sequence BIGINT, times INT, \
         PRIMARY KEY (aggregate_id, sequence))",
    )
    .execute(&admin)
    .await
    .expect("table");
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let mut runtimes = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
            .await
            .expect("connect");
        let runtime = ProjectionRuntime::builder(
            store.clone(),
            PgProjections::new(store.pools().projection().clone()),
        )
        .register(Handled)
        .expect("register")
        .start()
        .await
        .expect("start");
        runtimes.push(runtime);
        stores.push(store);
    }
    let mut last = None;
    for round in 0..20 {
        for (n, store) in stores.iter().enumerate() {
            let pushed = store
                .push(vec![command("i", &format!("u{}", round % 5 + n))])
                .await
                .expect("push");
            last = pushed.last().map(|event| event.position);
        }
    }
    let last = last.expect("pushed");
    let instance = InstanceId::new("i").expect("id");
    for runtime in &runtimes {
        runtime
            .catch_up("handled", &instance, last, WAIT)
            .await
            .expect("caught up");
    }
    let (rows, most): (i64, Option<i32>) =
        sqlx::query_as("SELECT count(*), max(times) FROM handled")
            .fetch_one(&admin)
            .await
            .expect("handled");
    assert_eq!((rows, most), (40, Some(1)), "every event handled once");
    for runtime in runtimes {
        runtime.shutdown(WAIT).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_migrates_an_empty_database() {
    let database = TestDatabase::create_empty().await;
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let store = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect("connect");
    // Two migrators at once, both through the bouncer: serialised, and the second finds nothing
    // left to do.
    let (first, second) = tokio::join!(
        strata_postgres::migrate(store.pools().push()),
        strata_postgres::migrate(store.pools().push()),
    );
    let (first, second) = (first.expect("migrates"), second.expect("migrates"));
    assert_eq!(
        first.migrations.len() + second.migrations.len(),
        strata_postgres::MIGRATOR.iter().count()
    );
    store.push(vec![command("i", "a")]).await.expect("push");
    // No session lock was left behind on a server connection.
    let admin = database.pool(1);
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&admin)
    .await
    .expect("locks");
    assert_eq!(held, 0);
}

/// A writer the fmt subscriber writes into, for reading the log back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// Detection logs the fallback once, as a warning; directly, nothing is logged at warn.
#[tokio::test]
async fn detection_logs_the_fallback_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let database = TestDatabase::create().await;
    let direct = PgStore::connect(
        &format!(
            "postgres://{}@{}:{}/{}",
            database.options.get_username(),
            database.options.get_host(),
            database.options.get_port(),
            database.name
        ),
        config(Pooler::Detect),
    )
    .await
    .expect("connect directly");
    assert!(!direct.pools().transaction_pooling());
    assert_eq!(captured.text(), "", "nothing to warn about directly");
    let bouncer = PgBouncer::start(PoolMode::Transaction);
    let pooled = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect("connect through the bouncer");
    assert!(pooled.pools().transaction_pooling());
    let log = captured.text();
    assert_eq!(
        log.matches("behind transaction pooling").count(),
        1,
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
}

/// Session pooling keeps a server connection per client: detected as direct, and `LISTEN` hears
/// another process's pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_keeps_listen() {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(PoolMode::Session);
    let listening = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect("connect");
    assert!(!listening.pools().transaction_pooling());
    let mut pushes = listening.subscribe_pushes().expect("pushes");
    let other = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect("connect");
    // The listener connects in the background: push until a notice arrives.
    let heard = tokio::time::timeout(WAIT, async {
        loop {
            other.push(vec![command("i", "a")]).await.expect("push");
            if let Ok(Ok(pushed)) =
                tokio::time::timeout(Duration::from_millis(500), pushes.recv()).await
            {
                return pushed;
            }
        }
    })
    .await
    .expect("a notice from the other store");
    assert_eq!(heard.instance_ids, vec![InstanceId::new("i").expect("id")]);
}

/// Statement pooling refuses transactions, which Strata needs: connecting says so.
#[tokio::test]
async fn statement_pooling_is_refused_with_a_reason() {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(PoolMode::Statement);
    let refused = PgStore::connect(&bouncer.url(&database), config(Pooler::Detect))
        .await
        .expect_err("statement pooling");
    assert!(
        refused.to_string().contains("statement pooling"),
        "{refused}"
    );
}
