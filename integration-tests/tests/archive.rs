//! Archiving (`strata_postgres::admin` archive functions): archive then restore gives the store
//! back byte for byte, a run killed halfway leaves every event in exactly one place and resumes,
//! pushes to archived aggregates continue their sequence, reads flag or include the archive,
//! lagging projections stop a run, and bad input changes nothing.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use strata_event::{AggregateId, AggregateRef, AggregateType, Command, EventType, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::admin::{
    ArchiveError, ArchiveRun, ArchiveSelection, DeleteTarget, HardDelete, RestoreSelection,
    archive_batch, hard_delete, plan_archive, query_including_archive, restore_batch,
    start_archive_run, start_restore_run, verify_archive,
};
use strata_query::Query;
use strata_store::{ErrorKind, EventStore};

fn command(instance: &str, aggregate_type: &str, id: &str, event_type: &str, n: usize) -> Command {
    Command::builder(instance, aggregate_type, id, event_type)
        .creator("test")
        .owner("org")
        .payload(&serde_json::json!({ "n": n, "float": 0.1 + n as f64, "text": "é ✓" }))
        .correlation_id(format!("req-{n}"))
        .build()
        .expect("valid")
}

/// Every event row of both tables, in full, as text, with the table it is in.
async fn dump(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'hot ' || e::text FROM eventstore.events e \
         UNION ALL SELECT 'archived ' || a::text FROM eventstore.archived_events a ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("dump")
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

fn selection(instance: &str) -> ArchiveSelection {
    ArchiveSelection {
        instance: InstanceId::new(instance).expect("id"),
        aggregate_types: Vec::new(),
        closing_event_types: Vec::new(),
        // Everything pushed so far is older than this.
        horizon: Utc::now() + chrono::Duration::milliseconds(1),
    }
}

fn restore_all(instance: &str) -> RestoreSelection {
    RestoreSelection {
        instance: InstanceId::new(instance).expect("id"),
        aggregate_types: Vec::new(),
        aggregate_id: None,
    }
}

async fn archive_to_the_end(pool: &PgPool, run: &ArchiveRun) -> u64 {
    let mut events = 0;
    loop {
        let batch = archive_batch(pool, run).await.expect("batch");
        events += batch.events;
        if batch.done {
            return events;
        }
    }
}

async fn restore_to_the_end(pool: &PgPool, run: &ArchiveRun) -> u64 {
    let mut events = 0;
    loop {
        let batch = restore_batch(pool, run).await.expect("batch");
        events += batch.events;
        if batch.done {
            return events;
        }
    }
}

/// Pushes `aggregates` users of three events each (the last `user.removed` for even ones) and one
/// org, to instance `t1`, plus a user in `t2`.
async fn populate(store: &impl EventStore, aggregates: usize) {
    let mut n = 0;
    for round in 0..3 {
        let mut commands = Vec::new();
        for a in 0..aggregates {
            n += 1;
            let event_type = match (round, a % 2) {
                (2, 0) => "user.removed",
                (0, _) => "user.added",
                _ => "user.changed",
            };
            commands.push(command("t1", "user", &format!("u{a:04}"), event_type, n));
        }
        for chunk in commands.chunks(50) {
            store.push(chunk.to_vec()).await.expect("push");
        }
    }
    store
        .push(vec![
            command("t1", "org", "o1", "org.added", 0),
            command("t2", "user", "u0000", "user.added", 0),
        ])
        .await
        .expect("push");
}

#[tokio::test]
async fn archive_then_restore_gives_the_store_back_byte_identical() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 7).await;
    // An event without payload or metadata, too.
    store
        .push(vec![
            Command::builder("t1", "user", "bare", "user.added")
                .creator("c")
                .owner("o")
                .build()
                .expect("valid"),
        ])
        .await
        .expect("push");
    let before = dump(&pool).await;

    let plan = plan_archive(&pool, &selection("t1")).await.expect("plan");
    assert_eq!((plan.aggregates, plan.events), (9, 23));
    assert!(plan.bytes > 0);
    let run = start_archive_run(&pool, &selection("t1"), 2, "ops")
        .await
        .expect("run");
    assert!(!run.resumed);
    assert_eq!(archive_to_the_end(&pool, &run).await, 23);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.events").await,
        1,
        "only the other instance stays hot"
    );
    let verified = verify_archive(&pool, None).await.expect("verify");
    assert_eq!(verified.len(), 1);
    assert!(verified[0].is_consistent(), "{verified:?}");
    assert_eq!(verified[0].archived_events, 23);

    let restore = start_restore_run(&pool, &restore_all("t1"), 3, "ops")
        .await
        .expect("restore");
    assert_eq!(restore_to_the_end(&pool, &restore).await, 23);
    let after = dump(&pool).await;
    assert_eq!(
        after, before,
        "every column of every event, positions and sequences included"
    );
    let verified = verify_archive(&pool, None).await.expect("verify");
    assert!(
        verified[0].is_consistent() && verified[0].manifest_events == 0,
        "{verified:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_halfway_leaves_every_event_in_one_place_and_a_second_run_finishes() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 200).await;
    let before = dump(&pool).await;

    // The run's own connection, named so it can be found and killed mid-run.
    let options = database
        .options
        .clone()
        .application_name("archive-under-test");
    let run_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("run pool");
    // A push to u0100 in flight (its aggregate lock held) stops the run inside the batch that
    // reaches it, with a third of the aggregates archived and that batch's transaction open.
    let mut push_in_flight = pool.begin().await.expect("begin");
    sqlx::query(
        "SELECT pg_advisory_xact_lock(eventstore.aggregate_lock_key('t1', 'user', 'u0100'))",
    )
    .execute(&mut *push_in_flight)
    .await
    .expect("lock");
    let run = start_archive_run(&run_pool, &selection("t1"), 3, "ops")
        .await
        .expect("run");
    let running = {
        let run_pool = run_pool.clone();
        let run = run.clone();
        tokio::spawn(async move {
            loop {
                match archive_batch(&run_pool, &run).await {
                    Ok(batch) if batch.done => return Ok(()),
                    Ok(_) => {}
                    Err(err) => return Err(err),
                }
            }
        })
    };
    // Kill the run's connection while its batch waits, mid-transaction.
    loop {
        let waiting = count(
            &pool,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'archive-under-test' \
             AND wait_event_type = 'Lock'",
        )
        .await;
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = count(
        &pool,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'archive-under-test') k",
    )
    .await;
    assert_eq!(killed, 1);
    let stopped = running.await.expect("joins");
    push_in_flight.rollback().await.expect("rollback");
    let err = stopped.expect_err("the run lost its connection");
    assert!(
        matches!(&err, ArchiveError::Store(store) if store.kind() == ErrorKind::Unavailable),
        "{err:?}"
    );

    // Every event in exactly one place, unchanged, and the manifest agrees with the archive.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM eventstore.events e JOIN eventstore.archived_events a \
             USING (instance_id, aggregate_type, aggregate_id, sequence)"
        )
        .await,
        0
    );
    let mut halfway: Vec<String> = dump(&pool)
        .await
        .into_iter()
        .map(|row| {
            row.trim_start_matches("archived ")
                .trim_start_matches("hot ")
                .to_owned()
        })
        .collect();
    halfway.sort();
    let mut original: Vec<String> = before
        .iter()
        .map(|row| row.trim_start_matches("hot ").to_owned())
        .collect();
    original.sort();
    assert_eq!(halfway, original);
    let archived = count(&pool, "SELECT count(*) FROM eventstore.archived_events").await;
    // Aggregates in key order: o1, u0000, u0001…; 33 batches of 3 commit before the one with
    // u0100: o1 and 98 users.
    assert_eq!(archived, 1 + 98 * 3, "the 33 batches before u0100's");
    let verified = verify_archive(&pool, None).await.expect("verify");
    assert!(verified[0].is_consistent(), "{verified:?}");
    assert_eq!(verified[0].unfinished_runs, 1);

    // A second run resumes the first and finishes it.
    let resumed = start_archive_run(&pool, &selection("t1"), 50, "ops")
        .await
        .expect("resume");
    assert!(resumed.resumed);
    assert_eq!(resumed.id, run.id);
    assert_eq!(
        resumed.horizon, run.horizon,
        "the first run's horizon is kept"
    );
    archive_to_the_end(&pool, &resumed).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.archived_events").await,
        601
    );
    let verified = verify_archive(&pool, None).await.expect("verify");
    assert!(verified[0].is_consistent(), "{verified:?}");
    assert_eq!(verified[0].unfinished_runs, 0);
    assert_eq!(verified[0].archived_events, 601);
}

#[tokio::test]
async fn pushes_to_an_archived_aggregate_continue_its_sequence() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 3).await;
    let run = start_archive_run(&pool, &selection("t1"), 10, "ops")
        .await
        .expect("run");
    archive_to_the_end(&pool, &run).await;
    let u0 = AggregateRef::new("t1", "user", "u0000").expect("ref");
    assert_eq!(store.current_sequence(&u0).await.expect("sequence"), 3);

    // A lone command (push_one), several in one call (the set-based path), and an expected
    // sequence (the checked path): each continues where the archive left off.
    let lone = store
        .push(vec![command("t1", "user", "u0000", "user.changed", 1)])
        .await
        .expect("push");
    assert_eq!(lone[0].sequence, 4);
    let several = store
        .push(vec![
            command("t1", "user", "u0001", "user.changed", 1),
            command("t1", "user", "u0001", "user.changed", 2),
        ])
        .await
        .expect("push");
    assert_eq!(
        several.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [4, 5]
    );
    let stale = Command::builder("t1", "user", "u0002", "user.changed")
        .creator("c")
        .owner("o")
        .expect_sequence(0)
        .build()
        .expect("valid");
    let conflict = store.push(vec![stale]).await.expect_err("stale");
    assert_eq!(conflict.kind(), ErrorKind::Conflict);
    let expected = Command::builder("t1", "user", "u0002", "user.changed")
        .creator("c")
        .owner("o")
        .expect_sequence(3)
        .build()
        .expect("valid");
    assert_eq!(
        store.push(vec![expected]).await.expect("push")[0].sequence,
        4
    );

    // The split is visible: verify counts the aggregates, and a restore makes them whole again.
    let verified = verify_archive(&pool, Some(&InstanceId::new("t1").expect("id")))
        .await
        .expect("verify");
    assert_eq!(verified[0].split_aggregates, 3);
    assert!(verified[0].is_consistent());
    let restore = start_restore_run(&pool, &restore_all("t1"), 10, "ops")
        .await
        .expect("restore");
    restore_to_the_end(&pool, &restore).await;
    let history = store.query(&Query::aggregate(&u0)).await.expect("read");
    assert_eq!(
        history.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

#[tokio::test]
async fn reads_see_the_hot_table_and_read_through_the_archive_when_asked() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 4).await;
    let everything = Query::builder().instance("t1").build().expect("query");
    let before = store.query(&everything).await.expect("read");
    let mut only_users = selection("t1");
    only_users.aggregate_types = vec![AggregateType::new("user").expect("type")];
    only_users.closing_event_types = vec![EventType::new("user.removed").expect("type")];
    let run = start_archive_run(&pool, &only_users, 10, "ops")
        .await
        .expect("run");
    assert_eq!(
        archive_to_the_end(&pool, &run).await,
        6,
        "the two removed users"
    );

    let hot = store.query(&everything).await.expect("read");
    assert_eq!(hot.len(), before.len() - 6);
    let u0 = AggregateRef::new("t1", "user", "u0000").expect("ref");
    assert!(
        store
            .query(&Query::aggregate(&u0))
            .await
            .expect("read")
            .is_empty(),
        "the store's reads see the hot table only"
    );
    let through = query_including_archive(&pool, &everything)
        .await
        .expect("read");
    assert_eq!(through, before, "same events, same order");
    let one = query_including_archive(&pool, &Query::aggregate(&u0))
        .await
        .expect("read");
    assert_eq!(
        one.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // An exclusion reads the archive too: a removed user, archived whole, stays excluded.
    let added_not_removed = Query::builder()
        .instance("t1")
        .aggregate_types(["user"])
        .event_types(["user.added"])
        .exclude_aggregates_with(["user"], ["user.removed"])
        .build()
        .expect("query");
    let kept: Vec<String> = query_including_archive(&pool, &added_not_removed)
        .await
        .expect("read")
        .iter()
        .map(|e| e.aggregate.aggregate_id.as_str().to_owned())
        .collect();
    assert_eq!(kept, ["u0001", "u0003"]);
}

#[tokio::test]
async fn a_lagging_projection_stops_the_run_and_nothing_moves() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 2).await;
    sqlx::query(
        "INSERT INTO projections.registry VALUES ('users', '[[\"user\", []]]', false, now()), \
         ('orgs', '[[\"org\", []]]', false, now())",
    )
    .execute(&pool)
    .await
    .expect("register");
    sqlx::query(
        "INSERT INTO projections.current_states VALUES ('t1', 'users', 1, 0, 'x', 'x', 1, now())",
    )
    .execute(&pool)
    .await
    .expect("checkpoint");
    let before = dump(&pool).await;
    let mut users = selection("t1");
    users.aggregate_types = vec![AggregateType::new("user").expect("type")];
    let plan = plan_archive(&pool, &users).await.expect("plan");
    assert_eq!(plan.projections_behind, ["users"]);
    let run = start_archive_run(&pool, &users, 10, "ops")
        .await
        .expect("run");
    match archive_batch(&pool, &run).await {
        Err(ArchiveError::ProjectionsBehind { projections }) => assert_eq!(projections, ["users"]),
        other => panic!("expected ProjectionsBehind, got {other:?}"),
    }
    assert_eq!(dump(&pool).await, before);

    // Caught up: the run goes through.
    sqlx::query(
        "UPDATE projections.current_states SET position = (SELECT max(position) FROM eventstore.events), \
         in_tx_order = 100000",
    )
    .execute(&pool)
    .await
    .expect("catch up");
    assert_eq!(archive_to_the_end(&pool, &run).await, 6);
}

#[tokio::test]
async fn hard_deleting_an_archived_aggregate_keeps_the_manifest_balanced() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 2).await;
    let run = start_archive_run(&pool, &selection("t1"), 10, "ops")
        .await
        .expect("run");
    archive_to_the_end(&pool, &run).await;
    let removal = hard_delete(
        &pool,
        &HardDelete {
            target: DeleteTarget::Aggregate(AggregateRef::new("t1", "user", "u0001").expect("ref")),
            actor: "dpo".into(),
            reason: "request 7".into(),
            rebuild: false,
            release_unique: Vec::new(),
        },
    )
    .await
    .expect("removed");
    assert_eq!((removal.hot_events, removal.archived_events), (0, 3));
    let verified = verify_archive(&pool, None).await.expect("verify");
    assert!(verified[0].is_consistent(), "{verified:?}");
    assert_eq!(verified[0].archived_events, 4);
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 2).await;
    let before = dump(&pool).await;
    let runs = "SELECT count(*) FROM eventstore.archive_runs";

    let unknown = selection("no-such-instance");
    assert!(matches!(
        plan_archive(&pool, &unknown).await,
        Err(ArchiveError::UnknownInstance { .. })
    ));
    assert!(matches!(
        start_archive_run(&pool, &unknown, 10, "ops").await,
        Err(ArchiveError::UnknownInstance { .. })
    ));
    assert!(matches!(
        start_archive_run(&pool, &selection("t1"), 0, "ops").await,
        Err(ArchiveError::InvalidInput { .. })
    ));
    assert!(matches!(
        start_archive_run(&pool, &selection("t1"), 10, " ").await,
        Err(ArchiveError::InvalidInput { .. })
    ));
    let one_aggregate_no_type = RestoreSelection {
        instance: InstanceId::new("t1").expect("id"),
        aggregate_types: Vec::new(),
        aggregate_id: Some(AggregateId::new("u0000").expect("id")),
    };
    assert!(matches!(
        start_restore_run(&pool, &one_aggregate_no_type, 10, "ops").await,
        Err(ArchiveError::InvalidInput { .. })
    ));
    // A run that does not exist (or of another instance) is refused by the database.
    let run = start_archive_run(&pool, &selection("t2"), 10, "ops")
        .await
        .expect("run");
    let forged = run.clone();
    let wrong_instance = start_restore_run(&pool, &restore_all("t2"), 1, "ops")
        .await
        .expect("run");
    let refused = restore_batch(&pool, &forged).await;
    assert!(
        matches!(&refused, Err(ArchiveError::Store(err)) if err.kind() == ErrorKind::InvalidInput),
        "an archive run is not a restore run: {refused:?}"
    );
    assert!(archive_batch(&pool, &wrong_instance).await.is_err());
    assert!(AggregateType::new("").is_err() && InstanceId::new("").is_err());
    assert_eq!(dump(&pool).await, before);
    assert_eq!(
        count(&pool, runs).await,
        2,
        "only the two runs started above"
    );
}

/// Counts `user` events per instance in a memory read model.
struct UserEvents;

impl strata_projection::Projection for UserEvents {
    fn name(&self) -> &str {
        "user_events"
    }

    fn reads(&self) -> strata_projection::Reads {
        strata_projection::Reads::new().aggregate("user")
    }

    fn reduce(
        &self,
        event: &strata_event::Event,
    ) -> Result<Vec<strata_projection::Statement>, strata_projection::ReduceError> {
        Ok(vec![strata_projection::Statement::increment(
            "user_events",
            vec![("instance_id", event.aggregate.instance_id.as_str().into())],
            vec![("events", 1i64.into())],
        )])
    }

    fn reset(&self, instance: &InstanceId) -> Vec<strata_projection::Statement> {
        vec![strata_projection::Statement::delete(
            "user_events",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
}

/// The events a rebuilt `user_events` counts in `t1`, on `store`.
async fn rebuilt_count(store: strata_postgres::PgStore) -> i64 {
    let read_models = strata_projection::MemoryProjections::new();
    let runtime = strata_projection::ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(UserEvents)
        .expect("register")
        .start()
        .await
        .expect("start");
    let instance = InstanceId::new("t1").expect("id");
    runtime
        .rebuild("user_events", Some(&instance))
        .await
        .expect("rebuild");
    let head = store
        .latest_position(&Query::builder().all_instances().build().expect("query"))
        .await
        .expect("head")
        .expect("events");
    runtime
        .catch_up("user_events", &instance, head, Duration::from_secs(20))
        .await
        .expect("caught up");
    runtime
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shutdown");
    read_models
        .rows("user_events")
        .into_iter()
        .find(|row| row.get("instance_id") == Some(&strata_projection::SqlValue::from("t1")))
        .and_then(|row| match row.get("events") {
            Some(strata_projection::SqlValue::BigInt(count)) => Some(*count),
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_rebuilt_on_a_store_that_reads_the_archive_counts_archived_events() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    populate(&store, 4).await;
    let run = start_archive_run(&pool, &selection("t1"), 10, "ops")
        .await
        .expect("run");
    assert!(archive_to_the_end(&pool, &run).await > 0);
    let hot_users = count(
        &pool,
        "SELECT count(*) FROM eventstore.events WHERE instance_id = 't1' AND aggregate_type = 'user'",
    )
    .await;
    assert_eq!(
        rebuilt_count(store).await,
        hot_users,
        "by default, the hot table only"
    );
    let with_archive = database.store_with(strata_postgres::PgConfig {
        read_archive: true,
        ..strata_integration_tests::test_config()
    });
    assert_eq!(
        rebuilt_count(with_archive).await,
        12,
        "every user event, archived ones included"
    );
}
