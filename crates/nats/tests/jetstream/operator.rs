//! What an operator does about an event that can never be published: with the sink's default
//! config it is retried (never parked), and skipping it lets the sink move on.

use std::time::{Duration, Instant};

use strata_event::Command;
use strata_integration_tests::TestDatabase;
use strata_nats::{JetStreamSink, ensure_stream};
use strata_postgres::PgProjections;
use strata_projection::{ConsumerConfig, ProjectionRuntime, Reads};
use strata_store::EventStore;

use crate::support::{self, NatsServer, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_published_stalls_the_sink_until_an_operator_skips_it() {
    let nats = NatsServer::start();
    let jetstream = support::jetstream(&nats).await;
    // Orders are captured; invoices, by mistake, are not.
    ensure_stream(&jetstream, "ORDERS", &["strata.*.order.*"])
        .await
        .expect("the stream");
    let database = TestDatabase::create().await;
    let store = database.store();
    let command = |aggregate_type: &str, id: &str, event_type: &str| {
        Command::builder("acme", aggregate_type, id, event_type)
            .creator("shop")
            .owner("acme")
            .build()
            .expect("a valid command")
    };
    store
        .push(vec![
            command("order", "o-1", "order.placed"),
            command("invoice", "i-1", "invoice.issued"),
            command("order", "o-1", "order.paid"),
        ])
        .await
        .expect("push");
    let sink = JetStreamSink::builder(
        "shop_to_nats",
        Reads::new().aggregate("order").aggregate("invoice"),
        jetstream.clone(),
    )
    .config(ConsumerConfig {
        retry_failed_after: Duration::from_millis(50),
        ..JetStreamSink::default_config()
    })
    .build()
    .expect("a sink");
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .consumer(sink.clone())
    .expect("register the sink")
    .start()
    .await
    .expect("start the runtime");

    // Far more attempts than the consumer default of 5, and still not parked.
    let failed = wait_for(|| async {
        let failed = runtime
            .failed_events(Some("shop_to_nats"))
            .await
            .expect("failed events");
        failed.into_iter().find(|failed| failed.failure_count >= 8)
    })
    .await;
    assert!(!failed.parked, "{failed:?}");
    assert_eq!(failed.aggregate.aggregate_id.as_str(), "i-1");
    assert!(
        failed.error.contains("no stream captures the subject"),
        "{}",
        failed.error
    );
    // The checkpoint waits before the invoice: it and o-1's second event are still owed (the
    // latter may already be in the stream, published beside the failing invoice).
    let statuses = runtime.status().await.expect("status");
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].events_behind, 2, "{statuses:?}");

    runtime.skip_failed(&failed).await.expect("skip");
    wait_for(|| async {
        let statuses = runtime.status().await.expect("status");
        statuses
            .iter()
            .all(|status| status.events_behind == 0)
            .then_some(())
    })
    .await;
    let orders = support::read_stream(&jetstream, "ORDERS").await;
    let sequences: Vec<u64> = orders
        .iter()
        .map(|message| message.identity.sequence)
        .collect();
    assert_eq!(sequences, [1, 2], "o-1 whole and in order after the skip");
    runtime
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shut down");
}

/// Polls `probe` until it answers, for at most [`WAIT`].
async fn wait_for<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} in vain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
