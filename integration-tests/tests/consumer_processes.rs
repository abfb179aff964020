//! Durable consumers in separate processes under concurrent writers, late commits and SIGKILL:
//! every event handled at least once, and no aggregate's events ever handled out of order or by
//! two processes at once.
//!
//! Workers are `consumer_worker` processes (src/bin) sharing one database; each runs the
//! `courier` consumer split into two parts, which logs the start and the end of every handling
//! in `deliveries` with its process id and the database's clock.

use std::collections::HashMap;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_integration_tests::TestDatabase;
use strata_integration_tests::processes::{
    Load, WorkerProcess, database_url, kill_in_turn, write_with_late_commits,
};

/// Two instances, seven aggregates every writer pushes to: hot aggregates, whose events the
/// consumers' processes compete for.
fn write(database: &TestDatabase, pushes_per_writer: u64) -> impl Future<Output = u64> + '_ {
    write_with_late_commits(
        database,
        Load {
            pushes_per_writer,
            instances: 2,
            aggregate_id: |_, n| format!("u{}", n % 7),
        },
    )
}

fn spawn_worker(url: &str, slow: bool) -> WorkerProcess {
    let mut command = Process::new(env!("CARGO_BIN_EXE_consumer_worker"));
    command
        .env("DATABASE_URL", url)
        .args(["--partitions", "2"])
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
        "CREATE TABLE public.deliveries (id BIGSERIAL PRIMARY KEY, pid INTEGER NOT NULL, \
         instance_id TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, \
         started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), finished_at TIMESTAMPTZ)",
    )
    .execute(&database.pool(1))
    .await
    .expect("deliveries table");
    let url = database_url(&database);
    (database, url)
}

#[derive(sqlx::FromRow)]
struct Delivery {
    pid: i32,
    instance_id: String,
    aggregate_id: String,
    sequence: i64,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// Waits until every event was handled to the end at least once, then checks each aggregate's
/// deliveries, in the order they started: each one's sequence is at most one past the highest
/// delivered before (in order; a redelivery after a crash goes back, never ahead), and none
/// started before an earlier one of the same aggregate finished (never two at once).
async fn assert_in_order_and_exclusive(database: &TestDatabase, events: u64) {
    let pool = database.pool(1);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(total as u64, events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM eventstore.events e WHERE NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.instance_id = e.instance_id AND d.aggregate_id = e.aggregate_id \
               AND d.sequence = e.sequence AND d.finished_at IS NOT NULL)",
        )
        .fetch_one(&pool)
        .await
        .expect("missing");
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumers stalled with {missing} of {total} events never handled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries: Vec<Delivery> = sqlx::query_as(
        "SELECT pid, instance_id, aggregate_id, sequence, started_at, finished_at \
         FROM deliveries ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("deliveries");
    let mut per_aggregate: HashMap<(String, String), Vec<&Delivery>> = HashMap::new();
    for delivery in &deliveries {
        per_aggregate
            .entry((delivery.instance_id.clone(), delivery.aggregate_id.clone()))
            .or_default()
            .push(delivery);
    }
    let mut redelivered = 0;
    for ((instance, aggregate), handled) in &per_aggregate {
        let mut highest = 0;
        let mut busy_until: Option<DateTime<Utc>> = None;
        for delivery in handled {
            assert!(
                delivery.sequence <= highest + 1,
                "{instance}/{aggregate}: sequence {} handled (by process {}) before {}",
                delivery.sequence,
                delivery.pid,
                highest + 1
            );
            if delivery.sequence <= highest {
                redelivered += 1;
            }
            highest = highest.max(delivery.sequence);
            if let Some(busy_until) = busy_until {
                assert!(
                    delivery.started_at >= busy_until,
                    "{instance}/{aggregate}: sequence {} started (process {}) while an earlier \
                     handling was still running",
                    delivery.sequence,
                    delivery.pid
                );
            }
            if let Some(finished) = delivery.finished_at {
                busy_until = Some(busy_until.map_or(finished, |until| until.max(finished)));
            }
        }
    }
    eprintln!(
        "{} deliveries of {total} events, {redelivered} redelivered after a crash",
        deliveries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_in_three_processes_handle_every_event_in_order() {
    let (database, url) = prepare().await;
    let _workers: Vec<WorkerProcess> = (0..3).map(|_| spawn_worker(&url, false)).collect();
    let events = write(&database, 120).await;
    assert_in_order_and_exclusive(&database, events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_consumers_never_reorder_or_overlap_an_aggregate() {
    let (database, url) = prepare().await;
    // SIGKILL while others run; a fresh process replaces each one killed.
    let killer = kill_in_turn(3, 8, Duration::from_millis(300), move || {
        spawn_worker(&url, true)
    });
    let events = write(&database, 100).await;
    let survivors = killer.await.expect("killer");
    assert_in_order_and_exclusive(&database, events).await;
    drop(survivors);
}
