//! `cargo xtask bench --scale`: how Strata's costs grow with the events table. One database is
//! filled to each size in turn (1 M, then 10 M events by default; [`load`] says what they look
//! like), and at each size the same measurements run:
//!
//! - W1 at C = 8 (rate and p99), on top of everything loaded;
//! - R1 on a 10 000-event aggregate and on a 10-event one, beside the hand-written `SELECT`;
//! - Q1, the seed-002 exclusion query, on the largest instance's users, beside the hand-written
//!   `NOT IN`;
//! - P1: a new projection catching up from scratch on every instance's sessions (three tenths
//!   of the table);
//! - a subscription catching up on the same events;
//! - the table's and its indexes' bytes per event, and how long `VACUUM` and `ANALYZE` take.
//!
//! Rows are `SCALE-<size>-<workload>` (`SCALE-10M-Q1`); the summary puts each size beside the
//! first and checks the target: W1, R1 and Q1 at the largest size at least 0.9 × the smallest.

pub(crate) mod load;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_event::AggregateRef;
use strata_postgres::{PgConfig, PgStore};
use strata_query::Query;
use strata_store::EventStore;

use crate::perf::runner::{Timing, run};
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::Row;
use crate::perf::{projections, reads, subscriptions, writes};

use self::load::{Loaded, R1_LARGE, R1_SMALL};

/// The sizes `--scale` loads when `--scale-sizes` does not say.
pub(crate) const DEFAULT_SIZES: [u64; 2] = [1_000_000, 10_000_000];

/// The instance Q1 reads: the largest.
const Q1_INSTANCE: &str = "scale-001";
/// The instance the subscription catches up on: the second largest, about a tenth of the events,
/// three tenths of them sessions.
const CATCH_UP_INSTANCE: &str = "scale-002";

const RAW_R1: &str = "SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, \
     revision, created_at, creator, owner, payload::text, position, in_tx_order \
     FROM eventstore.events \
     WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY sequence";

/// Q1 as the seed writes it, on the same table.
const RAW_Q1: &str = "SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, \
     revision, created_at, creator, owner, payload::text, position, in_tx_order \
     FROM eventstore.events \
     WHERE instance_id = $1 AND aggregate_type = $2 AND event_type = $3 \
     AND (instance_id, aggregate_id) NOT IN (SELECT instance_id, aggregate_id FROM eventstore.events \
         WHERE instance_id = $1 AND aggregate_type = $2 AND event_type = $4) \
     ORDER BY position DESC, in_tx_order DESC LIMIT 100";

/// `1M`, `10M`, `500k`: the size in a workload name.
pub(crate) fn size_label(size: u64) -> String {
    if size >= 1_000_000 && size.is_multiple_of(1_000_000) {
        format!("{}M", size / 1_000_000)
    } else if size >= 1_000 && size.is_multiple_of(1_000) {
        format!("{}k", size / 1_000)
    } else {
        size.to_string()
    }
}

/// Parses `1M,10M` or `500k,2000000`.
pub(crate) fn parse_sizes(list: &str) -> Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for item in list.split(',').map(str::trim) {
        let (digits, factor) = match item.chars().last() {
            Some('M' | 'm') => (&item[..item.len() - 1], 1_000_000),
            Some('k' | 'K') => (&item[..item.len() - 1], 1_000),
            _ => (item, 1),
        };
        let number: u64 = digits
            .parse()
            .with_context(|| format!("`{item}` is not a size such as 1M, 500k or 250000"))?;
        let size = number
            .checked_mul(factor)
            .filter(|size| *size >= 20_000)
            .with_context(|| format!("`{item}`: sizes run from 20k to u64::MAX events"))?;
        sizes.push(size);
    }
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// `SCALE-<size>-<name>`.
fn workload(size: u64, name: &str) -> String {
    format!("SCALE-{}-{name}", size_label(size))
}

/// Whether `name` is a `--scale` row.
pub(crate) fn is_scale_workload(name: &str) -> bool {
    name.starts_with("SCALE-")
}

/// What a size measured besides its rows: the maintenance and the footprint.
struct Footprint {
    size: u64,
    events: i64,
    table_bytes: i64,
    index_bytes: i64,
    vacuum: Duration,
    analyze: Duration,
}

/// Fills one database to each of `sizes` (ascending) and measures at each.
pub(crate) async fn run_scale(admin_url: &str, sizes: &[u64], timing: Timing) -> Result<Vec<Row>> {
    let database = BenchDatabase::create(admin_url).await?;
    let pool = database.pool(8);
    let store = database.store(&PgConfig::default())?;
    let mut loaded = Loaded::default();
    let (mut rows, mut footprints) = (Vec::new(), Vec::new());
    for &size in sizes {
        eprintln!("bench: scale: loading to {} events", size_label(size));
        load::load_to(&pool, &mut loaded, size).await?;
        footprints.push(maintain(&pool, size).await?);
        rows.extend(measure_at(&store, &database, size, timing).await?);
    }
    print_summary(&rows, &footprints, sizes);
    Ok(rows)
}

/// `VACUUM` and `ANALYZE` of the events table, timed, then its size.
async fn maintain(pool: &sqlx::PgPool, size: u64) -> Result<Footprint> {
    let started = Instant::now();
    sqlx::raw_sql("VACUUM eventstore.events")
        .execute(pool)
        .await?;
    let vacuum = started.elapsed();
    let started = Instant::now();
    sqlx::raw_sql("ANALYZE eventstore.events")
        .execute(pool)
        .await?;
    let analyze = started.elapsed();
    let (events, table_bytes, index_bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM eventstore.events), pg_table_size('eventstore.events'), \
         pg_indexes_size('eventstore.events')",
    )
    .fetch_one(pool)
    .await?;
    eprintln!(
        "bench: scale {}: VACUUM {:.1} s, ANALYZE {:.1} s, {} bytes/event in the table and {} in \
         its indexes",
        size_label(size),
        vacuum.as_secs_f64(),
        analyze.as_secs_f64(),
        table_bytes / events.max(1),
        index_bytes / events.max(1)
    );
    Ok(Footprint {
        size,
        events,
        table_bytes,
        index_bytes,
        vacuum,
        analyze,
    })
}

fn aggregate([instance, aggregate_type, id]: [&str; 3]) -> Result<Query> {
    Ok(Query::aggregate(&AggregateRef::new(
        instance,
        aggregate_type,
        id,
    )?))
}

fn q1_query() -> Result<Query> {
    Ok(Query::builder()
        .instance(Q1_INSTANCE)
        .aggregate_types(["user"])
        .event_types(["user.added"])
        .exclude_aggregates_with(["user"], ["user.removed"])
        .descending()
        .limit(100)
        .build()?)
}

async fn measure_at(
    store: &PgStore,
    database: &BenchDatabase,
    size: u64,
    timing: Timing,
) -> Result<Vec<Row>> {
    let pool = database.pool(1);
    let mut rows = Vec::new();

    eprintln!("bench: {}", workload(size, "W1"));
    let (samples, elapsed) = writes::w1_samples(store, 8, timing).await;
    rows.push(samples.events_row("strata", &workload(size, "W1"), 8, elapsed));

    for (name, target) in [("R1-large", &R1_LARGE), ("R1-small", &R1_SMALL)] {
        let name = workload(size, name);
        eprintln!("bench: {name}");
        let (samples, elapsed) =
            run(1, timing, reads::strata_read(store, aggregate(*target)?)).await;
        rows.push(samples.events_row("strata", &name, 1, elapsed));
        let (samples, elapsed) = run(1, timing, reads::raw_read(&pool, RAW_R1, target)).await;
        rows.push(samples.events_row("raw", &name, 1, elapsed));
    }

    let name = workload(size, "Q1");
    eprintln!("bench: {name}");
    let (samples, elapsed) = run(1, timing, reads::strata_read(store, q1_query()?)).await;
    rows.push(samples.events_row("strata", &name, 1, elapsed));
    let binds = &[Q1_INSTANCE, "user", "user.added", "user.removed"];
    let (samples, elapsed) = run(1, timing, reads::raw_read(&pool, RAW_Q1, binds)).await;
    rows.push(samples.events_row("raw", &name, 1, elapsed));

    let name = workload(size, "P1");
    eprintln!("bench: {name} (every instance's sessions)");
    let (samples, elapsed) = projections::p1_from_scratch(store, &pool).await?;
    rows.push(samples.events_row("strata", &name, 1, elapsed));

    let name = workload(size, "S1");
    eprintln!("bench: {name} (instance {CATCH_UP_INSTANCE})");
    let sessions = Query::builder()
        .instance(CATCH_UP_INSTANCE)
        .aggregate_types(["session"])
        .build()?;
    let total = store.count(&sessions).await?;
    let (samples, elapsed) = subscriptions::catch_up(store, &sessions, total).await?;
    rows.push(samples.events_row("strata", &name, 1, elapsed));
    Ok(rows)
}

fn rate(rows: &[Row], system: &str, workload: &str) -> Option<f64> {
    rows.iter()
        .find(|row| row.system == system && row.workload == workload)
        .and_then(|row| row.events_per_sec)
}

fn p99(rows: &[Row], workload: &str) -> Option<f64> {
    rows.iter()
        .find(|row| row.system == "strata" && row.workload == workload)
        .map(|row| row.p99_ms)
}

/// Each measurement at every size, the last size's ratio to the first, and the targets.
fn print_summary(rows: &[Row], footprints: &[Footprint], sizes: &[u64]) {
    let (Some(&first), Some(&last)) = (sizes.first(), sizes.last()) else {
        return;
    };
    let ratio_label = format!("{}/{}", size_label(last), size_label(first));
    let mut header = format!("{:<26}", "scale");
    for &size in sizes {
        header.push_str(&format!(" {:>12}", size_label(size)));
    }
    header.push_str(&format!(" {:>9}  target", ratio_label));
    eprintln!("{header}");
    let line = |label: &str, values: Vec<Option<f64>>, target: Option<f64>| {
        let mut out = format!("{label:<26}");
        for value in &values {
            match value {
                Some(value) if *value >= 100.0 => out.push_str(&format!(" {value:>12.0}")),
                Some(value) => out.push_str(&format!(" {value:>12.2}")),
                None => out.push_str(&format!(" {:>12}", "-")),
            }
        }
        let ratio = match (
            values.first().copied().flatten(),
            values.last().copied().flatten(),
        ) {
            (Some(first), Some(last)) if first > 0.0 => Some(last / first),
            _ => None,
        };
        match ratio {
            Some(ratio) => out.push_str(&format!(" {ratio:>9.2}")),
            None => out.push_str(&format!(" {:>9}", "-")),
        }
        if let (Some(target), Some(ratio)) = (target, ratio) {
            let met = if ratio >= target { "met" } else { "MISSED" };
            out.push_str(&format!("  >= {target} {met}"));
        }
        eprintln!("{out}");
    };
    for (label, system, name, target) in [
        ("W1 C=8 ev/s", "strata", "W1", Some(0.9)),
        ("R1-large ev/s", "strata", "R1-large", Some(0.9)),
        ("R1-large raw ev/s", "raw", "R1-large", None),
        ("R1-small ev/s", "strata", "R1-small", Some(0.9)),
        ("R1-small raw ev/s", "raw", "R1-small", None),
        ("Q1 ev/s", "strata", "Q1", Some(0.9)),
        ("Q1 raw (NOT IN) ev/s", "raw", "Q1", None),
        ("P1 catch-up ev/s", "strata", "P1", None),
        ("S1 catch-up ev/s", "strata", "S1", None),
    ] {
        let values = sizes
            .iter()
            .map(|&size| rate(rows, system, &workload(size, name)))
            .collect();
        line(label, values, target);
    }
    let values = sizes
        .iter()
        .map(|&size| p99(rows, &workload(size, "W1")))
        .collect();
    line("W1 C=8 p99 ms", values, None);
    let per_event = |bytes: fn(&Footprint) -> i64| -> Vec<Option<f64>> {
        footprints
            .iter()
            .map(|f| Some(bytes(f) as f64 / f.events.max(1) as f64))
            .collect()
    };
    line("table bytes/event", per_event(|f| f.table_bytes), None);
    line("index bytes/event", per_event(|f| f.index_bytes), None);
    let seconds = |of: fn(&Footprint) -> Duration| -> Vec<Option<f64>> {
        footprints
            .iter()
            .map(|f| Some(of(f).as_secs_f64()))
            .collect()
    };
    line("VACUUM s", seconds(|f| f.vacuum), None);
    line("ANALYZE s", seconds(|f| f.analyze), None);
    let sizes_line: Vec<String> = footprints
        .iter()
        .map(|f| format!("{}: {} events", size_label(f.size), f.events))
        .collect();
    eprintln!("(rows counted after loading: {})", sizes_line.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_sorted_and_deduplicated() {
        assert_eq!(
            parse_sizes("10M, 1m,500k,1000000").unwrap(),
            vec![500_000, 1_000_000, 10_000_000]
        );
        assert!(parse_sizes("1000").is_err());
        assert!(parse_sizes("ten").is_err());
        assert!(parse_sizes("99999999999999999999M").is_err());
    }

    #[test]
    fn labels_name_round_sizes() {
        assert_eq!(size_label(10_000_000), "10M");
        assert_eq!(size_label(500_000), "500k");
        assert_eq!(size_label(1_234_567), "1234567");
    }
}
