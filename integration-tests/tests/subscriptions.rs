//! Subscriptions on PostgreSQL, beyond the conformance suite: late commits, other processes'
//! pushes heard through `LISTEN`, and the connection a dropped subscription gives back.

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_event::{Command, Event};
use strata_integration_tests::{TestDatabase, spawn_late_commit_writers};
use strata_query::Query;
use strata_store::{EventStore, StartFrom, SubscribeOptions, Subscription};

const INSTANCE: &str = "subscribed";

fn instance_query() -> Query {
    Query::builder()
        .instance(INSTANCE)
        .build()
        .expect("valid query")
}

fn added(id: &str) -> Command {
    Command::builder(INSTANCE, "user", id, "user.added")
        .creator("tester")
        .owner("org")
        .build()
        .expect("valid command")
}

async fn take(subscription: &mut Subscription, count: usize, within: Duration) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    let deadline = Instant::now() + within;
    while events.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events arrived", events.len()))
            .expect("a live subscription does not end")
            .expect("no read fails");
        events.push(next);
    }
    events
}

/// Pushes whose transactions stay open while later ones commit are delivered, in order, by a
/// subscription that was live the whole time: nothing is skipped, nothing repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_never_skips_a_late_commit() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let raw_pool = database.pool(4);
    let mut subscription = store
        .subscribe(&instance_query(), StartFrom::Beginning)
        .await
        .expect("subscribe");

    let (writers, total) = spawn_late_commit_writers(&raw_pool, &store, INSTANCE, 12, 120);
    let delivered = tokio::spawn(async move {
        let delivered = take(&mut subscription, total, Duration::from_secs(60)).await;
        (delivered, subscription)
    });
    for writer in writers {
        writer.await.expect("writer");
    }
    let (delivered, mut subscription) = delivered.await.expect("reader");
    let stored = store.query(&instance_query()).await.expect("read all");
    assert_eq!(stored.len(), total);
    assert_eq!(
        delivered, stored,
        "the subscription skipped, repeated or reordered events"
    );
    let more = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(more.is_err(), "an event was delivered twice: {more:?}");
}

/// A push by another process (another store, with its own connections) wakes a subscription
/// through `LISTEN`, long before its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_push_is_heard_through_listen() {
    let database = TestDatabase::create().await;
    let listening = database.store();
    let other_process = database.store();
    let options = SubscribeOptions {
        poll_every: Duration::from_secs(3600),
        ..SubscribeOptions::default()
    };
    let mut subscription = listening
        .subscribe_with(&instance_query(), StartFrom::Now, options)
        .await
        .expect("subscribe");
    // The listener connects in the background; give it a moment so the first notice is not sent
    // before anyone listens (a lost notice would only be found by the hour-long poll).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..5 {
        let pushed = other_process
            .push(vec![added(&format!("remote-{round}"))])
            .await
            .expect("push");
        let delivered = take(&mut subscription, 1, Duration::from_secs(5)).await;
        assert_eq!(delivered, pushed);
    }
}

/// Dropping a subscription in the middle of a long catch-up gives its connection back to the
/// pool, although its reader was blocked handing over events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscription_gives_its_connection_back() {
    let database = TestDatabase::create().await;
    let store = database.store();
    for chunk in 0..10 {
        let commands = (0..500)
            .map(|n| added(&format!("bulk-{chunk}-{n}")))
            .collect();
        store.push(commands).await.expect("push");
    }
    let options = SubscribeOptions {
        buffer: 1,
        ..SubscribeOptions::default()
    };
    let mut subscription = store
        .subscribe_with(&instance_query(), StartFrom::Beginning, options)
        .await
        .expect("subscribe");
    take(&mut subscription, 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pool = store.pools().query();
    let in_use = pool.size() as usize - pool.num_idle();
    assert!(
        in_use >= 1,
        "a subscription blocked mid-read should hold its connection"
    );
    drop(subscription);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let in_use = pool.size() as usize - pool.num_idle();
        if in_use == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{in_use} query connections still in use 5 s after the subscription was dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
