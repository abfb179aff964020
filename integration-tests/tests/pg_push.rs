//! PostgreSQL-specific push behaviour the conformance suite cannot express: hot aggregates under
//! both push paths, the append-only guard, migrations, instance removal and broken connections.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use strata_event::{AggregateRef, Command, InstanceId};
use strata_integration_tests::{TestDatabase, test_config};
use strata_postgres::{GroupCommitConfig, PgConfig, PgPools, PgStore, migrate};
use strata_query::Query;
use strata_store::{Error, ErrorKind, EventStore};

fn command(instance: &str, aggregate_id: &str, event_type: &str) -> Command {
    Command::builder(instance, "user", aggregate_id, event_type)
        .creator("tester")
        .owner("org")
        .payload(&serde_json::json!({ "n": aggregate_id }))
        .build()
        .expect("valid command")
}

async fn hammer_one_aggregate(store: PgStore, writers: usize) {
    let store = Arc::new(store);
    let pushes = (0..writers).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.push(vec![command("i", "hot", "user.touched")]).await })
    });
    let mut sequences = BTreeSet::new();
    for result in join_all(pushes).await {
        let events = result
            .expect("task ran")
            .expect("no push may fail or need a retry");
        sequences.insert(events[0].sequence);
    }
    let expected: BTreeSet<u64> = (1..=writers as u64).collect();
    assert_eq!(
        sequences, expected,
        "sequences must be exactly 1..={writers}"
    );

    let aggregate = AggregateRef::new("i", "user", "hot").expect("valid aggregate");
    let stored = store
        .query(&Query::aggregate(&aggregate))
        .await
        .expect("query");
    let stored: Vec<u64> = stored.iter().map(|event| event.sequence).collect();
    assert_eq!(stored, expected.into_iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_aggregate_with_group_commit() {
    let database = TestDatabase::create().await;
    hammer_one_aggregate(database.store(), 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_aggregate_without_group_commit() {
    let database = TestDatabase::create().await;
    let config = PgConfig {
        group_commit: GroupCommitConfig {
            enabled: false,
            ..GroupCommitConfig::default()
        },
        ..test_config()
    };
    hammer_one_aggregate(database.store_with(config), 300).await;
}

/// A push whose caller stopped waiting before its lane sent it (a timeout, a dropped request) is
/// not stored; the push the lane was already sending is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_cancelled_while_queued_is_not_stored() {
    let database = TestDatabase::create().await;
    let config = PgConfig {
        group_commit: GroupCommitConfig {
            lanes: Some(1),
            ..GroupCommitConfig::default()
        },
        ..test_config()
    };
    let store = Arc::new(database.store_with(config));
    // Holds the lane: its call waits for this lock, and what is pushed meanwhile queues behind it.
    let admin = database.pool(1);
    let mut blocker = admin.begin().await.expect("begin");
    sqlx::query("LOCK TABLE eventstore.events IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let sending = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.push(vec![command("i", "sent", "user.added")]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        store.push(vec![command("i", "cancelled", "user.added")]),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the lane is busy, so the push must still be queued"
    );
    blocker.commit().await.expect("unlock");
    sending
        .await
        .expect("task ran")
        .expect("the push on its way is stored");
    // The next push on the lane went after the cancelled one would have.
    store
        .push(vec![command("i", "later", "user.added")])
        .await
        .expect("later push");
    let stored: BTreeSet<String> = store
        .query(&Query::builder().instance("i").build().expect("query"))
        .await
        .expect("query")
        .into_iter()
        .map(|event| event.aggregate.aggregate_id.as_str().to_owned())
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from(["sent".to_owned(), "later".to_owned()]),
        "the cancelled push must not be stored"
    );
}

/// A failing push grouped with good ones must not take them down: each is answered on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_push_in_a_group_fails_alone() {
    let database = TestDatabase::create().await;
    let store = Arc::new(database.store());
    store
        .push(vec![command("i", "taken", "user.added")])
        .await
        .expect("seed");
    let pushes = (0..64).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let command = if n % 8 == 0 {
                Command::builder("i", "user", "taken", "user.added")
                    .creator("tester")
                    .owner("org")
                    .expect_sequence(0)
                    .build()
                    .expect("valid command")
            } else {
                command("i", &format!("user-{n}"), "user.added")
            };
            (n, store.push(vec![command]).await)
        })
    });
    for result in join_all(pushes).await {
        let (n, outcome) = result.expect("task ran");
        if n % 8 == 0 {
            assert!(
                matches!(
                    outcome,
                    Err(Error::Conflict {
                        expected: 0,
                        actual: 1,
                        ..
                    })
                ),
                "push {n}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome.expect("good push succeeds")[0].sequence, 1);
        }
    }
    let all = store
        .query(&Query::builder().instance("i").build().expect("query"))
        .await
        .expect("query");
    assert_eq!(all.len(), 1 + 56);
}

#[tokio::test]
async fn stored_events_cannot_be_changed_or_deleted() {
    let database = TestDatabase::create().await;
    let store = database.store();
    store
        .push(vec![command("i", "a", "user.added")])
        .await
        .expect("push");
    let pool = database.pool(1);
    for statement in [
        "UPDATE eventstore.events SET event_type = 'user.hacked'",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events",
    ] {
        let refused = sqlx::query(statement).execute(&pool).await;
        assert!(refused.is_err(), "{statement} must be refused");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn removing_an_instance_deletes_only_its_events_and_constraints() {
    let database = TestDatabase::create().await;
    let store = database.store();
    for instance in ["gone", "kept"] {
        let with_constraint = Command::builder(instance, "user", "a", "user.added")
            .creator("tester")
            .owner("org")
            .add_unique_constraint("username", "alice", "errors.username_taken")
            .build()
            .expect("valid command");
        store
            .push(vec![with_constraint, command(instance, "b", "user.added")])
            .await
            .expect("push");
    }
    let gone = InstanceId::new("gone").expect("valid id");
    assert_eq!(store.remove_instance(&gone).await.expect("remove"), 2);

    let everything = Query::builder()
        .instances(["gone", "kept"])
        .build()
        .expect("query");
    let left = store.query(&everything).await.expect("query");
    assert_eq!(left.len(), 2);
    assert!(
        left.iter()
            .all(|event| event.aggregate.instance_id.as_str() == "kept")
    );

    // The removed instance's username is free again; the kept one's is not.
    let again = |instance: &str| {
        Command::builder(instance, "user", "c", "user.added")
            .creator("tester")
            .owner("org")
            .add_unique_constraint("username", "alice", "errors.username_taken")
            .build()
            .expect("valid command")
    };
    store.push(vec![again("gone")]).await.expect("free again");
    let clash = store.push(vec![again("kept")]).await;
    assert!(matches!(
        clash,
        Err(Error::UniqueConstraintViolation { .. })
    ));
}

#[tokio::test]
async fn migrate_reports_what_it_applied_and_is_idempotent() {
    let database = TestDatabase::create().await;
    // The template already has everything, so a fresh run applies nothing...
    let pool = database.pool(2);
    assert!(migrate(&pool).await.expect("migrate").is_empty());
    let status = strata_postgres::admin::migration_status(&pool)
        .await
        .expect("status");
    assert!(status.is_current(), "{status:?}");
    // ...while an empty schema gets every migration and every function, once.
    sqlx::raw_sql(
        "DROP SCHEMA eventstore CASCADE; DROP SCHEMA projections CASCADE; \
         DROP SCHEMA IF EXISTS cache CASCADE; DROP TABLE _sqlx_migrations",
    )
    .execute(&pool)
    .await
    .expect("reset");
    let status = strata_postgres::admin::migration_status(&pool)
        .await
        .expect("status");
    assert!(status.migrations.iter().all(|m| m.applied_at.is_none()));
    assert!(status.functions.iter().all(|f| !f.current));
    let applied = migrate(&pool).await.expect("migrate");
    assert_eq!(
        applied.migrations.len(),
        strata_postgres::MIGRATOR.iter().count()
    );
    assert_eq!(applied.functions.len(), strata_postgres::FUNCTIONS.len());
    assert!(migrate(&pool).await.expect("migrate again").is_empty());

    // A function whose definition in the database drifted from its file is applied again, once.
    sqlx::query("UPDATE eventstore.applied_functions SET checksum = 'stale' WHERE file = $1")
        .bind("eventstore.commit_horizon.sql")
        .execute(&pool)
        .await
        .expect("forge a stale checksum");
    let status = strata_postgres::admin::migration_status(&pool)
        .await
        .expect("status");
    assert!(!status.is_current());
    let applied = migrate(&pool).await.expect("migrate");
    assert_eq!(applied.functions, vec!["eventstore.commit_horizon.sql"]);
    assert!(migrate(&pool).await.expect("migrate again").is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_unavailable_at_once_with_its_cause() {
    // Port 1 is never a PostgreSQL server. With the default ten-second acquire timeout, a check
    // through a pool would wait all of it and then report only a timeout.
    let config = test_config();
    let started = std::time::Instant::now();
    let outcome = PgStore::connect("postgres://postgres@127.0.0.1:1/postgres", config).await;
    let err = outcome.expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_malformed_url_is_invalid_input() {
    let outcome = PgStore::connect("mysql://nope", test_config()).await;
    let err = outcome.expect_err("not a PostgreSQL URL");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn a_store_without_migrations_says_so() {
    let database = TestDatabase::create().await;
    let pool = database.pool(1);
    sqlx::query("DROP SCHEMA eventstore CASCADE")
        .execute(&pool)
        .await
        .expect("drop");
    let store = database.store();
    let err = store
        .push(vec![command("i", "a", "user.added")])
        .await
        .expect_err("no schema");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("migrat"), "{err}");
}

#[tokio::test]
async fn push_and_push_one_number_a_lone_command_alike() {
    let database = TestDatabase::create().await;
    let pool = database.pool(1);
    let through_push = "SELECT r_push, r_sequence, r_in_tx_order, r_error FROM eventstore.push(\
         ARRAY[0], ARRAY['i'], ARRAY['user'], ARRAY['u1'], ARRAY['user.added'], ARRAY[1], \
         ARRAY['t'], ARRAY['o'], ARRAY['{}'], ARRAY[NULL::bigint], ARRAY[NULL::text], \
         '{}'::int[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], \
         '{}'::int[], '{}'::text[], '{}'::text[], '{}'::text[], interval '24 hours')";
    let through_push_one = "SELECT r_sequence FROM eventstore.push_one('i', 'user', 'u1', \
         'user.added', 1, 't', 'o', '{}', NULL)";
    let mut sequences = Vec::new();
    for round in 0..2 {
        let (push, sequence, in_tx_order, error): (i32, i64, i32, Option<String>) =
            sqlx::query_as(through_push)
                .fetch_one(&pool)
                .await
                .expect("push");
        assert_eq!((push, in_tx_order, error), (0, 0, None), "round {round}");
        sequences.push(sequence);
        let sequence: i64 = sqlx::query_scalar(through_push_one)
            .fetch_one(&pool)
            .await
            .expect("push_one");
        sequences.push(sequence);
    }
    assert_eq!(sequences, vec![1, 2, 3, 4]);
    let positions: Vec<(i64, i32)> =
        sqlx::query_as("SELECT sequence, in_tx_order FROM eventstore.events ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("events");
    assert_eq!(positions, vec![(1, 0), (2, 0), (3, 0), (4, 0)]);
}

#[tokio::test]
async fn unique_constraint_planner_settings_last_only_for_the_push() {
    let database = TestDatabase::create().await;
    let pool = database.pool(1);
    let push_with_unique = "SELECT * FROM eventstore.push(ARRAY[0], ARRAY['i'], ARRAY['user'], \
         ARRAY[$1], ARRAY['user.added'], ARRAY[1], ARRAY['t'], ARRAY['o'], ARRAY['{}'], \
         ARRAY[NULL::bigint], ARRAY[NULL::text], ARRAY[0], ARRAY['add'], ARRAY['i'], \
         ARRAY['username'], ARRAY[$1], '{}'::int[], '{}'::text[], '{}'::text[], '{}'::text[], \
         interval '24 hours')";
    let seqscan = "SELECT current_setting('enable_seqscan')";

    // The unique-constraint path turns sequential scans off for the rest of its transaction...
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(push_with_unique)
        .bind("a")
        .fetch_all(&mut *tx)
        .await
        .expect("push with a unique constraint");
    let inside: String = sqlx::query_scalar(seqscan)
        .fetch_one(&mut *tx)
        .await
        .expect("setting");
    assert_eq!(inside, "off");
    tx.commit().await.expect("commit");

    // ...which, for a push sent on its own as Strata sends them, is the push: the pool's one
    // session is as it was before.
    sqlx::query(push_with_unique)
        .bind("b")
        .fetch_all(&pool)
        .await
        .expect("push with a unique constraint");
    let after: String = sqlx::query_scalar(seqscan)
        .fetch_one(&pool)
        .await
        .expect("setting");
    assert_eq!(after, "on");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.unique_constraints")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 2);
}

/// A push's sequence lookup is one primary-key probe whatever the statistics say. Planned on
/// missing or stale statistics, the old `max(sequence)` lookup could use the index on (instance,
/// aggregate type, position) and read every event of the type on every push for the rest of the
/// session (seen in the W1P benchmark, on a server with autovacuum off). Here the statistics
/// claim aggregate types are unique, and every plan is generic: the push must still read a
/// handful of pages among 60 000 events of its type, and number its events exactly.
#[tokio::test]
async fn sequence_lookups_probe_the_primary_key_whatever_the_statistics() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(1);
    sqlx::raw_sql(
        "INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence, \
             event_type, revision, created_at, creator, owner, payload, position, in_tx_order) \
         SELECT 'i', 'user', 'bulk-' || (g % 6000), g / 6000 + 1, 'user.added', 1, now(), 't', 'o', \
                '{}', 1, g FROM generate_series(0, 59999) g; \
         ALTER TABLE eventstore.events ALTER COLUMN aggregate_type SET (n_distinct = -1); \
         ANALYZE eventstore.events;",
    )
    .execute(&pool)
    .await
    .expect("bulk load");
    // Neighbours in key order on both sides of the aggregate pushed to below.
    for aggregate in ["hot", "hot-", "ho"] {
        store
            .push(vec![command("i", aggregate, "user.added")])
            .await
            .expect("push");
    }

    let mut session = pool.acquire().await.expect("connection");
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *session)
        .await
        .expect("generic plans");
    let explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM eventstore.push(\
         ARRAY[0, 0], ARRAY['i', 'i'], ARRAY['user', 'user'], ARRAY['hot', 'new'], \
         ARRAY['user.touched', 'user.touched'], ARRAY[1, 1], ARRAY['t', 't'], ARRAY['o', 'o'], \
         ARRAY['{}', '{}'], ARRAY[NULL::bigint, NULL], ARRAY[NULL::text, NULL], '{}'::int[], \
         '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::int[], '{}'::text[], \
         '{}'::text[], '{}'::text[], interval '24 hours')";
    let mut pages = Vec::new();
    // The first calls load catalogs and build the session's plans; the last ones show the steady state.
    for _ in 0..4 {
        let plan: serde_json::Value = sqlx::query_scalar(explain)
            .fetch_one(&mut *session)
            .await
            .expect("explain a push");
        let node = &plan[0]["Plan"];
        let read = node["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + node["Shared Read Blocks"].as_i64().unwrap_or(0);
        pages.push(read);
    }
    assert!(
        pages[2..].iter().all(|&read| read < 60),
        "a push of two events read {pages:?} pages; the type's 60 000 events span over 1 000"
    );
    drop(session);
    // EXPLAIN ANALYZE executed the pushes: "hot" went on from its one event, "new" started at 1.
    let sequences: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, max(sequence) FROM eventstore.events \
         WHERE aggregate_id IN ('hot', 'hot-', 'ho', 'new') GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("sequences");
    assert_eq!(
        sequences,
        vec![
            ("ho".to_owned(), 1),
            ("hot".to_owned(), 5),
            ("hot-".to_owned(), 1),
            ("new".to_owned(), 4)
        ]
    );
}

/// The sessions of each pool, as `pg_stat_activity` shows them.
async fn application_names(database: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT application_name FROM pg_stat_activity \
         WHERE datname = $1 AND application_name LIKE '%strata%' ORDER BY 1",
    )
    .bind(&database.name)
    .fetch_all(&database.pool(1))
    .await
    .expect("activity")
}

#[tokio::test]
async fn sessions_name_their_pool_unless_the_application_named_itself() {
    let database = TestDatabase::create().await;
    if database.options.get_application_name().is_some() {
        // PGAPPNAME or the test URL named the application: the pools rightly keep that name.
        return;
    }
    let store = database.store();
    store
        .push(vec![command("tenant-1", "u-1", "user.added")])
        .await
        .expect("push");
    store.query(&Query::all()).await.expect("query");
    let names = application_names(&database).await;
    assert!(names.contains(&"strata push".to_owned()), "{names:?}");
    assert!(names.contains(&"strata query".to_owned()), "{names:?}");
    drop(store);

    let named = database.options.clone().application_name("billing-strata");
    let config = test_config();
    let store =
        PgStore::from_pools(PgPools::connect_lazy_with(named, &config), &config).expect("store");
    store.query(&Query::all()).await.expect("query");
    assert!(
        application_names(&database)
            .await
            .contains(&"billing-strata".to_owned())
    );
}

/// Idempotency keys leave the table by two doors: pruning deletes those older than it is told
/// (and only those), and removing an instance deletes the instance's. Either way the key is then
/// free to name other commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_pruned_and_removed_with_their_instance() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(1);
    let push = |instance: &str, aggregate_id: &str| {
        vec![
            Command::builder(instance, "user", aggregate_id, "user.added")
                .creator("c")
                .owner("o")
                .build()
                .expect("valid command"),
        ]
    };
    let key = |instance: &str| strata_event::IdempotencyKey::new(instance, "k").expect("key");
    store
        .push_idempotent(&key("pruned"), push("pruned", "u1"))
        .await
        .expect("push");
    store
        .push_idempotent(&key("removed"), push("removed", "u1"))
        .await
        .expect("push");
    let keys = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM eventstore.idempotency_keys")
            .fetch_one(&pool)
            .await
            .expect("count keys")
    };

    let hour = std::time::Duration::from_secs(3600);
    let pruned = strata_postgres::admin::prune_idempotency_keys(&pool, hour)
        .await
        .expect("prune");
    assert_eq!(pruned, 0, "keys younger than an hour stay");
    let reused = store
        .push_idempotent(&key("pruned"), push("pruned", "u2"))
        .await
        .expect_err("the key is live");
    assert_eq!(reused.kind(), ErrorKind::IdempotencyKeyReused);

    store
        .remove_instance(&InstanceId::new("removed").expect("id"))
        .await
        .expect("remove");
    assert_eq!(keys().await, 1, "the removed instance's key went with it");
    store
        .push_idempotent(&key("removed"), push("removed", "u2"))
        .await
        .expect("the key is free again");

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let pruned =
        strata_postgres::admin::prune_idempotency_keys(&pool, std::time::Duration::from_millis(10))
            .await
            .expect("prune");
    assert_eq!(pruned, 2);
    assert_eq!(keys().await, 0);
    let stored = store
        .push_idempotent(&key("pruned"), push("pruned", "u2"))
        .await
        .expect("a pruned key is free again");
    assert_eq!(stored[0].aggregate.aggregate_id, "u2");
}
