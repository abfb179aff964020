//! Conformance cases for durable consumers and ordered parking: delivery in order, resuming from
//! the last acknowledged event, redelivery of what was not acknowledged, parking, retrying and
//! skipping a parked aggregate, parking projections, and partitions.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use strata_event::Event;
use strata_store::EventStore;

use super::{DOCS_TABLE, Docs, Harness, INSTANCE, WAIT, command, instance, push_each, text};
use crate::{
    Consumer, ConsumerConfig, FailedEvent, HandleError, Handled, OnFailure, ProjectionBackend,
    ProjectionError, ProjectionRuntime, Reads,
};

/// `(aggregate id, sequence)` of an event.
type Delivery = (String, u64);

/// A consumer that records what it is handed, and fails for the aggregates in `failing`.
#[derive(Clone)]
struct Recorder {
    name: &'static str,
    delivered: Arc<Mutex<Vec<Delivery>>>,
    failing: Arc<Mutex<HashSet<String>>>,
    config: ConsumerConfig,
    /// Acknowledge at most this many events per batch (without failing), to exercise
    /// redelivery of the rest.
    acknowledge_at_most: Option<usize>,
}

impl Recorder {
    fn new(name: &'static str) -> Self {
        Recorder {
            name,
            delivered: Arc::default(),
            failing: Arc::default(),
            config: ConsumerConfig {
                retry_failed_after: Duration::from_millis(50),
                max_failure_count: 2,
                ..ConsumerConfig::default()
            },
            acknowledge_at_most: None,
        }
    }

    fn delivered(&self) -> Vec<Delivery> {
        self.delivered.lock().unwrap().clone()
    }

    fn fail(&self, aggregate_id: &str, failing: bool) {
        let mut set = self.failing.lock().unwrap();
        if failing {
            set.insert(aggregate_id.to_owned());
        } else {
            set.remove(aggregate_id);
        }
    }

    /// Waits until `done` holds for what was delivered.
    async fn until(&self, what: &str, done: impl Fn(&[Delivery]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(&self.delivered()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: delivered so far {:?}",
                self.delivered()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Consumer for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            let id = event.aggregate.aggregate_id.as_str().to_owned();
            self.delivered
                .lock()
                .unwrap()
                .push((id.clone(), event.sequence));
            if self.failing.lock().unwrap().contains(&id) {
                return Err(HandleError::new(format!("{id} is down")));
            }
            Ok(())
        })
    }

    fn handle_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Handled> {
        Box::pin(async move {
            let limit = self.acknowledge_at_most.unwrap_or(usize::MAX);
            for (index, event) in events.iter().enumerate() {
                if index == limit {
                    return Handled {
                        acknowledged: index,
                        failure: None,
                    };
                }
                if let Err(err) = self.handle(event).await {
                    return Handled::failed_at(index, err);
                }
            }
            Handled::all(events.len())
        })
    }

    fn config(&self) -> ConsumerConfig {
        self.config.clone()
    }
}

async fn start_consumer<H: Harness>(
    harness: &H,
    consumer: Recorder,
) -> Result<ProjectionRuntime<H::Store, H::Backend>, ProjectionError> {
    ProjectionRuntime::builder(harness.store(), harness.backend())
        .consumer(consumer)?
        .start()
        .await
}

/// `(aggregate id, sequence)` of every `doc` event in the store, in its order.
async fn stored<H: Harness>(harness: &H) -> Vec<Delivery> {
    let query = strata_query::Query::builder()
        .instance(INSTANCE)
        .aggregate_types(["doc"])
        .build()
        .unwrap();
    harness
        .store()
        .query(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|event| {
            (
                event.aggregate.aggregate_id.as_str().to_owned(),
                event.sequence,
            )
        })
        .collect()
}

/// Per aggregate, the sequences in the order they were first delivered.
fn first_deliveries(delivered: &[Delivery]) -> BTreeMap<String, Vec<u64>> {
    let mut seen = HashSet::new();
    let mut per_aggregate: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for delivery in delivered {
        if seen.insert(delivery.clone()) {
            per_aggregate
                .entry(delivery.0.clone())
                .or_default()
                .push(delivery.1);
        }
    }
    per_aggregate
}

async fn parked<H: Harness>(harness: &H, consumer: &str) -> Vec<FailedEvent> {
    harness
        .backend()
        .failed_events(Some(consumer))
        .await
        .unwrap()
        .into_iter()
        .filter(|failed| failed.parked)
        .collect()
}

/// A consumer is handed every event it reads, in the store's order, each once while nothing
/// fails; a new runtime (a restart) resumes after the last acknowledged event.
pub async fn a_consumer_gets_every_event_in_order_and_resumes_after_a_restart<H: Harness>(
    harness: &H,
) {
    let events: Vec<(String, &str)> = (0..30)
        .map(|n| (format!("d{}", n % 3), "doc.added"))
        .collect();
    let refs: Vec<(&str, &str)> = events.iter().map(|(id, t)| (id.as_str(), *t)).collect();
    push_each(&harness.store(), &refs).await;
    let first = Recorder::new("recorder");
    let runtime = start_consumer(harness, first.clone()).await.unwrap();
    let expected = stored(harness).await;
    first
        .until("all 30 delivered", |delivered| delivered.len() >= 30)
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    assert_eq!(
        first.delivered(),
        expected,
        "delivered in the store's order"
    );

    let later: Vec<(&str, &str)> = vec![("d0", "doc.renamed"), ("d9", "doc.added")];
    push_each(&harness.store(), &later).await;
    let second = Recorder::new("recorder");
    let runtime = start_consumer(harness, second.clone()).await.unwrap();
    second
        .until("the two new events", |delivered| delivered.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        second.delivered(),
        [("d0".to_owned(), 11), ("d9".to_owned(), 1)],
        "a restart resumes after the last acknowledged event"
    );
    let state = harness
        .backend()
        .state("recorder", &instance())
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(state.aggregate.aggregate_id.as_str(), "d9");
    runtime.shutdown(WAIT).await.unwrap();
}

/// Events a consumer did not acknowledge are delivered again, after the ones it did, so every
/// event arrives and each aggregate's first deliveries stay in order.
pub async fn unacknowledged_events_are_delivered_again<H: Harness>(harness: &H) {
    let events: Vec<(String, &str)> = (0..20)
        .map(|n| (format!("d{}", n % 4), "doc.added"))
        .collect();
    let refs: Vec<(&str, &str)> = events.iter().map(|(id, t)| (id.as_str(), *t)).collect();
    push_each(&harness.store(), &refs).await;
    let mut recorder = Recorder::new("halfway");
    recorder.acknowledge_at_most = Some(3);
    let runtime = start_consumer(harness, recorder.clone()).await.unwrap();
    let expected = stored(harness).await;
    let all: HashSet<Delivery> = expected.iter().cloned().collect();
    recorder
        .until("every event at least once", |delivered| {
            delivered.iter().cloned().collect::<HashSet<_>>() == all
        })
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    assert_eq!(
        first_deliveries(&recorder.delivered()),
        first_deliveries(&expected)
    );
}

/// An aggregate whose event keeps failing is parked after its last attempt: its later events
/// wait while every other aggregate's flow. Retrying it after a fix delivers the parked event
/// and then those that waited, in order; afterwards it flows like the others.
pub async fn a_failing_aggregate_is_parked_while_others_flow<H: Harness>(harness: &H) {
    let recorder = Recorder::new("parking");
    recorder.fail("bad", true);
    let runtime = start_consumer(harness, recorder.clone()).await.unwrap();
    let store = harness.store();
    push_each(
        &store,
        &[
            ("bad", "doc.added"),
            ("good", "doc.added"),
            ("bad", "doc.renamed"),
            ("other", "doc.added"),
            ("bad", "doc.renamed"),
        ],
    )
    .await;
    recorder
        .until(
            "the good aggregates flow past the parked one",
            |delivered| delivered.contains(&("other".to_owned(), 1)),
        )
        .await;
    let parked_now = parked(harness, "parking").await;
    assert_eq!(parked_now.len(), 1, "{parked_now:?}");
    assert_eq!(runtime.parked(Some("parking")).await.unwrap(), parked_now);
    assert_eq!(runtime.parked(None).await.unwrap(), parked_now);
    let record = &parked_now[0];
    assert_eq!(record.aggregate.aggregate_id.as_str(), "bad");
    assert_eq!(record.sequence, 1);
    assert_eq!(record.failure_count, 2);
    assert!(record.error.contains("bad is down"), "{}", record.error);
    let status = runtime.status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(
        (status[0].parked_aggregates, status[0].failed_events),
        (1, 1)
    );
    // Later events keep flowing for the others, never for the parked aggregate.
    push_each(&store, &[("good", "doc.renamed"), ("bad", "doc.renamed")]).await;
    recorder
        .until("good's second event", |delivered| {
            delivered.contains(&("good".to_owned(), 2))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bad: Vec<u64> = recorder
        .delivered()
        .iter()
        .filter(|(id, _)| id == "bad")
        .map(|(_, sequence)| *sequence)
        .collect();
    assert_eq!(bad, [1, 1], "two attempts at bad #1, nothing after it");

    recorder.fail("bad", false);
    runtime.retry_failed(record).await.unwrap();
    recorder
        .until("bad's events after the retry", |delivered| {
            delivered.contains(&("bad".to_owned(), 4))
        })
        .await;
    assert!(parked(harness, "parking").await.is_empty());
    push_each(&store, &[("bad", "doc.renamed")]).await;
    recorder
        .until("bad flows again", |delivered| {
            delivered.contains(&("bad".to_owned(), 5))
        })
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    let bad: Vec<u64> = recorder
        .delivered()
        .iter()
        .filter(|(id, _)| id == "bad")
        .map(|(_, sequence)| *sequence)
        .collect();
    assert_eq!(
        bad,
        [1, 1, 1, 2, 3, 4, 5],
        "the parked aggregate resumed in order"
    );
}

/// Skipping a parked event gives up on it alone: the events its aggregate received meanwhile
/// are delivered in order, and the record stays as the operator's skip.
pub async fn skipping_a_parked_event_delivers_the_rest_in_order<H: Harness>(harness: &H) {
    let recorder = Recorder::new("skipping");
    recorder.fail("bad", true);
    let runtime = start_consumer(harness, recorder.clone()).await.unwrap();
    push_each(
        &harness.store(),
        &[
            ("bad", "doc.added"),
            ("bad", "doc.renamed"),
            ("good", "doc.added"),
        ],
    )
    .await;
    recorder
        .until("good flows", |delivered| {
            delivered.contains(&("good".to_owned(), 1))
        })
        .await;
    let record = parked(harness, "skipping").await.remove(0);
    recorder.fail("bad", false);
    runtime.skip_failed(&record).await.unwrap();
    recorder
        .until("bad's second event", |delivered| {
            delivered.contains(&("bad".to_owned(), 2))
        })
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    assert!(parked(harness, "skipping").await.is_empty());
    let failed = harness
        .backend()
        .failed_events(Some("skipping"))
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].skipped_by_operator && !failed[0].parked);
    let bad: Vec<u64> = recorder
        .delivered()
        .iter()
        .filter(|(id, _)| id == "bad")
        .map(|(_, sequence)| *sequence)
        .collect();
    assert_eq!(bad, [1, 1, 2], "bad #1 given up, bad #2 delivered after it");
}

/// A projection configured to park instead of skip holds the failing document's later events,
/// keeps applying the others, and applies the held ones in order once retried.
pub async fn a_projection_can_park_instead_of_skipping<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let mut docs = Docs::new(Duration::from_millis(50), 2);
    docs.on_failure = OnFailure::Park;
    let failing = Arc::clone(&docs.failing);
    let runtime = ProjectionRuntime::builder(harness.store(), harness.backend())
        .register(docs)
        .unwrap()
        .start()
        .await
        .unwrap();
    let last = push_each(
        &harness.store(),
        &[
            ("d1", "doc.added"),
            ("d2", "doc.poisoned"),
            ("d2", "doc.renamed"),
            ("d3", "doc.added"),
        ],
    )
    .await;
    let caught_up = runtime.catch_up("docs", &instance(), last, WAIT).await;
    let Err(ProjectionError::EventFailed { failed, .. }) = caught_up else {
        panic!("the parked event must be reported: {caught_up:?}");
    };
    assert!(failed.parked, "{failed:?}");
    assert!(caught_up_message_names_parking(&failed));
    let rows = harness.rows("conformance_docs").await;
    assert_eq!(
        rows,
        [
            text(&[
                ("instance_id", INSTANCE),
                ("id", "d1"),
                ("state", "doc.added")
            ]),
            text(&[
                ("instance_id", INSTANCE),
                ("id", "d3"),
                ("state", "doc.added")
            ]),
        ],
        "d2's renaming waits behind its poisoned event"
    );
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    runtime.retry_failed(&failed).await.unwrap();
    runtime
        .catch_up("docs", &instance(), last, WAIT)
        .await
        .unwrap();
    let rows = harness.rows("conformance_docs").await;
    assert_eq!(
        rows[1],
        text(&[
            ("instance_id", INSTANCE),
            ("id", "d2"),
            ("state", "doc.renamed")
        ]),
        "the held event applied after the retried one"
    );
    runtime.shutdown(WAIT).await.unwrap();
}

fn caught_up_message_names_parking(failed: &FailedEvent) -> bool {
    ProjectionError::EventFailed {
        failed: Box::new(failed.clone()),
        skipped: true,
    }
    .to_string()
    .contains("parked")
}

/// A consumer split into parts handles each aggregate's events in one part, in order, every
/// event once, with a checkpoint per part.
pub async fn partitions_split_an_instance_and_keep_each_aggregate_in_order<H: Harness>(
    harness: &H,
) {
    let mut recorder = Recorder::new("parts");
    recorder.config.partitions = 4;
    let runtime = start_consumer(harness, recorder.clone()).await.unwrap();
    let store = harness.store();
    let pushes = (0..10).map(|round| {
        let store = store.clone();
        async move {
            for n in 0..10 {
                store
                    .push(vec![command(&format!("a{n}"), &format!("doc.r{round}"))])
                    .await
                    .unwrap();
            }
        }
    });
    futures::future::join_all(pushes).await;
    let expected = stored(harness).await;
    recorder
        .until("all 100 delivered", |delivered| delivered.len() >= 100)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered = recorder.delivered();
    assert_eq!(delivered.len(), 100, "each event exactly once");
    assert_eq!(first_deliveries(&delivered), first_deliveries(&expected));
    // A rebuild by the consumer's name resets every part: everything is delivered again.
    runtime.rebuild("parts", None).await.unwrap();
    recorder
        .until("all 100 delivered again", |delivered| {
            delivered.len() >= 200
        })
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    let parts: HashSet<String> = harness
        .backend()
        .states()
        .await
        .unwrap()
        .into_iter()
        .map(|state| state.projection)
        .collect();
    assert!(parts.len() >= 2, "several parts made progress: {parts:?}");
    assert!(
        parts
            .iter()
            .all(|part| part.starts_with("parts#") && part.ends_with("/4"))
    );
}

/// A consumer whose checkpoints were made with another number of parts is refused at start:
/// its aggregates would change parts, and with them the order of their handling.
pub async fn changing_a_consumers_partitions_is_refused<H: Harness>(harness: &H) {
    push_each(
        &harness.store(),
        &[("d1", "doc.added"), ("d2", "doc.added")],
    )
    .await;
    let mut two = Recorder::new("resized");
    two.config.partitions = 2;
    let runtime = start_consumer(harness, two.clone()).await.unwrap();
    two.until("both delivered", |delivered| delivered.len() >= 2)
        .await;
    runtime.shutdown(WAIT).await.unwrap();
    let mut three = Recorder::new("resized");
    three.config.partitions = 3;
    let refused = start_consumer(harness, three).await;
    assert!(
        matches!(&refused, Err(ProjectionError::InvalidProjection { reason, .. }) if reason.contains("2 partition")),
        "{:?}",
        refused.err()
    );
    let mut none = Recorder::new("invalid");
    none.config.partitions = 0;
    assert!(matches!(
        start_consumer(harness, none).await,
        Err(ProjectionError::InvalidProjection { .. })
    ));
}

/// A consumer set to skip passes a failing event after its last attempt; retrying it hands it to
/// the consumer again, and only an acknowledgement forgets the failure.
pub async fn a_skipped_consumer_event_is_retried_through_the_handler<H: Harness>(harness: &H) {
    let mut recorder = Recorder::new("skipper");
    recorder.config.on_failure = OnFailure::Skip;
    recorder.fail("bad", true);
    let runtime = start_consumer(harness, recorder.clone()).await.unwrap();
    push_each(
        &harness.store(),
        &[("bad", "doc.added"), ("bad", "doc.renamed")],
    )
    .await;
    recorder
        .until("bad #2 delivered past the skipped #1", |delivered| {
            delivered.contains(&("bad".to_owned(), 2))
        })
        .await;
    // Both given up on: no attempt of #2 is still to come when the retry below is counted.
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        let failed = harness
            .backend()
            .failed_events(Some("skipper"))
            .await
            .unwrap();
        if failed.len() == 2 && failed.iter().all(|failed| failed.failure_count >= 2) {
            break failed;
        }
        assert!(
            Instant::now() < deadline,
            "both should fail and be skipped: {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first = failed
        .iter()
        .find(|failed| failed.sequence == 1)
        .unwrap()
        .clone();
    assert!(!first.parked);
    let still_failing = runtime.retry_failed(&first).await;
    assert!(
        matches!(&still_failing, Err(ProjectionError::Reducer { message, .. }) if message.contains("bad is down")),
        "{still_failing:?}"
    );
    recorder.fail("bad", false);
    let before = recorder.delivered().len();
    runtime.retry_failed(&first).await.unwrap();
    assert_eq!(
        recorder.delivered()[before..],
        [("bad".to_owned(), 1)],
        "the retry handed the event to the consumer"
    );
    let left = harness
        .backend()
        .failed_events(Some("skipper"))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the acknowledged retry is forgotten");
    runtime.shutdown(WAIT).await.unwrap();
}
