//! `strata mirror` end to end: idempotent re-runs, resuming after an abrupt exit, unique
//! constraints, and side-effect projections not replayed on the destination.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_event::{Command, Event, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{ProjectionBackend, Reads, Registration};
use strata_query::Query;
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata, strata_with_env, url};

/// Pushes `count` events spread over two instances and a few aggregates, in pushes of 1 to 3.
async fn seed(store: &PgStore, count: usize, start: usize) {
    let mut pushed = 0;
    while pushed < count {
        let size = (1 + (start + pushed) % 3).min(count - pushed);
        let commands: Vec<Command> = (0..size)
            .map(|i| {
                let n = start + pushed + i;
                let instance = if n.is_multiple_of(2) {
                    "tenant-a"
                } else {
                    "tenant-b"
                };
                Command::builder(instance, "user", format!("u-{}", n % 4), "user.changed")
                    .payload(&serde_json::json!({ "n": n }))
                    .creator("seed")
                    .owner("org-1")
                    .build()
                    .unwrap()
            })
            .collect();
        store.push(commands).await.unwrap();
        pushed += size;
    }
}

async fn all_events(store: &PgStore) -> Vec<Event> {
    store.query(&Query::all()).await.unwrap()
}

/// The destination holds each source event exactly once, in source order, with everything but
/// the position kept.
fn assert_same_history(source: &[Event], destination: &[Event]) {
    let key = |e: &Event| {
        (
            e.aggregate.clone(),
            e.sequence,
            e.event_type.clone(),
            e.revision,
            e.created_at,
            e.creator.clone(),
            e.owner.clone(),
            e.raw_payload.to_value(),
        )
    };
    let source: Vec<_> = source.iter().map(key).collect();
    let copied: Vec<_> = destination.iter().map(key).collect();
    assert_eq!(copied.len(), source.len(), "same number of events");
    assert_eq!(copied, source, "same events, same order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_twice_copies_each_event_once_in_order() {
    let from = TestDatabase::create().await;
    let to = TestDatabase::create().await;
    let source = from.store();
    let destination = to.store();
    seed(&source, 25, 0).await;
    source
        .push(vec![
            Command::builder("tenant-a", "user", "u-9", "user.added")
                .add_unique_constraint("username", "alice", "taken")
                .creator("seed")
                .owner("org-1")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    // A projection with side effects, registered by the destination's runtime before the mirror.
    let backend = PgProjections::new(to.pool(2));
    backend
        .register(&Registration {
            name: "notifications",
            reads: &Reads::new().aggregate("user"),
            has_side_effects: true,
            consumer: None,
            stall_after: std::time::Duration::from_secs(60),
        })
        .await
        .unwrap();

    let (from_url, to_url) = (url(&from), url(&to));
    let args = [
        "mirror", "--from", &from_url, "--to", &to_url, "--batch", "7",
    ];
    let first = strata(&to_url, &args, None);
    assert_success(&first);
    assert!(
        stderr(&first).contains("copied 26 events in 4 batches"),
        "{}",
        stderr(&first)
    );
    let report = stdout(&first);
    assert!(report.contains("tenant-a  14"), "{report}");
    assert!(report.contains("tenant-b  12"), "{report}");
    assert_same_history(&all_events(&source).await, &all_events(&destination).await);

    // Destination positions are its own and strictly increasing in the copied order.
    let copied = all_events(&destination).await;
    assert!(copied.windows(2).all(|w| w[0].cursor() < w[1].cursor()));

    // Unique constraints travel: the destination refuses the taken username.
    let clash = Command::builder("tenant-a", "user", "u-10", "user.added")
        .add_unique_constraint("username", "alice", "taken")
        .creator("test")
        .owner("org-1")
        .build()
        .unwrap();
    assert!(destination.push(vec![clash]).await.is_err());

    // The side-effect projection starts at the mirrored head in both instances: nothing to replay.
    for instance in ["tenant-a", "tenant-b"] {
        let instance = InstanceId::new(instance).unwrap();
        let state = backend
            .state("notifications", &instance)
            .await
            .unwrap()
            .expect("a checkpoint was set");
        let head = copied
            .iter()
            .filter(|e| e.aggregate.instance_id == instance)
            .map(Event::cursor)
            .max()
            .unwrap();
        assert_eq!(state.cursor(), head);
    }

    // A second run copies nothing, a third after new events copies only those.
    let second = strata(&to_url, &args, None);
    assert_success(&second);
    assert!(
        stderr(&second).contains("copied 0 events in 0 batches"),
        "{}",
        stderr(&second)
    );
    seed(&source, 5, 100).await;
    let third = strata(&to_url, &args, None);
    assert_success(&third);
    assert!(
        stderr(&third).contains("copied 5 events"),
        "{}",
        stderr(&third)
    );
    assert_same_history(&all_events(&source).await, &all_events(&destination).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_mirror_resumes_without_duplicates() {
    let from = TestDatabase::create().await;
    let to = TestDatabase::create().await;
    let source = from.store();
    let destination = to.store();
    seed(&source, 40, 0).await;
    let (from_url, to_url) = (url(&from), url(&to));
    let args = [
        "mirror",
        "--from",
        &from_url,
        "--to",
        &to_url,
        "--batch",
        "6",
        "--instance",
        "tenant-a",
        "--instance",
        "tenant-b",
    ];

    // Dies abruptly right after its third batch committed, like a killed process.
    let killed = strata_with_env(
        &to_url,
        &args,
        None,
        &[("STRATA_MIRROR_ABORT_AFTER_BATCHES", "3")],
    );
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert_eq!(all_events(&destination).await.len(), 18);

    let resumed = strata(&to_url, &args, None);
    assert_success(&resumed);
    assert!(
        stderr(&resumed).contains("22 events to copy, resuming after 18 events"),
        "{}",
        stderr(&resumed)
    );
    assert_same_history(&all_events(&source).await, &all_events(&destination).await);

    // A different instance filter is a different mirror with its own progress: it re-reads the
    // source, but the events' key keeps every already-copied event from being stored twice.
    let overlapping = strata(
        &to_url,
        &[
            "mirror",
            "--from",
            &from_url,
            "--to",
            &to_url,
            "--instance",
            "tenant-a",
        ],
        None,
    );
    assert_success(&overlapping);
    assert!(
        stderr(&overlapping).contains("copied 0 events in 1 batches (20 already present)"),
        "{}",
        stderr(&overlapping)
    );
    assert_same_history(&all_events(&source).await, &all_events(&destination).await);
}

#[tokio::test]
async fn mirroring_into_the_same_database_is_refused() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let output = strata(&url, &["mirror", "--from", &url, "--to", &url], None);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("same database"),
        "{}",
        stderr(&output)
    );
}
