//! Hard delete (`strata_postgres::admin::hard_delete`): what it removes and keeps, its audit, the
//! projections it refuses to leave behind (or has rebuilt), bad input, and that only the migrator
//! may call it or the archive's functions.

use sqlx::PgPool;
use strata_event::{AggregateRef, Command, IdempotencyKey, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::admin::{
    ArchiveError, ArchiveSelection, DeleteTarget, HardDelete, HardDeleteError, hard_delete,
    start_archive_run,
};
use strata_store::{ErrorKind, EventStore};

fn command(instance: &str, aggregate_type: &str, id: &str, event_type: &str) -> Command {
    Command::builder(instance, aggregate_type, id, event_type)
        .creator("test")
        .owner("org")
        .build()
        .expect("valid")
}

fn delete(target: DeleteTarget) -> HardDelete {
    HardDelete {
        target,
        actor: "dpo@example.com".into(),
        reason: "court order 2026-17".into(),
        rebuild: false,
        release_unique: Vec::new(),
    }
}

fn aggregate(instance: &str, aggregate_type: &str, id: &str) -> DeleteTarget {
    DeleteTarget::Aggregate(AggregateRef::new(instance, aggregate_type, id).expect("valid"))
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Every event row, in full, as text: what "nothing changed" is compared on.
async fn dump(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT e::text FROM eventstore.events e \
         ORDER BY instance_id, aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .expect("dump")
}

/// Registers a projection as a runtime would, reading `aggregate_type`, with its checkpoint in
/// `instance` at `position` (its own read model would hold what it made of the events before).
async fn projection_at(
    pool: &PgPool,
    name: &str,
    aggregate_type: &str,
    instance: &str,
    position: &str,
) {
    sqlx::query(
        "INSERT INTO projections.registry VALUES ($1, jsonb_build_array(jsonb_build_array($2::text, '[]'::jsonb)), false, now())",
    )
    .bind(name)
    .bind(aggregate_type)
    .execute(pool)
    .await
    .expect("register");
    sqlx::query(
        "INSERT INTO projections.current_states VALUES ($1, $2, $3::numeric, 0, 'x', 'x', 1, now())",
    )
    .bind(instance)
    .bind(name)
    .bind(position)
    .execute(pool)
    .await
    .expect("checkpoint");
}

#[tokio::test]
async fn removing_an_aggregate_takes_its_events_keys_and_named_uniques_and_records_who() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    let key = IdempotencyKey::new("t1", "signup-1").expect("key");
    store
        .push_idempotent(
            &key,
            vec![
                Command::builder("t1", "user", "u1", "user.added")
                    .creator("test")
                    .owner("org")
                    .add_unique_constraint("email", "alice@example.com", "taken")
                    .add_unique_constraint("username", "alice", "taken")
                    .build()
                    .expect("valid"),
            ],
        )
        .await
        .expect("keyed push");
    store
        .push(vec![command("t1", "user", "u1", "user.changed")])
        .await
        .expect("push");
    store
        .push(vec![command("t1", "user", "u2", "user.added")])
        .await
        .expect("push");
    let other_key = IdempotencyKey::new("t1", "other").expect("key");
    store
        .push_idempotent(&other_key, vec![command("t1", "user", "u3", "user.added")])
        .await
        .expect("keyed push");

    let mut request = delete(aggregate("t1", "user", "u1"));
    request.release_unique = vec![("email".into(), "alice@example.com".into())];
    let removal = hard_delete(&pool, &request).await.expect("removed");
    assert_eq!(removal.hot_events, 2);
    assert_eq!(removal.archived_events, 0);
    assert_eq!(removal.idempotency_keys, 1, "the key pointing at u1's push");
    assert_eq!(removal.unique_constraints, 1, "only the named one");
    assert!(removal.projections_rebuilt.is_empty());

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM eventstore.events WHERE aggregate_id = 'u1'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.events").await,
        2
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM eventstore.idempotency_keys")
        .fetch_all(&pool)
        .await
        .expect("keys");
    assert_eq!(keys, ["other"]);
    let uniques: Vec<String> =
        sqlx::query_scalar("SELECT unique_type FROM eventstore.unique_constraints")
            .fetch_all(&pool)
            .await
            .expect("uniques");
    assert_eq!(uniques, ["username"], "unnamed unique constraints stay");

    let (actor, db_user, reason, aggregate_id, hot_events, first, last): (
        String,
        String,
        String,
        Option<String>,
        i64,
        Option<rust_decimal::Decimal>,
        Option<rust_decimal::Decimal>,
    ) = sqlx::query_as(
        "SELECT actor, db_user, reason, aggregate_id, hot_events, first_position, last_position \
         FROM eventstore.removals WHERE instance_id = 't1' AND id = $1",
    )
    .bind(removal.removal_id)
    .fetch_one(&pool)
    .await
    .expect("audit row");
    assert_eq!(
        (
            actor.as_str(),
            reason.as_str(),
            aggregate_id.as_deref(),
            hot_events
        ),
        ("dpo@example.com", "court order 2026-17", Some("u1"), 2)
    );
    assert_eq!(db_user, "postgres");
    assert!(first.is_some() && first < last, "{first:?} {last:?}");

    // The aggregate is gone: a new push starts it again, and a retry with its key pushes again.
    let again = store
        .push(vec![command("t1", "user", "u1", "user.added")])
        .await
        .expect("push");
    assert_eq!(again[0].sequence, 1);
    assert!(store.recorded_push(&key).await.expect("lookup").is_none());
}

#[tokio::test]
async fn removing_an_instance_takes_everything_of_it_and_only_it() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    for instance in ["gone", "kept"] {
        store
            .push(vec![
                Command::builder(instance, "user", "u1", "user.added")
                    .creator("test")
                    .owner("org")
                    .add_unique_constraint("username", "alice", "taken")
                    .build()
                    .expect("valid"),
                command(instance, "org", "o1", "org.added"),
            ])
            .await
            .expect("push");
    }
    let kept = dump(&pool).await;
    let removal = hard_delete(
        &pool,
        &delete(DeleteTarget::Instance(InstanceId::new("gone").expect("id"))),
    )
    .await
    .expect("removed");
    assert_eq!((removal.hot_events, removal.unique_constraints), (2, 1));
    let left = dump(&pool).await;
    assert_eq!(left.len(), 2);
    assert!(
        left.iter()
            .all(|row| kept.contains(row) && row.contains("kept"))
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM eventstore.unique_constraints WHERE instance_id = 'gone'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM eventstore.removals WHERE instance_id = 'gone' \
             AND aggregate_type IS NULL AND hot_events = 2"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_projection_past_the_events_refuses_the_delete_unless_it_is_rebuilt() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    let stored = store
        .push(vec![command("t1", "user", "u1", "user.added")])
        .await
        .expect("push");
    store
        .push(vec![command("t1", "org", "o1", "org.added")])
        .await
        .expect("push");
    let position = stored[0].position.to_string();
    // `users` has processed u1's event; `orgs` reads another type; `late` has not got there yet.
    projection_at(&pool, "users", "user", "t1", &position).await;
    projection_at(&pool, "orgs", "org", "t1", &format!("{position}0")).await;
    projection_at(&pool, "late", "user", "t1", "1").await;
    let before = dump(&pool).await;

    let refused = hard_delete(&pool, &delete(aggregate("t1", "user", "u1"))).await;
    match refused {
        Err(HardDeleteError::ProjectionsAhead { projections }) => {
            assert_eq!(projections, ["users"]);
        }
        other => panic!("expected ProjectionsAhead, got {other:?}"),
    }
    assert_eq!(
        dump(&pool).await,
        before,
        "a refused delete changes nothing"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.removals").await,
        0
    );

    let mut request = delete(aggregate("t1", "user", "u1"));
    request.rebuild = true;
    let removal = hard_delete(&pool, &request)
        .await
        .expect("removed with a rebuild");
    assert_eq!(removal.projections_rebuilt, ["users"]);
    let requests: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT instance_id, projection_name, kind FROM projections.requests ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("requests");
    assert_eq!(
        requests,
        [("t1".to_owned(), "users".to_owned(), "rebuild".to_owned())]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM eventstore.events WHERE aggregate_type = 'user'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    store
        .push(vec![command("t1", "user", "u1", "user.added")])
        .await
        .expect("push");
    let before = dump(&pool).await;

    // Empty ids cannot even be named.
    assert!(AggregateRef::new("t1", "user", "").is_err());
    assert!(InstanceId::new("").is_err());

    let mut no_actor = delete(aggregate("t1", "user", "u1"));
    no_actor.actor = " ".into();
    let mut no_reason = delete(aggregate("t1", "user", "u1"));
    no_reason.reason = String::new();
    let mut empty_unique = delete(aggregate("t1", "user", "u1"));
    empty_unique.release_unique = vec![("email".into(), String::new())];
    let mut unique_of_instance = delete(DeleteTarget::Instance(InstanceId::new("t1").expect("id")));
    unique_of_instance.release_unique = vec![("email".into(), "a@b".into())];
    for request in [no_actor, no_reason, empty_unique, unique_of_instance] {
        let refused = hard_delete(&pool, &request).await;
        assert!(
            matches!(refused, Err(HardDeleteError::InvalidInput { .. })),
            "{request:?}: {refused:?}"
        );
    }
    for target in [
        DeleteTarget::Instance(InstanceId::new("no-such-instance").expect("id")),
        aggregate("t1", "user", "no-such-user"),
        aggregate("no-such-instance", "user", "u1"),
    ] {
        let refused = hard_delete(&pool, &delete(target.clone())).await;
        assert!(
            matches!(refused, Err(HardDeleteError::NotFound { .. })),
            "{target}: {refused:?}"
        );
    }
    assert_eq!(dump(&pool).await, before);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.removals").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_role_can_neither_hard_delete_nor_archive() {
    let database = TestDatabase::create().await;
    let admin = database.pool(2);
    let writer = database.restricted_store();
    writer
        .push(vec![command("t1", "user", "u1", "user.added")])
        .await
        .expect("the writer pushes");
    let before = dump(&admin).await;
    let writer_pool = writer.pools().push().clone();

    let refused = hard_delete(&writer_pool, &delete(aggregate("t1", "user", "u1"))).await;
    match refused {
        Err(HardDeleteError::Store(err)) => {
            assert_eq!(err.kind(), ErrorKind::Backend);
            assert!(err.to_string().contains("permission denied"), "{err}");
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    let selection = ArchiveSelection {
        instance: InstanceId::new("t1").expect("id"),
        aggregate_types: Vec::new(),
        closing_event_types: Vec::new(),
        horizon: chrono::Utc::now() + chrono::Duration::seconds(5),
    };
    let refused = start_archive_run(&writer_pool, &selection, 10, "me").await;
    assert!(
        matches!(&refused, Err(ArchiveError::Store(err)) if err.to_string().contains("permission denied")),
        "{refused:?}"
    );
    for call in [
        "SELECT * FROM eventstore.hard_delete('t1', 'user', 'u1', 'me', 'why', true, '{}', '{}')",
        "SELECT * FROM eventstore.archive_batch('t1', 1)",
        "SELECT * FROM eventstore.restore_batch('t1', 1)",
        "SELECT * FROM eventstore.archive_candidates('t1', '{}', '{}', now(), NULL, NULL, NULL)",
        "INSERT INTO eventstore.archived_events SELECT * FROM eventstore.events",
        "DELETE FROM eventstore.archived_events",
        "SELECT set_config('strata.removing_events', 'on', false); DELETE FROM eventstore.events",
        "INSERT INTO eventstore.archive_runs (instance_id, kind, aggregate_types, \
         closing_event_types, batch_size, actor) VALUES ('t1', 'archive', '{}', '{}', 1, 'me')",
        "DELETE FROM eventstore.removals",
    ] {
        let err = sqlx::raw_sql(call)
            .execute(&writer_pool)
            .await
            .expect_err(call);
        assert!(
            err.to_string().contains("permission denied"),
            "{call}: {err}"
        );
    }
    // Reading the archive is allowed, like reading events.
    assert_eq!(
        count(
            &writer_pool,
            "SELECT count(*) FROM eventstore.archived_events"
        )
        .await,
        0
    );
    assert_eq!(dump(&admin).await, before);
}

#[tokio::test]
async fn the_append_only_triggers_still_refuse_outside_the_admin_functions() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(1);
    store
        .push(vec![command("t1", "user", "u1", "user.added")])
        .await
        .expect("push");
    // The superuser (owner) itself is refused: only the functions set the flag.
    for statement in [
        "DELETE FROM eventstore.events",
        "UPDATE eventstore.events SET payload = '{}'",
        "TRUNCATE eventstore.archived_events",
    ] {
        let err = sqlx::raw_sql(statement)
            .execute(&pool)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM eventstore.events").await,
        1
    );
}
