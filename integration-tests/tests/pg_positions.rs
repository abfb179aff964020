//! The position scheme's promise to readers: reading up to the commit horizon never skips an event,
//! however late its transaction commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use strata_event::{Command, Event, Position};
use strata_integration_tests::{TestDatabase, spawn_late_commit_writers};
use strata_query::Query;
use strata_store::EventStore;

const INSTANCE: &str = "gap-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reading_up_to_the_commit_horizon_never_skips_a_late_commit() {
    let database = TestDatabase::create().await;
    let store = Arc::new(database.store());
    let raw_pool = database.pool(4);
    let writing = Arc::new(AtomicBool::new(true));

    let (writers, total) = spawn_late_commit_writers(&raw_pool, &*store, INSTANCE, 15, 150);

    let reader = {
        let store = Arc::clone(&store);
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut seen: Vec<Event> = Vec::new();
            loop {
                let done = !writing.load(Ordering::SeqCst);
                // The horizon is read before the events: everything below it is final by then.
                let horizon = store.commit_horizon().await.expect("horizon");
                let mut query = Query::builder().instance(INSTANCE);
                if let Some(last) = seen.last() {
                    query = query.resume_after(last.cursor());
                }
                let batch = store
                    .query(&query.build().expect("query"))
                    .await
                    .expect("read");
                seen.extend(
                    batch
                        .into_iter()
                        .take_while(|event| event.position < horizon),
                );
                if done {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    for writer in writers {
        writer.await.expect("writer");
    }
    writing.store(false, Ordering::SeqCst);
    let seen = reader.await.expect("reader");

    let all = store
        .query(&Query::builder().instance(INSTANCE).build().expect("query"))
        .await
        .expect("read all");
    assert_eq!(all.len(), total);
    let seen_keys: Vec<_> = seen
        .iter()
        .map(|event| (event.aggregate.clone(), event.sequence))
        .collect();
    let all_keys: Vec<_> = all
        .iter()
        .map(|event| (event.aggregate.clone(), event.sequence))
        .collect();
    assert_eq!(
        seen_keys.len(),
        all_keys.len(),
        "the horizon reader skipped {} events",
        all_keys.len().saturating_sub(seen_keys.len())
    );
    assert_eq!(seen_keys, all_keys, "the reader saw events out of order");
}

#[tokio::test]
async fn positions_are_exact_decimals_from_the_database() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let command = Command::builder("i", "user", "a", "user.added")
        .creator("tester")
        .owner("org")
        .build()
        .expect("valid command");
    let pushed = store.push(vec![command]).await.expect("push");
    let pool = database.pool(1);
    let stored: String = sqlx::query_scalar("SELECT position::text FROM eventstore.events")
        .fetch_one(&pool)
        .await
        .expect("position");
    assert_eq!(pushed[0].position.to_string(), stored);
    let decimal: Decimal = stored.parse().expect("decimal");
    assert_eq!(
        pushed[0].position,
        Position::new(decimal).expect("position")
    );
}
