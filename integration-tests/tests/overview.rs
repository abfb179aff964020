//! `strata_postgres::admin::pair_lags` and `events_stored_since`, what `strata serve` samples:
//! every pair's lag from one statement, honouring event-type filters, checkpoints and reads that
//! name one aggregate type twice; and the events stored between two horizons, each counted once.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use strata_event::{Command, Event};
use strata_integration_tests::TestDatabase;
use strata_postgres::admin::{events_stored_since, pair_lags};
use strata_store::EventStore;

async fn push(
    store: &strata_postgres::PgStore,
    aggregate: (&str, &str),
    event_type: &str,
) -> Event {
    let command = Command::builder("t-1", aggregate.0, aggregate.1, event_type)
        .creator("test")
        .owner("org")
        .build()
        .unwrap();
    store.push(vec![command]).await.unwrap().remove(0)
}

async fn register(pool: &sqlx::PgPool, name: &str, reads: serde_json::Value) {
    sqlx::query(
        "INSERT INTO projections.registry \
         (projection_name, reads, has_side_effects, registered_at, consumer_name, stall_after_ms) \
         VALUES ($1, $2, false, now(), NULL, 60000)",
    )
    .bind(name)
    .bind(reads)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lags_count_what_each_pair_reads_past_its_checkpoint_once() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(2);
    push(&store, ("user", "u-1"), "user.added").await;
    let second = push(&store, ("user", "u-1"), "user.changed").await;
    push(&store, ("user", "u-1"), "user.removed").await;
    push(&store, ("group", "g-1"), "group.added").await;

    register(
        &pool,
        "changes",
        serde_json::json!([["user", ["user.changed"]]]),
    )
    .await;
    // `user` twice: some event types, and every type. Each event counts once.
    register(
        &pool,
        "overlapping",
        serde_json::json!([["user", ["user.added"]], ["user", []]]),
    )
    .await;
    register(&pool, "groups", serde_json::json!([["group", []]])).await;
    register(&pool, "users", serde_json::json!([["user", []]])).await;
    // `users` has applied the first two user events.
    sqlx::query(
        "INSERT INTO projections.current_states (instance_id, projection_name, position, \
         in_tx_order, aggregate_type, aggregate_id, sequence, updated_at) \
         VALUES ('t-1', 'users', $1, $2, 'user', 'u-1', 2, now())",
    )
    .bind(second.position.as_decimal())
    .bind(second.in_tx_order as i32)
    .execute(&pool)
    .await
    .unwrap();
    // `groups` has applied its one event: nothing behind, and no count needed.
    let group_head: (rust_decimal::Decimal, i32) = sqlx::query_as(
        "SELECT position, in_tx_order FROM eventstore.events WHERE aggregate_type = 'group'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO projections.current_states (instance_id, projection_name, position, \
         in_tx_order, aggregate_type, aggregate_id, sequence, updated_at) \
         VALUES ('t-1', 'groups', $1, $2, 'group', 'g-1', 1, now())",
    )
    .bind(group_head.0)
    .bind(group_head.1)
    .execute(&pool)
    .await
    .unwrap();

    let mut lags: Vec<(String, u64, bool)> = pair_lags(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|lag| {
            (
                lag.projection,
                lag.events_behind,
                lag.oldest_behind.is_some(),
            )
        })
        .collect();
    lags.sort();
    assert_eq!(
        lags,
        vec![
            ("changes".to_owned(), 1, true),
            ("groups".to_owned(), 0, false),
            ("overlapping".to_owned(), 3, true),
            ("users".to_owned(), 1, true),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_between_horizons_are_counted_once() {
    let database = TestDatabase::create().await;
    let store = database.store();
    push(&store, ("user", "u-1"), "user.added").await;
    let first = events_stored_since(&store, None).await.unwrap();
    assert_eq!(
        first.events, 0,
        "the first call only fixes where counting starts"
    );
    push(&store, ("user", "u-1"), "user.changed").await;
    push(&store, ("user", "u-2"), "user.added").await;
    let second = events_stored_since(&store, Some(&first.horizon))
        .await
        .unwrap();
    assert_eq!(second.events, 2);
    let third = events_stored_since(&store, Some(&second.horizon))
        .await
        .unwrap();
    assert_eq!(third.events, 0);
}
