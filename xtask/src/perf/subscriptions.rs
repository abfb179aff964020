//! S1 (catch-up through a subscription), S2 (push-to-delivery latency in another process) and S3
//! (a durable consumer catching up), plus the subscriber process S2 reads deliveries from.
//!
//! - `S1` (C = 1): a subscription from the beginning over every stored event, the set R2 pages
//!   through, counted until all are delivered (a subscription never ends by itself), in rounds
//!   alternating with raw R2's paging over the same events (the `raw-r2` reference row).
//! - `S2` (C = 8): W1 at C = 8 while another process (`cargo xtask bench-subscriber`) subscribes
//!   to W1's events through a store of its own, so every wake-up crosses processes by
//!   `NOTIFY`/`LISTEN`. Latency: from the moment a push returned to its writer to the moment its
//!   event came out of the subscription in the other process, both read from the one clock of this
//!   machine.
//! - `S3` (C = 1): a durable consumer whose handler does nothing, catching up on P1's events in
//!   batches of P1's size, beside raw P1 from the same run (the `raw-p1` reference row).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ChildStdout;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use strata_event::{Cursor, Event};
use strata_postgres::{PgConfig, PgProjections, PgStore};
use strata_projection::{Consumer, ConsumerConfig, HandleError, ProjectionRuntime, Reads};
use strata_query::Query;
use strata_store::{EventStore, StartFrom};

use crate::perf::projections::{self, SessionEvents, Worker};
use crate::perf::reads::{self, PAGE};
use crate::perf::runner::{Operation, Timing, run};
use crate::perf::stats::{Latencies, Row, Samples};
use crate::perf::writes;

/// S1: alternating rounds of a subscription's catch-up and raw R2's paging over the same events,
/// each side going first in turn; `rounds` passes each.
pub(crate) async fn s1(store: &PgStore, pool: &PgPool, rounds: u32) -> Result<Vec<Row>> {
    let everything = Query::builder().all_instances().build()?;
    let total = store.count(&everything).await?;
    let (mut subscribed, mut subscribed_time) = (Samples::default(), Duration::ZERO);
    let (mut raw, mut raw_time) = (Samples::default(), Duration::ZERO);
    for n in 0..rounds {
        for subscription_side in [n % 2 == 0, n % 2 != 0] {
            if subscription_side {
                let (samples, took) = catch_up(store, &everything, total).await?;
                subscribed.merge(samples);
                subscribed_time += took;
            } else {
                let (samples, took) = reads::r2_raw_samples(pool, 1).await?;
                raw.merge(samples);
                raw_time += took;
            }
        }
    }
    Ok(vec![
        subscribed.events_row("strata", "S1", 1, subscribed_time),
        raw.events_row("raw-r2", "S1", 1, raw_time),
    ])
}

/// One subscription from the beginning, read until `total` events came out, then dropped: a
/// latency per [`PAGE`] events, as R2 records one per page.
pub(crate) async fn catch_up(
    store: &PgStore,
    query: &Query,
    total: u64,
) -> Result<(Samples, Duration)> {
    let mut samples = Samples::default();
    let started = Instant::now();
    let mut subscription = store.subscribe(query, StartFrom::Beginning).await?;
    let mut page_began = started;
    while samples.events < total {
        match subscription.next().await {
            Some(Ok(_)) => {
                samples.events += 1;
                if samples.events % PAGE as u64 == 0 || samples.events == total {
                    samples.latencies.record(page_began.elapsed());
                    page_began = Instant::now();
                }
            }
            // The subscription tries again from where it stopped.
            Some(Err(_)) => samples.errors += 1,
            None => bail!(
                "the subscription ended after {} of {total} events",
                samples.events
            ),
        }
    }
    Ok((samples, started.elapsed()))
}

/// What S2's subscriber reads: W1's events.
fn w1_events() -> Result<Query> {
    Ok(Query::builder()
        .instance("bench")
        .aggregate_types(["user"])
        .build()?)
}

/// Now, in nanoseconds since the epoch: the clock both processes of S2 read.
fn now_nanos() -> i64 {
    nanos(Utc::now())
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The events a push returned, each with the moment the push returned to its writer.
type Returned = Arc<Mutex<Vec<(Cursor, i64)>>>;

/// W1's push, noting when each of its events came back to the writer.
fn noting_push(store: &PgStore, returned: &Returned) -> Operation {
    let (store, returned) = (store.clone(), Arc::clone(returned));
    Arc::new(move |task, iteration| {
        let (store, returned) = (store.clone(), Arc::clone(&returned));
        async move {
            let (aggregate_id, _) = writes::w1_pick(task, iteration);
            let events = store
                .push(vec![writes::command(&aggregate_id, iteration)?])
                .await?;
            let at = now_nanos();
            returned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(events.iter().map(|event| (event.cursor(), at)));
            Ok(events.len() as u64)
        }
        .boxed()
    })
}

/// What the subscriber process saw of one event: when it came out of the subscription, and the
/// event's `created_at`, in nanoseconds since the epoch.
struct Delivery {
    delivered: i64,
    created: i64,
}

/// S2: W1 at C = 8 with the subscriber process running; every push of the measured window
/// matched with its delivery there. An event not delivered two seconds after the writers stopped
/// counts as an error.
pub(crate) async fn s2(store: &PgStore, url: &str, timing: Timing) -> Result<Vec<Row>> {
    eprintln!("bench: S2");
    let (worker, output) = projections::spawn_ready(&["bench-subscriber", url], "the subscriber")?;
    let returned: Returned = Arc::default();
    let window_start = now_nanos() + nanos_of(timing.warmup);
    let window_end = window_start + nanos_of(timing.measure);
    let (pushes, elapsed) = run(8, timing, noting_push(store, &returned)).await;
    // Let the last pushes arrive before asking for the deliveries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (deliveries, subscriber_errors) = stop_subscriber(worker, output).await?;

    let returned = std::mem::take(&mut *returned.lock().unwrap_or_else(PoisonError::into_inner));
    let (mut from_return, mut from_created) = (Latencies::default(), Latencies::default());
    let (mut missing, mut early) = (0u64, 0u64);
    for (cursor, at) in returned {
        if at < window_start || window_end < at {
            continue;
        }
        let Some(delivery) = deliveries.get(&cursor) else {
            missing += 1;
            continue;
        };
        // Both ends run after the commit, so a delivery can beat the writer's task to its clock.
        if delivery.delivered < at {
            early += 1;
        }
        from_return.record(duration_of(delivery.delivered - at));
        from_created.record(duration_of(delivery.delivered - delivery.created));
    }
    eprintln!(
        "bench: S2 matched {} deliveries, {missing} missing, {early} delivered before the push \
         returned to its writer; from the event's created_at (as P2 measures): p50 {:.1} ms, \
         p99 {:.1} ms",
        from_return.count(),
        from_created.percentile(0.5),
        from_created.percentile(0.99)
    );
    let samples = Samples {
        latencies: from_return,
        events: pushes.events,
        errors: pushes.errors + missing + subscriber_errors,
    };
    Ok(vec![Row {
        ops_per_sec: None,
        ..samples.events_row("strata", "S2", 8, elapsed)
    }])
}

fn nanos_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// A difference of two clock readings; a negative one (see `early` in [`s2`]) as zero.
fn duration_of(nanos: i64) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Closes the subscriber's input, which tells it to stop, and reads what it delivered: a line
/// `cursor delivered created` per event, then `errors N`.
async fn stop_subscriber(
    mut worker: Worker,
    output: BufReader<ChildStdout>,
) -> Result<(HashMap<Cursor, Delivery>, u64)> {
    drop(worker.0.stdin.take());
    let read = tokio::task::spawn_blocking(move || -> Result<(HashMap<Cursor, Delivery>, u64)> {
        let (mut deliveries, mut errors) = (HashMap::new(), None);
        for line in output.lines() {
            let line = line?;
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["errors", count] => errors = Some(count.parse()?),
                [cursor, delivered, created] => {
                    let delivery = Delivery {
                        delivered: delivered.parse()?,
                        created: created.parse()?,
                    };
                    deliveries.insert(cursor.parse()?, delivery);
                }
                _ => bail!("unexpected line from the subscriber: {line:?}"),
            }
        }
        let errors = errors.context("the subscriber stopped without reporting")?;
        Ok((deliveries, errors))
    });
    let outcome = read.await?;
    drop(worker);
    outcome
}

/// `cargo xtask bench-subscriber URL`: subscribes to W1's events from now with a store of its
/// own, prints `ready`, and notes when each event arrives until its input closes; then prints a
/// line per event and the number of errors the subscription reported.
pub(crate) fn subscriber(args: &[String]) -> Result<()> {
    let [url] = args else {
        bail!("usage: bench-subscriber URL");
    };
    // The input closing (the bench dropping its end) is the signal to report.
    let (closed, mut stop) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let runtime = crate::server::runtime()?;
    runtime.block_on(async {
        let store = PgStore::connect(url, PgConfig::default()).await?;
        let mut subscription = store.subscribe(&w1_events()?, StartFrom::Now).await?;
        println!("ready");
        std::io::stdout().flush()?;
        let mut seen: Vec<(Cursor, i64, i64)> = Vec::new();
        let mut errors = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                event = subscription.next() => match event {
                    Some(Ok(event)) => seen.push((event.cursor(), now_nanos(), nanos(event.created_at))),
                    Some(Err(err)) => {
                        eprintln!("bench-subscriber: {err}");
                        errors += 1;
                    }
                    None => bail!("the subscription ended"),
                },
            }
        }
        drop(subscription);
        let mut out = BufWriter::new(std::io::stdout().lock());
        for (cursor, delivered, created) in seen {
            writeln!(out, "{cursor} {delivered} {created}")?;
        }
        writeln!(out, "errors {errors}")?;
        out.flush()?;
        Ok(())
    })
}

/// S3's consumer: handles P1's events by doing nothing, so the row measures the runtime's
/// delivery (read, lease, checkpoint), not a handler.
struct NoOp;

impl Consumer for NoOp {
    fn name(&self) -> &str {
        "bench_consumer"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("session")
    }
    fn handle<'a>(&'a self, _event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async { Ok(()) })
    }
    fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bulk_limit: projections::BULK,
            ..ConsumerConfig::default()
        }
    }
}

/// S3: the no-op consumer catching up on P1's events, timed as P1 is; `raw_p1` (raw P1 from this
/// run) comes back beside it as the `raw-p1` reference row.
pub(crate) async fn s3(store: &PgStore, raw_p1: Row) -> Result<Vec<Row>> {
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .consumer(NoOp)?;
    let (samples, elapsed) = SessionEvents::of(store)
        .await?
        .timed_catch_up(runtime, "bench_consumer")
        .await?;
    Ok(vec![
        samples.events_row("strata", "S3", 1, elapsed),
        Row {
            system: "raw-p1",
            workload: "S3".into(),
            ..raw_p1
        },
    ])
}
