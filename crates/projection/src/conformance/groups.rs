//! Cases for groups of projections with the same reads: the backend's group lease (several pairs
//! in one unit of work, all or nothing), and the runtime's rounds on top of it, including a
//! round whose statement fails.

use std::sync::Arc;

use strata_event::{Event, InstanceId};
use strata_store::EventStore;

use super::{Harness, WAIT, instance, push_each, text};
use crate::backend::{FailurePolicy, ReducedEvent};
use crate::{
    OnFailure, Projection, ProjectionBackend, ProjectionConfig, ProjectionRuntime, Reads,
    ReduceError, SqlValue, Statement,
};

const GROUP_TABLES: [&str; 2] = [
    "CREATE TABLE conformance_group_a (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
    "CREATE TABLE conformance_group_b (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
];
const COUNTS_TABLE: &str =
    "CREATE TABLE conformance_group_counts (id TEXT PRIMARY KEY, count BIGINT NOT NULL)";

/// The latest event type per document, in the table `conformance_group_<letter>`.
fn state_row(table: &'static str, event: &Event) -> Statement {
    Statement::upsert(
        table,
        vec![("id", event.aggregate.aggregate_id.as_str().into())],
        vec![("state", event.event_type.as_str().into())],
    )
}

/// Adds `amount` to the one row of `conformance_group_counts`.
fn count(amount: i64) -> Statement {
    Statement::increment(
        "conformance_group_counts",
        vec![("id", "total".into())],
        vec![("count", SqlValue::from(amount))],
    )
}

fn reduced(event: &Arc<Event>, statements: Result<Vec<Statement>, String>) -> ReducedEvent {
    ReducedEvent {
        event: Arc::clone(event),
        statements,
    }
}

/// Every `doc` event of the instance, in order.
async fn doc_events<H: Harness>(harness: &H) -> Vec<Arc<Event>> {
    let query = Reads::new().aggregate("doc").query(&instance()).build();
    let events = harness.store().query(&query.unwrap()).await.unwrap();
    events.into_iter().map(Arc::new).collect()
}

/// A group lease holds the pairs nobody else holds and says which; its batches apply together or
/// not at all (a failing statement in one pair's batch leaves every pair as it was and ends the
/// lease); a batch that starts at an event that failed before forgets that failure.
pub async fn a_group_lease_applies_its_pairs_together_or_not_at_all<H: Harness>(harness: &H) {
    for ddl in GROUP_TABLES {
        harness.create_table(ddl).await;
    }
    harness.create_table(COUNTS_TABLE).await;
    push_each(&harness.store(), &[("x", "doc.one"), ("y", "doc.two")]).await;
    let events = doc_events(harness).await;
    let backend = harness.backend();
    let tenant = instance();

    // `group_a`'s first event fails with attempts left: recorded, the pair stalls before it.
    let mut lease = backend
        .try_lease("group_a", &tenant)
        .await
        .unwrap()
        .unwrap();
    backend.checkpoint(&mut lease).await.unwrap();
    let policy = FailurePolicy {
        max_failure_count: 3,
        on_failure: OnFailure::Skip,
    };
    let outcome = backend
        .apply(
            lease,
            vec![reduced(&events[0], Err("not yet".into()))],
            policy,
        )
        .await
        .unwrap();
    assert!(outcome.stalled, "{outcome:?}");
    assert_eq!(
        backend.failed_events(Some("group_a")).await.unwrap().len(),
        1
    );

    // `group_b` has applied the first event on its own.
    let lease = backend
        .try_lease("group_b", &tenant)
        .await
        .unwrap()
        .unwrap();
    let outcome = backend
        .apply(lease, vec![reduced(&events[0], Ok(vec![count(1)]))], policy)
        .await
        .unwrap();
    assert_eq!(outcome.processed, 1);

    // Another worker holds `group_c`, asked for first: the group holds the other two, and each
    // gets its own checkpoint.
    let elsewhere = backend
        .try_lease("group_c", &tenant)
        .await
        .unwrap()
        .unwrap();
    // What one lease holds (a backend may count more than one lock for it).
    let one_lease = harness.leases_held().await;
    let (mut group, held) = backend
        .try_lease_group(&["group_c", "group_a", "group_b"], &tenant)
        .await
        .unwrap();
    assert_eq!(held, [false, true, true]);
    let checkpoints = backend.group_checkpoints(&mut group).await.unwrap();
    assert_eq!(checkpoints.len(), 3);
    assert!(checkpoints[0].is_none());
    let a = checkpoints[1].as_ref().expect("group_a is held");
    assert_eq!(a.cursor, None);
    assert!(a.next_failure.is_some(), "{a:?}");
    let b = checkpoints[2].as_ref().expect("group_b is held");
    assert_eq!(b.cursor, Some(events[0].cursor()));
    assert_eq!(b.next_failure, None);

    // `group_b`'s count overflows in its batch's second statement: nothing of the round
    // applies.
    let good_a = events
        .iter()
        .map(|event| reduced(event, Ok(vec![state_row("conformance_group_a", event)])))
        .collect::<Vec<_>>();
    let overflowing = vec![reduced(&events[1], Ok(vec![count(i64::MAX), count(1)]))];
    let applied = backend
        .apply_group(group, vec![(1, good_a.clone()), (2, overflowing)])
        .await
        .unwrap();
    assert!(!applied);
    assert_eq!(
        harness.leases_held().await,
        one_lease,
        "only group_c's own lease"
    );
    assert!(harness.rows("conformance_group_a").await.is_empty());
    assert_eq!(
        harness.rows("conformance_group_counts").await,
        vec![text(&[("id", "total"), ("count", "1")])]
    );
    assert_eq!(backend.state("group_a", &tenant).await.unwrap(), None);
    assert_eq!(
        backend.failed_events(Some("group_a")).await.unwrap().len(),
        1
    );

    // Without the overflow, both pairs apply and move, and `group_a` forgets its failure.
    let (group, held) = backend
        .try_lease_group(&["group_a", "group_b"], &tenant)
        .await
        .unwrap();
    assert_eq!(held, [true, true]);
    let counted = vec![reduced(&events[1], Ok(vec![count(1)]))];
    let applied = backend
        .apply_group(group, vec![(0, good_a), (1, counted)])
        .await
        .unwrap();
    assert!(applied);
    backend.release(elsewhere).await;
    assert_eq!(harness.leases_held().await, 0);
    let last = events.last().unwrap().cursor();
    for projection in ["group_a", "group_b"] {
        let state = backend.state(projection, &tenant).await.unwrap();
        assert_eq!(
            state.map(|state| state.cursor()),
            Some(last),
            "{projection}"
        );
    }
    assert_eq!(backend.state("group_c", &tenant).await.unwrap(), None);
    assert!(
        backend
            .failed_events(Some("group_a"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        harness.rows("conformance_group_a").await,
        vec![
            text(&[("id", "x"), ("state", "doc.one")]),
            text(&[("id", "y"), ("state", "doc.two")]),
        ]
    );
    assert_eq!(
        harness.rows("conformance_group_counts").await,
        vec![text(&[("id", "total"), ("count", "2")])]
    );
}

/// A projection of the group below: `conformance_group_a` and `_b` keep the latest event type
/// per document; `counts` adds each event's amount, which overflows on `doc.huge`.
struct Member {
    name: &'static str,
}

impl Projection for Member {
    fn name(&self) -> &str {
        self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![match self.name {
            "group_a" => state_row("conformance_group_a", event),
            "group_b" => state_row("conformance_group_b", event),
            _ if event.event_type.as_str() == "doc.huge" => count(i64::MAX),
            _ => count(1),
        }])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        Vec::new()
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            max_failure_count: 1,
            ..ProjectionConfig::default()
        }
    }
}

/// Three projections with the same reads run in rounds together; one of them meets a statement
/// that fails. The other two apply every event, the failing one records that event and skips
/// it, and every pair ends at the last event with no lease left behind.
pub async fn a_failing_member_of_a_group_fails_alone<H: Harness>(harness: &H) {
    for ddl in GROUP_TABLES {
        harness.create_table(ddl).await;
    }
    harness.create_table(COUNTS_TABLE).await;
    let mut builder = ProjectionRuntime::builder(harness.store(), harness.backend());
    for name in ["group_a", "group_b", "group_counts"] {
        builder = builder.register(Member { name }).unwrap();
    }
    let runtime = builder.start().await.unwrap();
    let store = harness.store();
    push_each(&store, &[("x", "doc.one"), ("y", "doc.one")]).await;
    let last = push_each(&store, &[("x", "doc.huge"), ("z", "doc.one")]).await;
    // The pushes' triggers run the three as a group (a catch_up would run its pair alone).
    let backend = harness.backend();
    let started = std::time::Instant::now();
    for name in ["group_a", "group_b", "group_counts"] {
        while backend
            .state(name, &instance())
            .await
            .unwrap()
            .is_none_or(|state| state.position < last)
        {
            assert!(
                started.elapsed() < WAIT,
                "{name} did not reach the last event"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    for name in ["group_a", "group_b"] {
        runtime
            .catch_up(name, &instance(), last, WAIT)
            .await
            .unwrap();
    }
    // The skipped event is reported, as for a projection alone.
    let _ = runtime
        .catch_up("group_counts", &instance(), last, WAIT)
        .await;
    for table in ["conformance_group_a", "conformance_group_b"] {
        assert_eq!(
            harness.rows(table).await,
            vec![
                text(&[("id", "x"), ("state", "doc.huge")]),
                text(&[("id", "y"), ("state", "doc.one")]),
                text(&[("id", "z"), ("state", "doc.one")]),
            ],
            "{table}"
        );
    }
    assert_eq!(
        harness.rows("conformance_group_counts").await,
        vec![text(&[("id", "total"), ("count", "3")])]
    );
    let failed = runtime.failed_events(None).await.unwrap();
    let failed: Vec<(&str, u64)> = failed
        .iter()
        .map(|failed| (failed.projection.as_str(), failed.sequence))
        .collect();
    assert_eq!(failed, [("group_counts", 2)]);
    for name in ["group_a", "group_b", "group_counts"] {
        let state = backend.state(name, &instance()).await.unwrap();
        assert_eq!(state.map(|state| state.position), Some(last), "{name}");
    }
    runtime.shutdown(WAIT).await.unwrap();
    assert_eq!(harness.leases_held().await, 0);
}
