//! R1-typed and the R10k rows: Strata's typed layer reading aggregates, beside the untyped query
//! and hand-written SQL of the same events.
//!
//! - `R1-typed`: the 1 000-event aggregate R1 reads, loaded through `strata-domain` (decoded into
//!   a serde enum and folded), beside R1's rows.
//! - `R10k` (strata: untyped query; raw: SQL), `R10k-typed` (a typed load of the 10 000 events)
//!   and `R10k-snapshot` (the same load through a snapshot in the memory cache, which reads only
//!   the snapshot's base event). Every row counts the aggregate's 10 000 events per load, so
//!   events/s compare what a caller gets.

use std::sync::Arc;

use anyhow::Result;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use strata_cache::{Cache, CacheConfig};
use strata_domain::{
    Aggregate, DomainEvent, Envelope, EventSpec, Repository, SnapshotEntry, Snapshots,
};
use strata_event::{AggregateRef, Command};
use strata_postgres::PgStore;
use strata_query::Query;
use strata_store::EventStore;

use crate::perf::runner::{Operation, Timing, payload, run};
use crate::perf::stats::Row;

/// The aggregate the R10k rows load.
const R10K: &str = "r10k-aggregate";

/// The bench's user events, as a service would type them.
#[derive(Debug, Serialize, Deserialize)]
enum BenchUserEvent {
    #[serde(rename = "user.changed")]
    Changed(Changed),
}

#[derive(Debug, Serialize, Deserialize)]
struct Changed {
    user_id: String,
    email: String,
    display_name: String,
    locale: String,
    flags: Vec<String>,
    plan: String,
    counter: u64,
}

impl DomainEvent for BenchUserEvent {
    const AGGREGATE_TYPE: &'static str = "user";
    const EVENTS: &'static [EventSpec] = &[EventSpec::new("user.changed")];
}

/// What loading folds the events into.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BenchUser {
    email: String,
    display_name: String,
    changes: u64,
}

impl Aggregate for BenchUser {
    type Event = BenchUserEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn handle(&self, (): ()) -> Result<Vec<BenchUserEvent>, Self::Error> {
        Ok(Vec::new())
    }

    fn apply(&mut self, event: Envelope<BenchUserEvent>) {
        let BenchUserEvent::Changed(changed) = event.payload;
        self.email = changed.email;
        self.display_name = changed.display_name;
        self.changes += 1;
    }
}

/// Adds the 10 000-event aggregate of the R10k rows (and copies it into the raw table).
pub(crate) async fn load(store: &PgStore, pool: &PgPool) -> Result<()> {
    for push in 0..10u64 {
        let commands = (0..1_000u64)
            .map(|i| {
                Command::builder("bench", "user", R10K, "user.changed")
                    .creator("bench")
                    .owner("org")
                    .payload(&payload(push * 1_000 + i))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.push(commands).await?;
    }
    sqlx::query(
        "INSERT INTO raw.events SELECT * FROM eventstore.events \
         WHERE instance_id = 'bench' AND aggregate_type = 'user' AND aggregate_id = $1",
    )
    .bind(R10K)
    .execute(pool)
    .await?;
    Ok(())
}

fn typed_load(repository: Repository<PgStore>, aggregate_id: &'static str) -> Operation {
    Arc::new(move |_, _| {
        let repository = repository.clone();
        async move {
            let loaded = repository.load::<BenchUser>("bench", aggregate_id).await?;
            Ok(loaded.state.changes.max(loaded.sequence()))
        }
        .boxed()
    })
}

fn untyped_query(store: &PgStore, aggregate_id: &str) -> Result<Operation> {
    let store = store.clone();
    let query = Arc::new(Query::aggregate(&AggregateRef::new(
        "bench",
        "user",
        aggregate_id,
    )?));
    Ok(Arc::new(move |_, _| {
        let store = store.clone();
        let query = Arc::clone(&query);
        async move { Ok(store.query(&query).await?.len() as u64) }.boxed()
    }))
}

/// R1-typed, when R1 is wanted; the R10k rows when R10k is.
pub(crate) async fn run_typed(
    store: &PgStore,
    raw_r10k: Operation,
    timing: Timing,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let repository = Repository::new(store.clone());
    if wanted("R1") || wanted("R1-typed") {
        eprintln!("bench: R1-typed");
        let (samples, elapsed) =
            run(1, timing, typed_load(repository.clone(), "r1-aggregate")).await;
        rows.push(samples.events_row("strata", "R1-typed", 1, elapsed));
    }
    if wanted("R10k") || wanted("R10k-snapshot") {
        eprintln!("bench: R10k (untyped, typed, typed through a snapshot)");
        let (samples, elapsed) = run(1, timing, untyped_query(store, R10K)?).await;
        rows.push(samples.events_row("strata", "R10k", 1, elapsed));
        let (samples, elapsed) = run(1, timing, raw_r10k).await;
        rows.push(samples.events_row("raw", "R10k", 1, elapsed));
        let (samples, elapsed) = run(1, timing, typed_load(repository.clone(), R10K)).await;
        rows.push(samples.events_row("strata", "R10k-typed", 1, elapsed));
        let cache: Cache<SnapshotEntry> = Cache::memory("bench_snapshots", CacheConfig::default())?;
        let with_snapshots = repository.with_snapshots(Snapshots::new(cache));
        // The first load reads every event and writes the snapshot the measured loads start from.
        with_snapshots.load::<BenchUser>("bench", R10K).await?;
        let (samples, elapsed) = run(1, timing, typed_load(with_snapshots, R10K)).await;
        rows.push(samples.events_row("strata", "R10k-snapshot", 1, elapsed));
    }
    Ok(rows)
}
