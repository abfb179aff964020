//! `cargo xtask bench`: Strata beside a raw-SQL baseline measured in the same run, so the ratio is
//! what to read (docs/benchmarks.md).

mod projections;
mod reads;
mod runner;
mod setup;
mod stats;
mod writes;

use std::time::Duration;

use anyhow::{Result, bail};
use strata_postgres::PgConfig;

use crate::perf::runner::Timing;
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::Row;
use crate::server;

pub(crate) use projections::worker;

const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--json] [--workload W1,W2,...]

Runs W1 W2 W3 (writes, C = 8 and 32), R1 R2 Q1 (reads over 200 000+ events), P1 (projection
catch-up), P2 (push-to-projection latency across processes) and W1P (W1 beside 20 projections),
each beside a raw-SQL baseline from the same run where one exists. --json prints one JSON object
per line on stdout (spec §9); progress goes to stderr.";

struct Options {
    quick: bool,
    json: bool,
    workloads: Option<Vec<String>>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        json: false,
        workloads: None,
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
                options.workloads =
                    Some(list.split(',').map(|w| w.trim().to_uppercase()).collect());
            }
            "--help" | "-h" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}\n\n{USAGE}"),
        }
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
    // Dropped whatever happened, so a failed run leaves nothing behind.
    if let Err(err) = runtime.block_on(server::drop_databases_like(&url, "strata\\_bench\\_%")) {
        eprintln!("bench: could not drop the bench databases: {err:#}");
    }
    let rows = outcome?;
    if options.json {
        for row in rows.iter().filter(|row| row.system != "strata-alone") {
            println!("{}", serde_json::to_string(row)?);
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
    let wanted = |name: &str| {
        options
            .workloads
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == name))
    };
    let concurrencies = [8, 32];
    let mut rows = Vec::new();
    let config = PgConfig::default();

    if ["W1", "W2", "W3"].iter().any(|w| wanted(w)) {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        rows.extend(
            writes::run_writes(&store, database.pool(8), &concurrencies, timing, &wanted).await,
        );
        if wanted("W1") {
            eprintln!("bench: W1 at C=8 with and without NOTIFY");
            let quiet = database.store(&PgConfig {
                notify_pushes: false,
                ..PgConfig::default()
            })?;
            let mut without = writes::w1_only(&quiet, 8, timing).await;
            without.system = "strata-no-notify";
            let mut with = writes::w1_only(&store, 8, timing).await;
            with.system = "strata-alone";
            with.workload = "NOTIFY".into();
            without.workload = "NOTIFY".into();
            rows.push(without);
            rows.push(with);
        }
    }
    if ["R1", "R2", "Q1", "P1"].iter().any(|w| wanted(w)) {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        let pool = database.pool(4);
        reads::load(&store, &pool, 200_000).await?;
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
        if wanted("P1") {
            rows.extend(projections::p1(&store, &pool).await?);
        }
    }
    if wanted("P2") || wanted("W1P") {
        let database = BenchDatabase::create(url).await?;
        let store = database.store(&config)?;
        let pool = database.pool(2);
        let database_url = database_url(url, &database);
        rows.extend(projections::p2_and_w1p(&store, &pool, &database_url, timing, &wanted).await?);
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

fn rate(row: &Row) -> f64 {
    row.events_per_sec.or(row.ops_per_sec).unwrap_or(0.0)
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<6} {:>3}  {:>12} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
        "load", "C", "strata ev/s", "raw ev/s", "ratio", "strata p50/p99", "raw p50/p99", "errors"
    );
    let find = |system: &str, workload: &str, concurrency: usize| {
        rows.iter()
            .find(|r| r.system == system && r.workload == workload && r.concurrency == concurrency)
    };
    for row in rows.iter().filter(|r| r.system == "strata") {
        let reference = match row.workload.as_str() {
            "W1P" => find("strata-alone", "W1P", row.concurrency),
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
            "{:<6} {:>3}  {:>12.0} {:>12} {:>7}  {:>16} {:>16}  {:>6}",
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
                "{:<6} {:>3}  W2 / raw W1 at the same C: {:.2}",
                "",
                "",
                rate(row) / rate(raw_w1).max(1e-9)
            );
        }
    }
    if let (Some(without), Some(with)) = (
        find("strata-no-notify", "NOTIFY", 8),
        find("strata-alone", "NOTIFY", 8),
    ) {
        println!(
            "W1 C=8 with NOTIFY {:.0} ev/s, without {:.0} ev/s: ratio {:.2}",
            rate(with),
            rate(without),
            rate(with) / rate(without).max(1e-9)
        );
    }
    if let Some(p2) = find("strata", "P2", 8) {
        println!(
            "P2: push-to-projection latency in another process, p50 {:.1} ms, p99 {:.1} ms",
            p2.p50_ms, p2.p99_ms
        );
    }
}
