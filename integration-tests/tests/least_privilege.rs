//! The restricted role can push, read and run projections, and cannot tamper with events.

use strata_event::{Command, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_store::EventStore;

#[tokio::test]
async fn the_writer_role_cannot_tamper_with_events_or_the_schema() {
    let database = TestDatabase::create().await;
    let store = database.restricted_store();
    let command = Command::builder("tenant", "user", "u1", "user.added")
        .creator("writer")
        .owner("org")
        .add_unique_constraint("username", "alice", "taken")
        .build()
        .expect("valid command");
    store
        .push(vec![command])
        .await
        .expect("the writer can push");

    let pool = store.pools().query().clone();
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .expect("role");
    assert_eq!(role, "strata_writer");
    for tampering in [
        "UPDATE eventstore.events SET payload = '{}'",
        "DELETE FROM eventstore.events",
        "TRUNCATE eventstore.events",
        "DROP TABLE eventstore.events",
        "ALTER TABLE eventstore.events DISABLE TRIGGER ALL",
        "SELECT eventstore.remove_instance('tenant')",
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
    assert_eq!(count, 1);

    // The administrative path needs the migrator (here: the superuser).
    let admin = database.store();
    let removed = admin
        .remove_instance(&InstanceId::new("tenant").expect("id"))
        .await
        .expect("remove");
    assert_eq!(removed, 1);
}
