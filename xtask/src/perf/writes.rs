//! W1, W2, W3: Strata's push beside plain INSERTs with client-side sequences.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use futures::FutureExt;
use sqlx::PgPool;
use strata_event::{Command, IdempotencyKey};
use strata_postgres::PgStore;
use strata_store::EventStore;

use crate::perf::runner::{Operation, Timing, payload, run};
use crate::perf::stats::{Row, Samples};

pub(crate) const AGGREGATES: u64 = 10_000;
const W3_EVENTS: usize = 100;

/// W1's command: one `user.changed` event of about 200 bytes for `aggregate_id`.
pub(crate) fn command(aggregate_id: &str, n: u64) -> Result<Command> {
    Ok(
        Command::builder("bench", "user", aggregate_id, "user.changed")
            .creator("bench")
            .owner("org")
            .payload(&payload(n))
            .build()?,
    )
}

/// The baseline: client-side sequences and positions, no locks, plain INSERTs.
#[derive(Clone)]
struct Raw {
    pool: PgPool,
    sequences: Arc<Vec<AtomicU64>>,
    position: Arc<AtomicU64>,
}

impl Raw {
    fn new(pool: PgPool) -> Raw {
        Raw {
            pool,
            sequences: Arc::new((0..AGGREGATES + 64).map(|_| AtomicU64::new(0)).collect()),
            position: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same baseline (its sequences and positions go on) writing through `pool`.
    fn through(&self, pool: PgPool) -> Raw {
        Raw {
            pool,
            ..self.clone()
        }
    }

    /// INSERTs `count` events for aggregate slot `slot` in one statement.
    async fn insert(&self, slot: u64, aggregate_id: String, count: usize, n: u64) -> Result<u64> {
        let mut sql = String::from(
            "INSERT INTO raw.events (instance_id, aggregate_type, aggregate_id, sequence, event_type, \
             revision, created_at, creator, owner, payload, position, in_tx_order) VALUES ",
        );
        let first = self.sequences[slot as usize].fetch_add(count as u64, Ordering::Relaxed) + 1;
        let position = self.position.fetch_add(1, Ordering::Relaxed) + 1;
        for i in 0..count {
            if i > 0 {
                sql.push_str(", ");
            }
            let base = i * 4;
            let _ = write!(
                sql,
                "('bench', 'user', ${}, ${}, 'user.changed', 1, now(), 'bench', 'org', ${}::jsonb, ${}, {i})",
                base + 1,
                base + 2,
                base + 3,
                base + 4
            );
        }
        let mut query = sqlx::query(&sql);
        for i in 0..count {
            query = query
                .bind(aggregate_id.clone())
                .bind((first + i as u64) as i64)
                .bind(payload(n + i as u64).to_string())
                .bind(rust_decimal::Decimal::from(position));
        }
        query.execute(&self.pool).await?;
        Ok(count as u64)
    }
}

fn strata_op(store: &PgStore, pick: fn(usize, u64) -> (String, usize)) -> Operation {
    let store = store.clone();
    Arc::new(move |task, iteration| {
        let store = store.clone();
        async move {
            let (aggregate_id, count) = pick(task, iteration);
            let commands = (0..count)
                .map(|i| command(&aggregate_id, iteration + i as u64))
                .collect::<Result<Vec<_>>>()?;
            Ok(store.push(commands).await?.len() as u64)
        }
        .boxed()
    })
}

/// W1's push with a fresh idempotency key on every push: what a client that always sends keys
/// pays, a first attempt each time (no retries).
fn keyed_op(store: &PgStore) -> Operation {
    // One counter for the whole run: each round builds a new operation and restarts the
    // iteration counts, and a key used again with other commands would be refused as reused.
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
    let store = store.clone();
    Arc::new(move |task, iteration| {
        let store = store.clone();
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        async move {
            let (aggregate_id, _) = w1_pick(task, iteration);
            let commands = vec![command(&aggregate_id, iteration)?];
            let key = IdempotencyKey::new("bench", format!("w1-keyed-{key}"))?;
            Ok(store.push_idempotent(&key, commands).await?.len() as u64)
        }
        .boxed()
    })
}

/// W1-keyed's samples, for the rounds that alternate it with W1.
pub(crate) async fn w1_keyed_samples(
    store: &PgStore,
    concurrency: usize,
    timing: Timing,
) -> (Samples, Duration) {
    run(concurrency, timing, keyed_op(store)).await
}

fn raw_op(
    raw: &Raw,
    pick: fn(usize, u64) -> (String, usize),
    slot: fn(usize, u64) -> u64,
) -> Operation {
    let raw = raw.clone();
    Arc::new(move |task, iteration| {
        let raw = raw.clone();
        async move {
            let (aggregate_id, count) = pick(task, iteration);
            raw.insert(slot(task, iteration), aggregate_id, count, iteration)
                .await
        }
        .boxed()
    })
}

/// A pseudo-random aggregate per (task, iteration), spread over 10 000.
fn random_slot(task: usize, iteration: u64) -> u64 {
    let mut x = (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ iteration.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x % AGGREGATES
}

pub(crate) fn w1_pick(task: usize, iteration: u64) -> (String, usize) {
    (format!("agg-{}", random_slot(task, iteration)), 1)
}
fn hot_pick(_: usize, _: u64) -> (String, usize) {
    ("hot".to_owned(), 1)
}
fn hot_slot(_: usize, _: u64) -> u64 {
    AGGREGATES
}
fn w3_pick(task: usize, _: u64) -> (String, usize) {
    (format!("batch-{task}"), W3_EVENTS)
}
fn w3_slot(task: usize, _: u64) -> u64 {
    AGGREGATES + 1 + task as u64
}

/// W1, W2 and W3 at each concurrency on one database, Strata and raw in alternating rounds
/// (`rounds` of each, each side first in turn): the disk's flush latency drifts within minutes,
/// and one long run of each compared two moments of it. Raw writes through a pool of as many
/// connections as it has clients (`raw_pool(C)`), as a service writing plain SQL would; Strata
/// through its own push pool. Each row's rate is its system's median round; stderr gives the
/// median of the per-round ratios and their range, with a warning when the range is wider than
/// ±10 % of the median.
pub(crate) async fn run_writes(
    store: &PgStore,
    raw_pool: &dyn Fn(u32) -> PgPool,
    concurrencies: &[usize],
    timing: Timing,
    rounds: u32,
    wanted: &dyn Fn(&str) -> bool,
) -> Vec<Row> {
    let raw = Raw::new(raw_pool(1));
    let mut rows = Vec::new();
    type Workload = (
        &'static str,
        fn(usize, u64) -> (String, usize),
        fn(usize, u64) -> u64,
    );
    let workloads: [Workload; 3] = [
        ("W1", w1_pick, random_slot),
        ("W2", hot_pick, hot_slot),
        ("W3", w3_pick, w3_slot),
    ];
    let rounds = rounds.max(1);
    let round = Timing {
        warmup: timing.warmup / 2,
        measure: timing.measure / rounds,
    };
    for (name, pick, slot) in workloads {
        if !wanted(name) {
            continue;
        }
        for &concurrency in concurrencies {
            eprintln!("bench: {name} at C={concurrency}, {rounds} rounds alternating with raw");
            let raw = raw.through(raw_pool(concurrency as u32));
            let (mut strata_rounds, mut raw_rounds) = (Rounds::default(), Rounds::default());
            for n in 0..rounds {
                let strata_first = n % 2 == 0;
                for strata_turn in [strata_first, !strata_first] {
                    if strata_turn {
                        let op = strata_op(store, pick);
                        strata_rounds.add(run(concurrency, round, op).await);
                    } else {
                        let op = raw_op(&raw, pick, slot);
                        raw_rounds.add(run(concurrency, round, op).await);
                    }
                }
            }
            report_ratios(name, concurrency, &strata_rounds, &raw_rounds);
            rows.push(strata_rounds.row("strata", name, concurrency));
            rows.push(raw_rounds.row("raw", name, concurrency));
        }
    }
    rows
}

/// One system's rounds of a write workload.
#[derive(Default)]
struct Rounds {
    merged: Samples,
    elapsed: Duration,
    /// Events per second of each round, in order.
    rates: Vec<f64>,
}

impl Rounds {
    fn add(&mut self, (samples, elapsed): (Samples, Duration)) {
        self.rates
            .push(samples.events as f64 / elapsed.as_secs_f64().max(1e-9));
        self.merged.merge(samples);
        self.elapsed += elapsed;
    }

    /// The row of every round's latencies, its rates those of the median round.
    fn row(self, system: &'static str, workload: &str, concurrency: usize) -> Row {
        let median = median(&self.rates);
        let mut row = self
            .merged
            .events_row(system, workload, concurrency, self.elapsed);
        if let (Some(events), Some(ops)) = (row.events_per_sec, row.ops_per_sec) {
            // Operations scale with events within a workload (a fixed number per operation).
            let scale = median / events.max(1e-9);
            row.events_per_sec = Some(median);
            row.ops_per_sec = Some(ops * scale);
        }
        row
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Prints the median of the per-round ratios Strata/raw and their range, warning when the range
/// leaves ±10 % of the median: the ratio then says less than it seems to.
fn report_ratios(workload: &str, concurrency: usize, strata: &Rounds, raw: &Rounds) {
    let ratios: Vec<f64> = strata
        .rates
        .iter()
        .zip(&raw.rates)
        .map(|(strata, raw)| strata / raw.max(1e-9))
        .collect();
    let middle = median(&ratios);
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "bench: {workload} C={concurrency}: per-round ratio to raw median {middle:.2} \
         ({low:.2}–{high:.2})"
    );
    if high > middle * 1.1 || low < middle * 0.9 {
        eprintln!(
            "bench: warning: {workload} C={concurrency}'s per-round ratios spread wider than ±10 % \
             of their median: the machine's disk or CPU drifted during the rounds"
        );
    }
}

/// W1 at `concurrency` with group commit's NOTIFY on or off: the cost of announcing pushes.
pub(crate) async fn w1_only(store: &PgStore, concurrency: usize, timing: Timing) -> Row {
    let (samples, elapsed) = w1_samples(store, concurrency, timing).await;
    samples.events_row("strata", "W1", concurrency, elapsed)
}

/// W1's push as an operation, for workloads that run it in windows of their own.
pub(crate) fn w1_op(store: &PgStore) -> Operation {
    strata_op(store, w1_pick)
}

/// W1's raw samples, for workloads that measure it in several rounds and merge them.
pub(crate) async fn w1_samples(
    store: &PgStore,
    concurrency: usize,
    timing: Timing,
) -> (Samples, Duration) {
    run(concurrency, timing, w1_op(store)).await
}
