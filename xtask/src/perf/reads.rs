//! Data for the read workloads, and R1, R2, Q1: Strata's reads beside hand-written SQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{AggregateRef, Command, Cursor};
use strata_postgres::PgStore;
use strata_query::Query;
use strata_store::EventStore;

use crate::perf::runner::{Operation, Timing, payload, run};
use crate::perf::stats::{Row, Samples};

const LOAD_PUSH: usize = 5_000;
/// R2's page size; S1 records a latency per as many events.
pub(crate) const PAGE: i64 = 1_000;
const COLUMNS: &str = "instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, \
     created_at, creator, owner, payload::text, position, in_tx_order";

/// Rows decoded the way Strata decodes its own, so both sides pay for decoding.
type RawRow = (
    String,
    String,
    String,
    i64,
    String,
    i32,
    DateTime<Utc>,
    String,
    String,
    Option<String>,
    Decimal,
    i32,
);

/// Loads `events` session events over five instances (80 % in `bench`), a 1 000-event aggregate
/// for R1, and copies everything into the raw table.
pub(crate) async fn load(store: &PgStore, pool: &PgPool, events: usize) -> Result<()> {
    let started = Instant::now();
    let mut n = 0u64;
    while (n as usize) < events {
        let commands = (0..LOAD_PUSH)
            .map(|_| {
                n += 1;
                let instance = if n.is_multiple_of(5) {
                    format!("other-{}", n % 4)
                } else {
                    "bench".into()
                };
                let session = n / 4;
                let event_type = match n % 4 {
                    0 => "session.added",
                    3 if session.is_multiple_of(10) => "session.revoked",
                    _ => "session.token.added",
                };
                Command::builder(instance, "session", format!("s-{session}"), event_type)
                    .creator("bench")
                    .owner("org")
                    .payload(&payload(n))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.push(commands).await?;
    }
    for _ in 0..10 {
        let commands = (0..100)
            .map(|i| {
                Command::builder("bench", "user", "r1-aggregate", "user.changed")
                    .creator("bench")
                    .owner("org")
                    .payload(&payload(i))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.push(commands).await?;
    }
    sqlx::query("INSERT INTO raw.events SELECT * FROM eventstore.events")
        .execute(pool)
        .await
        .context("copying into the raw table")?;
    eprintln!(
        "bench: loaded {} events in {:.1} s",
        events + 1000,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn r1_query() -> Result<Query> {
    Ok(Query::aggregate(&AggregateRef::new(
        "bench",
        "user",
        "r1-aggregate",
    )?))
}

fn q1_query() -> Result<Query> {
    Ok(Query::builder()
        .instance("bench")
        .aggregate_types(["session"])
        .event_types(["session.added"])
        .exclude_aggregates_with(["session"], ["session.revoked"])
        .descending()
        .limit(100)
        .build()?)
}

pub(crate) const RAW_R1: &str = "SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, \
     created_at, creator, owner, payload::text, position, in_tx_order FROM raw.events \
     WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY sequence";

const RAW_Q1: &str = "SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, \
     created_at, creator, owner, payload::text, position, in_tx_order FROM raw.events \
     WHERE instance_id = $1 AND aggregate_type = $2 AND event_type = $3 \
     AND (instance_id, aggregate_id) NOT IN (SELECT instance_id, aggregate_id FROM raw.events \
         WHERE instance_id = $1 AND aggregate_type = $2 AND event_type = $4) \
     ORDER BY position DESC, in_tx_order DESC LIMIT 100";

/// R1's read as an operation, for workloads that run it in rounds of their own.
pub(crate) fn r1_op(store: &PgStore) -> Result<Operation> {
    Ok(strata_read(store, r1_query()?))
}

/// `query` through the store, as an operation: the events it returned.
pub(crate) fn strata_read(store: &PgStore, query: Query) -> Operation {
    let store = store.clone();
    let query = Arc::new(query);
    Arc::new(move |_, _| {
        let store = store.clone();
        let query = Arc::clone(&query);
        async move { Ok(store.query(&query).await?.len() as u64) }.boxed()
    })
}

pub(crate) fn raw_read(
    pool: &PgPool,
    sql: &'static str,
    binds: &'static [&'static str],
) -> Operation {
    let pool = pool.clone();
    Arc::new(move |_, _| {
        let pool = pool.clone();
        async move {
            let mut query = sqlx::query_as::<_, RawRow>(sql);
            for bind in binds {
                query = query.bind(*bind);
            }
            Ok(query.fetch_all(&pool).await?.len() as u64)
        }
        .boxed()
    })
}

/// R1 and Q1 (repeated single reads) and R2 (paging through everything).
pub(crate) async fn run_reads(
    store: &PgStore,
    pool: &PgPool,
    timing: Timing,
    r2_passes: u32,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if wanted("R1") {
        eprintln!("bench: R1");
        let (samples, elapsed) = run(1, timing, r1_op(store)?).await;
        rows.push(samples.events_row("strata", "R1", 1, elapsed));
        let op = raw_read(pool, RAW_R1, &["bench", "user", "r1-aggregate"]);
        let (samples, elapsed) = run(1, timing, op).await;
        rows.push(samples.events_row("raw", "R1", 1, elapsed));
    }
    if wanted("Q1") {
        eprintln!("bench: Q1");
        let (samples, elapsed) = run(1, timing, strata_read(store, q1_query()?)).await;
        rows.push(samples.events_row("strata", "Q1", 1, elapsed));
        let op = raw_read(
            pool,
            RAW_Q1,
            &["bench", "session", "session.added", "session.revoked"],
        );
        let (samples, elapsed) = run(1, timing, op).await;
        rows.push(samples.events_row("raw", "Q1", 1, elapsed));
    }
    if wanted("R2") {
        rows.extend(r2(store, pool, r2_passes).await?);
    }
    Ok(rows)
}

/// R2 in rounds, each one pass through Strata and one in raw SQL, taking turns at going first:
/// a pass takes about a second, and the machine's pace drifts over minutes, so passes side by
/// side compare like with like where one block of each would not. The rows are the totals; the
/// per-round ratios go to stderr.
async fn r2(store: &PgStore, pool: &PgPool, passes: u32) -> Result<Vec<Row>> {
    let rounds = passes + 2;
    eprintln!("bench: R2, {rounds} rounds alternating with raw");
    let (mut strata, mut strata_elapsed) = (Samples::default(), Duration::ZERO);
    let (mut raw, mut raw_elapsed) = (Samples::default(), Duration::ZERO);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut rates = [0.0; 2];
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let (samples, elapsed) = r2_strata_samples(store, 1).await?;
                rates[0] = samples.events as f64 / elapsed.as_secs_f64().max(1e-9);
                strata.merge(samples);
                strata_elapsed += elapsed;
            } else {
                let (samples, elapsed) = r2_raw_samples(pool, 1).await?;
                rates[1] = samples.events as f64 / elapsed.as_secs_f64().max(1e-9);
                raw.merge(samples);
                raw_elapsed += elapsed;
            }
        }
        ratios.push(rates[0] / rates[1].max(1e-9));
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "bench: R2 ratio to raw, median of {rounds} rounds {:.2} (rounds {:.2}–{:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(vec![
        strata.events_row("strata", "R2", 1, strata_elapsed),
        raw.events_row("raw", "R2", 1, raw_elapsed),
    ])
}

/// Strata's R2 pages over `passes` passes (a latency per page), and how long they took.
async fn r2_strata_samples(store: &PgStore, passes: u32) -> Result<(Samples, Duration)> {
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..passes {
        let mut cursor: Option<Cursor> = None;
        loop {
            let mut query = Query::builder().all_instances().limit(PAGE);
            if let Some(cursor) = cursor {
                query = query.resume_after(cursor);
            }
            let began = Instant::now();
            let page = store.query(&query.build()?).await?;
            samples.latencies.record(began.elapsed());
            samples.events += page.len() as u64;
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => cursor = Some(last.cursor()),
                _ => break,
            }
        }
    }
    Ok((samples, started.elapsed()))
}

/// Raw R2's pages over `passes` passes (a latency per page), and how long they took: R2's
/// baseline, and S1's reference in the rounds that alternate with it.
pub(crate) async fn r2_raw_samples(pool: &PgPool, passes: u32) -> Result<(Samples, Duration)> {
    let first = format!("SELECT {COLUMNS} FROM raw.events ORDER BY position, in_tx_order LIMIT $1");
    let next = format!(
        "SELECT {COLUMNS} FROM raw.events WHERE (position, in_tx_order) > ($1, $2) \
         ORDER BY position, in_tx_order LIMIT $3"
    );
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..passes {
        let mut cursor: Option<(Decimal, i32)> = None;
        loop {
            let began = Instant::now();
            let page: Vec<RawRow> = match cursor {
                None => sqlx::query_as(&first).bind(PAGE).fetch_all(pool).await?,
                Some((position, order)) => {
                    sqlx::query_as(&next)
                        .bind(position)
                        .bind(order)
                        .bind(PAGE)
                        .fetch_all(pool)
                        .await?
                }
            };
            samples.latencies.record(began.elapsed());
            samples.events += page.len() as u64;
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => cursor = Some((last.10, last.11)),
                _ => break,
            }
        }
    }
    Ok((samples, started.elapsed()))
}
