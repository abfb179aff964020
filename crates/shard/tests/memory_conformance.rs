//! The store conformance suite on a store of two in-memory shards, with the suite's instances
//! placed so that its multi-instance cases cross shards (`support/cases.rs`), and on a store of
//! one shard, which must pass every case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation is a failed test.

use strata_event::{Command, InstanceId};
use strata_query::Query;
use strata_shard::{Fallback, ShardName, ShardedStore};
use strata_store::conformance::SHORT_RETENTION;
use strata_store::{ErrorKind, EventStore, MemoryStore};

include!("support/cases.rs");

async fn two_shards(make: fn() -> MemoryStore) -> ShardedStore<MemoryStore> {
    let (one, two) = (
        ShardName::new("one").unwrap(),
        ShardName::new("two").unwrap(),
    );
    let store = ShardedStore::new(
        vec![(one.clone(), make()), (two.clone(), make())],
        Fallback::StableHash,
    )
    .unwrap();
    for (names, shard) in [(FIRST_SHARD, &one), (SECOND_SHARD, &two)] {
        for name in names {
            store
                .assign(InstanceId::new(*name).unwrap(), shard)
                .await
                .unwrap();
        }
    }
    store
}

fn expiring() -> MemoryStore {
    MemoryStore::with_idempotency_retention(SHORT_RETENTION)
}

mod two_memory_shards {
    use super::*;

    sharded_conformance_cases!(two_shards(MemoryStore::new), expiring: two_shards(expiring));
}

mod one_memory_shard {
    use super::*;

    async fn one_shard(make: fn() -> MemoryStore) -> ShardedStore<MemoryStore> {
        let only = ShardName::new("only").unwrap();
        ShardedStore::new(vec![(only, make())], Fallback::StableHash).unwrap()
    }

    strata_store::conformance_tests!(one_shard(MemoryStore::new), expiring: one_shard(expiring));
}

/// The refused case's replacement: the horizon is refused across shards, and each shard's own
/// horizon passes the events pushed there through the sharded store.
#[tokio::test]
async fn the_commit_horizon_is_per_shard() {
    let store = two_shards(MemoryStore::new).await;
    let err = store.commit_horizon().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let pushed = store
        .push(vec![
            Command::builder("instance-c", "user", "u1", "user.added")
                .creator("c")
                .owner("o")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let (name, shard) = store
        .shard_for(&InstanceId::new("instance-c").unwrap())
        .unwrap();
    assert_eq!(name.as_str(), "two");
    assert!(shard.commit_horizon().await.unwrap() > pushed[0].position);
    assert_eq!(shard.query(&Query::all()).await.unwrap(), pushed);
}

#[test]
fn every_store_case_runs_or_is_refused_on_purpose() {
    let suite = concat!(
        include_str!("../../store/src/conformance.rs"),
        include_str!("../../store/src/conformance/subscriptions.rs")
    );
    let listed = include_str!("support/cases.rs");
    let defined: Vec<&str> = suite
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split(['<', '(']).next())
        .collect();
    assert!(defined.len() > 30, "no cases found in the suite's source");
    for case in defined {
        let runs = listed.contains(&format!("{case},"));
        let refused = REFUSED_CASES.contains(&case);
        assert!(
            runs != refused,
            "{case} must either run or be refused on purpose"
        );
    }
}

/// A push across shards writes nothing anywhere and names the shards.
#[tokio::test]
async fn a_push_across_shards_is_refused_and_writes_nothing() {
    let store = two_shards(MemoryStore::new).await;
    let added = |instance: &str| {
        Command::builder(instance, "user", "u1", "user.added")
            .creator("c")
            .owner("o")
            .build()
            .unwrap()
    };
    let err = store
        .push(vec![added("instance-a"), added("instance-c")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let message = err.to_string();
    assert!(
        message.contains("shard one") && message.contains("shard two"),
        "{message}"
    );
    assert!(store.query(&Query::all()).await.unwrap().is_empty());
    let key = strata_event::IdempotencyKey::new("instance-c", "k").unwrap();
    let err = store
        .push_idempotent(&key, vec![added("instance-a")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(store.query(&Query::all()).await.unwrap().is_empty());
}

/// Reads spanning shards come back instance by instance (reversed when descending), with the
/// caller's offset and limit over that order; what compares positions is refused.
#[tokio::test]
async fn reads_across_shards_merge_per_instance_and_refuse_positions() {
    let store = two_shards(MemoryStore::new).await;
    let added = |instance: &str, id: &str| {
        Command::builder(instance, "user", id, "user.added")
            .creator("c")
            .owner("o")
            .build()
            .unwrap()
    };
    // Pushed so that position order and instance order disagree.
    for (instance, id) in [
        ("instance-c", "u1"),
        ("instance-a", "u1"),
        ("instance-c", "u2"),
    ] {
        store.push(vec![added(instance, id)]).await.unwrap();
    }
    let ids = |events: Vec<strata_event::Event>| -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{}/{}", e.aggregate.instance_id, e.aggregate.aggregate_id))
            .collect()
    };
    let both = || Query::builder().instances(["instance-c", "instance-a"]);
    let all = store.query(&both().build().unwrap()).await.unwrap();
    assert_eq!(
        ids(all),
        ["instance-a/u1", "instance-c/u1", "instance-c/u2"]
    );
    let newest = store
        .query(&both().descending().limit(2u32).build().unwrap())
        .await
        .unwrap();
    assert_eq!(ids(newest), ["instance-c/u2", "instance-c/u1"]);
    let paged = store
        .query(&both().offset(1u32).limit(1u32).build().unwrap())
        .await
        .unwrap();
    assert_eq!(ids(paged), ["instance-c/u1"]);
    assert_eq!(store.count(&both().build().unwrap()).await.unwrap(), 3);
    let everything = store.query(&Query::all()).await.unwrap();
    assert_eq!(everything.len(), 3);
    assert_eq!(everything[0].aggregate.instance_id, "instance-a");
    let first = store.query(&Query::all()).await.unwrap()[0].cursor();
    for refused in [
        both().resume_after(first).build().unwrap(),
        both().position_after(first.position).build().unwrap(),
    ] {
        let err = store.query(&refused).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    let err = store.latest_position(&Query::all()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = store
        .subscribe(&both().build().unwrap(), strata_store::StartFrom::Beginning)
        .await
        .expect_err("a subscription across shards is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(store.subscribe_pushes().is_none());
}

/// Assigning an instance with events to another shard would hide them: refused.
#[tokio::test]
async fn assigning_an_instance_with_events_elsewhere_is_refused() {
    let store = two_shards(MemoryStore::new).await;
    store
        .push(vec![
            Command::builder("instance-a", "user", "u1", "user.added")
                .creator("c")
                .owner("o")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let instance = InstanceId::new("instance-a").unwrap();
    let two = ShardName::new("two").unwrap();
    let err = store.assign(instance.clone(), &two).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let one = ShardName::new("one").unwrap();
    store.assign(instance, &one).await.unwrap();
}
