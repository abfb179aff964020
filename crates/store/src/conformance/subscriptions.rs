//! Conformance cases for subscriptions ([`EventStore::subscribe`]): catch-up then live, cursors,
//! filters, refused queries, bounded streams, and concurrent writers.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use strata_event::{Cursor, Event, Position};
use strata_query::Query;

use super::{INSTANCE, assert_total_order, command};
use crate::{ErrorKind, EventStore, StartFrom, Subscription};

/// Long enough for any backend to deliver an event that is already committed.
const DELIVERY_BOUND: Duration = Duration::from_secs(10);

async fn next(subscription: &mut Subscription) -> Event {
    tokio::time::timeout(DELIVERY_BOUND, subscription.next())
        .await
        .expect("the subscription delivered nothing within 10 s")
        .expect("a live subscription does not end")
        .expect("the subscription reported an error")
}

async fn take(subscription: &mut Subscription, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next(subscription).await);
    }
    events
}

/// Nothing more arrives within a short wait.
async fn assert_quiet(subscription: &mut Subscription) {
    let more = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(more.is_err(), "unexpected delivery: {more:?}");
}

fn users() -> Query {
    Query::builder()
        .instance(INSTANCE)
        .aggregate_types(["user"])
        .build()
        .unwrap()
}

async fn push_users<S: EventStore>(store: &S, ids: &[&str]) -> Vec<Event> {
    let commands = ids
        .iter()
        .map(|id| command(id, "user.added").build().unwrap())
        .collect();
    store.push(commands).await.unwrap()
}

/// A subscription delivers the stored events, then each new push as it commits, equal to what a
/// query returns.
pub async fn subscription_catches_up_then_follows_live<S: EventStore + Clone + 'static>(store: &S) {
    let stored = push_users(store, &["u1", "u2", "u3"]).await;
    let mut subscription = store
        .subscribe(&users(), StartFrom::Beginning)
        .await
        .unwrap();
    assert_eq!(take(&mut subscription, 3).await, stored);
    assert_quiet(&mut subscription).await;
    for round in 0..3 {
        let pushed = push_users(store, &[&format!("live-{round}"), "u1"]).await;
        assert_eq!(take(&mut subscription, 2).await, pushed);
    }
    assert_quiet(&mut subscription).await;
}

/// `StartFrom::After` resumes right after a cursor, inside a push too; `StartFrom::Now` passes
/// over everything already stored.
pub async fn subscription_resumes_after_a_cursor_or_from_now<S: EventStore + Clone + 'static>(
    store: &S,
) {
    let stored = push_users(store, &["u1", "u2", "u3"]).await;
    let mut after_first = store
        .subscribe(&users(), StartFrom::After(stored[0].cursor()))
        .await
        .unwrap();
    assert_eq!(take(&mut after_first, 2).await, stored[1..]);
    let mut now = store.subscribe(&users(), StartFrom::Now).await.unwrap();
    assert_quiet(&mut now).await;
    let later = push_users(store, &["u4"]).await;
    assert_eq!(next(&mut now).await, later[0]);
    assert_eq!(next(&mut after_first).await, later[0]);

    // Now on a query that selects nothing yet starts from its first event.
    let orders = Query::builder()
        .instance(INSTANCE)
        .aggregate_types(["order"])
        .build()
        .unwrap();
    let mut first_order = store.subscribe(&orders, StartFrom::Now).await.unwrap();
    let placed = store
        .push(vec![
            strata_event::Command::builder(INSTANCE, "order", "o1", "order.placed")
                .creator("tester")
                .owner("org")
                .build()
                .unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(next(&mut first_order).await, placed[0]);
}

/// A subscription delivers only what its query selects: other instances, aggregate types and
/// event types are not delivered, and do not disturb it.
pub async fn subscription_filters_like_its_query<S: EventStore + Clone + 'static>(store: &S) {
    let added = Query::builder()
        .instance(INSTANCE)
        .event_types(["user.added"])
        .build()
        .unwrap();
    let mut subscription = store.subscribe(&added, StartFrom::Beginning).await.unwrap();
    let mut expected = Vec::new();
    for round in 0..4 {
        let id = format!("u{round}");
        let stored = store
            .push(vec![
                command(&id, "user.added").build().unwrap(),
                command(&id, "user.renamed").build().unwrap(),
                strata_event::Command::builder("instance-b", "user", &id, "user.added")
                    .creator("tester")
                    .owner("org")
                    .build()
                    .unwrap(),
            ])
            .await
            .unwrap();
        expected.push(stored[0].clone());
    }
    assert_eq!(take(&mut subscription, 4).await, expected);
    assert_quiet(&mut subscription).await;
}

/// Queries a subscription cannot follow are refused with invalid input, before anything runs.
pub async fn subscription_refuses_queries_it_cannot_follow<S: EventStore + Clone + 'static>(
    store: &S,
) {
    let base = || Query::builder().instance(INSTANCE);
    let refused = [
        base().descending().build().unwrap(),
        base().limit(10).build().unwrap(),
        base().offset(1).build().unwrap(),
        base()
            .resume_after(Cursor::new(Position::from(1u64), 0))
            .build()
            .unwrap(),
        base()
            .exclude_aggregates_with(["user"], ["user.removed"])
            .build()
            .unwrap(),
    ];
    for query in refused {
        let err = store
            .subscribe(&query, StartFrom::Beginning)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{query:?}: {err}");
    }
    let options = crate::SubscribeOptions {
        buffer: 0,
        ..crate::SubscribeOptions::default()
    };
    let err = store
        .subscribe_with(&users(), StartFrom::Beginning, options)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A query with an upper position bound makes a finite stream: it ends after the last event below
/// the bound.
pub async fn subscription_with_an_upper_bound_ends<S: EventStore + Clone + 'static>(store: &S) {
    let first = push_users(store, &["u1", "u2"]).await;
    let second = push_users(store, &["u3"]).await;
    let bounded = Query::builder()
        .instance(INSTANCE)
        .position_before(second[0].position)
        .build()
        .unwrap();
    let mut subscription = store
        .subscribe(&bounded, StartFrom::Beginning)
        .await
        .unwrap();
    assert_eq!(take(&mut subscription, 2).await, first);
    let end = tokio::time::timeout(DELIVERY_BOUND, subscription.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "a bounded subscription must end, got {end:?}"
    );
}

/// While writers push concurrently, subscribers started before, during and after the pushes
/// each receive every event exactly once, in strict `(position, in_tx_order)` order: no late
/// commit is skipped.
pub async fn subscription_under_concurrent_writers_misses_nothing<
    S: EventStore + Clone + 'static,
>(
    store: &S,
) {
    const WRITERS: usize = 4;
    const PUSHES: usize = 50;
    let total = WRITERS * PUSHES * 2;
    let early = store
        .subscribe(&users(), StartFrom::Beginning)
        .await
        .unwrap();
    let writers = futures::future::join_all((0..WRITERS).map(|writer| {
        let store = store.clone();
        async move {
            for push in 0..PUSHES {
                let hot = command("hot", "user.changed").build().unwrap();
                let own = command(&format!("w{writer}-{push}"), "user.added")
                    .build()
                    .unwrap();
                store.push(vec![hot, own]).await.unwrap();
            }
        }
    }));
    let store_for_midway = store.clone();
    let midway = async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store_for_midway
            .subscribe(&users(), StartFrom::Beginning)
            .await
            .unwrap()
    };
    let ((), midway) = futures::future::join(
        async {
            writers.await;
        },
        midway,
    )
    .await;
    let late = store
        .subscribe(&users(), StartFrom::Beginning)
        .await
        .unwrap();
    let stored = store.query(&users()).await.unwrap();
    assert_eq!(stored.len(), total);
    for (name, mut subscription) in [("early", early), ("midway", midway), ("late", late)] {
        let delivered = take(&mut subscription, total).await;
        assert_total_order(&delivered);
        let distinct: HashSet<Cursor> = delivered.iter().map(Event::cursor).collect();
        assert_eq!(
            distinct.len(),
            total,
            "{name}: an event was delivered twice"
        );
        assert_eq!(
            delivered, stored,
            "{name}: the stream differs from the query"
        );
        assert_quiet(&mut subscription).await;
    }
    let hot: Vec<u64> = stored
        .iter()
        .filter(|event| event.aggregate.aggregate_id.as_str() == "hot")
        .map(|event| event.sequence)
        .collect();
    assert_eq!(hot, (1..=(WRITERS * PUSHES) as u64).collect::<Vec<_>>());
}

/// A consumer that stops reading does not stop the store: pushes go on while the subscription's
/// buffer is full, and once it reads again it gets every event in order.
pub async fn subscription_waits_for_a_slow_reader<S: EventStore + Clone + 'static>(store: &S) {
    let options = crate::SubscribeOptions {
        buffer: 2,
        ..crate::SubscribeOptions::default()
    };
    let mut subscription = store
        .subscribe_with(&users(), StartFrom::Beginning, options)
        .await
        .unwrap();
    let mut stored = Vec::new();
    for round in 0..20 {
        stored.extend(push_users(store, &[&format!("slow-{round}")]).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(take(&mut subscription, 20).await, stored);
}
