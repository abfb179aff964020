//! Versioned projections on PostgreSQL under load and crashes: a new version built beside the
//! live one while writers push and readers read through the stable name (readers never see
//! fewer rows, neither version skips or doubles an event), a build that resumes after its
//! workers are killed, and switches killed midway that leave exactly one version live.

use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use strata_event::InstanceId;
use strata_integration_tests::TestDatabase;
use strata_integration_tests::ledger::Ledger;
use strata_integration_tests::processes::{
    Load, WorkerProcess, database_url, kill_in_turn, write_with_late_commits,
};
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    Projection, ProjectionBackend, ProjectionRuntime, SwitchWhen, VersionState, switch_version,
    version_lag,
};
use strata_store::EventStore;

const WAIT: Duration = Duration::from_secs(120);

fn ledger(version: u32, switch: SwitchWhen) -> Ledger {
    Ledger {
        version,
        slow: false,
        switch,
    }
}

fn spawn_worker(url: &str, args: &[&str]) -> WorkerProcess {
    WorkerProcess(
        Process::new(env!("CARGO_BIN_EXE_version_worker"))
            .env("DATABASE_URL", url)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a version worker"),
    )
}

fn load(pushes_per_writer: u64, round: u64) -> Load {
    Load {
        pushes_per_writer,
        instances: 3,
        // New aggregates keep appearing, so the read model's row count keeps growing.
        aggregate_id: match round {
            0 => |writer, n| format!("a-{writer}-{}", n / 3),
            _ => |writer, n| format!("b-{writer}-{}", n / 3),
        },
    }
}

/// A database of the test's own, its store, and projection storage on the store's pool.
async fn ledger_database() -> (TestDatabase, PgStore, PgProjections) {
    let database = TestDatabase::create().await;
    let store = database.store();
    let backend = PgProjections::new(store.pools().projection().clone());
    (database, store, backend)
}

/// A runtime in this process running these versions of the ledger.
async fn run_ledger(
    store: &PgStore,
    backend: &PgProjections,
    versions: &[Ledger],
) -> ProjectionRuntime<PgStore, PgProjections> {
    versions
        .iter()
        .fold(
            ProjectionRuntime::builder(store.clone(), backend.clone()),
            |builder, version| builder.register(*version).expect("a valid projection"),
        )
        .start()
        .await
        .expect("the runtime starts")
}

async fn state_of(backend: &PgProjections, version: u32) -> Option<VersionState> {
    backend
        .versions(Some("ledger"))
        .await
        .expect("read the versions")
        .into_iter()
        .find(|record| record.version == version)
        .map(|record| record.state)
}

async fn wait_until_caught_up(store: &PgStore, backend: &PgProjections, version: u32) {
    let reads = ledger(version, SwitchWhen::OnCommand).reads();
    let pair = format!("ledger@v{version}");
    let deadline = Instant::now() + WAIT;
    loop {
        let lag = version_lag(store, backend, &pair, &reads, None)
            .await
            .expect("measure the lag");
        if lag.events_behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "version {version} did not catch up: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event of every aggregate applied exactly once by `version`, up to `upto` (the whole
/// store when `None`): per aggregate, its row counts as many events as its last sequence, and
/// every event is recorded once.
async fn assert_exactly_once(pool: &PgPool, store: &PgStore, version: u32, complete: bool) {
    let doubled: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM public.ledger_applied_v{version} WHERE times <> 1"
    ))
    .fetch_one(pool)
    .await
    .expect("read the applied events");
    assert_eq!(doubled, 0, "version {version} applied an event twice");
    let inconsistent: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM public.ledger_v{version} l WHERE l.events <> l.last_sequence \
            OR l.events <> (SELECT count(*) FROM public.ledger_applied_v{version} a \
                            WHERE a.instance_id = l.instance_id \
                              AND a.aggregate_id = l.aggregate_id)"
    ))
    .fetch_one(pool)
    .await
    .expect("read the ledger");
    assert_eq!(
        inconsistent, 0,
        "version {version} skipped or doubled an event"
    );
    if complete {
        let applied: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM public.ledger_applied_v{version}"
        ))
        .fetch_one(pool)
        .await
        .expect("count the applied events");
        let users = strata_query::Query::builder()
            .all_instances()
            .aggregate_types(["user"])
            .build()
            .expect("a valid query");
        let pushed = store.count(&users).await.expect("count the events");
        assert_eq!(applied as u64, pushed, "version {version} missed events");
    }
}

/// Readers query the stable name all along while version 2 is built beside version 1 under
/// write load (with late commits) and switched in by the runtime once caught up: the row count
/// and the events counted never go down, and afterwards each version has applied every event
/// it saw exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_under_load_never_shows_readers_fewer_rows() {
    let (database, store, backend) = ledger_database().await;
    let old = run_ledger(&store, &backend, &[ledger(1, SwitchWhen::CaughtUp)]).await;
    write_with_late_commits(&database, load(150, 0)).await;
    wait_until_caught_up(&store, &backend, 1).await;

    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let pool = database.pool(2);
        let reading = Arc::clone(&reading);
        tokio::spawn(async move {
            let mut last = (0i64, 0i64);
            let mut reads = 0u64;
            let mut versions_seen = std::collections::BTreeSet::new();
            while reading.load(Ordering::SeqCst) {
                let (rows, events, version): (i64, i64, Option<i64>) = sqlx::query_as(
                    "SELECT count(*), COALESCE(sum(events), 0)::bigint, max(version) \
                     FROM public.ledger",
                )
                .fetch_one(&pool)
                .await
                .expect("read through the stable name");
                assert!(
                    rows >= last.0 && events >= last.1,
                    "readers saw the read model shrink: {last:?} then {:?}",
                    (rows, events)
                );
                last = (rows, events);
                versions_seen.extend(version);
                reads += 1;
            }
            (reads, versions_seen)
        })
    };

    let new = run_ledger(&store, &backend, &[ledger(2, SwitchWhen::CaughtUp)]).await;
    assert_eq!(state_of(&backend, 2).await, Some(VersionState::Building));
    write_with_late_commits(&database, load(150, 1)).await;
    let deadline = Instant::now() + WAIT;
    while state_of(&backend, 2).await != Some(VersionState::Live) {
        assert!(Instant::now() < deadline, "version 2 never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pushes after the switch reach only the live version.
    write_with_late_commits(&database, load(30, 1)).await;
    wait_until_caught_up(&store, &backend, 2).await;
    reading.store(false, Ordering::SeqCst);
    let (reads, versions_seen) = reader.await.expect("the reader");
    assert!(reads > 10, "the reader read only {reads} times");
    assert_eq!(versions_seen.last(), Some(&2), "readers ended on version 2");
    assert_eq!(state_of(&backend, 1).await, Some(VersionState::Retired));

    let pool = database.pool(2);
    assert_exactly_once(&pool, &store, 2, true).await;
    assert_exactly_once(&pool, &store, 1, false).await;
    new.shutdown(WAIT).await.unwrap();
    old.shutdown(WAIT).await.unwrap();
}

/// Workers building version 2 are killed one after another mid-batch: the build resumes from
/// its checkpoints in the survivors, and the finished version applied every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_resumes_after_its_workers_are_killed() {
    let (database, store, backend) = ledger_database().await;
    let url = database_url(&database);
    let live = run_ledger(&store, &backend, &[ledger(1, SwitchWhen::OnCommand)]).await;
    write_with_late_commits(&database, load(250, 0)).await;
    wait_until_caught_up(&store, &backend, 1).await;

    let killing = kill_in_turn(2, 4, Duration::from_millis(400), move || {
        spawn_worker(&url, &["--build", "2", "--slow"])
    });
    let survivors = killing.await.expect("the kills");
    wait_until_caught_up(&store, &backend, 2).await;
    drop(survivors);
    assert_eq!(state_of(&backend, 2).await, Some(VersionState::Building));
    switch_version(
        &store,
        &backend,
        "ledger",
        2,
        &ledger(2, SwitchWhen::OnCommand).reads(),
    )
    .await
    .unwrap();
    let pool = database.pool(2);
    assert_exactly_once(&pool, &store, 2, true).await;
    let served: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT version FROM public.ledger")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(served, [2]);
    live.shutdown(WAIT).await.unwrap();
}

/// A process switching the ledger back and forth is killed at random moments: afterwards
/// exactly one version is live, the other retired, and the stable name reads the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_killed_midway_leaves_exactly_one_version_live() {
    let (database, store, backend) = ledger_database().await;
    let url = database_url(&database);
    let runtime = run_ledger(
        &store,
        &backend,
        &[
            ledger(1, SwitchWhen::OnCommand),
            ledger(2, SwitchWhen::OnCommand),
        ],
    )
    .await;
    write_with_late_commits(&database, load(40, 0)).await;
    wait_until_caught_up(&store, &backend, 1).await;
    wait_until_caught_up(&store, &backend, 2).await;
    runtime.switch("ledger", 2).await.unwrap();
    runtime.shutdown(WAIT).await.unwrap();

    let pool = database.pool(2);
    let mut switches_seen = std::collections::BTreeSet::new();
    for round in 0..8u64 {
        let flipper = spawn_worker(&url, &["--flip"]);
        tokio::time::sleep(Duration::from_millis(150 + (round * 97) % 400)).await;
        drop(flipper);
        // The killed process's last commit may still be in flight on the server: wait until
        // its sessions are gone before looking.
        let deadline = Instant::now() + WAIT;
        loop {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state <> 'idle'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if busy == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the killed process's sessions linger"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let live: Vec<(i32, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
            "SELECT version, switched_at FROM projections.versions \
             WHERE projection_name = 'ledger' AND state = 'live'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(live.len(), 1, "exactly one live version after a kill");
        let (version, switched_at) = live[0];
        switches_seen.insert(switched_at);
        let retired = state_of(&backend, if version == 1 { 2 } else { 1 }).await;
        assert_eq!(retired, Some(VersionState::Retired));
        let served: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT version FROM public.ledger")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            served,
            [i64::from(version)],
            "the view reads the live version"
        );
    }
    assert!(
        switches_seen.len() > 1,
        "the flipping process never got a switch through"
    );
    let instance = InstanceId::new("tenant-0").unwrap();
    assert!(
        backend
            .state("ledger@v1", &instance)
            .await
            .unwrap()
            .is_some()
    );
}

/// A reader role granted `SELECT` on the stable name keeps it across switches: each new view
/// gets the grants of the one it replaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_on_the_stable_name_survive_a_switch() {
    let (database, store, backend) = ledger_database().await;
    let pool = database.pool(2);
    // Roles are the server's, not the database's: a name of this test's own, dropped at the end.
    let reader = format!("{}_reader", database.name);
    sqlx::query(&format!("CREATE ROLE {reader}"))
        .execute(&pool)
        .await
        .unwrap();
    let runtime = run_ledger(
        &store,
        &backend,
        &[
            ledger(1, SwitchWhen::OnCommand),
            ledger(2, SwitchWhen::OnCommand),
        ],
    )
    .await;
    sqlx::query(&format!("GRANT SELECT ON public.ledger TO {reader}"))
        .execute(&pool)
        .await
        .unwrap();
    write_with_late_commits(&database, load(20, 0)).await;
    wait_until_caught_up(&store, &backend, 2).await;
    let may_read = |pool: PgPool, reader: String| async move {
        sqlx::query_scalar::<_, bool>("SELECT has_table_privilege($1, 'public.ledger', 'SELECT')")
            .bind(reader)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(may_read(pool.clone(), reader.clone()).await);
    runtime.switch("ledger", 2).await.unwrap();
    assert!(
        may_read(pool.clone(), reader.clone()).await,
        "the grant survives the switch"
    );
    runtime.rollback("ledger").await.unwrap();
    assert_eq!(state_of(&backend, 1).await, Some(VersionState::Live));
    assert!(
        may_read(pool.clone(), reader.clone()).await,
        "and the rollback"
    );
    runtime.shutdown(WAIT).await.unwrap();
    for statement in [
        format!("DROP OWNED BY {reader}"),
        format!("DROP ROLE {reader}"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
}
