//! The notification handler of `examples/notifications`, killed halfway, again and again, while
//! users sign up: afterwards the exclusion query finds no user without an outcome, every user has
//! exactly one outcome event, and no user got a message twice.

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use strata_event::Command;
use strata_integration_tests::TestDatabase;
use strata_integration_tests::processes::{WorkerProcess, database_url};
use strata_query::Query;
use strata_store::EventStore;

const INSTANCE: &str = "acme";
const USERS: usize = 150;

fn spawn_worker(url: &str) -> WorkerProcess {
    WorkerProcess(
        Process::new(env!("CARGO_BIN_EXE_notifier_worker"))
            .env("DATABASE_URL", url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the notifier"),
    )
}

/// Users without an outcome: the seed's exclusion query.
async fn pending<S: EventStore>(store: &S) -> usize {
    let query = Query::builder()
        .instance(INSTANCE)
        .event_types(["user.signed_up"])
        .exclude_aggregates_with(["user"], ["notify.success", "notify.failed"])
        .build()
        .expect("valid query");
    store.query(&query).await.expect("query").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notifier_killed_halfway_notifies_everyone_once() {
    let database = TestDatabase::create().await;
    let pool = database.pool(2);
    sqlx::raw_sql(
        "CREATE TABLE notification_sends (id BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, \
             pid INTEGER NOT NULL); \
         CREATE TABLE notification_deliveries (message_id TEXT PRIMARY KEY, address TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("provider tables");
    let url = database_url(&database);
    let store = database.store();

    let mut worker = spawn_worker(&url);
    let mut kills = 0;
    for user in 0..USERS {
        let email = if user % 10 == 7 {
            format!("user{user}@bounce.invalid")
        } else {
            format!("user{user}@example.com")
        };
        let signed_up = Command::builder(INSTANCE, "user", format!("u{user}"), "user.signed_up")
            .payload(&serde_json::json!({ "email": email }))
            .creator("signup")
            .owner("org")
            .build()
            .expect("valid command");
        store.push(vec![signed_up]).await.expect("push");
        if user % 30 == 29 {
            // Halfway through whatever it is doing: SIGKILL, and a new process takes over.
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(worker);
            kills += 1;
            worker = spawn_worker(&url);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left = pending(&store).await;
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} users still without an outcome"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(worker);

    let outcomes = store
        .query(
            &Query::builder()
                .instance(INSTANCE)
                .event_types(["notify.success", "notify.failed"])
                .build()
                .expect("valid query"),
        )
        .await
        .expect("outcomes");
    let mut per_user = std::collections::HashMap::new();
    for outcome in &outcomes {
        *per_user
            .entry(outcome.aggregate.aggregate_id.as_str().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(per_user.len(), USERS, "every user has an outcome");
    assert!(
        per_user.values().all(|&count| count == 1),
        "no user has two outcomes"
    );
    let failed = outcomes
        .iter()
        .filter(|event| event.event_type.as_str() == "notify.failed")
        .count();
    assert_eq!(failed, USERS / 10, "the bounced addresses");
    let (sends, delivered, repeated): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM notification_sends), \
                (SELECT count(*) FROM notification_deliveries), \
                (SELECT count(*) FROM (SELECT message_id FROM notification_sends \
                 GROUP BY message_id HAVING count(*) > 1) AS twice)",
    )
    .fetch_one(&pool)
    .await
    .expect("provider log");
    assert_eq!(
        delivered as usize,
        USERS - USERS / 10,
        "each deliverable user got exactly one message"
    );
    eprintln!(
        "{kills} kills: {sends} sends for {USERS} users, {repeated} message(s) sent again after a \
         kill and deduplicated by the provider"
    );
}
