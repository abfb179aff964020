//! Projections in separate processes under concurrent writers, late commits and SIGKILL: every
//! event applied exactly once, none skipped.
//!
//! Workers are `projection_worker` processes (src/bin) sharing one database; each runs three
//! counting projections that record every event they apply in `applied`, counting repeats. At the
//! end every projection must have exactly one row per event, with `times = 1`: the same as a fresh
//! single-threaded replay.
//!
//! `STRATA_SKIP_TEST_SCALE` multiplies the number of pushes (default 1; try 20 for a long run).

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use strata_integration_tests::TestDatabase;
use strata_integration_tests::processes::{
    Load, WorkerProcess, database_url, kill_in_turn, write_with_late_commits,
};

/// Three instances, seventeen aggregates per writer.
fn write(database: &TestDatabase, pushes_per_writer: u64) -> impl Future<Output = u64> + '_ {
    write_with_late_commits(
        database,
        Load {
            pushes_per_writer,
            instances: 3,
            aggregate_id: |writer, n| format!("w{writer}-{}", n % 17),
        },
    )
}

const PROJECTIONS: i64 = 3;

fn scale() -> u64 {
    std::env::var("STRATA_SKIP_TEST_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .unwrap_or(1)
}

fn spawn_worker(url: &str, slow: bool) -> WorkerProcess {
    let mut command = Process::new(env!("CARGO_BIN_EXE_projection_worker"));
    command
        .env("DATABASE_URL", url)
        .args(["--projections", &PROJECTIONS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if slow {
        command.arg("--slow");
    }
    WorkerProcess(command.spawn().expect("start a worker process"))
}

async fn prepare() -> (TestDatabase, String) {
    let database = TestDatabase::create().await;
    sqlx::query(
        "CREATE TABLE public.applied (projection TEXT, instance_id TEXT, aggregate_id TEXT, \
         sequence BIGINT, times INTEGER NOT NULL, \
         PRIMARY KEY (projection, instance_id, aggregate_id, sequence))",
    )
    .execute(&database.pool(1))
    .await
    .expect("applied table");
    let url = database_url(&database);
    (database, url)
}

/// Waits until every projection has as many rows as there are events, then checks exactly-once.
async fn assert_exactly_once(database: &TestDatabase, events: u64) {
    let pool = database.pool(1);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(total as u64, events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
            .fetch_one(&pool)
            .await
            .expect("count");
        if rows == PROJECTIONS * total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "projections stalled at {rows} of {} rows",
            PROJECTIONS * total
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repeated: i64 = sqlx::query_scalar("SELECT count(*) FROM applied WHERE times <> 1")
        .fetch_one(&pool)
        .await
        .expect("repeats");
    assert_eq!(repeated, 0, "events applied more than once");
    // Every applied row is a real event, and every event was applied by every projection.
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM eventstore.events e CROSS JOIN generate_series(0, $1 - 1) p \
         WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.projection = 'counting_' || p \
           AND a.instance_id = e.instance_id AND a.aggregate_id = e.aggregate_id AND a.sequence = e.sequence)",
    )
    .bind(PROJECTIONS)
    .fetch_one(&pool)
    .await
    .expect("missing");
    assert_eq!(missing, 0, "events skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_in_three_processes_skip_nothing_and_repeat_nothing() {
    let (database, url) = prepare().await;
    let _workers: Vec<WorkerProcess> = (0..3).map(|_| spawn_worker(&url, false)).collect();
    let events = write(&database, 150 * scale()).await;
    assert_exactly_once(&database, events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_workers_lose_nothing_and_repeat_nothing() {
    let (database, url) = prepare().await;
    // SIGKILL while others run; a fresh process replaces each one killed.
    let killer = kill_in_turn(2, 8, Duration::from_millis(250), move || {
        spawn_worker(&url, true)
    });
    let events = write(&database, 120 * scale()).await;
    let survivors = killer.await.expect("killer");
    assert_exactly_once(&database, events).await;
    drop(survivors);
}
