//! Faults survived: connections killed mid-push, answers of committed pushes lost (keyed retries
//! store one copy), a server restarted under load, pool exhaustion, and a long-running
//! transaction elsewhere. After each, every push a caller saw succeed is
//! stored, every failed push is entirely present or entirely absent, failures are the typed,
//! retryable `Unavailable`, and the pools recover on their own.
//!
//! `STRATA_FAULT_SCALE` multiplies the load (default 1).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use strata_event::{Command, InstanceId};
use strata_integration_tests::{TestDatabase, ThrowawayServer, test_config};
use strata_postgres::{GroupCommitConfig, PgConfig, PgPools, PgProjections, PgStore, PoolConfig};
use strata_projection::{
    Projection, ProjectionConfig, ProjectionError, ProjectionRuntime, Reads, ReduceError, SqlValue,
    Statement,
};
use strata_store::{ErrorKind, EventStore};

fn scale() -> u64 {
    std::env::var("STRATA_FAULT_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .unwrap_or(1)
}

/// A push of three events on three aggregates named after the push, so its presence is countable.
fn push_of(id: u64) -> Vec<Command> {
    ["a", "b", "c"]
        .iter()
        .map(|part| {
            Command::builder("tenant", "user", format!("p{id}-{part}"), "user.added")
                .creator("writer")
                .owner("org")
                .payload(&serde_json::json!({ "push": id }))
                .build()
                .expect("valid command")
        })
        .collect()
}

#[derive(Debug, Default)]
struct Outcomes {
    succeeded: Vec<u64>,
    failed: Vec<u64>,
    untyped_errors: Vec<String>,
}

/// `writers` tasks pushing at least `per_writer` pushes each, and on for as long as the fault
/// lasts (`fault_ongoing`), recording what each caller saw. Tying the load to the fault rather
/// than to a count keeps the fault from landing after the last push on a fast machine.
async fn push_under_fault(
    store: Arc<PgStore>,
    writers: u64,
    per_writer: u64,
    fault_ongoing: Arc<AtomicBool>,
) -> Outcomes {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(&store);
        let fault_ongoing = Arc::clone(&fault_ongoing);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Outcomes::default();
            let mut n = 0;
            while n < per_writer || fault_ongoing.load(Ordering::Acquire) {
                let id = writer * 1_000_000 + n;
                n += 1;
                match store.push(push_of(id)).await {
                    Ok(_) => outcomes.succeeded.push(id),
                    Err(err) => {
                        if err.kind() != ErrorKind::Unavailable || !err.is_retryable() {
                            outcomes.untyped_errors.push(err.to_string());
                        }
                        outcomes.failed.push(id);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            outcomes
        }));
    }
    let mut all = Outcomes::default();
    for task in tasks {
        let outcomes = task.await.expect("writer");
        all.succeeded.extend(outcomes.succeeded);
        all.failed.extend(outcomes.failed);
        all.untyped_errors.extend(outcomes.untyped_errors);
    }
    all
}

/// Events stored per push id.
async fn stored_per_push(pool: &sqlx::PgPool) -> HashMap<u64, i64> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT aggregate_id FROM eventstore.events")
        .fetch_all(pool)
        .await
        .expect("read events");
    let mut counts = HashMap::new();
    for (aggregate_id,) in rows {
        let id = aggregate_id
            .trim_start_matches('p')
            .split('-')
            .next()
            .and_then(|id| id.parse::<u64>().ok())
            .expect("aggregate ids name their push");
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn assert_all_or_nothing(outcomes: &Outcomes, stored: &HashMap<u64, i64>) {
    assert!(
        outcomes.untyped_errors.is_empty(),
        "errors that are not Unavailable: {:?}",
        outcomes.untyped_errors
    );
    for id in &outcomes.succeeded {
        assert_eq!(
            stored.get(id),
            Some(&3),
            "push {id} succeeded but is not fully stored"
        );
    }
    for id in &outcomes.failed {
        let count = stored.get(id).copied().unwrap_or(0);
        assert!(
            count == 0 || count == 3,
            "push {id} failed and left {count} of 3 events"
        );
    }
    for (id, count) in stored {
        assert_eq!(*count, 3, "push {id} is partial");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_mid_push_leave_no_partial_push() {
    let database = TestDatabase::create().await;
    let store = Arc::new(database.store());
    let killer = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(database.options.clone().application_name("strata_killer"));
    let name = database.name.clone();
    let fault_ongoing = Arc::new(AtomicBool::new(true));
    let killer_running = Arc::clone(&fault_ongoing);
    let killing = tokio::spawn(async move {
        let mut killed = 0i64;
        for _ in 0..(20 * scale()) {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let n: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> 'strata_killer'",
            )
            .bind(&name)
            .fetch_one(&killer)
            .await
            .expect("terminate");
            killed += n;
        }
        killer_running.store(false, Ordering::Release);
        killed
    });
    let outcomes = push_under_fault(Arc::clone(&store), 6, 150 * scale(), fault_ongoing).await;
    let killed = killing.await.expect("killer");
    assert!(killed > 0, "the test must actually kill connections");

    // The pools reconnect on their own: a connection killed while in steady use fails the one call
    // that picks it up next (retryable Unavailable) and is replaced, so a retry per pooled
    // connection is the most a caller can need.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match store.push(push_of(999_999_000 + attempts)).await {
            Ok(_) => break,
            Err(strata_store::Error::Unavailable { .. }) if attempts <= 8 => {}
            Err(err) => panic!("push after the faults, attempt {attempts}: {err}"),
        }
    }
    let stored = stored_per_push(&database.pool(1)).await;
    assert_all_or_nothing(&outcomes, &stored);
    eprintln!(
        "killed {killed} connections; {} pushes succeeded, {} failed with Unavailable",
        outcomes.succeeded.len(),
        outcomes.failed.len()
    );
}

/// Kills every connection the store holds, as a server restart or an idle timeout on the network
/// would.
async fn kill_store_connections(database: &TestDatabase) {
    let killer = database.pool(1);
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&database.name)
    .fetch_one(&killer)
    .await
    .expect("terminate");
    killer.close().await;
    assert!(killed > 0, "the store had a connection to kill");
}

#[tokio::test]
async fn an_idle_connection_is_checked_before_use_and_a_busy_one_is_not() {
    let database = TestDatabase::create().await;
    let config_checking_after = |check_idle_after| {
        let pool = PoolConfig {
            check_idle_after,
            ..PoolConfig::with_max(1)
        };
        PgConfig {
            push_pool: pool.clone(),
            query_pool: pool.clone(),
            projection_pool: pool,
            group_commit: GroupCommitConfig {
                enabled: false,
                ..GroupCommitConfig::default()
            },
            ..test_config()
        }
    };

    // Idle longer than check_idle_after: the broken connection is found before use and replaced,
    // so the caller never sees it.
    let store = database.store_with(config_checking_after(Duration::from_millis(50)));
    store.push(push_of(1)).await.expect("first push");
    kill_store_connections(&database).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .push(push_of(2))
        .await
        .expect("a connection idle past check_idle_after is checked and replaced");

    // Used within check_idle_after: it goes to work unchecked, its call fails as retryable, and
    // the pool replaces it for the next.
    let store = database.store_with(config_checking_after(Duration::from_secs(3600)));
    store.push(push_of(3)).await.expect("first push");
    kill_store_connections(&database).await;
    let err = store
        .push(push_of(4))
        .await
        .expect_err("an unchecked broken connection fails its call");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    store.push(push_of(5)).await.expect("the pool replaced it");

    let stored = stored_per_push(&database.pool(1)).await;
    assert_eq!(stored.get(&4), None, "the failed push left nothing");
    assert_eq!(stored.len(), 4);
}

struct Counter;

impl Projection for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &strata_event::Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::sql(
            "INSERT INTO applied (aggregate_id, times) VALUES ($1, 1) \
             ON CONFLICT (aggregate_id) DO UPDATE SET times = applied.times + 1",
            vec![SqlValue::from(event.aggregate.aggregate_id.as_str())],
        )])
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            requeue_every: Duration::from_millis(300),
            retry_failed_after: Duration::from_millis(50),
            ..ProjectionConfig::default()
        }
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt here.
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_under_load_loses_nothing_and_everything_recovers() {
    let server = ThrowawayServer::start();
    let options: PgConnectOptions = server.url().parse().expect("url");
    // Shorter than the outage, so pushes that start while the server is down fail rather than
    // wait it out: the test must see failures to check them.
    let acquire_timeout = Duration::from_millis(250);
    let quick = PoolConfig {
        acquire_timeout,
        ..PoolConfig::with_max(4)
    };
    let open = |max: u32| {
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options.clone())
    };
    let admin = open(2);
    strata_postgres::migrate(&admin).await.expect("migrate");
    sqlx::query("CREATE TABLE applied (aggregate_id TEXT PRIMARY KEY, times INTEGER NOT NULL)")
        .execute(&admin)
        .await
        .expect("table");
    let config = PgConfig {
        push_pool: quick.clone(),
        query_pool: quick.clone(),
        projection_pool: quick,
        ..test_config()
    };
    let store = Arc::new(
        PgStore::from_pools(PgPools::new(open(4), open(4), open(4)), &config).expect("store"),
    );
    let runtime = ProjectionRuntime::builder(
        PgStore::clone(&store),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(Counter)
    .expect("register")
    .start()
    .await
    .expect("start");

    let fault_ongoing = Arc::new(AtomicBool::new(true));
    let writers = tokio::spawn(push_under_fault(
        Arc::clone(&store),
        4,
        200 * scale(),
        Arc::clone(&fault_ongoing),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = tokio::task::spawn_blocking(move || {
        assert!(server.stop(), "stop the server");
        std::thread::sleep(Duration::from_millis(800));
        assert!(server.restart(), "restart the server");
        server
    })
    .await
    .expect("restart");
    // Writers go on a little past the restart, so pushes after it are part of the check.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fault_ongoing.store(false, Ordering::Release);
    let outcomes = writers.await.expect("writers");
    assert!(
        !outcomes.failed.is_empty(),
        "the restart must hit some pushes"
    );

    let last = store
        .push(push_of(999_999_999))
        .await
        .expect("the pools reconnect after the restart");
    let stored = stored_per_push(&admin).await;
    assert_all_or_nothing(&outcomes, &stored);

    // Projections catch up on everything, each event applied once.
    runtime
        .catch_up(
            "counter",
            &InstanceId::new("tenant").expect("id"),
            last[0].position,
            Duration::from_secs(60),
        )
        .await
        .expect("projections catch up after the restart");
    let (rows, repeated): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE times <> 1) FROM applied")
            .fetch_one(&admin)
            .await
            .expect("applied");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&admin)
        .await
        .expect("events");
    assert_eq!(rows, events);
    assert_eq!(repeated, 0);
    eprintln!(
        "restart: {} pushes succeeded, {} failed with Unavailable, {events} events, 0 lost",
        outcomes.succeeded.len(),
        outcomes.failed.len()
    );
    runtime
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .expect("shut down");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_with_a_typed_error_and_recovers() {
    let database = TestDatabase::create().await;
    for group_commit in [true, false] {
        let config = PgConfig {
            push_pool: PoolConfig {
                acquire_timeout: Duration::from_millis(300),
                ..PoolConfig::with_max(2)
            },
            group_commit: GroupCommitConfig {
                enabled: group_commit,
                ..GroupCommitConfig::default()
            },
            ..test_config()
        };
        let store = database.store_with(config);
        store
            .push(push_of(group_commit as u64))
            .await
            .expect("warm up");
        // Someone else holds every push connection.
        let held = (
            store.pools().push().acquire().await.expect("first"),
            store.pools().push().acquire().await.expect("second"),
        );
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            store.push(push_of(10 + group_commit as u64)),
        )
        .await
        .expect("an exhausted pool must not hang");
        let err = outcome.expect_err("no connection is free");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        drop(held);
        store
            .push(push_of(20 + group_commit as u64))
            .await
            .expect("works again once connections are free");
    }
    let stored = stored_per_push(&database.pool(1)).await;
    assert!(
        !stored.contains_key(&10) && !stored.contains_key(&11),
        "{stored:?}"
    );
}

/// Starts the `counter` projection on a fresh database with its table.
async fn counting_runtime(database: &TestDatabase) -> ProjectionRuntime<PgStore, PgProjections> {
    sqlx::query("CREATE TABLE applied (aggregate_id TEXT PRIMARY KEY, times INTEGER NOT NULL)")
        .execute(&database.pool(1))
        .await
        .expect("table");
    let store = database.store();
    ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(Counter)
    .expect("register")
    .start()
    .await
    .expect("start")
}

/// A long transaction that writes no events, in this database or in another one on the server
/// (an idle session, a report, a migration of another table), does not hold projections back: the
/// commit horizon waits only for transactions that can still write events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_transactions_that_write_no_events_do_not_delay_projections() {
    let database = TestDatabase::create().await;
    let other_database = TestDatabase::create().await;
    let runtime = counting_runtime(&database).await;
    let store = database.store();
    let tenant = InstanceId::new("tenant").expect("id");

    let pool = database.pool(2);
    sqlx::query("CREATE TABLE unrelated (x INT)")
        .execute(&pool)
        .await
        .expect("table");
    let mut here = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO unrelated VALUES (1)")
        .execute(&mut *here)
        .await
        .expect("a write here");
    let other_pool = other_database.pool(1);
    let mut elsewhere = other_pool.begin().await.expect("begin");
    let open_ids: Vec<rust_decimal::Decimal> = {
        let mut ids = Vec::new();
        for tx in [&mut here, &mut elsewhere] {
            ids.push(
                sqlx::query_scalar("SELECT pg_current_xact_id()::text::numeric")
                    .fetch_one(&mut **tx)
                    .await
                    .expect("an id"),
            );
        }
        ids
    };

    let mut last = None;
    for n in 0..20 {
        last = Some(store.push(push_of(n)).await.expect("push"));
    }
    let last = last.expect("pushed")[0].position;
    let horizon = store.commit_horizon().await.expect("horizon");
    assert!(
        open_ids.iter().all(|id| horizon.as_decimal() > *id),
        "the horizon {horizon} waits for {open_ids:?}"
    );
    // With the server-wide horizon this timed out, finishing only after the transactions ended.
    runtime
        .catch_up("counter", &tenant, last, Duration::from_secs(5))
        .await
        .expect("projections pass transactions that write no events");
    here.rollback().await.expect("end");
    elsewhere.rollback().await.expect("end");
}

/// A long transaction that can still write events (it holds the events table's lock, taken before
/// its id as every push takes it) holds projections below its id until it ends; writers never
/// wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_writing_transaction_delays_projections_but_never_writers() {
    let database = TestDatabase::create().await;
    let runtime = counting_runtime(&database).await;
    let store = database.store();
    let tenant = InstanceId::new("tenant").expect("id");
    let pool = database.pool(2);

    let mut long = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE eventstore.events IN ROW EXCLUSIVE MODE")
        .execute(&mut *long)
        .await
        .expect("the push lock");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await
        .expect("xid");

    let started = std::time::Instant::now();
    let mut last = None;
    for n in 0..50 {
        last = Some(
            store
                .push(push_of(n))
                .await
                .expect("writers are unaffected"),
        );
    }
    let writing = started.elapsed();
    assert!(
        writing < Duration::from_secs(10),
        "writers slowed to {writing:?}"
    );
    let last = last.expect("pushed")[0].position;

    // Projections cannot pass the open transaction's id: they lag, and say so.
    let lagging = runtime
        .catch_up("counter", &tenant, last, Duration::from_millis(500))
        .await;
    assert!(
        matches!(lagging, Err(ProjectionError::Timeout { .. })),
        "a projection passed a transaction that may still write events: {lagging:?}"
    );
    let status = runtime.status().await.expect("status");
    assert!(status.iter().any(|s| s.events_behind > 0), "{status:?}");

    long.rollback().await.expect("end the long transaction");
    runtime
        .catch_up("counter", &tenant, last, Duration::from_secs(10))
        .await
        .expect("projections catch up once it ends");
}

/// A TCP proxy to the database that, for one in `every` answers, forwards a client's request and closes
/// the connection instead of passing the server's answer back: the push committed (or not), and
/// the client cannot know. `pg_terminate_backend` rarely lands in that window between the commit
/// and the answer; this proxy makes it routine. Returns the port it listens on.
async fn answer_losing_proxy(upstream: (String, u16), every: u64) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream.clone()).await else {
                continue;
            };
            let answers = Arc::clone(&answers);
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(read) = server_read.read(&mut buffer).await {
                    // One answer in `every`, over all connections. Most are push answers; losing a
                    // start-up answer is a failed connect, also retryable.
                    let lose = answers.fetch_add(1, Ordering::Relaxed) % every == every - 1;
                    if read == 0 || lose {
                        break;
                    }
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
                requests.abort();
            });
        }
    });
    port
}

/// A push with an idempotency key, retried until it succeeds while its answers are lost and
/// connections are killed under it, is stored exactly once: when the answer of an attempt that
/// committed is lost (outcome unknown), the retry is answered with the events that attempt
/// stored. Several rounds, each with its own killer, so the faults land at different points.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_retries_while_connections_are_killed_store_one_copy() {
    let database = TestDatabase::create().await;
    let upstream = (
        database.options.get_host().to_owned(),
        database.options.get_port(),
    );
    let proxy_port = answer_losing_proxy(upstream, 23).await;
    let through_proxy = database.options.clone().host("127.0.0.1").port(proxy_port);
    let store = Arc::new(
        PgStore::from_pools(
            PgPools::connect_lazy_with(through_proxy, &test_config()),
            &test_config(),
        )
        .expect("a store inside the runtime"),
    );
    let killer = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(database.options.clone().application_name("strata_killer"));
    let mut killed_total = 0i64;
    let mut retried_total = 0u64;
    let replays = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for round in 0..(4 * scale()) {
        let fault_ongoing = Arc::new(AtomicBool::new(true));
        let killer_running = Arc::clone(&fault_ongoing);
        let killer = killer.clone();
        let name = database.name.clone();
        let killing = tokio::spawn(async move {
            let mut killed = 0i64;
            for n in 0..15u64 {
                // Uneven gaps, so the kills fall at different points of the calls in each round.
                tokio::time::sleep(Duration::from_millis(15 + (n * 7 + round * 11) % 30)).await;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid() \
                     AND application_name <> 'strata_killer'",
                )
                .bind(&name)
                .fetch_one(&killer)
                .await
                .expect("terminate");
                killed += n;
            }
            killer_running.store(false, Ordering::Release);
            killed
        });
        let mut writers = Vec::new();
        for writer in 0..6u64 {
            let store = Arc::clone(&store);
            let fault_ongoing = Arc::clone(&fault_ongoing);
            let replays = Arc::clone(&replays);
            writers.push(tokio::spawn(async move {
                // (push id, the events its successful attempt returned, failed attempts)
                let mut answers = Vec::new();
                let mut n = 0;
                while n < 20 || fault_ongoing.load(Ordering::Acquire) {
                    let id = round * 100_000_000 + writer * 1_000_000 + n;
                    n += 1;
                    let key = strata_event::IdempotencyKey::new("tenant", format!("push-{id}"))
                        .expect("valid key");
                    let mut failures = 0u64;
                    let events = loop {
                        let attempt_started = chrono::Utc::now();
                        match store.push_idempotent(&key, push_of(id)).await {
                            // Stored before this attempt began: an earlier attempt committed
                            // and lost its answer, and this one replayed it.
                            Ok(events) if events[0].created_at < attempt_started => {
                                replays.fetch_add(1, Ordering::Relaxed);
                                break events;
                            }
                            Ok(events) => break events,
                            Err(err) if err.is_retryable() && failures < 200 => {
                                failures += 1;
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err(err) => panic!("push {id}, attempt {}: {err}", failures + 1),
                        }
                    };
                    answers.push((id, events, failures));
                }
                answers
            }));
        }
        let mut answers = Vec::new();
        for writer in writers {
            answers.extend(writer.await.expect("writer"));
        }
        killed_total += killing.await.expect("killer");

        let stored = stored_per_push(&database.pool(1)).await;
        // Fresh pools: the test store's may still hold connections the killer ended.
        let reader = database.store();
        for (id, events, failures) in &answers {
            retried_total += failures;
            assert_eq!(
                stored.get(id),
                Some(&3),
                "round {round}: push {id} (retried {failures} times) is not stored exactly once"
            );
            // What the caller got back is what is stored.
            let read = reader
                .query(
                    &strata_query::Query::builder()
                        .instance("tenant")
                        .aggregate_ids(events.iter().map(|e| e.aggregate.aggregate_id.as_str()))
                        .build()
                        .expect("query"),
                )
                .await
                .expect("read back");
            assert_eq!(
                &read, events,
                "round {round}: push {id} answered other events"
            );
        }
        let stored_this_round = stored
            .keys()
            .filter(|id| **id / 100_000_000 == round)
            .count();
        assert_eq!(
            stored_this_round,
            answers.len(),
            "round {round}: events of pushes nobody made"
        );
    }
    assert!(killed_total > 0, "the test must actually kill connections");
    assert!(
        replays.load(Ordering::Relaxed) > 0,
        "no answer of a committed push was lost: the test did not test retries"
    );
    eprintln!(
        "killed {killed_total} connections; {retried_total} retries, {} of them answered with an \
         earlier attempt's events; one copy each",
        replays.load(Ordering::Relaxed)
    );
}
