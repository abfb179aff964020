//! Moving an instance between two shards on two real servers while writers push to it and to
//! other instances: nothing lost, nothing doubled, every aggregate gap-free on the destination,
//! and the pushes that waited for the freeze stored on the new shard.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation is a failed test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_event::{Command, Event, InstanceId};
use strata_integration_tests::{TestDatabase, ThrowawayServer};
use strata_postgres::PgStore;
use strata_query::Query;
use strata_shard::{Fallback, MoveOptions, ShardName, ShardedStore};
use strata_store::{ErrorKind, EventStore};

fn added(instance: &str, aggregate: usize) -> Command {
    Command::builder(
        instance,
        "account",
        format!("a-{aggregate}"),
        "account.credited",
    )
    .payload(&serde_json::json!({ "n": aggregate }))
    .creator("writer")
    .owner("o")
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_moves_under_concurrent_writers_without_losing_or_doubling_events() {
    let one_db = TestDatabase::create().await;
    let two_db = TestDatabase::create_on(&ThrowawayServer::shared().url()).await;
    let (one, two) = (
        ShardName::new("one").unwrap(),
        ShardName::new("two").unwrap(),
    );
    let store: ShardedStore<PgStore> = ShardedStore::new(
        vec![(one.clone(), one_db.store()), (two.clone(), two_db.store())],
        Fallback::Refuse,
    )
    .unwrap();
    let id = |name: &str| InstanceId::new(name).unwrap();
    store.assign(id("moving"), &one).await.unwrap();
    store.assign(id("staying"), &one).await.unwrap();
    store.assign(id("elsewhere"), &two).await.unwrap();
    // History to copy before the writers start: 400 events over 8 aggregates.
    for _ in 0..50 {
        let batch: Vec<Command> = (0..8).map(|a| added("moving", a)).collect();
        store.push(batch).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (instance, writer) in [
        ("moving", 0),
        ("moving", 1),
        ("staying", 0),
        ("elsewhere", 0),
    ] {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut stored: Vec<Event> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let aggregate = (i * 2 + writer) % 8;
                let events = store.push(vec![added(instance, aggregate)]).await;
                stored.extend(events.expect("no push fails during a move"));
                i += 1;
            }
            (instance, stored)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let options = MoveOptions {
        batch: 50,
        freeze_below: 20,
        ..MoveOptions::default()
    };
    let moved = store
        .move_instance(&id("moving"), &two, options)
        .await
        .unwrap();
    // Writers keep going on the new shard for a while, then stop.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut pushed: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for writer in writers {
        let (instance, events) = writer.await.unwrap();
        pushed.entry(instance).or_default().extend(events);
    }
    assert_eq!(moved.from, one);
    assert_eq!(store.directory().shard_of(&id("moving")).unwrap(), &two);

    // The destination holds every event: the history and every push that succeeded, once each,
    // every aggregate numbered 1, 2, 3… without a gap.
    let only_moving = Query::builder().instance("moving").build().unwrap();
    let destination = two_db.store();
    let copied = destination.query(&only_moving).await.unwrap();
    let moving_pushes = &pushed["moving"];
    assert!(moving_pushes.len() > 10, "the writers barely ran");
    assert_eq!(
        copied.len(),
        400 + moving_pushes.len(),
        "lost or doubled events"
    );
    let mut sequences: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &copied {
        sequences
            .entry(event.aggregate.aggregate_id.to_string())
            .or_default()
            .push(event.sequence);
    }
    for (aggregate, seen) in &sequences {
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        assert_eq!(
            seen, &expected,
            "{aggregate} is not gap-free on the destination"
        );
    }
    // Every push that returned is on the destination with its sequence; those after the switch
    // (including the ones that waited for the freeze) exist only there.
    let on_destination: std::collections::HashSet<(String, u64)> = copied
        .iter()
        .map(|e| (e.aggregate.aggregate_id.to_string(), e.sequence))
        .collect();
    for event in moving_pushes {
        let key = (event.aggregate.aggregate_id.to_string(), event.sequence);
        assert!(on_destination.contains(&key), "{key:?} was lost");
    }
    let left_on_source = one_db.store().query(&only_moving).await.unwrap().len();
    assert!(
        left_on_source < copied.len(),
        "no push reached the new shard after the switch"
    );
    assert_eq!(
        moved.events as usize, left_on_source,
        "verified what the source had at the switch"
    );
    // Reads through the sharded store see the moved instance on its new shard.
    assert_eq!(
        store.count(&only_moving).await.unwrap(),
        copied.len() as u64
    );
    // The other instances were never touched.
    for instance in ["staying", "elsewhere"] {
        let theirs = Query::builder().instance(instance).build().unwrap();
        assert_eq!(
            store.count(&theirs).await.unwrap() as usize,
            pushed[instance].len()
        );
    }
    // Moving it to where it is, or to a shard that does not exist, is refused.
    let err = store
        .move_instance(&id("moving"), &two, MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let nowhere = ShardName::new("three").unwrap();
    let err = store
        .move_instance(&id("moving"), &nowhere, MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
