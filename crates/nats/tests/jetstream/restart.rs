//! The broker killed (SIGKILL) while the sink publishes, and started again on the same store:
//! every event ends up in the stream, in order per aggregate, duplicates only of the same event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_event::{Command, Event};
use strata_integration_tests::{TestDatabase, test_config};
use strata_nats::{JetStreamSink, ensure_stream};
use strata_postgres::{PgConfig, PgProjections, PgStore, PoolConfig};
use strata_projection::{ConsumerConfig, ProjectionRuntime, Reads, RuntimeConfig};
use strata_store::EventStore;

use crate::support::{self, Identity, NatsServer, WAIT};

const STREAM: &str = "STRATA";
/// Two instances (one with a dot, which subjects escape) of five orders each (one id with a
/// slash, which message ids escape).
const INSTANCES: [&str; 2] = ["acme.eu", "globex"];
const ORDERS: [&str; 5] = ["o-1", "o-2", "o-3", "o-4", "o/5"];
/// Rounds of pushes: each round pushes one event to every order of each instance, so 200
/// rounds are 2000 events.
const ROUNDS: usize = 200;
/// The first rounds are pushed at once, a backlog the sink is still publishing (with events in
/// flight) when the broker dies.
const BURST_ROUNDS: usize = 100;
/// Pause between the later rounds, so the pushes go on through the outage.
const ROUND_PAUSE: Duration = Duration::from_millis(10);
/// Messages in the stream before the broker is killed: well inside the burst.
const KILL_AFTER: u64 = 300;
/// How long the broker stays down: long enough for retries to fail too.
const OUTAGE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_is_killed_mid_stream() {
    let mut nats = NatsServer::start();
    let jetstream = support::jetstream(&nats).await;
    ensure_stream(&jetstream, STREAM, &["strata.>"])
        .await
        .expect("the stream");

    let database = TestDatabase::create().await;
    let store = database.store_with(PgConfig {
        projection_pool: PoolConfig::with_max(4),
        ..test_config()
    });
    let sink = JetStreamSink::builder(
        "orders_to_nats",
        Reads::new().aggregate("order"),
        jetstream.clone(),
    )
    .config(ConsumerConfig {
        // Retries come soon after the broker is back, so the test stays short.
        retry_failed_after: Duration::from_millis(200),
        ..JetStreamSink::default_config()
    })
    .build()
    .expect("a sink");
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

    let started = Instant::now();
    let rounds_pushed = Arc::new(AtomicUsize::new(0));
    let pusher = tokio::spawn(push_orders(store.clone(), Arc::clone(&rounds_pushed)));

    let deadline = Instant::now() + WAIT;
    while support::stream_messages(&jetstream, STREAM).await < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the sink did not publish {KILL_AFTER} events"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill();
    let killed_after = started.elapsed();
    let rounds_at_kill = rounds_pushed.load(Ordering::SeqCst);
    let stored_at_kill = sink.counters().stored;
    tokio::time::sleep(OUTAGE).await;
    let failed_during_outage = sink.counters().failed;
    nats.restart();
    let restarted = Instant::now();

    let pushed = pusher.await.expect("the pushes");
    assert!(
        rounds_at_kill < ROUNDS,
        "the broker must die mid-stream: {rounds_at_kill} of {ROUNDS} rounds were pushed"
    );
    assert!(
        failed_during_outage > 0,
        "the sink must have tried to publish while the broker was down"
    );
    wait_until_caught_up(&runtime).await;
    let caught_up_after_restart = restarted.elapsed();

    let messages = support::read_stream(&jetstream, STREAM).await;
    let expected: HashMap<Identity, &Event> = pushed
        .iter()
        .map(|event| (Identity::of_event(event), event))
        .collect();
    assert_eq!(expected.len(), INSTANCES.len() * ORDERS.len() * ROUNDS);
    let mut first_bodies: HashMap<&Identity, &[u8]> = HashMap::new();
    let mut first_sequences: BTreeMap<(String, String, String), Vec<u64>> = BTreeMap::new();
    let mut duplicates = 0;
    for message in &messages {
        let pushed = expected
            .get(&message.identity)
            .unwrap_or_else(|| panic!("an event that was pushed: {:?}", message.identity));
        assert_eq!(&message.event, *pushed, "the body is the event as stored");
        match first_bodies.get(&message.identity) {
            Some(first) => {
                assert_eq!(
                    *first,
                    message.body.as_slice(),
                    "a duplicate is the same event"
                );
                duplicates += 1;
            }
            None => {
                first_bodies.insert(&message.identity, &message.body);
                first_sequences
                    .entry(message.identity.aggregate())
                    .or_default()
                    .push(message.identity.sequence);
            }
        }
    }
    let missing: Vec<&Identity> = expected
        .keys()
        .filter(|identity| !first_bodies.contains_key(identity))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events never reached the stream, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    for (aggregate, sequences) in &first_sequences {
        let in_order: Vec<u64> = (1..=ROUNDS as u64).collect();
        assert_eq!(
            sequences, &in_order,
            "first appearances of {aggregate:?} in sequence order"
        );
    }
    let counters = sink.counters();
    eprintln!(
        "broker restart: {} events, {} messages in the stream ({duplicates} duplicates \
         stored); killed {killed_after:?} after the first push, with {stored_at_kill} events \
         acknowledged and {rounds_at_kill} of {ROUNDS} rounds pushed; {failed_during_outage} \
         failed attempts during the {OUTAGE:?} outage; caught up {caught_up_after_restart:?} \
         after the restart; sink counters {counters:?}",
        expected.len(),
        messages.len(),
    );
    runtime
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shut down");
}

/// Pushes [`ROUNDS`] rounds, each one push per instance with an event for each of its orders,
/// and returns every stored event.
async fn push_orders(store: PgStore, rounds_pushed: Arc<AtomicUsize>) -> Vec<Event> {
    let mut stored = Vec::with_capacity(ROUNDS * INSTANCES.len() * ORDERS.len());
    for round in 0..ROUNDS {
        for instance in INSTANCES {
            let commands = ORDERS
                .iter()
                .map(|order| {
                    Command::builder(instance, "order", *order, "order.line_added")
                        .payload(
                            &serde_json::json!({ "round": round, "sku": format!("sku-{round}") }),
                        )
                        .creator("shop")
                        .owner(instance)
                        .build()
                        .expect("a valid command")
                })
                .collect();
            stored.extend(store.push(commands).await.expect("push"));
        }
        rounds_pushed.store(round + 1, Ordering::SeqCst);
        if BURST_ROUNDS <= round {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
    stored
}

/// Waits until the sink's checkpoint is at the head of every instance and no failure is left.
async fn wait_until_caught_up(runtime: &ProjectionRuntime<PgStore, PgProjections>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let statuses = runtime.status().await.expect("status");
        let caught_up = statuses.len() == INSTANCES.len()
            && statuses
                .iter()
                .all(|status| status.events_behind == 0 && status.failed_events == 0);
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not catch up: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
