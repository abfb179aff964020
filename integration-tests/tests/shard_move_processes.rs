//! Moving an instance while another process, with its own pools and a directory it has not
//! reloaded, pushes to it: the old shard refuses those pushes (`Error::InstanceMoved`, nothing
//! stored), the process pushes again on the new shard once it reloads, and a push racing the move
//! is either copied to the new shard or refused, never left behind on the old one only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation is a failed test.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_event::{Command, Event, InstanceId};
use strata_integration_tests::{TestDatabase, ThrowawayServer};
use strata_postgres::PgStore;
use strata_postgres::admin::{
    ArchiveSelection, RestoreSelection, archive_batch, restore_batch, start_archive_run,
    start_restore_run,
};
use strata_postgres::moved_instances::{self, MoveState};
use strata_query::Query;
use strata_shard::{Fallback, MoveOptions, ShardName, ShardedStore, persisted};
use strata_store::{Error, ErrorKind, EventStore};

fn credited(instance: &str, aggregate: usize) -> Command {
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

fn id(name: &str) -> InstanceId {
    InstanceId::new(name).unwrap()
}

/// Two shards on two servers, and two "processes" over them: each its own `ShardedStore` with its
/// own `PgStore` pools, both placing `moving` on shard one.
struct TwoProcesses {
    one_db: TestDatabase,
    two_db: TestDatabase,
    one: ShardName,
    two: ShardName,
    a: ShardedStore<PgStore>,
    b: ShardedStore<PgStore>,
}

async fn two_processes() -> TwoProcesses {
    let one_db = TestDatabase::create().await;
    let two_db = TestDatabase::create_on(&ThrowawayServer::shared().url()).await;
    let (one, two) = (
        ShardName::new("one").unwrap(),
        ShardName::new("two").unwrap(),
    );
    let process = || {
        ShardedStore::new(
            vec![(one.clone(), one_db.store()), (two.clone(), two_db.store())],
            Fallback::Refuse,
        )
        .unwrap()
    };
    let (a, b) = (process(), process());
    for store in [&a, &b] {
        store.assign(id("moving"), &one).await.unwrap();
    }
    TwoProcesses {
        one_db,
        two_db,
        one,
        two,
        a,
        b,
    }
}

/// `(aggregate id, sequence)` of each of the instance's events on one database.
async fn stored(database: &TestDatabase, instance: &str) -> BTreeSet<(String, u64)> {
    let mine = Query::builder().instance(instance).build().unwrap();
    let events = database.store().query(&mine).await.unwrap();
    events
        .iter()
        .map(|e| (e.aggregate.aggregate_id.to_string(), e.sequence))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_process_is_refused_by_the_old_shard_and_pushes_on_the_new_one_after_reloading() {
    let TwoProcesses {
        one_db,
        two_db,
        one,
        two,
        a,
        b,
    } = two_processes().await;
    // The persisted directory lives on shard one's database; both processes route by it.
    let designated = one_db.store();
    persisted::create(&designated).await.unwrap();
    persisted::save(&designated, &id("moving"), &one)
        .await
        .unwrap();
    for _ in 0..5 {
        b.push(vec![credited("moving", 0), credited("moving", 1)])
            .await
            .unwrap();
    }
    let options = MoveOptions {
        directory: Some(designated.clone()),
        ..MoveOptions::default()
    };
    a.move_instance(&id("moving"), &two, options).await.unwrap();
    let marks = moved_instances::list(&one_db.store()).await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(
        (marks[0].moved_to.as_str(), marks[0].state),
        ("two", MoveState::Moved)
    );

    // B still places the instance on shard one. One command (eventstore.push_one), two commands
    // (eventstore.push) and a keyed push (its key's instance is the moved one) are all refused.
    let before = stored(&one_db, "moving").await;
    let key = strata_event::IdempotencyKey::new("moving", "k-1").unwrap();
    let refusals = [
        b.push(vec![credited("moving", 0)]).await.unwrap_err(),
        b.push(vec![credited("moving", 0), credited("moving", 2)])
            .await
            .unwrap_err(),
        b.push_idempotent(&key, vec![credited("moving", 3)])
            .await
            .unwrap_err(),
    ];
    for err in refusals {
        assert_eq!(err.kind(), ErrorKind::InstanceMoved, "{err:?}");
        assert_eq!(ErrorKind::InstanceMoved.as_str(), "instance_moved");
        let Error::InstanceMoved { instance_id, to } = err else {
            unreachable!("the kind says so")
        };
        assert_eq!((instance_id.as_str(), to.as_str()), ("moving", "two"));
    }
    assert_eq!(
        stored(&one_db, "moving").await,
        before,
        "a refused push stored something on the old shard"
    );

    // Once B reloads, its push goes to shard two and lands after the copied history.
    persisted::reload(&b, &designated).await.unwrap();
    let pushed = b.push(vec![credited("moving", 0)]).await.unwrap();
    assert_eq!(pushed[0].sequence, 6);
    assert!(stored(&two_db, "moving").await.contains(&("a-0".into(), 6)));
    assert_eq!(stored(&one_db, "moving").await, before);

    // Moving it back clears shard one's mark: the instance is at home there again, and shard two
    // now refuses it.
    a.move_instance(&id("moving"), &one, MoveOptions::default())
        .await
        .unwrap();
    let back = a.push(vec![credited("moving", 0)]).await.unwrap();
    assert_eq!(back[0].sequence, 7);
    assert!(
        moved_instances::list(&one_db.store())
            .await
            .unwrap()
            .is_empty()
    );
    let err = two_db
        .store()
        .push(vec![credited("moving", 0)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InstanceMoved, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_a_move_from_a_stale_process_are_copied_or_refused_never_left_behind() {
    let TwoProcesses {
        one_db,
        two_db,
        two,
        a,
        b,
        ..
    } = two_processes().await;
    for _ in 0..20 {
        let batch: Vec<Command> = (0..8).map(|n| credited("moving", n)).collect();
        a.push(batch).await.unwrap();
    }

    // B's writers never reload: before the move their pushes are stored on shard one, from the
    // freeze on they are refused there. Half push one command, half two.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4_usize {
        let (b, stop) = (b.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let (mut stored, mut refused): (Vec<Event>, usize) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let aggregate = (i * 4 + writer) % 8;
                let commands = match writer % 2 {
                    0 => vec![credited("moving", aggregate)],
                    _ => vec![
                        credited("moving", aggregate),
                        credited("moving", (aggregate + 1) % 8),
                    ],
                };
                match b.push(commands).await {
                    Ok(events) => stored.extend(events),
                    Err(err) if err.kind() == ErrorKind::InstanceMoved => refused += 1,
                    Err(err) => panic!("a push failed otherwise: {err:?}"),
                }
                i += 1;
            }
            (stored, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let options = MoveOptions {
        batch: 50,
        freeze_below: 20,
        ..MoveOptions::default()
    };
    a.move_instance(&id("moving"), &two, options).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut stored_by_b, mut refused) = (Vec::new(), 0);
    for writer in writers {
        let (events, refusals) = writer.await.unwrap();
        stored_by_b.extend(events);
        refused += refusals;
    }
    assert!(stored_by_b.len() > 10, "the writers barely ran");

    // Everything on the old shard was copied: nothing is there only. Every push B saw succeed is
    // on the new shard with its sequence.
    let (source, destination) = (
        stored(&one_db, "moving").await,
        stored(&two_db, "moving").await,
    );
    let left_behind: Vec<_> = source.difference(&destination).collect();
    assert!(
        left_behind.is_empty(),
        "{} events stored on the old shard only, e.g. {:?}",
        left_behind.len(),
        left_behind.first()
    );
    for event in &stored_by_b {
        let key = (event.aggregate.aggregate_id.to_string(), event.sequence);
        assert!(destination.contains(&key), "{key:?} was lost");
    }
    assert_eq!(source.len(), 160 + stored_by_b.len(), "lost or doubled");
    assert!(refused > 0, "no push reached the old shard after the move");
}

/// A move refuses what it could not carry whole: an instance with archived events (the copy
/// reads the hot table only), and a move by a process whose directory still places the instance
/// on a shard it already moved away from (that shard holds a stale copy). Neither changes a mark
/// or the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_refuses_archived_history_and_a_stale_source() {
    let TwoProcesses {
        one_db,
        one,
        two,
        a,
        b,
        ..
    } = two_processes().await;
    for aggregate in 0..3 {
        a.push(vec![credited("moving", aggregate)]).await.unwrap();
    }

    // Its history in the archive, through `strata archive`'s own functions.
    let pool = one_db.pool(1);
    let archive = ArchiveSelection {
        instance: id("moving"),
        aggregate_types: Vec::new(),
        closing_event_types: Vec::new(),
        horizon: chrono::Utc::now() + chrono::Duration::milliseconds(1),
    };
    let run = start_archive_run(&pool, &archive, 100, "test")
        .await
        .unwrap();
    while !archive_batch(&pool, &run).await.unwrap().done {}
    let err = a
        .move_instance(&id("moving"), &two, MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert!(err.to_string().contains("archived"), "{err}");
    assert!(
        moved_instances::list(&one_db.store())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.directory().shard_of(&id("moving")).unwrap(), &one);

    // Back in the hot table, the move goes through.
    let restore = RestoreSelection {
        instance: id("moving"),
        aggregate_types: Vec::new(),
        aggregate_id: None,
    };
    let run = start_restore_run(&pool, &restore, 100, "test")
        .await
        .unwrap();
    while !restore_batch(&pool, &run).await.unwrap().done {}
    a.move_instance(&id("moving"), &two, MoveOptions::default())
        .await
        .unwrap();

    // B never heard of it and tries the same move from shard one: refused by the mark there.
    let err = b
        .move_instance(&id("moving"), &two, MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert!(err.to_string().contains("already moved away"), "{err}");
    let marks = moved_instances::list(&one_db.store()).await.unwrap();
    assert_eq!(
        marks.iter().map(|m| m.state).collect::<Vec<_>>(),
        [MoveState::Moved],
        "the refused move left the completed one's mark as it was"
    );
}
