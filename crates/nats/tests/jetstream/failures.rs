//! What a batch reports when JetStream does not store an event, and what building a sink
//! refuses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::ContextBuilder;
use strata_event::{Command, Event};
use strata_nats::{Error, JetStreamSink, Subjects, ensure_stream};
use strata_projection::{Consumer, ConsumerConfig, Handled, Reads};
use strata_store::{EventStore, MemoryStore};

use crate::support::{self, NatsServer};

fn command(aggregate_type: &str, id: &str, event_type: &str) -> Command {
    Command::builder("acme", aggregate_type, id, event_type)
        .payload(&serde_json::json!({ "id": id }))
        .creator("shop")
        .owner("acme")
        .build()
        .expect("a valid command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_stream_captures_fails_the_batch_there_and_a_retry_stores_each_event_once() {
    let nats = NatsServer::start();
    let jetstream = support::jetstream(&nats).await;
    // Orders are captured, invoices are not (yet).
    ensure_stream(&jetstream, "ORDERS", &["strata.*.order.*"])
        .await
        .expect("the orders stream");
    let store = MemoryStore::new();
    let events: Vec<Arc<Event>> = store
        .push(vec![
            command("order", "o-1", "order.placed"),
            command("order", "o-1", "order.paid"),
            command("invoice", "i-1", "invoice.issued"),
            command("order", "o-2", "order.placed"),
            command("order", "o-1", "order.shipped"),
        ])
        .await
        .expect("push")
        .into_iter()
        .map(Arc::new)
        .collect();
    let sink = JetStreamSink::builder(
        "shop_to_nats",
        Reads::new().aggregate("order").aggregate("invoice"),
        jetstream.clone(),
    )
    .build()
    .expect("a sink");

    let started = Instant::now();
    let handled = sink.handle_batch(&events).await;
    let took = started.elapsed();
    assert_eq!(
        handled.acknowledged, 2,
        "the two events before the invoice: {handled:?}"
    );
    let failure = handled.failure.expect("the invoice failed").to_string();
    for expected in [
        "publishing event acme/invoice/i-1 sequence 1 to strata.acme.invoice.invoice:issued failed",
        "no stream captures the subject",
    ] {
        assert!(failure.contains(expected), "{expected:?} in {failure:?}");
    }
    // `no responders` comes back at once; it is not a timeout.
    assert!(took < support::ACK_TIMEOUT, "failed after {took:?}");

    // The runtime would retry from the failed event; by then an operator added the stream.
    ensure_stream(&jetstream, "INVOICES", &["strata.*.invoice.*"])
        .await
        .expect("the invoices stream");
    let handled = sink.handle_batch(&events[2..]).await;
    assert_eq!(handled, Handled::all(3));

    // Whatever the first attempt already stored after the failure (o-2 went out beside the
    // invoice) was dropped by JetStream as a duplicate of its message id.
    let orders = support::read_stream(&jetstream, "ORDERS").await;
    let stored: Vec<(String, u64)> = orders
        .iter()
        .map(|message| {
            (
                message.identity.aggregate_id.clone(),
                message.identity.sequence,
            )
        })
        .collect();
    assert_eq!(stored.len(), 4, "each order event once: {stored:?}");
    for expected in [("o-1", 1), ("o-1", 2), ("o-1", 3), ("o-2", 1)] {
        assert!(
            stored.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} in {stored:?}"
        );
    }
    let o1: Vec<u64> = stored
        .iter()
        .filter(|(id, _)| id == "o-1")
        .map(|(_, sequence)| *sequence)
        .collect();
    assert_eq!(o1, [1, 2, 3], "o-1 in order");
    let first = orders
        .iter()
        .find(|message| message.identity.aggregate_id == "o-1" && message.identity.sequence == 1)
        .expect("o-1's first event");
    assert_eq!(first.subject, "strata.acme.order.order:placed");
    let header = |name: &str| {
        first
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    assert_eq!(header("Nats-Msg-Id").as_deref(), Some("acme/order/o-1/1"));
    assert_eq!(header("Strata-Event-Type").as_deref(), Some("order.placed"));
    assert_eq!(
        header("Strata-Position"),
        Some(events[0].cursor().to_string())
    );
    assert_eq!(&first.event, events[0].as_ref(), "the body is the event");
    let invoices = support::read_stream(&jetstream, "INVOICES").await;
    assert_eq!(invoices.len(), 1);
    let counters = sink.counters();
    assert_eq!(counters.stored, 5, "{counters:?}");
    assert_eq!(counters.failed, 1, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_mapping_that_gives_no_publishable_subject_fails_before_sending() {
    let nats = NatsServer::start();
    let jetstream = support::jetstream(&nats).await;
    ensure_stream(&jetstream, "ALL", &["strata.>"])
        .await
        .expect("the stream");
    let store = MemoryStore::new();
    let events: Vec<Arc<Event>> = store
        .push(vec![command("order", "o 1", "order.placed")])
        .await
        .expect("push")
        .into_iter()
        .map(Arc::new)
        .collect();
    // The aggregate id unescaped: a space is no part of a subject.
    let sink = JetStreamSink::builder("raw_ids", Reads::new().aggregate("order"), jetstream)
        .subjects(Subjects::custom(|event| {
            format!("strata.{}", event.aggregate.aggregate_id)
        }))
        .build()
        .expect("a sink");
    let handled = sink.handle_batch(&events).await;
    assert_eq!(handled.acknowledged, 0);
    let failure = handled.failure.expect("a failure").to_string();
    assert!(
        failure.contains(r#"subject "strata.o 1" cannot be published to: it contains whitespace"#),
        "{failure}"
    );
    assert_eq!(sink.counters().failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_refuses_what_could_not_work() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    // Acknowledgements awaited longer than the runtime lets a batch take.
    let slow = ContextBuilder::new()
        .timeout(Duration::from_secs(90))
        .build(client.clone());
    let refused = JetStreamSink::builder("slow", Reads::new().aggregate("order"), slow).build();
    assert!(
        matches!(refused, Err(Error::AckTimeoutTooLong { .. })),
        "{refused:?}"
    );
    let shorter = JetStreamSink::builder(
        "slow",
        Reads::new().aggregate("order"),
        ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .build(client.clone()),
    )
    .config(ConsumerConfig {
        transaction_duration: Duration::from_secs(5),
        ..JetStreamSink::default_config()
    })
    .build();
    assert!(
        matches!(shorter, Err(Error::AckTimeoutTooLong { .. })),
        "{shorter:?}"
    );

    assert!(matches!(
        Subjects::prefixed("shop.>"),
        Err(Error::InvalidSubjectPrefix { .. })
    ));

    // A stream that exists with other subjects is reported, not edited.
    let jetstream = async_nats::jetstream::new(client);
    ensure_stream(&jetstream, "NARROW", &["strata.acme.>"])
        .await
        .expect("the stream");
    let wider = ensure_stream(&jetstream, "NARROW", &["strata.>"]).await;
    assert!(
        matches!(&wider, Err(Error::StreamMissesSubject { missing, .. }) if missing == "strata.>"),
        "{wider:?}"
    );
    assert!(
        ensure_stream(&jetstream, "NARROW", &["strata.acme.order.*"])
            .await
            .is_ok()
    );
}
