//! Least privilege: the writer role can push (through the push functions only), read and run
//! projections, and cannot forge, change or delete events; roles exist only when asked for.

use strata_event::{Command, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::admin::{RoleKind, RoleNames};
use strata_store::{ErrorKind, EventStore};

fn command(aggregate_id: &str) -> strata_event::CommandBuilder {
    Command::builder("tenant", "user", aggregate_id, "user.added")
        .creator("writer")
        .owner("org")
}

/// Every push path works as the writer: a lone command (push_one), several commands in one call
/// (the set-based path), unique constraints and expected sequences (the checked path), and
/// concurrent pushes sharing calls (group commit).
async fn every_push_path_works<S: EventStore + Clone + 'static>(store: &S) {
    store
        .push(vec![command("u1").build().expect("valid")])
        .await
        .expect("a lone command");
    store
        .push(vec![
            command("u2").build().expect("valid"),
            command("u3").build().expect("valid"),
        ])
        .await
        .expect("several commands");
    store
        .push(vec![
            command("u4")
                .add_unique_constraint("username", "alice", "taken")
                .expect_sequence(0)
                .build()
                .expect("valid"),
        ])
        .await
        .expect("unique constraints and an expected sequence");
    let concurrent: Vec<_> = (0..16)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .push(vec![
                        command(&format!("c{}", n % 4)).build().expect("valid"),
                    ])
                    .await
            })
        })
        .collect();
    for push in concurrent {
        push.await.expect("joins").expect("a concurrent push");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_role_cannot_tamper_with_events_or_the_schema() {
    let database = TestDatabase::create().await;
    let store = database.restricted_store();
    every_push_path_works(&store).await;

    let pool = store.pools().query().clone();
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .expect("role");
    assert_eq!(role, "strata_writer");
    for tampering in [
        // Forging: an event with any sequence and position, below every checkpoint.
        "INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence, \
         event_type, revision, created_at, creator, owner, position, in_tx_order) \
         VALUES ('tenant', 'user', 'u1', 99, 'user.forged', 1, now(), 'x', 'org', 1, 0)",
        "INSERT INTO eventstore.unique_constraints VALUES ('tenant', 'username', 'mallory')",
        "DELETE FROM eventstore.unique_constraints",
        "SELECT * FROM eventstore.append_events(ARRAY[0], ARRAY['tenant'], ARRAY['user'], \
         ARRAY['u1'], ARRAY['user.forged'], ARRAY[1], ARRAY['x'], ARRAY['org'], ARRAY['{}'], \
         ARRAY[NULL::text], 0, 0, 1, now())",
        "SELECT eventstore.begin_push()",
        "UPDATE eventstore.events SET payload = '{}'",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events",
        "DROP TABLE eventstore.events",
        "ALTER TABLE eventstore.events DISABLE TRIGGER ALL",
        "SELECT eventstore.remove_instance('tenant')",
        "SELECT * FROM eventstore.set_up_roles('a', 'b')",
        "CREATE TABLE eventstore.sneaky (x int)",
        "DELETE FROM projections.registry WHERE false; DROP SCHEMA projections CASCADE",
    ] {
        let refused = sqlx::raw_sql(tampering).execute(&pool).await;
        let err = refused.expect_err(tampering);
        assert!(
            err.to_string().contains("permission denied")
                || err.to_string().contains("must be owner"),
            "{tampering}: {err}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 20);

    // The administrative path needs the migrator (here: the superuser).
    let admin = database.store();
    let removed = admin
        .remove_instance(&InstanceId::new("tenant").expect("id"))
        .await
        .expect("remove");
    assert_eq!(removed, 20);
}

/// A push must be its transaction's first write: an id taken before the events table's lock could
/// let a reader's horizon pass the push's position before its events exist.
#[tokio::test]
async fn a_push_refuses_a_transaction_that_wrote_before_it() {
    let database = TestDatabase::create().await;
    let pool = database.pool(1);
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("CREATE TEMPORARY TABLE scratch (x int)")
        .execute(&mut *tx)
        .await
        .expect("scratch");
    sqlx::query("INSERT INTO scratch VALUES (1)")
        .execute(&mut *tx)
        .await
        .expect("a write");
    let refused = sqlx::query(
        "SELECT * FROM eventstore.push_one('tenant', 'user', 'u1', 'user.added', 1, 'c', 'o', '{}', NULL)",
    )
    .execute(&mut *tx)
    .await
    .expect_err("refused");
    assert!(
        refused
            .to_string()
            .contains("first write of its transaction"),
        "{refused}"
    );
    drop(tx);
    // Two pushes in one transaction would share a position and repeat in_tx_order.
    let mut tx = pool.begin().await.expect("begin");
    let push = "SELECT * FROM eventstore.push_one('tenant', 'user', 'u1', 'user.added', 1, 'c', 'o', '{}', NULL)";
    sqlx::query(push)
        .execute(&mut *tx)
        .await
        .expect("the first push");
    let twice = sqlx::query(push)
        .execute(&mut *tx)
        .await
        .expect_err("refused");
    assert!(twice.to_string().contains("first write"), "{twice}");
}

/// Drops `role` from the server once the test is done with it (roles outlive databases).
async fn drop_role(database: &TestDatabase, role: &str) {
    let pool = database.pool(1);
    sqlx::raw_sql(&format!(r#"DROP OWNED BY "{role}"; DROP ROLE "{role}""#))
        .execute(&pool)
        .await
        .expect("drop the test role");
}

/// `migrate` creates no role; `set_up_roles` creates the named ones (or reuses and says so),
/// grants them their rights, and moves the rights when a kind is given another role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_exist_only_when_set_up_and_follow_their_names() {
    let roles_on_server = |pool: sqlx::PgPool| async move {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles")
            .fetch_one(&pool)
            .await
            .expect("roles");
        count
    };
    let database = TestDatabase::create_empty().await;
    let pool = database.pool(2);
    let before = roles_on_server(pool.clone()).await;
    strata_postgres::migrate(&pool).await.expect("migrate");
    assert_eq!(
        roles_on_server(pool.clone()).await,
        before,
        "migrate created roles"
    );

    let suffix = format!("{}_{}", std::process::id(), before);
    let names = RoleNames {
        writer: format!("test_writer_{suffix}"),
        migrator: format!("test_migrator_{suffix}"),
    };
    let set_up = strata_postgres::admin::set_up_roles(&pool, &names)
        .await
        .expect("set up");
    assert_eq!(set_up.len(), 2);
    assert!(set_up.iter().all(|role| role.created), "{set_up:?}");
    assert_eq!(set_up[0].kind, RoleKind::Writer);
    let again = strata_postgres::admin::set_up_roles(&pool, &names)
        .await
        .expect("again");
    assert!(again.iter().all(|role| !role.created), "{again:?}");
    let bad = strata_postgres::admin::set_up_roles(
        &pool,
        &RoleNames {
            writer: "Bad Name".into(),
            migrator: names.migrator.clone(),
        },
    )
    .await
    .expect_err("refused");
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);

    // The writer pushes and cannot forge.
    let as_role = |role: String| {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let role = role.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *conn, format!(r#"SET ROLE "{role}""#).as_str())
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(database.options.clone())
    };
    let writer = as_role(names.writer.clone());
    sqlx::query(
        "SELECT * FROM eventstore.push_one('t', 'user', 'u1', 'user.added', 1, 'c', 'o', '{}', NULL)",
    )
    .execute(&writer)
    .await
    .expect("the writer pushes");
    assert!(
        sqlx::query("INSERT INTO eventstore.unique_constraints VALUES ('t', 'x', 'y')")
            .execute(&writer)
            .await
            .is_err()
    );

    // Another writer takes over: the old one loses its rights here.
    let renamed = RoleNames {
        writer: format!("test_writer2_{suffix}"),
        migrator: names.migrator.clone(),
    };
    strata_postgres::admin::set_up_roles(&pool, &renamed)
        .await
        .expect("rename");
    writer.close().await;
    let old_writer = as_role(names.writer.clone());
    let refused = sqlx::query("SELECT count(*) FROM eventstore.events")
        .execute(&old_writer)
        .await
        .expect_err("the old writer lost its rights");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    old_writer.close().await;
    let new_writer = as_role(renamed.writer.clone());
    sqlx::query("SELECT count(*) FROM eventstore.events")
        .execute(&new_writer)
        .await
        .expect("the new writer reads");
    new_writer.close().await;

    // Tables added later reach the roles through the next migrate.
    sqlx::query("CREATE TABLE projections.later (x int)")
        .execute(&pool)
        .await
        .expect("a later table");
    strata_postgres::migrate(&pool).await.expect("migrate");
    let granted: bool =
        sqlx::query_scalar("SELECT has_table_privilege($1, 'projections.later', 'INSERT')")
            .bind(&renamed.writer)
            .fetch_one(&pool)
            .await
            .expect("privilege");
    assert!(granted);

    for role in [&names.writer, &renamed.writer, &names.migrator] {
        drop_role(&database, role).await;
    }
}
