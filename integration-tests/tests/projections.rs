//! The projection runtime on both backends: the same read model from the same events, the failure
//! path, and the connection bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_event::{Command, Event, InstanceId};
use strata_integration_tests::{TestDatabase, test_config};
use strata_postgres::{PgConfig, PgProjections, PoolConfig};
use strata_projection::{
    MemoryProjections, Projection, ProjectionBackend, ProjectionConfig, ProjectionError,
    ProjectionRuntime, Reads, ReduceError, RuntimeConfig, SqlValue, Statement,
};
use strata_store::{EventStore, MemoryStore};

const WAIT: Duration = Duration::from_secs(30);

/// A users read model: upsert on sign-up, update on e-mail change, delete on removal. Optionally
/// fails on `user.poisoned` until fixed.
struct Users {
    poisoned_fails: Arc<AtomicBool>,
}

impl Projection for Users {
    fn name(&self) -> &str {
        "users"
    }
    fn reads(&self) -> Reads {
        Reads::new().events(
            "user",
            [
                "user.added",
                "user.email_changed",
                "user.removed",
                "user.poisoned",
            ],
        )
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let payload: serde_json::Value = event.payload()?;
        let id = || -> Vec<(&'static str, SqlValue)> {
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ]
        };
        let text = |field: &str| SqlValue::from(payload[field].as_str().unwrap_or_default());
        Ok(match event.event_type.as_str() {
            "user.added" => vec![Statement::upsert(
                "users",
                id(),
                vec![
                    ("name", text("name")),
                    ("email", text("email")),
                    ("version", event.sequence.into()),
                ],
            )],
            "user.email_changed" => vec![Statement::update(
                "users",
                vec![("email", text("email")), ("version", event.sequence.into())],
                id(),
            )],
            "user.removed" => vec![Statement::delete("users", id())],
            "user.poisoned" if self.poisoned_fails.load(Ordering::SeqCst) => {
                return Err(ReduceError::new("poisoned event"));
            }
            "user.poisoned" => vec![Statement::update(
                "users",
                vec![
                    ("name", SqlValue::from("cured")),
                    ("version", event.sequence.into()),
                ],
                id(),
            )],
            _ => Vec::new(),
        })
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "users",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: 7,
            max_failure_count: 3,
            retry_failed_after: Duration::from_millis(20),
            ..ProjectionConfig::default()
        }
    }
}

const USERS_TABLE: &str = "CREATE TABLE users (instance_id TEXT NOT NULL, id TEXT NOT NULL, \
     name TEXT, email TEXT, version BIGINT, PRIMARY KEY (instance_id, id))";

fn command(instance: &str, id: &str, event_type: &str, payload: serde_json::Value) -> Command {
    Command::builder(instance, "user", id, event_type)
        .creator("tester")
        .owner("org")
        .payload(&payload)
        .build()
        .expect("valid command")
}

/// Pushes a little history and returns the last position per instance.
async fn history<S: EventStore>(store: &S) -> Vec<Event> {
    let mut stored = Vec::new();
    for instance in ["tenant-a", "tenant-b"] {
        for n in 0..12 {
            let id = format!("u{n}");
            stored.extend(
                store
                    .push(vec![command(
                        instance,
                        &id,
                        "user.added",
                        serde_json::json!({ "name": format!("user {n}"), "email": format!("{n}@a.example") }),
                    )])
                    .await
                    .expect("push"),
            );
            if n % 3 == 0 {
                stored.extend(
                    store
                        .push(vec![command(
                            instance,
                            &id,
                            "user.email_changed",
                            serde_json::json!({ "email": format!("{n}@b.example") }),
                        )])
                        .await
                        .expect("push"),
                );
            }
            if n % 4 == 0 {
                stored.extend(
                    store
                        .push(vec![command(
                            instance,
                            &id,
                            "user.removed",
                            serde_json::json!({}),
                        )])
                        .await
                        .expect("push"),
                );
            }
        }
    }
    stored
}

/// What the users read model must hold after `history`.
fn expected_users() -> Vec<(String, String, String, String, i64)> {
    let mut rows = Vec::new();
    for instance in ["tenant-a", "tenant-b"] {
        for n in 0..12 {
            if n % 4 == 0 {
                continue;
            }
            let changed = n % 3 == 0;
            let email = if changed {
                format!("{n}@b.example")
            } else {
                format!("{n}@a.example")
            };
            rows.push((
                instance.to_owned(),
                format!("u{n}"),
                format!("user {n}"),
                email,
                if changed { 2 } else { 1 },
            ));
        }
    }
    rows.sort();
    rows
}

async fn catch_up_all<S, B>(runtime: &ProjectionRuntime<S, B>, events: &[Event])
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    for instance in ["tenant-a", "tenant-b"] {
        let instance = InstanceId::new(instance).expect("id");
        let last = events
            .iter()
            .filter(|event| event.aggregate.instance_id == instance)
            .map(|event| event.position)
            .max()
            .expect("events");
        runtime
            .catch_up("users", &instance, last, WAIT)
            .await
            .expect("catch up");
    }
}

fn memory_rows(read_models: &MemoryProjections) -> Vec<(String, String, String, String, i64)> {
    let text = |value: Option<&SqlValue>| match value {
        Some(SqlValue::Text(text)) => text.clone(),
        other => format!("{other:?}"),
    };
    let mut rows: Vec<_> = read_models
        .rows("users")
        .iter()
        .map(|row| {
            (
                text(row.get("instance_id")),
                text(row.get("id")),
                text(row.get("name")),
                text(row.get("email")),
                match row.get("version") {
                    Some(SqlValue::BigInt(version)) => *version,
                    _ => -1,
                },
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn postgres_rows(pool: &sqlx::PgPool) -> Vec<(String, String, String, String, i64)> {
    sqlx::query_as("SELECT instance_id, id, name, email, version FROM users ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .expect("read model")
}

fn users() -> Users {
    Users {
        poisoned_fails: Arc::new(AtomicBool::new(false)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_read_model_on_both_backends() {
    let store = MemoryStore::new();
    let read_models = MemoryProjections::new();
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(users())
        .expect("register")
        .start()
        .await
        .expect("start");
    let events = history(&store).await;
    catch_up_all(&runtime, &events).await;
    assert_eq!(memory_rows(&read_models), expected_users());

    let database = TestDatabase::create().await;
    let pool = database.pool(2);
    sqlx::query(USERS_TABLE)
        .execute(&pool)
        .await
        .expect("table");
    let store = database.store();
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(users())
    .expect("register")
    .start()
    .await
    .expect("start");
    let events = history(&store).await;
    catch_up_all(&runtime, &events).await;
    assert_eq!(postgres_rows(&pool).await, expected_users());

    // Rebuilding replays from the first event to the same result.
    sqlx::query("UPDATE users SET name = 'tampered'")
        .execute(&pool)
        .await
        .expect("tamper");
    runtime.rebuild("users", None).await.expect("rebuild");
    catch_up_all(&runtime, &events).await;
    assert_eq!(postgres_rows(&pool).await, expected_users());

    // Operators ask from outside the process (the CLI writes these rows); the runtime carries it out.
    let registered: serde_json::Value = sqlx::query_scalar(
        "SELECT reads FROM projections.registry WHERE projection_name = 'users'",
    )
    .fetch_one(&pool)
    .await
    .expect("registry");
    assert_eq!(registered[0][0], "user");
    sqlx::query("UPDATE users SET name = 'tampered again' WHERE instance_id = 'tenant-b'")
        .execute(&pool)
        .await
        .expect("tamper");
    sqlx::query(
        "INSERT INTO projections.requests (instance_id, projection_name, kind) \
         VALUES ('tenant-b', 'users', 'rebuild')",
    )
    .execute(&pool)
    .await
    .expect("request");
    let deadline = tokio::time::Instant::now() + WAIT;
    while postgres_rows(&pool).await != expected_users() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild request was not carried out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = runtime.status().await.expect("status");
    assert_eq!(status.len(), 2);
    assert!(
        status
            .iter()
            .all(|s| s.events_behind == 0 && s.failed_events == 0),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_is_retried_recorded_skipped_and_retried_after_the_fix() {
    let database = TestDatabase::create().await;
    let pool = database.pool(2);
    sqlx::query(USERS_TABLE)
        .execute(&pool)
        .await
        .expect("table");
    let store = database.store();
    let poisoned_fails = Arc::new(AtomicBool::new(true));
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(Users {
        poisoned_fails: Arc::clone(&poisoned_fails),
    })
    .expect("register")
    .start()
    .await
    .expect("start");

    store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.added",
            serde_json::json!({ "name": "one", "email": "1@a" }),
        )])
        .await
        .expect("push");
    store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.poisoned",
            serde_json::json!({}),
        )])
        .await
        .expect("push");
    let last = store
        .push(vec![command(
            "tenant-a",
            "u2",
            "user.added",
            serde_json::json!({ "name": "two", "email": "2@a" }),
        )])
        .await
        .expect("push");
    let tenant = InstanceId::new("tenant-a").expect("id");

    // The runtime retries the poisoned event max_failure_count (3) times, records it, moves on,
    // and a catch-up past it says so.
    let caught_up = runtime
        .catch_up("users", &tenant, last[0].position, WAIT)
        .await;
    assert_skipped_poisoned_event(&caught_up);
    let failed = runtime.failed_events(Some("users")).await.expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].failure_count, 3);
    assert_eq!(failed[0].sequence, 2);
    assert!(failed[0].error.contains("poisoned"), "{}", failed[0].error);
    let names: Vec<(String, String, String, String, i64)> = postgres_rows(&pool).await;
    assert_eq!(
        names.len(),
        2,
        "the events around the failure were applied: {names:?}"
    );
    assert_eq!(names[0].2, "one");

    // A retry before the fix fails again and keeps the record.
    assert!(runtime.retry_failed(&failed[0]).await.is_err());
    assert_eq!(runtime.failed_events(None).await.expect("failed").len(), 1);

    // After the fix the retry applies it and forgets the failure.
    poisoned_fails.store(false, Ordering::SeqCst);
    runtime.retry_failed(&failed[0]).await.expect("retry");
    assert!(
        runtime
            .failed_events(None)
            .await
            .expect("failed")
            .is_empty()
    );
    let names = postgres_rows(&pool).await;
    assert_eq!(names[0].2, "cured");
    runtime
        .catch_up("users", &tenant, last[0].position, WAIT)
        .await
        .expect("nothing up to the position is missing any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_failure_path_in_memory() {
    let store = MemoryStore::new();
    let read_models = MemoryProjections::new();
    let poisoned_fails = Arc::new(AtomicBool::new(true));
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(Users {
            poisoned_fails: Arc::clone(&poisoned_fails),
        })
        .expect("register")
        .start()
        .await
        .expect("start");
    store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.added",
            serde_json::json!({ "name": "one" }),
        )])
        .await
        .expect("push");
    let last = store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.poisoned",
            serde_json::json!({}),
        )])
        .await
        .expect("push");
    let tenant = InstanceId::new("tenant-a").expect("id");
    let caught_up = runtime
        .catch_up("users", &tenant, last[0].position, WAIT)
        .await;
    assert_skipped_poisoned_event(&caught_up);
    let failed = runtime.failed_events(None).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].failure_count, 3);
    poisoned_fails.store(false, Ordering::SeqCst);
    runtime.retry_failed(&failed[0]).await.expect("retry");
    assert_eq!(memory_rows(&read_models)[0].2, "cured");
    runtime
        .catch_up("users", &tenant, last[0].position, WAIT)
        .await
        .expect("nothing up to the position is missing any more");
}

/// `catch_up` reported the poisoned event (sequence 2) as skipped after its last attempt.
fn assert_skipped_poisoned_event(caught_up: &Result<(), ProjectionError>) {
    assert!(
        matches!(
            caught_up,
            Err(ProjectionError::EventFailed { failed, skipped: true }) if failed.sequence == 2
        ),
        "{caught_up:?}"
    );
}

/// Counts events per (projection, instance) into one table.
struct Tally {
    name: String,
}

impl Projection for Tally {
    fn name(&self) -> &str {
        &self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::sql(
            "INSERT INTO tally (projection, instance_id, events) VALUES ($1, $2, 1) \
             ON CONFLICT (projection, instance_id) DO UPDATE SET events = tally.events + 1",
            vec![
                self.name.as_str().into(),
                event.aggregate.instance_id.as_str().into(),
            ],
        )])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "tally",
            vec![
                ("projection", self.name.as_str().into()),
                ("instance_id", instance.as_str().into()),
            ],
        )]
    }
}

/// 50 projections × 20 instances on a projection pool of 10: everything completes, and the process
/// never holds more connections than its pools allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_projections_and_instances_never_exhaust_the_pool() {
    let database = TestDatabase::create().await;
    let admin = database.pool(1);
    sqlx::query("CREATE TABLE tally (projection TEXT, instance_id TEXT, events BIGINT, PRIMARY KEY (projection, instance_id))")
        .execute(&admin)
        .await
        .expect("table");
    let config = PgConfig {
        push_pool: PoolConfig::with_max(2),
        query_pool: PoolConfig::with_max(4),
        projection_pool: PoolConfig::with_max(10),
        ..test_config()
    };
    let store = database.store_with(config);
    for instance in 0..20 {
        let commands = (0..5)
            .map(|n| {
                command(
                    &format!("tenant-{instance}"),
                    &format!("u{n}"),
                    "user.added",
                    serde_json::json!({}),
                )
            })
            .collect();
        store.push(commands).await.expect("push");
    }
    let mut builder = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .config(RuntimeConfig {
        max_parallel_batches: 10,
        ..RuntimeConfig::default()
    });
    for n in 0..50 {
        builder = builder
            .register(Tally {
                name: format!("tally_{n}"),
            })
            .expect("register");
    }
    let _runtime = builder.start().await.expect("start");

    let database_name = database.name.clone();
    let mut peak_connections = 0i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let connections: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&database_name)
                .fetch_one(&admin)
                .await
                .expect("activity");
        peak_connections = peak_connections.max(connections);
        let (pairs, events): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), sum(events)::bigint FROM tally")
                .fetch_one(&admin)
                .await
                .expect("tally");
        if pairs == 50 * 20 && events == Some(50 * 20 * 5) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projections did not finish: {pairs} pairs, {events:?} events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states: i64 = sqlx::query_scalar("SELECT count(*) FROM projections.current_states")
        .fetch_one(&admin)
        .await
        .expect("states");
    assert_eq!(states, 1000);
    // Pools: 2 push + 4 query + 10 projection, one LISTEN connection, and this test's own.
    assert!(
        peak_connections <= 2 + 4 + 10 + 1 + 1,
        "peak {peak_connections} connections"
    );
}

/// Records the events it sees; panics on `user.poisoned`, as buggy reducer code might.
struct Panics;

impl Projection for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if event.event_type.as_str() == "user.poisoned" {
            panic!("a bug in the reducer");
        }
        Ok(vec![Statement::upsert(
            "seen",
            vec![("id", event.aggregate.aggregate_id.as_str().into())],
            vec![("sequence", event.sequence.into())],
        )])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete("seen", Vec::new())]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            max_failure_count: 2,
            retry_failed_after: Duration::from_millis(20),
            ..ProjectionConfig::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reducer_takes_the_failure_path_and_the_projection_moves_on() {
    let store = MemoryStore::new();
    let read_models = MemoryProjections::new();
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(Panics)
        .expect("register")
        .start()
        .await
        .expect("start");
    store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.poisoned",
            serde_json::json!({}),
        )])
        .await
        .expect("push");
    store
        .push(vec![command(
            "tenant-a",
            "u2",
            "user.added",
            serde_json::json!({}),
        )])
        .await
        .expect("push");
    // Left to the runtime's own triggers (catch_up would work on the pair itself): the panic is
    // retried, recorded as a failed event, and the next event is applied.
    let deadline = tokio::time::Instant::now() + WAIT;
    while read_models.rows("seen").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the projection never got past the panicking event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = runtime.failed_events(Some("panics")).await.expect("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].aggregate.aggregate_id.as_str(), "u1");
    assert!(failed[0].error.contains("panicked"), "{}", failed[0].error);
}

/// Records the commit mode each batch ran under.
struct CommitMode {
    name: &'static str,
    side_effects: bool,
}

impl Projection for CommitMode {
    fn name(&self) -> &str {
        self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::sql(
            "INSERT INTO commit_modes (projection, mode) \
             VALUES ($1, current_setting('synchronous_commit'))",
            vec![SqlValue::from(self.name)],
        )])
    }
    fn has_side_effects(&self) -> bool {
        self.side_effects
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt: the test reads the commit mode of each batch.
        Vec::new()
    }
}

/// Batches commit without waiting for the WAL flush, except those of projections with side
/// effects, and all of them once `durable_commits` is set. (The second runtime also shows that
/// `shutdown` gives back the first one's LISTEN connection: the projection pool has two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_commit_durably_only_where_a_crash_could_repeat_an_effect() {
    let database = TestDatabase::create().await;
    let admin = database.pool(1);
    sqlx::query("CREATE TABLE commit_modes (projection TEXT, mode TEXT)")
        .execute(&admin)
        .await
        .expect("table");
    let store = database.store();
    let last = store
        .push(vec![command(
            "tenant-a",
            "u1",
            "user.added",
            serde_json::json!({}),
        )])
        .await
        .expect("push")[0]
        .position;
    let instance = InstanceId::new("tenant-a").expect("id");
    for durable in [false, true] {
        let mut backend = PgProjections::new(store.pools().projection().clone());
        if durable {
            backend = backend.durable_commits();
        }
        let (plain, effects) = if durable {
            ("plain_durable", "effects_durable")
        } else {
            ("plain", "effects")
        };
        let runtime = ProjectionRuntime::builder(store.clone(), backend)
            .register(CommitMode {
                name: plain,
                side_effects: false,
            })
            .expect("register")
            .register(CommitMode {
                name: effects,
                side_effects: true,
            })
            .expect("register")
            .start()
            .await
            .expect("start");
        for name in [plain, effects] {
            runtime
                .catch_up(name, &instance, last, WAIT)
                .await
                .expect("catch up");
        }
        runtime.shutdown(WAIT).await.expect("shut down");
    }
    let modes: Vec<(String, String)> =
        sqlx::query_as("SELECT projection, mode FROM commit_modes ORDER BY projection")
            .fetch_all(&admin)
            .await
            .expect("modes");
    let modes: Vec<(&str, &str)> = modes
        .iter()
        .map(|(projection, mode)| (projection.as_str(), mode.as_str()))
        .collect();
    assert_eq!(
        modes,
        [
            ("effects", "on"),
            ("effects_durable", "on"),
            ("plain", "off"),
            ("plain_durable", "on"),
        ]
    );
}
