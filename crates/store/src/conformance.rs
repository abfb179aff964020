//! The conformance suite: every semantic of the crate docs as a test any backend can run against
//! itself.
//!
//! Each case takes a fresh, empty store and panics (fails the test) when the backend breaks a rule.
//! Run them all with [`conformance_tests!`](crate::conformance_tests), which writes one `#[tokio::test]`
//! per case around a factory expression:
//!
//! ```text
//! strata_store::conformance_tests!(
//!     async { strata_store::MemoryStore::new() },
//!     expiring: async {
//!         strata_store::MemoryStore::with_idempotency_retention(
//!             strata_store::conformance::SHORT_RETENTION,
//!         )
//!     },
//! );
//! ```
//!
//! The second factory yields a store that keeps idempotency keys for [`SHORT_RETENTION`] only,
//! for the cases that watch keys expire.
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation here is a failed test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_event::{
    AggregateRef, Command, CommandBuilder, Cursor, Event, IdempotencyKey, Metadata, Position,
};
use strata_query::Query;

use crate::{Error, ErrorKind, EventStore};

mod subscriptions;

pub use self::subscriptions::*;

/// Writes one `#[tokio::test]` per conformance case (a unit test fails when a case is missing from
/// the list below). `$make` is an expression evaluating to a future
/// that yields a fresh store; it is evaluated once per test. `$expiring` does the same for a store
/// that keeps idempotency keys for [`SHORT_RETENTION`](crate::conformance::SHORT_RETENTION).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr, expiring: $expiring:expr $(,)?) => {
        $crate::conformance_tests!(@cases $expiring;
            idempotency_keys_expire,
        );
        $crate::conformance_tests!(@cases $make;
            push_returns_stored_events,
            empty_push_stores_nothing,
            sequences_are_gap_free_per_aggregate,
            multi_aggregate_push_is_atomic_on_conflict,
            expected_sequence_is_checked_before_the_push,
            unique_constraint_clash_writes_nothing,
            unique_constraints_remove_before_add,
            unique_constraints_are_scoped_by_instance,
            remove_all_unique_constraints_of_instance,
            duplicate_unique_add_in_one_push_is_refused,
            positions_give_a_total_order,
            queries_filter_order_limit_and_page,
            queries_never_cross_instances,
            cursors_resume_after_any_in_tx_order,
            latest_position_and_current_sequence,
            instance_heads_give_each_instance_its_latest_position,
            commit_horizon_is_past_every_visible_event,
            payloads_round_trip,
            oversized_push_is_refused,
            concurrent_pushes_to_one_aggregate,
            concurrent_overlapping_pushes_do_not_deadlock,
            bad_input_is_refused_and_changes_nothing,
            metadata_round_trips,
            queries_filter_by_correlation_id,
            invalid_metadata_is_refused_with_its_field,
            idempotent_retry_returns_the_first_events,
            idempotency_key_with_other_commands_is_refused,
            idempotency_keys_are_scoped_by_instance,
            failed_idempotent_push_records_no_key,
            empty_idempotent_push_records_nothing,
            concurrent_idempotent_retries_store_one_copy,
            idempotent_pushes_grouped_with_others,
            subscription_catches_up_then_follows_live,
            subscription_resumes_after_a_cursor_or_from_now,
            subscription_filters_like_its_query,
            subscription_refuses_queries_it_cannot_follow,
            subscription_with_an_upper_bound_ends,
            subscription_under_concurrent_writers_misses_nothing,
            subscription_waits_for_a_slow_reader,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $make.await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

const INSTANCE: &str = "instance-a";

fn command(aggregate_id: &str, event_type: &str) -> CommandBuilder {
    Command::builder(INSTANCE, "user", aggregate_id, event_type)
        .creator("tester")
        .owner("org")
}

fn aggregate(aggregate_id: &str) -> AggregateRef {
    AggregateRef::new(INSTANCE, "user", aggregate_id).unwrap()
}

async fn all_events<S: EventStore>(store: &S) -> Vec<Event> {
    store.query(&Query::all()).await.unwrap()
}

fn assert_total_order(events: &[Event]) {
    let cursors: Vec<Cursor> = events.iter().map(Event::cursor).collect();
    let mut sorted = cursors.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        cursors, sorted,
        "events are not in strict (position, in_tx_order) order"
    );
}

/// A push returns its events in command order with sequence, a shared position, `in_tx_order` and
/// `created_at`, and reading them back gives the same events.
pub async fn push_returns_stored_events<S: EventStore>(store: &S) {
    let stored = store
        .push(vec![
            command("u1", "user.added")
                .payload(&serde_json::json!({"name": "alice"}))
                .build()
                .unwrap(),
            command("u1", "user.email.changed")
                .revision(2)
                .build()
                .unwrap(),
            command("u2", "user.added").build().unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 1]
    );
    assert_eq!(
        stored.iter().map(|e| e.in_tx_order).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(stored.iter().all(|e| e.position == stored[0].position));
    assert!(stored[0].position > Position::ZERO);
    assert_eq!(stored[1].revision, 2);
    assert_eq!(stored[1].event_type, "user.email.changed");
    assert_eq!(stored[0].creator, "tester");
    assert_eq!(stored[0].owner, "org");
    let age = chrono::Utc::now() - stored[0].created_at;
    assert!(
        age.num_seconds().abs() < 60,
        "created_at is not now: {}",
        stored[0].created_at
    );
    assert_eq!(all_events(store).await, stored);
}

/// Pushing nothing succeeds and stores nothing.
pub async fn empty_push_stores_nothing<S: EventStore>(store: &S) {
    assert!(store.push(Vec::new()).await.unwrap().is_empty());
    assert!(all_events(store).await.is_empty());
}

/// Sequences continue across pushes without gaps, independently per aggregate.
pub async fn sequences_are_gap_free_per_aggregate<S: EventStore>(store: &S) {
    for round in 0..5 {
        let stored = store
            .push(vec![
                command("u1", "user.changed").build().unwrap(),
                command("u2", "user.changed").build().unwrap(),
                command("u1", "user.changed").build().unwrap(),
            ])
            .await
            .unwrap();
        assert_eq!(stored[0].sequence, round * 2 + 1);
        assert_eq!(stored[1].sequence, round + 1);
        assert_eq!(stored[2].sequence, round * 2 + 2);
    }
    let u1 = store
        .query(&Query::aggregate(&aggregate("u1")))
        .await
        .unwrap();
    assert_eq!(
        u1.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

/// A conflict on one aggregate fails the whole push, including the other aggregates' events.
pub async fn multi_aggregate_push_is_atomic_on_conflict<S: EventStore>(store: &S) {
    store
        .push(vec![command("u1", "user.added").build().unwrap()])
        .await
        .unwrap();
    let before = all_events(store).await;
    let err = store
        .push(vec![
            command("u2", "user.added").build().unwrap(),
            command("u1", "user.changed")
                .expect_sequence(0)
                .build()
                .unwrap(),
        ])
        .await
        .unwrap_err();
    match err {
        Error::Conflict {
            aggregate: agg,
            expected,
            actual,
        } => {
            assert_eq!(agg, aggregate("u1"));
            assert_eq!((expected, actual), (0, 1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        all_events(store).await,
        before,
        "a failed push wrote something"
    );
    assert_eq!(store.current_sequence(&aggregate("u2")).await.unwrap(), 0);
}

/// An expected sequence is compared with the aggregate's sequence before the push, for every
/// command of that aggregate in the push.
pub async fn expected_sequence_is_checked_before_the_push<S: EventStore>(store: &S) {
    let first = store
        .push(vec![
            command("u1", "user.added")
                .expect_sequence(0)
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(first[0].sequence, 1);
    let second = store
        .push(vec![
            command("u1", "user.changed")
                .expect_sequence(1)
                .build()
                .unwrap(),
            command("u1", "user.changed")
                .expect_sequence(1)
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [2, 3]
    );
    let stale = store
        .push(vec![
            command("u1", "user.changed")
                .expect_sequence(2)
                .build()
                .unwrap(),
        ])
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict);
    assert!(
        stale
            .to_string()
            .contains("expected sequence 2, but it is at 3"),
        "{stale}"
    );
    assert_eq!(store.current_sequence(&aggregate("u1")).await.unwrap(), 3);
}

/// A clashing unique constraint fails the push with the caller's message id; neither its events nor
/// its other constraint changes are written.
pub async fn unique_constraint_clash_writes_nothing<S: EventStore>(store: &S) {
    store
        .push(vec![
            command("u1", "user.added")
                .add_unique_constraint("username", "alice", "errors.username_taken")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let before = all_events(store).await;
    let err = store
        .push(vec![
            command("u2", "user.added")
                .add_unique_constraint("email", "bob@example.com", "errors.email_taken")
                .build()
                .unwrap(),
            command("u2", "user.renamed")
                .add_unique_constraint("username", "alice", "errors.username_taken")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap_err();
    match &err {
        Error::UniqueConstraintViolation {
            unique_type,
            value,
            error_message_id,
            instance_id,
        } => {
            assert_eq!(unique_type, "username");
            assert_eq!(value, "alice");
            assert_eq!(error_message_id, "errors.username_taken");
            assert_eq!(instance_id, INSTANCE);
        }
        other => panic!("expected a unique-constraint violation, got {other:?}"),
    }
    assert_eq!(all_events(store).await, before);
    // The e-mail constraint of the failed push must not have been kept: claiming it now works.
    store
        .push(vec![
            command("u3", "user.added")
                .add_unique_constraint("email", "bob@example.com", "errors.email_taken")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
}

/// Within a push, removals apply before additions: a value can be released and re-taken, and a
/// removed value is free for the next push.
pub async fn unique_constraints_remove_before_add<S: EventStore>(store: &S) {
    let take = |id: &str, name: &str| {
        command(id, "user.added")
            .add_unique_constraint("username", name, "taken")
            .build()
            .unwrap()
    };
    store.push(vec![take("u1", "alice")]).await.unwrap();
    // Add listed before remove in the same push still works: removals go first.
    store
        .push(vec![
            take("u1", "alice"),
            command("u1", "user.renamed")
                .remove_unique_constraint("username", "alice")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    store
        .push(vec![
            command("u1", "user.removed")
                .remove_unique_constraint("username", "alice")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    store.push(vec![take("u2", "alice")]).await.unwrap();
    let err = store.push(vec![take("u3", "alice")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation);
    // Releasing a value nobody holds is not an error.
    store
        .push(vec![
            command("u9", "user.removed")
                .remove_unique_constraint("username", "nobody")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
}

/// The same value may be taken once per instance.
pub async fn unique_constraints_are_scoped_by_instance<S: EventStore>(store: &S) {
    for instance in ["instance-a", "instance-b"] {
        store
            .push(vec![
                Command::builder(instance, "user", "u1", "user.added")
                    .creator("c")
                    .owner("o")
                    .add_unique_constraint("username", "alice", "taken")
                    .build()
                    .unwrap(),
            ])
            .await
            .unwrap();
    }
}

/// Removing all constraints of an instance frees its values and leaves other instances' alone.
pub async fn remove_all_unique_constraints_of_instance<S: EventStore>(store: &S) {
    let take = |instance: &str, name: &str| {
        Command::builder(instance, "user", name, "user.added")
            .creator("c")
            .owner("o")
            .add_unique_constraint("username", name, "taken")
            .build()
            .unwrap()
    };
    store
        .push(vec![
            take("instance-a", "alice"),
            take("instance-a", "bob"),
            take("instance-b", "alice"),
        ])
        .await
        .unwrap();
    store
        .push(vec![
            Command::builder("instance-a", "instance", "instance-a", "instance.removed")
                .creator("c")
                .owner("o")
                .remove_all_unique_constraints_of_instance()
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    store
        .push(vec![take("instance-a", "alice"), take("instance-a", "bob")])
        .await
        .unwrap();
    let err = store
        .push(vec![take("instance-b", "alice")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation);
}

/// Two additions of the same value in one push clash with each other.
pub async fn duplicate_unique_add_in_one_push_is_refused<S: EventStore>(store: &S) {
    let take = |id: &str| {
        command(id, "user.added")
            .add_unique_constraint("username", "alice", "taken")
            .build()
            .unwrap()
    };
    let err = store.push(vec![take("u1"), take("u2")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation);
    assert!(all_events(store).await.is_empty());
    store.push(vec![take("u1")]).await.unwrap();
}

/// `(position, in_tx_order)` strictly increases over the store; later pushes get later positions.
pub async fn positions_give_a_total_order<S: EventStore>(store: &S) {
    let mut last = Position::ZERO;
    for i in 0..10 {
        let stored = store
            .push(vec![
                command(&format!("u{i}"), "user.added").build().unwrap(),
                command(&format!("u{i}"), "user.changed").build().unwrap(),
            ])
            .await
            .unwrap();
        assert!(
            stored[0].position > last,
            "positions must grow between sequential pushes"
        );
        last = stored[0].position;
    }
    let events = all_events(store).await;
    assert_eq!(events.len(), 20);
    assert_total_order(&events);
}

/// Filters, both orders, limits, `position_after` and keyset pagination.
pub async fn queries_filter_order_limit_and_page<S: EventStore>(store: &S) {
    for i in 0..6 {
        let id = format!("u{}", i % 3);
        store
            .push(vec![
                command(
                    &id,
                    if i % 2 == 0 {
                        "user.added"
                    } else {
                        "user.changed"
                    },
                )
                .build()
                .unwrap(),
                Command::builder(INSTANCE, "org", "o1", "org.changed")
                    .creator("c")
                    .owner("o")
                    .build()
                    .unwrap(),
            ])
            .await
            .unwrap();
    }
    let all = all_events(store).await;
    assert_eq!(all.len(), 12);

    let users = Query::builder()
        .all_instances()
        .aggregate_types(["user"])
        .build()
        .unwrap();
    assert_eq!(store.query(&users).await.unwrap().len(), 6);

    let changed = Query::builder()
        .all_instances()
        .event_types(["user.changed", "org.changed"])
        .build()
        .unwrap();
    assert_eq!(store.query(&changed).await.unwrap().len(), 9);

    let u0 = Query::builder()
        .all_instances()
        .aggregate_types(["user"])
        .aggregate_ids(["u0", "u1"])
        .build()
        .unwrap();
    let got = store.query(&u0).await.unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|e| e.aggregate.aggregate_id != "u2"));

    let desc = store
        .query(
            &Query::builder()
                .all_instances()
                .descending()
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(desc, reversed);

    let limited = store
        .query(
            &Query::builder()
                .all_instances()
                .descending()
                .limit(3)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(limited, reversed[..3]);

    let after = Query::builder()
        .all_instances()
        .position_after(all[3].position)
        .build()
        .unwrap();
    let got = store.query(&after).await.unwrap();
    assert!(got.iter().all(|e| e.position > all[3].position));
    assert_eq!(
        got.len(),
        all.iter().filter(|e| e.position > all[3].position).count()
    );

    // Keyset pagination in pages of 5 visits every event exactly once, in both orders.
    for order_desc in [false, true] {
        let mut builder = Query::builder().all_instances().limit(5);
        if order_desc {
            builder = builder.descending();
        }
        let first_page = builder.build().unwrap();
        let mut seen = Vec::new();
        let mut page = store.query(&first_page).await.unwrap();
        while let Some(last) = page.last() {
            let next = first_page.resumed_after(last.cursor());
            seen.extend(page);
            page = store.query(&next).await.unwrap();
        }
        let expected = if order_desc { &reversed } else { &all };
        assert_eq!(&seen, expected);
    }
}

/// A cursor carries any `u32` order: resuming after the largest orders (beyond PostgreSQL's
/// `integer`) skips every event of the cursor's position in ascending order and keeps them all in
/// descending order, alike on every backend.
pub async fn cursors_resume_after_any_in_tx_order<S: EventStore>(store: &S) {
    let stored = store
        .push(vec![
            command("u1", "user.added").build().unwrap(),
            command("u2", "user.added").build().unwrap(),
            command("u3", "user.added").build().unwrap(),
        ])
        .await
        .unwrap();
    let position = stored[0].position;
    let everything = Query::builder().instance(INSTANCE).build().unwrap();
    let descending = Query::builder()
        .instance(INSTANCE)
        .descending()
        .build()
        .unwrap();
    for order in [i32::MAX as u32, i32::MAX as u32 + 1, u32::MAX] {
        let after = everything.resumed_after((position, order));
        assert!(
            store.query(&after).await.unwrap().is_empty(),
            "ascending after ({position}, {order})"
        );
        let before = descending.resumed_after((position, order));
        assert_eq!(
            store.query(&before).await.unwrap().len(),
            3,
            "descending after ({position}, {order})"
        );
        assert!(
            !everything
                .resumed_after((position, order))
                .matches(&stored[2])
        );
    }
}

/// A query for one instance never returns another instance's events.
pub async fn queries_never_cross_instances<S: EventStore>(store: &S) {
    for instance in ["instance-a", "instance-b", "instance-c"] {
        store
            .push(vec![
                Command::builder(instance, "user", "same-id", "user.added")
                    .creator("c")
                    .owner("o")
                    .build()
                    .unwrap(),
            ])
            .await
            .unwrap();
    }
    let only_b = Query::builder().instance("instance-b").build().unwrap();
    let got = store.query(&only_b).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].aggregate.instance_id, "instance-b");
    let a_and_c = Query::builder()
        .instances(["instance-a", "instance-c"])
        .build()
        .unwrap();
    let got = store.query(&a_and_c).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e.aggregate.instance_id != "instance-b"));
    let aggregate_b = AggregateRef::new("instance-b", "user", "same-id").unwrap();
    assert_eq!(store.current_sequence(&aggregate_b).await.unwrap(), 1);
    // A query that names no instance is refused; reading them all is said explicitly.
    let unscoped = Query::builder().aggregate_types(["user"]).build();
    assert_eq!(unscoped, Err(strata_query::QueryError::NoInstance));
    let everywhere = Query::builder()
        .all_instances()
        .aggregate_types(["user"])
        .build()
        .unwrap();
    assert_eq!(store.query(&everywhere).await.unwrap().len(), 3);
}

/// `instance_heads`: every instance with events, sorted by id, each with its latest position.
pub async fn instance_heads_give_each_instance_its_latest_position<S: EventStore>(store: &S) {
    assert!(store.instance_heads().await.unwrap().is_empty());
    let in_instance = |instance: &str, id: &str| {
        Command::builder(instance, "user", id, "user.added")
            .creator("c")
            .owner("o")
            .build()
            .unwrap()
    };
    let b_first = store.push(vec![in_instance("b", "u1")]).await.unwrap();
    let a_only = store.push(vec![in_instance("a", "u1")]).await.unwrap();
    assert_eq!(
        store.instance_heads().await.unwrap(),
        vec![
            (a_only[0].aggregate.instance_id.clone(), a_only[0].position),
            (
                b_first[0].aggregate.instance_id.clone(),
                b_first[0].position
            ),
        ]
    );
    let b_later = store
        .push(vec![in_instance("b", "u2"), in_instance("b", "u3")])
        .await
        .unwrap();
    let heads = store.instance_heads().await.unwrap();
    assert_eq!(
        heads[1].1, b_later[1].position,
        "b's head moves with its pushes"
    );
    assert_eq!(heads[0].1, a_only[0].position, "a's head stays");
}

/// `latest_position` follows the filter; `current_sequence` is 0 for an unknown aggregate.
pub async fn latest_position_and_current_sequence<S: EventStore>(store: &S) {
    assert_eq!(store.latest_position(&Query::all()).await.unwrap(), None);
    assert_eq!(
        store.current_sequence(&aggregate("nobody")).await.unwrap(),
        0
    );
    let first = store
        .push(vec![command("u1", "user.added").build().unwrap()])
        .await
        .unwrap();
    let second = store
        .push(vec![
            Command::builder(INSTANCE, "org", "o1", "org.added")
                .creator("c")
                .owner("o")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.latest_position(&Query::all()).await.unwrap(),
        Some(second[0].position)
    );
    let users = Query::builder()
        .all_instances()
        .aggregate_types(["user"])
        .build()
        .unwrap();
    assert_eq!(
        store.latest_position(&users).await.unwrap(),
        Some(first[0].position)
    );
    assert_eq!(store.current_sequence(&aggregate("u1")).await.unwrap(), 1);
}

/// After a push returns, the commit horizon is beyond its position.
pub async fn commit_horizon_is_past_every_visible_event<S: EventStore>(store: &S) {
    let before = store.commit_horizon().await.unwrap();
    let stored = store
        .push(vec![command("u1", "user.added").build().unwrap()])
        .await
        .unwrap();
    // The horizon may lag while other transactions are open elsewhere; it must get there promptly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let horizon = store.commit_horizon().await.unwrap();
        assert!(horizon >= before, "the horizon went backwards");
        if horizon > stored[0].position {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "horizon {horizon} never passed {:?}",
            stored[0].position
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Payloads come back as the same JSON and decode into typed values; empty payloads stay empty; SQL
/// metacharacters in ids and payloads are stored verbatim.
pub async fn payloads_round_trip<S: EventStore>(store: &S) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Renamed {
        name: String,
        tags: Vec<String>,
        nested: serde_json::Value,
    }
    let hostile = "'; DROP TABLE eventstore.events; --";
    let value = Renamed {
        name: hostile.into(),
        tags: vec!["ü".into(), "\"quoted\"".into()],
        nested: serde_json::json!({"n": 1725257931223002628u64, "f": 1.5, "null": null}),
    };
    let stored = store
        .push(vec![
            command(hostile, "user.renamed")
                .payload(&value)
                .build()
                .unwrap(),
            command(hostile, "user.touched").build().unwrap(),
        ])
        .await
        .unwrap();
    let read = store
        .query(&Query::aggregate(&aggregate(hostile)))
        .await
        .unwrap();
    assert_eq!(read, stored);
    assert_eq!(read[0].aggregate.aggregate_id, hostile);
    assert_eq!(read[0].payload::<Renamed>().unwrap(), value);
    assert!(read[1].raw_payload.is_empty());
    let err = read[0].payload::<u32>().unwrap_err();
    assert!(err.to_string().contains("user.renamed revision 1"), "{err}");
}

/// A push beyond the command limit is refused before anything is written.
pub async fn oversized_push_is_refused<S: EventStore>(store: &S) {
    let one = command("u1", "user.changed").build().unwrap();
    let commands = vec![one; crate::MAX_COMMANDS_PER_PUSH + 1];
    let err = store.push(commands).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(all_events(store).await.is_empty());
}

/// 64 tasks push to one aggregate at once: all succeed, and the sequences are exactly 1..=64.
pub async fn concurrent_pushes_to_one_aggregate<S: EventStore>(store: &S) {
    let store = Arc::new(store);
    let results = futures::future::join_all((0..64).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let cmd = command("hot", "user.changed")
                .payload(&serde_json::json!({ "i": i }))
                .build()
                .unwrap();
            store.push(vec![cmd]).await
        }
    }))
    .await;
    let mut sequences: Vec<u64> = results
        .into_iter()
        .map(|result| result.expect("no push to a hot aggregate may fail")[0].sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=64).collect::<Vec<_>>());
    let events = store
        .query(&Query::aggregate(&aggregate("hot")))
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=64).collect::<Vec<_>>()
    );
    assert_total_order(&all_events(*store).await);
}

/// Pushes that touch the same aggregates in opposite orders, from many tasks at once, all succeed
/// (no deadlock), and every aggregate's sequences stay gap-free.
pub async fn concurrent_overlapping_pushes_do_not_deadlock<S: EventStore>(store: &S) {
    let store = Arc::new(store);
    let ids = ["a", "b", "c", "d"];
    let results = futures::future::join_all((0..48).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let mut order: Vec<&str> = ids.to_vec();
            order.rotate_left(i % 4);
            if i % 2 == 1 {
                order.reverse();
            }
            let commands = order
                .iter()
                .map(|id| command(id, "user.changed").build().unwrap())
                .collect();
            store.push(commands).await
        }
    }))
    .await;
    for result in results {
        result.expect("overlapping pushes must not fail");
    }
    for id in ids {
        let events = store
            .query(&Query::aggregate(&aggregate(id)))
            .await
            .unwrap();
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            (1..=48).collect::<Vec<_>>()
        );
    }
    let events = all_events(*store).await;
    assert_eq!(events.len(), 48 * 4);
    assert_total_order(&events);
    let distinct: HashSet<Cursor> = events.iter().map(Event::cursor).collect();
    assert_eq!(distinct.len(), events.len());
}

/// Bad input of every kind gets a typed error, and the store is exactly as it was before: nothing
/// half-written, no unique value taken by a refused push.
pub async fn bad_input_is_refused_and_changes_nothing<S: EventStore>(store: &S) {
    store
        .push(vec![
            command("u1", "user.added")
                .add_unique_constraint("username", "alice", "taken")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let before = all_events(store).await;

    struct Unserialisable;
    impl serde::Serialize for Unserialisable {
        fn serialize<Z: serde::Serializer>(&self, _: Z) -> Result<Z::Ok, Z::Error> {
            Err(serde::ser::Error::custom("refuses to serialise"))
        }
    }
    let refused_by_the_model = [
        Command::builder(INSTANCE, "user", "", "user.added")
            .creator("tester")
            .owner("org")
            .build(),
        Command::builder(INSTANCE, "user account", "u2", "user.added")
            .creator("tester")
            .owner("org")
            .build(),
        command("u2", "user added!").build(),
        command("u2", "user.added").payload(&Unserialisable).build(),
        command("u2", "user.added")
            .payload_json("{not json")
            .build(),
    ];
    for outcome in refused_by_the_model {
        let err = crate::Error::from(outcome.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }

    let good = || command("u2", "user.added").build().unwrap();
    let stale = command("u1", "user.changed")
        .expect_sequence(0)
        .build()
        .unwrap();
    let err = store.push(vec![good(), stale]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let taken = command("u3", "user.added")
        .add_unique_constraint("username", "alice", "taken")
        .build()
        .unwrap();
    let err = store.push(vec![good(), taken]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation, "{err}");

    let bob = |id: &str| {
        command(id, "user.added")
            .add_unique_constraint("username", "bob", "taken")
            .build()
            .unwrap()
    };
    let err = store.push(vec![bob("u4"), bob("u5")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation, "{err}");

    let err = Query::builder()
        .all_instances()
        .limit(-1)
        .build()
        .unwrap_err();
    assert_eq!(crate::Error::from(err).kind(), ErrorKind::InvalidInput);

    assert_eq!(
        all_events(store).await,
        before,
        "a refused push wrote something"
    );
    // The refused pushes left no unique value behind: bob is still free.
    store.push(vec![bob("u6")]).await.unwrap();
}

/// How long the store of `conformance_tests!`'s `expiring:` factory keeps idempotency keys.
pub const SHORT_RETENTION: Duration = Duration::from_millis(300);

/// Metadata travels from the command into the stored event: the push returns it, a query returns
/// it, and both are equal; an event without metadata has empty metadata.
pub async fn metadata_round_trips<S: EventStore>(store: &S) {
    let full = Metadata {
        correlation_id: Some("request-1 'quoted' \"double\" ünïcode".into()),
        causation_id: Some("command-7".into()),
        headers: [
            ("trace-id".to_owned(), "abc.123".to_owned()),
            (
                "client_version".to_owned(),
                "x".repeat(strata_event::MAX_METADATA_VALUE_LEN),
            ),
        ]
        .into(),
    };
    let stored = store
        .push(vec![
            command("u1", "user.added")
                .metadata(full.clone())
                .build()
                .unwrap(),
            command("u1", "user.changed").build().unwrap(),
            command("u2", "user.added")
                .causation_id("only-causation")
                .build()
                .unwrap(),
            command("u2", "user.changed")
                .header("h", "v")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(stored[0].metadata, full);
    assert!(stored[1].metadata.is_empty());
    assert_eq!(
        stored[2].metadata.causation_id.as_deref(),
        Some("only-causation")
    );
    assert_eq!(stored[2].metadata.correlation_id, None);
    assert_eq!(stored[3].metadata.headers.len(), 1);
    assert_eq!(all_events(store).await, stored);
    // The lone-command path stores metadata too.
    let lone = store
        .push(vec![
            command("u3", "user.added")
                .correlation_id("lone")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(lone[0].metadata.correlation_id.as_deref(), Some("lone"));
    let read = store
        .query(&Query::aggregate(&aggregate("u3")))
        .await
        .unwrap();
    assert_eq!(read, lone);
}

/// `QueryBuilder::correlation_id` selects exactly the events carrying that id, also out of a push
/// that mixes events with other ids and none, and combines with the other filters.
pub async fn queries_filter_by_correlation_id<S: EventStore>(store: &S) {
    let stored = store
        .push(vec![
            command("u1", "user.added")
                .correlation_id("req-1")
                .build()
                .unwrap(),
            command("u1", "user.changed").build().unwrap(),
            command("u2", "user.added")
                .correlation_id("req-2")
                .build()
                .unwrap(),
            command("u2", "user.changed")
                .correlation_id("req-1")
                .header("h", "v")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let more = store
        .push(vec![
            command("u3", "user.added")
                .correlation_id("req-1")
                .build()
                .unwrap(),
            Command::builder("instance-b", "user", "u1", "user.added")
                .creator("tester")
                .owner("org")
                .correlation_id("req-1")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let by = |id: &str| {
        Query::builder()
            .instance(INSTANCE)
            .correlation_id(id)
            .build()
            .unwrap()
    };
    assert_eq!(
        store.query(&by("req-1")).await.unwrap(),
        vec![stored[0].clone(), stored[3].clone(), more[0].clone()]
    );
    assert_eq!(
        store.query(&by("req-2")).await.unwrap(),
        vec![stored[2].clone()]
    );
    assert!(store.query(&by("req-3")).await.unwrap().is_empty());
    assert!(store.query(&by("REQ-1")).await.unwrap().is_empty());
    let narrowed = Query::builder()
        .instance(INSTANCE)
        .correlation_id("req-1")
        .aggregate_ids(["u2"])
        .build()
        .unwrap();
    assert_eq!(
        store.query(&narrowed).await.unwrap(),
        vec![stored[3].clone()]
    );
    assert_eq!(store.count(&by("req-1")).await.unwrap(), 3);
    let everywhere = Query::builder()
        .all_instances()
        .correlation_id("req-1")
        .build()
        .unwrap();
    assert_eq!(store.count(&everywhere).await.unwrap(), 4);
    assert_eq!(
        store.latest_position(&by("req-2")).await.unwrap(),
        Some(stored[2].position)
    );
}

/// Metadata that breaks a limit is refused when the command is built, naming the field, and a
/// query by an impossible correlation id is refused too.
pub async fn invalid_metadata_is_refused_with_its_field<S: EventStore>(store: &S) {
    let too_long = "x".repeat(strata_event::MAX_METADATA_VALUE_LEN + 1);
    let cases = [
        (
            command("u1", "user.added").correlation_id(""),
            "correlation id",
        ),
        (
            command("u1", "user.added").correlation_id("nul\u{0}"),
            "correlation id",
        ),
        (
            command("u1", "user.added").causation_id(too_long.clone()),
            "causation id",
        ),
        (
            command("u1", "user.added").header("bad name", "v"),
            "header name",
        ),
        (
            command("u1", "user.added").header("h", too_long),
            "header value",
        ),
        (
            (0..=strata_event::MAX_HEADERS).fold(command("u1", "user.added"), |builder, n| {
                builder.header(format!("h{n}"), "v")
            }),
            "headers",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
    let err = Query::builder()
        .instance(INSTANCE)
        .correlation_id("")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("correlation id"), "{err}");
    assert!(all_events(store).await.is_empty());
}

fn key(key: &str) -> IdempotencyKey {
    IdempotencyKey::new(INSTANCE, key).unwrap()
}

/// A retry with the key and the same commands stores nothing and returns exactly the events the
/// first push stored.
pub async fn idempotent_retry_returns_the_first_events<S: EventStore>(store: &S) {
    let commands = || {
        vec![
            command("u1", "user.added")
                .payload(&serde_json::json!({"name": "alice"}))
                .correlation_id("req-1")
                .build()
                .unwrap(),
            command("u2", "user.added").build().unwrap(),
        ]
    };
    assert_eq!(store.recorded_push(&key("k1")).await.unwrap(), None);
    let first = store.push_idempotent(&key("k1"), commands()).await.unwrap();
    assert_eq!(first.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 1]);
    // The recorded outcome is found without pushing again.
    assert_eq!(
        store.recorded_push(&key("k1")).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.recorded_push(&key("other")).await.unwrap(), None);
    // Something else happens in between: the retry must not pick it up.
    store
        .push(vec![command("u1", "user.changed").build().unwrap()])
        .await
        .unwrap();
    for _ in 0..3 {
        let again = store.push_idempotent(&key("k1"), commands()).await.unwrap();
        assert_eq!(again, first);
    }
    let events = all_events(store).await;
    assert_eq!(events.len(), 3, "a retry stored a second copy");
    assert_eq!(&events[..2], &first[..]);
    // A lone command has its key recorded too.
    let lone = || vec![command("u3", "user.added").build().unwrap()];
    let first = store.push_idempotent(&key("k2"), lone()).await.unwrap();
    assert_eq!(
        store.push_idempotent(&key("k2"), lone()).await.unwrap(),
        first
    );
    assert_eq!(all_events(store).await.len(), 4);
}

/// The key with other commands is `IdempotencyKeyReused`, and writes nothing.
pub async fn idempotency_key_with_other_commands_is_refused<S: EventStore>(store: &S) {
    let first = command("u1", "user.added").build().unwrap();
    store
        .push_idempotent(&key("k"), vec![first.clone()])
        .await
        .unwrap();
    let others = [
        vec![command("u2", "user.added").build().unwrap()],
        vec![first.clone(), first.clone()],
        vec![
            command("u1", "user.added")
                .correlation_id("c")
                .build()
                .unwrap(),
        ],
        vec![
            command("u1", "user.added")
                .expect_sequence(0)
                .build()
                .unwrap(),
        ],
    ];
    for other in others {
        let err = store.push_idempotent(&key("k"), other).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IdempotencyKeyReused, "{err}");
        let Error::IdempotencyKeyReused { instance_id, key } = err else {
            panic!("expected IdempotencyKeyReused");
        };
        assert_eq!(instance_id, INSTANCE);
        assert_eq!(key, "k");
    }
    assert_eq!(all_events(store).await.len(), 1);
}

/// Keys are scoped by their instance: the same key in two instances names two pushes.
pub async fn idempotency_keys_are_scoped_by_instance<S: EventStore>(store: &S) {
    let push = || vec![command("u1", "user.added").build().unwrap()];
    let in_a = store.push_idempotent(&key("k"), push()).await.unwrap();
    let in_b = store
        .push_idempotent(&IdempotencyKey::new("instance-b", "k").unwrap(), push())
        .await
        .unwrap();
    assert_eq!(in_a[0].sequence, 1);
    assert_eq!(in_b[0].sequence, 2, "the second key stored its own push");
    assert_ne!(in_a[0].position, in_b[0].position);
    assert_eq!(all_events(store).await.len(), 2);
    let in_c = IdempotencyKey::new("instance-c", "k").unwrap();
    assert_eq!(store.recorded_push(&in_c).await.unwrap(), None);
}

/// A push that fails records no key: retrying it, once the cause is gone, stores it.
pub async fn failed_idempotent_push_records_no_key<S: EventStore>(store: &S) {
    let expecting_one = || {
        vec![
            command("u1", "user.changed")
                .expect_sequence(1)
                .build()
                .unwrap(),
        ]
    };
    let err = store
        .push_idempotent(&key("k"), expecting_one())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store
        .push(vec![
            command("u1", "user.added")
                .add_unique_constraint("username", "alice", "taken")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    let stored = store
        .push_idempotent(&key("k"), expecting_one())
        .await
        .unwrap();
    assert_eq!(stored[0].sequence, 2);
    // A unique clash records no key either, and the key can then name other commands.
    let clash = || {
        vec![
            command("u2", "user.added")
                .add_unique_constraint("username", "alice", "taken")
                .build()
                .unwrap(),
        ]
    };
    let err = store
        .push_idempotent(&key("k2"), clash())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation);
    let other = store
        .push_idempotent(
            &key("k2"),
            vec![command("u2", "user.added").build().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(other[0].sequence, 1);
    assert_eq!(all_events(store).await.len(), 3);
}

/// An empty push with a key stores and records nothing: the key can then name a real push.
pub async fn empty_idempotent_push_records_nothing<S: EventStore>(store: &S) {
    assert!(
        store
            .push_idempotent(&key("k"), Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    let stored = store
        .push_idempotent(
            &key("k"),
            vec![command("u1", "user.added").build().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(all_events(store).await, stored);
}

/// Many tasks retry the same keyed push at once (and a second key's push at the same time): each
/// key's events are stored exactly once, and every task gets them.
pub async fn concurrent_idempotent_retries_store_one_copy<S: EventStore>(store: &S) {
    let store = Arc::new(store);
    let results = futures::future::join_all((0..48).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let (name, aggregate_id) = if i % 3 == 0 {
                ("k2", "u2")
            } else {
                ("k1", "u1")
            };
            let commands = vec![
                command(aggregate_id, "user.added").build().unwrap(),
                command("shared", "user.changed").build().unwrap(),
            ];
            (name, store.push_idempotent(&key(name), commands).await)
        }
    }))
    .await;
    let mut answers: std::collections::HashMap<&str, Vec<Event>> = Default::default();
    for (name, result) in results {
        let events = result.expect("a keyed retry may not fail");
        let first = answers.entry(name).or_insert_with(|| events.clone());
        assert_eq!(*first, events, "two answers for key {name}");
    }
    let events = all_events(*store).await;
    assert_eq!(events.len(), 4, "exactly one copy per key");
    assert_total_order(&events);
}

/// Keyed and unkeyed pushes sent at the same moment (so a backend that groups pushes gets them in
/// one go), with fresh keys, repeated keys and a failing keyed push among them: each gets its own
/// outcome.
pub async fn idempotent_pushes_grouped_with_others<S: EventStore>(store: &S) {
    let store = Arc::new(store);
    let first = store
        .push_idempotent(
            &key("old"),
            vec![command("old", "user.added").build().unwrap()],
        )
        .await
        .unwrap();
    let results = futures::future::join_all((0..32).map(|i| {
        let store = Arc::clone(&store);
        async move {
            // Every push touches `hot`, so all of them queue together where pushes are grouped.
            let hot = command("hot", "user.changed").build().unwrap();
            match i % 4 {
                0 => store.push(vec![hot]).await,
                1 => {
                    let fresh = key(&format!("fresh-{i}"));
                    store.push_idempotent(&fresh, vec![hot]).await
                }
                2 => {
                    let old = command("old", "user.added").build().unwrap();
                    store.push_idempotent(&key("old"), vec![old]).await
                }
                _ => {
                    let failing = command("hot", "user.changed")
                        .expect_sequence(100_000)
                        .build()
                        .unwrap();
                    let failing_key = key(&format!("failing-{i}"));
                    store.push_idempotent(&failing_key, vec![failing]).await
                }
            }
        }
    }))
    .await;
    for (i, result) in results.into_iter().enumerate() {
        match i % 4 {
            0 | 1 => assert_eq!(result.unwrap().len(), 1),
            2 => assert_eq!(result.unwrap(), first),
            _ => assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict),
        }
    }
    let hot = store
        .query(&Query::aggregate(&aggregate("hot")))
        .await
        .unwrap();
    assert_eq!(
        hot.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=16).collect::<Vec<_>>()
    );
    // The failed pushes recorded no key: their keys now name other commands.
    for i in (3..32).step_by(4) {
        let failing_key = key(&format!("failing-{i}"));
        let stored = store
            .push_idempotent(
                &failing_key,
                vec![command("later", "user.added").build().unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
    }
    assert_eq!(all_events(*store).await.len(), 1 + 16 + 8);
}

/// A key older than the store's retention is treated as absent: the next push with it is stored
/// as a first push, whatever its commands. Run on a store that keeps keys for [`SHORT_RETENTION`].
pub async fn idempotency_keys_expire<S: EventStore>(store: &S) {
    let push = || vec![command("u1", "user.added").build().unwrap()];
    let first = store.push_idempotent(&key("k"), push()).await.unwrap();
    assert_eq!(
        store.push_idempotent(&key("k"), push()).await.unwrap(),
        first,
        "a fresh key is replayed"
    );
    tokio::time::sleep(SHORT_RETENTION * 2).await;
    assert_eq!(
        store.recorded_push(&key("k")).await.unwrap(),
        None,
        "an expired key has no recorded push"
    );
    let again = store.push_idempotent(&key("k"), push()).await.unwrap();
    assert_eq!(again[0].sequence, 2, "an expired key is a new push");
    tokio::time::sleep(SHORT_RETENTION * 2).await;
    let other = store
        .push_idempotent(
            &key("k"),
            vec![command("u2", "user.added").build().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        other[0].sequence, 1,
        "an expired key may name other commands"
    );
    assert_eq!(all_events(store).await.len(), 3);
}

/// Fails when a `pub async fn` case of a conformance module (`source`, its text) is missing from
/// the `@cases $…;` list of its test macro (`macro_name`), which would leave the case unrun.
/// Shared by the conformance suites of the Strata crates.
#[doc(hidden)]
pub fn assert_every_case_listed(source: &str, macro_name: &str) {
    // Every case list of the macro counts (a suite may run some cases on a store made another
    // way), but not the macro arm that matches the lists, whose factory is an `:expr` fragment.
    let lists: Vec<&str> = source
        .split("@cases $")
        .skip(1)
        .filter_map(|rest| rest.split_once(';'))
        .filter(|(factory, _)| !factory.contains(":expr"))
        .filter_map(|(_, rest)| rest.split(");").next())
        .collect();
    assert!(!lists.is_empty(), "no case list in {macro_name}");
    let is_name = |name: &&str| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut listed: Vec<&str> = lists
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(is_name)
        .collect();
    let mut defined: Vec<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split(['<', '(']).next())
        .collect();
    listed.sort_unstable();
    defined.sort_unstable();
    assert_eq!(defined, listed, "{macro_name} must list every case");
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_case_is_listed() {
        let source = concat!(
            include_str!("conformance.rs"),
            include_str!("conformance/subscriptions.rs")
        );
        super::assert_every_case_listed(source, "conformance_tests!");
    }
}
