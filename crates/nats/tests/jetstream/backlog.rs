//! A backlog published from the first event: how fast, and that it arrives whole and in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_event::Command;
use strata_integration_tests::{TestDatabase, test_config};
use strata_nats::{JetStreamSink, ensure_stream};
use strata_postgres::{PgConfig, PgProjections, PoolConfig};
use strata_projection::{ProjectionRuntime, Reads, RuntimeConfig};
use strata_store::EventStore;

use crate::support::{self, NatsServer, WAIT};

const AGGREGATES: usize = 20;
const EVENTS_PER_AGGREGATE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_published_whole_and_in_order_per_aggregate() {
    let nats = NatsServer::start();
    let jetstream = support::jetstream(&nats).await;
    ensure_stream(&jetstream, "STRATA", &["strata.>"])
        .await
        .expect("the stream");
    let database = TestDatabase::create().await;
    let store = database.store_with(PgConfig {
        projection_pool: PoolConfig::with_max(4),
        ..test_config()
    });
    // Pushes of one event per aggregate, so each batch holds many aggregates.
    for round in 0..EVENTS_PER_AGGREGATE {
        let commands = (0..AGGREGATES)
            .map(|aggregate| {
                Command::builder(
                    "acme",
                    "order",
                    format!("o-{aggregate}"),
                    "order.line_added",
                )
                .payload(&serde_json::json!({ "round": round }))
                .creator("shop")
                .owner("acme")
                .build()
                .expect("a valid command")
            })
            .collect();
        store.push(commands).await.expect("push");
    }

    let sink = JetStreamSink::builder(
        "orders_to_nats",
        Reads::new().aggregate("order"),
        jetstream.clone(),
    )
    .build()
    .expect("a sink");
    let started = Instant::now();
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .config(RuntimeConfig {
        max_parallel_batches: 2,
        ..RuntimeConfig::default()
    })
    .consumer(sink.clone())
    .expect("register the sink")
    .start()
    .await
    .expect("start the runtime");
    let total = (AGGREGATES * EVENTS_PER_AGGREGATE) as u64;
    let deadline = Instant::now() + WAIT;
    while sink.counters().stored < total {
        assert!(
            Instant::now() < deadline,
            "the backlog was not published: {:?}",
            sink.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();

    let messages = support::read_stream(&jetstream, "STRATA").await;
    assert_eq!(messages.len() as u64, total, "each event once");
    let mut sequences: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for message in &messages {
        sequences
            .entry(message.identity.aggregate_id.clone())
            .or_default()
            .push(message.identity.sequence);
    }
    assert_eq!(sequences.len(), AGGREGATES);
    let in_order: Vec<u64> = (1..=EVENTS_PER_AGGREGATE as u64).collect();
    for (aggregate, sequences) in &sequences {
        assert_eq!(sequences, &in_order, "{aggregate} in sequence order");
    }
    eprintln!(
        "backlog: {total} events of {AGGREGATES} aggregates published in {took:?} \
         ({:.0} events/s, batches of 100, checkpoints on PostgreSQL)",
        total as f64 / took.as_secs_f64()
    );
    runtime
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shut down");
}
