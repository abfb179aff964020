//! `cargo xtask bench`: Strata beside a raw-SQL baseline measured in the same run, so the ratio is
//! what to read (docs/benchmarks.md).

mod cache;
mod cache_baselines;
mod cpu;
mod observed;
mod personal;
mod pollers;
mod projections;
mod reader_cost;
mod reads;
mod rebuild;
mod runner;
mod scale;
mod scaleout;
mod setup;
mod stats;
mod status;
mod subscriptions;
mod typed;
mod writes;

use std::time::Duration;

use anyhow::{Result, bail};
use strata_postgres::PgConfig;
use strata_store::telemetry::{PUSH_DURATION, QUERY_DURATION};

use crate::perf::runner::Timing;
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::{Row, Samples};
use crate::server;

pub(crate) use projections::worker;
pub(crate) use rebuild::rebuilder;
pub(crate) use subscriptions::subscriber;

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--json] [--workload W1,W2,...]
       cargo xtask bench --scale [--scale-sizes 1M,10M] [--json]

Runs W1 W2 W3 (writes, C = 8 and 32), W1-keyed (W1 with a fresh idempotency key per push, C = 8,
in rounds alternating with W1), W1-encrypted (W1 with one personal field sealed per subject, C = 8,
alternating with W1), W1-observed (W1 at C = 8 with a metrics recorder and a tracing subscriber
installed and on, alternating with them off), R1 R2 Q1 (reads over 200 000+ events), R1-observed
(R1 observed, alternating with R1 unobserved), R1-typed, R1-encrypted (R1-typed with a sealed
field per event) and R10k
(aggregates loaded through the typed layer, R10k also through a snapshot), P1 (projection
catch-up), P2 (push-to-projection latency across processes), W1P (W1 beside 20 projections), S1
(catch-up through a subscription, alternating with raw R2), S2 (push-to-delivery latency of a
subscription in another process while W1 runs at C = 8), S3 (a durable consumer with a no-op
handler catching up on P1's events, beside raw P1), W1-beside-rebuild and P1-versioned (either
name runs both: W1 at C = 8 while a new version of a projection builds from P1's events in another
process, in rounds alternating with W1 alone; the build's rate beside Strata's P1, measured for it
when P1 is not asked for), STATUS-page (the render time of `strata serve`'s status page for
1 000 projections x 100 instances, from its Server-Timing header; builds strata-cli in release)
SCALEOUT (only when named, not with --quick: on servers it starts, W1 at C = 32 alone, beside
readers on the primary and beside readers on a hot standby, and over one shard and two) and
C1-<connector>-<op> (the cache: connector
memory, postgres or redis; op get-hit, get-miss or set; `C1` alone names all nine; get-hit and set
beside moka alone, a plain SELECT or upsert, a plain SET), each beside a raw baseline from the same
run where one exists.
--json prints one JSON object per standard row per line on stdout (docs/benchmarks.md); progress and the rows that are
not standard rows (W1 with and without NOTIFY, W1 beside W1-keyed or W1-encrypted, W1 and R1
unobserved beside their observed rounds, the raw R2 and
raw P1 references of S1 and S3, W1 alone beside W1-beside-rebuild) go to stderr. Redis: REDIS_URL, by default
redis://127.0.0.1:6379.

--scale fills one database to each size (default 1M and 10M events; tens of minutes, several GB
of disk) with generated events of 100 skewed instances, and measures at each size W1 at C = 8, R1
on a large and a small aggregate, Q1, a projection's and a subscription's catch-up, bytes per
event, VACUUM and ANALYZE: rows SCALE-<size>-<workload>, and a summary of each size beside the
first on stderr. Never part of --quick or CI.";

/// The standard event workloads (docs/benchmarks.md, "Workloads").
const EVENT_WORKLOADS: [&str; 23] = [
    "W1",
    "W2",
    "W3",
    "W1-keyed",
    "W1-encrypted",
    "W1-observed",
    "R1",
    "R1-observed",
    "R1-typed",
    "R1-encrypted",
    "R10k",
    "R10k-snapshot",
    "R2",
    "Q1",
    "P1",
    "P2",
    "W1P",
    "S1",
    "S2",
    "S3",
    rebuild::W1_BESIDE_REBUILD,
    rebuild::P1_VERSIONED,
    status::STATUS_PAGE,
];

/// Whether `name` is a standard workload (`--json` prints only these).
fn is_standard_workload(name: &str) -> bool {
    EVENT_WORKLOADS.contains(&name)
        || scaleout::ROWS.contains(&name)
        || scale::is_scale_workload(name)
        || cache::workloads().any(|w| w == name)
}

/// Whether `row` is a standard row: a standard workload, measured on Strata or the raw baseline.
fn is_standard_row(row: &Row) -> bool {
    matches!(row.system, "strata" | "raw") && is_standard_workload(&row.workload)
}

struct Options {
    quick: bool,
    json: bool,
    workloads: Option<Vec<String>>,
    /// `--scale`: the sizes to fill the events table to, instead of the workloads.
    scale: Option<Vec<u64>>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        json: false,
        workloads: None,
        scale: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = true,
            "--workload" | "--workloads" => {
                let Some(list) = args.next() else {
                    bail!("--workload needs a list, e.g. W1,R2\n\n{USAGE}");
                };
                let names: Vec<String> = list.split(',').map(|w| w.trim().to_owned()).collect();
                for name in &names {
                    let known = name.eq_ignore_ascii_case("C1")
                        || name.eq_ignore_ascii_case(scaleout::SCALEOUT)
                        || EVENT_WORKLOADS
                            .iter()
                            .map(|w| (*w).to_owned())
                            .chain(cache::workloads())
                            .any(|w| w.eq_ignore_ascii_case(name));
                    if !known {
                        bail!("unknown workload `{name}`\n\n{USAGE}");
                    }
                }
                options.workloads = Some(names);
            }
            "--scale" => {
                options
                    .scale
                    .get_or_insert_with(|| scale::DEFAULT_SIZES.to_vec());
            }
            "--scale-sizes" => {
                let Some(list) = args.next() else {
                    bail!("--scale-sizes needs a list, e.g. 1M,10M\n\n{USAGE}");
                };
                options.scale = Some(scale::parse_sizes(list)?);
            }
            "--help" | "-h" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
    }
    if options.scale.is_some() && (options.quick || options.workloads.is_some()) {
        bail!(
            "--scale runs on its own, without --quick or --workload (use --scale-sizes for a \
             smaller table)\n\n{USAGE}"
        );
    }
    Ok(options)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let server = server::PgServer::find_or_start()?;
    eprintln!("bench: against {}", server.describe());
    let runtime = server::runtime()?;
    let url = server.url().to_owned();
    let outcome = runtime.block_on(measure(&url, &options));
    // Dropped whatever happened, so a failed run leaves nothing behind; only this run's (the
    // names carry the process id), so a bench running beside this one keeps its databases.
    let own = format!("strata\\_bench\\_{}\\_%", std::process::id());
    if let Err(err) = runtime.block_on(server::drop_databases_like(&url, &own)) {
        eprintln!("bench: could not drop the bench databases: {err:#}");
    }
    // And those of runs that were killed: their process is gone (Linux: no /proc entry).
    if let Err(err) = runtime.block_on(server::drop_orphaned_databases(&url, setup::PREFIX)) {
        eprintln!("bench: could not drop orphaned bench databases: {err:#}");
    }
    let rows = outcome?;
    if options.json {
        // Nothing but standard rows on stdout: the NOTIFY comparison and W1P's reference are notes.
        for row in rows.iter().filter(|row| is_standard_row(row)) {
            println!("{}", serde_json::to_string(row)?);
        }
        for line in notify_line(&rows)
            .into_iter()
            .chain(keyed_line(&rows))
            .chain(observed::summary(&rows))
            .chain(poll_line(&rows))
            .chain(reference_lines(&rows))
            .chain(rebuild::summary(&rows, p1_reference(&rows)))
            .chain(scaleout::summary(&rows))
        {
            eprintln!("bench: not a standard row: {line}");
        }
    } else {
        print_table(&rows);
    }
    Ok(())
}

async fn measure(url: &str, options: &Options) -> Result<Vec<Row>> {
    let timing = if options.quick {
        Timing {
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
        }
    } else {
        Timing {
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(10),
        }
    };
    if let Some(sizes) = &options.scale {
        return scale::run_scale(url, sizes, timing).await;
    }
    let wanted = |name: &str| {
        options.workloads.as_ref().is_none_or(|list| {
            list.iter().any(|w| {
                w.eq_ignore_ascii_case(name)
                    || (w.eq_ignore_ascii_case("C1") && name.starts_with("C1-"))
            })
        })
    };
    let concurrencies = [8, 32];
    let mut rows = Vec::new();
    let config = PgConfig::default();

    if ["W1", "W2", "W3", "W1-keyed", "W1-encrypted", "W1-observed"]
        .iter()
        .any(|w| wanted(w))
    {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        rows.extend(
            writes::run_writes(
                &store,
                &|size| database.pool(size),
                &concurrencies,
                timing,
                if options.quick { 2 } else { 4 },
                &wanted,
            )
            .await,
        );
        if wanted("W1") {
            eprintln!("bench: W1 at C=8 with and without NOTIFY");
            let quiet = database.store(&PgConfig {
                notify_pushes: false,
                ..PgConfig::default()
            })?;
            // Alternating rounds, each side measured first in turn: a single run of each
            // compared two moments of a disk whose flush latency drifts, and whichever ran
            // second paid for the WAL the first had written (0.87-0.89 in three full runs).
            let rounds: u32 = if options.quick { 2 } else { 4 };
            let round = Timing {
                warmup: timing.warmup / 2,
                measure: timing.measure / rounds,
            };
            let (mut with, mut without) = (Samples::default(), Samples::default());
            let mut elapsed = Duration::ZERO;
            for n in 0..rounds {
                let order = if n % 2 == 0 {
                    [&quiet, &store]
                } else {
                    [&store, &quiet]
                };
                for side in order {
                    let (samples, took) = writes::w1_samples(side, 8, round).await;
                    if std::ptr::eq(side, &quiet) {
                        without.merge(samples);
                        elapsed += took;
                    } else {
                        with.merge(samples);
                    }
                }
            }
            rows.push(without.events_row("strata-no-notify", "NOTIFY", 8, elapsed));
            rows.push(with.events_row("strata-alone", "NOTIFY", 8, elapsed));
        }
        if wanted("W1-keyed") {
            eprintln!("bench: W1-keyed at C=8, in rounds alternating with W1");
            // Alternating rounds for the same reason as the NOTIFY comparison: the ratio must not
            // depend on which side ran while the disk was slower.
            let rounds: u32 = if options.quick { 2 } else { 4 };
            let round = Timing {
                warmup: timing.warmup / 2,
                measure: timing.measure / rounds,
            };
            let (mut keyed, mut unkeyed) = (Samples::default(), Samples::default());
            let (mut keyed_time, mut unkeyed_time) = (Duration::ZERO, Duration::ZERO);
            for n in 0..rounds {
                for keyed_side in [n % 2 == 0, n % 2 != 0] {
                    if keyed_side {
                        let (samples, took) = writes::w1_keyed_samples(&store, 8, round).await;
                        keyed.merge(samples);
                        keyed_time += took;
                    } else {
                        let (samples, took) = writes::w1_samples(&store, 8, round).await;
                        unkeyed.merge(samples);
                        unkeyed_time += took;
                    }
                }
            }
            rows.push(keyed.events_row("strata", "W1-keyed", 8, keyed_time));
            rows.push(unkeyed.events_row("strata-unkeyed", "W1-keyed", 8, unkeyed_time));
        }
        if wanted("W1-encrypted") {
            eprintln!("bench: W1-encrypted at C=8, in rounds alternating with W1");
            let rounds: u32 = if options.quick { 2 } else { 4 };
            rows.extend(personal::run_w1_encrypted(&store, timing, rounds).await?);
        }
        if wanted("W1-observed") {
            eprintln!("bench: W1-observed at C=8, in rounds alternating with W1 unobserved");
            // Many short rounds: a 5 % effect is smaller than the drift of a few seconds (the
            // autovacuum of the freshly loaded table, the disk's flush latency), which few long
            // rounds let land on one side.
            let rounds: u32 = if options.quick { 4 } else { 10 };
            let push = writes::w1_op(&store);
            rows.extend(
                observed::run_alternating("W1-observed", 8, timing, rounds, push, PUSH_DURATION)
                    .await?,
            );
        }
    }
    if [
        "R1",
        "R1-observed",
        "R1-typed",
        "R1-encrypted",
        "R10k",
        "R10k-snapshot",
        "R2",
        "Q1",
        "P1",
        "S1",
        "S3",
        rebuild::W1_BESIDE_REBUILD,
        rebuild::P1_VERSIONED,
    ]
    .iter()
    .any(|w| wanted(w))
    {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        let pool = database.pool(4);
        reads::load(&store, &pool, 200_000).await?;
        typed::load(&store, &pool).await?;
        personal::load(&store).await?;
        database.settle().await?;
        rows.extend(
            reads::run_reads(
                &store,
                &pool,
                timing,
                if options.quick { 1 } else { 2 },
                &wanted,
            )
            .await?,
        );
        if wanted("R1-observed") {
            eprintln!("bench: R1-observed, in rounds alternating with R1 unobserved");
            // Many short rounds: a 5 % effect is smaller than the drift of a few seconds (the
            // autovacuum of the freshly loaded table, the disk's flush latency), which few long
            // rounds let land on one side.
            let rounds: u32 = if options.quick { 4 } else { 10 };
            let read = reads::r1_op(&store)?;
            rows.extend(
                observed::run_alternating("R1-observed", 1, timing, rounds, read, QUERY_DURATION)
                    .await?,
            );
        }
        let raw_r10k = reads::raw_read(&pool, reads::RAW_R1, &["bench", "user", "r10k-aggregate"]);
        rows.extend(typed::run_typed(&store, raw_r10k, timing, &wanted).await?);
        if wanted("R1-encrypted") {
            eprintln!("bench: R1-encrypted");
            rows.extend(personal::run_r1_encrypted(&store, timing).await?);
        }
        if wanted("P1") {
            rows.extend(projections::p1(&store, &pool).await?);
        }
        if wanted("S1") {
            eprintln!("bench: S1, in rounds alternating with raw R2");
            let rounds: u32 = if options.quick { 2 } else { 4 };
            rows.extend(subscriptions::s1(&store, &pool, rounds).await?);
        }
        if wanted("S3") {
            eprintln!("bench: S3");
            // Raw P1 of this run when P1 ran (just before), measured the same way otherwise.
            let raw_p1 = match find_row(&rows, "raw", "P1", 1) {
                Some(row) => row.clone(),
                None => projections::p1_raw(&pool).await?,
            };
            rows.extend(subscriptions::s3(&store, raw_p1).await?);
        }
        if wanted(rebuild::W1_BESIDE_REBUILD) || wanted(rebuild::P1_VERSIONED) {
            // Last on this database: its writers add `user` events that R2 and S1 would read.
            if find_row(&rows, "strata", "P1", 1).is_none() {
                eprintln!("bench: P1, as the reference of {}", rebuild::P1_VERSIONED);
                let p1 = projections::p1_strata(&store, &pool).await?;
                rows.push(Row {
                    system: "strata-p1",
                    workload: rebuild::P1_VERSIONED.into(),
                    ..p1
                });
            }
            let pairs: u32 = if options.quick { 3 } else { 5 };
            let database_url = database_url(url, &database);
            rows.extend(rebuild::run(&store, &database_url, timing, pairs).await?);
        }
    }
    if wanted("P2") || wanted("W1P") || wanted("S2") {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        let pool = database.pool(2);
        let database_url = database_url(url, &database);
        if wanted("P2") || wanted("W1P") {
            rows.extend(
                projections::p2_and_w1p(&store, &pool, &database_url, timing, &wanted).await?,
            );
        }
        if wanted("S2") {
            rows.extend(subscriptions::s2(&store, &database_url, timing).await?);
        }
    }
    if wanted(status::STATUS_PAGE) {
        eprintln!("bench: {}", status::STATUS_PAGE);
        let database = BenchDatabase::create(url).await?;
        let requests = if options.quick { 20 } else { 50 };
        rows.extend(status::run(&database, &database_url(url, &database), requests).await?);
    }
    // Only when named: it starts four servers of its own and takes minutes.
    let named = |name: &str| {
        options
            .workloads
            .as_ref()
            .is_some_and(|list| list.iter().any(|w| w.eq_ignore_ascii_case(name)))
    };
    if named(scaleout::SCALEOUT) {
        if options.quick {
            eprintln!("bench: SCALEOUT is not part of --quick: skipped");
        } else {
            rows.extend(scaleout::run_scaleout(timing, 4).await?);
        }
    }
    if cache::workloads().any(|w| wanted(&w)) {
        rows.extend(
            cache::run_cache(
                url,
                timing,
                options.quick,
                &wanted,
                options.workloads.is_some(),
            )
            .await?,
        );
    }
    Ok(rows)
}

fn database_url(admin_url: &str, database: &BenchDatabase) -> String {
    let name = database.options.get_database().unwrap_or("postgres");
    match admin_url.rfind('/') {
        Some(slash) if admin_url[..slash].ends_with(|c: char| c != '/') => {
            let query = admin_url[slash..]
                .find('?')
                .map(|q| &admin_url[slash + q..])
                .unwrap_or("");
            format!("{}/{name}{query}", &admin_url[..slash])
        }
        _ => format!("{admin_url}/{name}"),
    }
}

/// The row of `workload` at `concurrency` measured on `system`, if there is one.
fn find_row<'a>(
    rows: &'a [Row],
    system: &str,
    workload: &str,
    concurrency: usize,
) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.system == system && r.workload == workload && r.concurrency == concurrency)
}

fn rate(row: &Row) -> f64 {
    row.events_per_sec.or(row.ops_per_sec).unwrap_or(0.0)
}

fn print_table(rows: &[Row]) {
    print_event_table(rows);
    print_cache_table(rows);
}

/// Every workload but C1: events per second, the raw baseline beside.
fn print_event_table(rows: &[Row]) {
    if !rows.iter().any(|r| !r.workload.starts_with("C1-")) {
        return;
    }
    // STATUS-page has no rate: it gets a line of its own below.
    let in_table = |r: &&Row| {
        r.system == "strata" && !r.workload.starts_with("C1-") && r.workload != status::STATUS_PAGE
    };
    if rows.iter().any(|r| in_table(&r)) {
        println!(
            "{:<17} {:>3}  {:>12} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
            "load",
            "C",
            "strata ev/s",
            "raw ev/s",
            "ratio",
            "strata p50/p99",
            "raw p50/p99",
            "errors"
        );
    }
    let find = |system: &str, workload: &str, concurrency: usize| {
        find_row(rows, system, workload, concurrency)
    };
    for row in rows.iter().filter(in_table) {
        let reference = match row.workload.as_str() {
            "W1-keyed" => find("strata-unkeyed", "W1-keyed", row.concurrency),
            "W1-encrypted" => find("strata-plain", "W1-encrypted", row.concurrency),
            "W1-observed" | "R1-observed" => {
                find("strata-unobserved", &row.workload, row.concurrency)
            }
            "S1" => find("raw-r2", "S1", row.concurrency),
            "S3" => find("raw-p1", "S3", row.concurrency),
            rebuild::W1_BESIDE_REBUILD
            | scaleout::READERS_ON_PRIMARY
            | scaleout::READERS_ON_REPLICA => find("strata-alone", &row.workload, row.concurrency),
            scaleout::TWO_SHARDS => find("strata", scaleout::ONE_SHARD, row.concurrency),
            rebuild::P1_VERSIONED => p1_reference(rows),
            _ => find("raw", &row.workload, row.concurrency),
        };
        let (raw_rate, ratio, raw_latency) = match reference {
            Some(reference) => (
                format!("{:.0}", rate(reference)),
                format!("{:.2}", rate(row) / rate(reference).max(1e-9)),
                format!("{:.2}/{:.2}", reference.p50_ms, reference.p99_ms),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<17} {:>3}  {:>12.0} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
            row.workload,
            row.concurrency,
            rate(row),
            raw_rate,
            ratio,
            format!("{:.2}/{:.2}", row.p50_ms, row.p99_ms),
            raw_latency,
            row.errors
        );
        if row.workload == "W2"
            && let Some(raw_w1) = find("raw", "W1", row.concurrency)
        {
            println!(
                "{:<17} {:>3}  W2 / raw W1 at the same C: {:.2}",
                "",
                "",
                rate(row) / rate(raw_w1).max(1e-9)
            );
        }
    }
    for (typed, untyped) in [
        ("R1-typed", "R1"),
        ("R1-encrypted", "R1-typed"),
        ("R10k-typed", "R10k"),
        ("R10k-snapshot", "R10k"),
        ("S3", "P1"),
    ] {
        if let (Some(typed_row), Some(untyped_row)) =
            (find("strata", typed, 1), find("strata", untyped, 1))
        {
            println!(
                "{typed}: {:.0} events/s, {:.2} x Strata's {untyped} in the same run",
                rate(typed_row),
                rate(typed_row) / rate(untyped_row).max(1e-9)
            );
        }
    }
    for line in notify_line(rows)
        .into_iter()
        .chain(keyed_line(rows))
        .chain(observed::summary(rows))
        .chain(poll_line(rows))
        .chain(rebuild::summary(rows, p1_reference(rows)))
    {
        println!("{line}");
    }
    if let (Some(sealed), Some(untyped)) = (
        find("strata", "R1-encrypted", 1),
        find("strata-untyped", "R1-encrypted", 1),
    ) {
        println!(
            "R1-encrypted: the same sealed events read untyped {:.0} events/s; opened and typed \
             {:.2} x that",
            rate(untyped),
            rate(sealed) / rate(untyped).max(1e-9)
        );
    }
    if let Some(p2) = find("strata", "P2", 8) {
        println!(
            "P2: push-to-projection latency in another process, p50 {:.1} ms, p99 {:.1} ms",
            p2.p50_ms, p2.p99_ms
        );
    }
    if let Some(page) = find("strata", status::STATUS_PAGE, 1) {
        println!(
            "{}: / of 1 000 projections x 100 instances rendered in p50 {:.1} ms, p99 {:.1} ms \
             server time (target < 1 s), {} failed requests",
            status::STATUS_PAGE,
            page.p50_ms,
            page.p99_ms,
            page.errors
        );
    }
    if let Some(s2) = find("strata", "S2", 8) {
        println!(
            "S2: push-to-delivery latency of a subscription in another process, p50 {:.1} ms, \
             p99 {:.1} ms",
            s2.p50_ms, s2.p99_ms
        );
    }
}

/// Strata's P1 of this run: P1's own row, or the one measured as P1-versioned's reference.
fn p1_reference(rows: &[Row]) -> Option<&Row> {
    find_row(rows, "strata", "P1", 1)
        .or_else(|| find_row(rows, "strata-p1", rebuild::P1_VERSIONED, 1))
}

/// S1 and S3 beside their raw references from the same run (not standard rows), when they ran.
fn reference_lines(rows: &[Row]) -> Vec<String> {
    [
        ("S1", "raw-r2", "raw R2 in alternating rounds"),
        ("S3", "raw-p1", "raw P1"),
    ]
    .into_iter()
    .filter_map(|(workload, system, what)| {
        let (row, reference) = (
            find_row(rows, "strata", workload, 1)?,
            find_row(rows, system, workload, 1)?,
        );
        Some(format!(
            "{workload} {:.0} ev/s beside {what} {:.0} ev/s: ratio {:.2}",
            rate(row),
            rate(reference),
            rate(row) / rate(reference).max(1e-9)
        ))
    })
    .collect()
}

/// W1-keyed at C = 8 beside Strata's W1 from the same alternating rounds, when W1-keyed ran.
fn keyed_line(rows: &[Row]) -> Option<String> {
    let find = |system: &str| {
        rows.iter()
            .find(|r| r.system == system && r.workload == "W1-keyed" && r.concurrency == 8)
    };
    let (keyed, unkeyed) = (find("strata")?, find("strata-unkeyed")?);
    Some(format!(
        "W1-keyed C=8 {:.0} ev/s (p50/p99 {:.2}/{:.2} ms) beside W1 {:.0} ev/s (p50/p99 {:.2}/{:.2} \
         ms): ratio keyed/unkeyed {:.2}",
        rate(keyed),
        keyed.p50_ms,
        keyed.p99_ms,
        rate(unkeyed),
        unkeyed.p50_ms,
        unkeyed.p99_ms,
        rate(keyed) / rate(unkeyed).max(1e-9)
    ))
}

/// W1 at C = 8 with and without NOTIFY, when both were measured.
fn notify_line(rows: &[Row]) -> Option<String> {
    let find = |system: &str| {
        rows.iter()
            .find(|r| r.system == system && r.workload == "NOTIFY" && r.concurrency == 8)
    };
    let (without, with) = (find("strata-no-notify")?, find("strata-alone")?);
    Some(format!(
        "W1 C=8 with NOTIFY {:.0} ev/s, without {:.0} ev/s: ratio {:.2}",
        rate(with),
        rate(without),
        rate(with) / rate(without).max(1e-9)
    ))
}

/// W1 at C = 8 beside each reference poller, against W1 alone, when W1P ran.
fn poll_line(rows: &[Row]) -> Option<String> {
    let find = |system: &str| {
        rows.iter()
            .find(|r| r.system == system && r.workload == "W1P" && r.concurrency == 8)
    };
    let (alone, grouped, separate) = (find("strata-alone")?, find("raw")?, find("raw-poll")?);
    let with = find("strata")?;
    Some(format!(
        "W1P: W1 C=8 alone {:.0} ev/s; beside the runtime's projections {:.0} ev/s (ratio {:.2} \
         to alone); references (every 50 ms, no blocking): beside one raw-SQL poller keeping \
         every read model in one transaction {:.0} ev/s (ratio {:.2} to alone; the raw row), \
         beside a poller per read model {:.0} ev/s (ratio {:.2})",
        rate(alone),
        rate(with),
        rate(with) / rate(alone).max(1e-9),
        rate(grouped),
        rate(grouped) / rate(alone).max(1e-9),
        rate(separate),
        rate(separate) / rate(alone).max(1e-9)
    ))
}

/// C1: operations per second, each raw baseline beside its workload.
fn print_cache_table(rows: &[Row]) {
    let cache_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.system == "strata" && r.workload.starts_with("C1-"))
        .collect();
    if cache_rows.is_empty() {
        return;
    }
    if rows.iter().any(|r| !r.workload.starts_with("C1-")) {
        println!();
    }
    println!(
        "{:<20} {:>3}  {:>12} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
        "cache",
        "C",
        "strata ops/s",
        "raw ops/s",
        "ratio",
        "strata p50/p99",
        "raw p50/p99",
        "errors"
    );
    for row in cache_rows {
        let raw = rows.iter().find(|r| {
            r.system == "raw" && r.workload == row.workload && r.concurrency == row.concurrency
        });
        let (raw_rate, ratio, raw_latency) = match raw {
            Some(raw) => (
                format!("{:.0}", rate(raw)),
                format!("{:.2}", rate(row) / rate(raw).max(1e-9)),
                format!("{:.3}/{:.3}", raw.p50_ms, raw.p99_ms),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<20} {:>3}  {:>12.0} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
            row.workload,
            row.concurrency,
            rate(row),
            raw_rate,
            ratio,
            format!("{:.3}/{:.3}", row.p50_ms, row.p99_ms),
            raw_latency,
            row.errors
        );
    }
}
