//! STATUS-page: how long `strata serve` takes to render its status page for 1 000 projections
//! × 100 instances (target: under 1 s of server time).
//!
//! A fresh database gets 100 instances of 20 `user` events (four pushes of five), 1 000
//! registered projections reading them, a checkpoint for every (projection, instance) pair, at
//! the instance's last event for 98 % of them and five events back for the rest (half stalled,
//! half catching up), and 50 failed events. The release build of `strata-cli` then runs `strata serve`
//! on it, and the bench GETs `/`, `/projections/p0500` and `/metrics` over plain HTTP/1.1
//! connections. The figure is the page's own `Server-Timing` (`render;dur=…`): the server's time
//! from its latest sample to the HTML, which is what grows with projections and instances; the
//! sample itself (`sample;dur=…`) runs in the background every `--sample-every` seconds and is
//! reported beside it. `/metrics` carries no `Server-Timing`, so its time is the client's round
//! trip on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use strata_event::Command as EventCommand;
use strata_postgres::PgConfig;
use strata_store::EventStore;

use crate::perf::projections::Worker;
use crate::perf::runner::payload;
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::{Latencies, Row};

pub(crate) const STATUS_PAGE: &str = "STATUS-page";

const PROJECTIONS: usize = 1_000;
const INSTANCES: usize = 100;
const PUSHES_PER_INSTANCE: u64 = 4;
const EVENTS_PER_PUSH: u64 = 5;

/// 1 000 projections `p0000`…`p0999`, each reading every `user` event, as a runtime registers them.
const REGISTRY: &str = "
INSERT INTO projections.registry
    (projection_name, reads, has_side_effects, registered_at, consumer_name, stall_after_ms)
SELECT format('p%s', lpad(n::text, 4, '0')), '[[\"user\", []]]'::jsonb, false, now(), NULL, 60000
FROM generate_series(0, 999) n";

/// The events dated an hour back, as a live database's are: a pair behind is then behind by more
/// than its `stall_after`. A throwaway database, so the append-only trigger may step aside.
const AGE_EVENTS: &str = "
ALTER TABLE eventstore.events DISABLE TRIGGER events_append_only;
UPDATE eventstore.events SET created_at = created_at - interval '1 hour';
ALTER TABLE eventstore.events ENABLE TRIGGER events_append_only";

/// A checkpoint per pair: every 50th pair five events back, unmoved for ten minutes (stalled)
/// or just moved (catching up), in turn; the others at their instance's last event.
const CHECKPOINTS: &str = "
WITH ranked AS (
    SELECT instance_id, position, in_tx_order, aggregate_type, aggregate_id, sequence,
           row_number() OVER (PARTITION BY instance_id ORDER BY position DESC, in_tx_order DESC)
               AS back
    FROM eventstore.events WHERE aggregate_type = 'user'
), pairs AS (
    SELECT r.projection_name, i.instance_id,
           row_number() OVER (ORDER BY r.projection_name, i.instance_id) AS n
    FROM projections.registry r CROSS JOIN (SELECT DISTINCT instance_id FROM ranked) i
)
INSERT INTO projections.current_states
    (instance_id, projection_name, position, in_tx_order, aggregate_type, aggregate_id, sequence,
     updated_at)
SELECT p.instance_id, p.projection_name, e.position, e.in_tx_order, e.aggregate_type,
       e.aggregate_id, e.sequence,
       CASE WHEN p.n % 100 = 0 THEN now() - interval '10 minutes' ELSE now() END
FROM pairs p
JOIN ranked e ON e.instance_id = p.instance_id AND e.back = CASE WHEN p.n % 50 = 0 THEN 6 ELSE 1 END";

/// 50 failed events, each of another projection and instance.
const FAILED: &str = "
INSERT INTO projections.failed_events
    (instance_id, projection_name, aggregate_type, aggregate_id, sequence, position, in_tx_order,
     failure_count, error, last_failed_at)
SELECT e.instance_id, format('p%s', lpad((n * 20)::text, 4, '0')), e.aggregate_type,
       e.aggregate_id, e.sequence, e.position, e.in_tx_order, 3,
       'bench: the handler failed', now() - n * interval '1 minute'
FROM generate_series(0, 49) n
CROSS JOIN LATERAL (
    SELECT * FROM eventstore.events
    WHERE instance_id = format('i%s', lpad((n * 2)::text, 3, '0'))
    ORDER BY position, in_tx_order LIMIT 1 OFFSET 10
) e";

/// The pages measured, and whether they carry `Server-Timing`.
const PAGES: [(&str, bool); 3] = [
    ("/", true),
    ("/projections/p0500", true),
    ("/metrics", false),
];

/// Seeds a fresh database, serves it with `strata serve` and GETs each page `requests` times.
pub(crate) async fn run(
    database: &BenchDatabase,
    database_url: &str,
    requests: usize,
) -> Result<Vec<Row>> {
    seed(database).await?;
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || measure(&database_url, requests))
        .await
        .context("the STATUS-page client")?
}

async fn seed(database: &BenchDatabase) -> Result<()> {
    let store = database.store(&PgConfig::default())?;
    for instance in 0..INSTANCES {
        for push in 0..PUSHES_PER_INSTANCE {
            let commands = (0..EVENTS_PER_PUSH)
                .map(|i| {
                    let n = push * EVENTS_PER_PUSH + i;
                    EventCommand::builder(
                        format!("i{instance:03}"),
                        "user",
                        format!("u-{}", n % 5),
                        "user.changed",
                    )
                    .creator("bench")
                    .owner("org")
                    .payload(&payload(n))
                    .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            store.push(commands).await?;
        }
    }
    let pool = database.pool(1);
    for (what, sql) in [
        ("eventstore.events", AGE_EVENTS),
        ("projections.registry", REGISTRY),
        ("projections.current_states", CHECKPOINTS),
        ("projections.failed_events", FAILED),
    ] {
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .with_context(|| format!("seeding {what}"))?;
    }
    pool.close().await;
    // Statistics as a live database would have them, for the sample's plans.
    database
        .settle_tables(&[
            "eventstore.events",
            "projections.registry",
            "projections.current_states",
            "projections.failed_events",
        ])
        .await
}

/// Builds `strata`, serves the database and measures every page.
fn measure(database_url: &str, requests: usize) -> Result<Vec<Row>> {
    // The binary cargo builds beside this one (the bench runs as a release build).
    crate::run(Command::new(crate::cargo()).args([
        "build",
        "--release",
        "--quiet",
        "--package",
        "strata-cli",
    ]))?;
    let strata =
        std::env::current_exe()?.with_file_name(format!("strata{}", std::env::consts::EXE_SUFFIX));
    if !strata.is_file() {
        bail!("cargo built no {} beside the bench", strata.display());
    }
    let mut child = Command::new(&strata)
        .args(["serve", "--listen", "127.0.0.1:0", "--sample-every", "5"])
        .env("DATABASE_URL", database_url)
        // Read-only, as an operator who has not signed in sees it.
        .env_remove("STRATA_SERVE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", strata.display()))?;
    let stdout = child.stdout.take().context("strata serve's stdout")?;
    // Killed when dropped, on every way out of here.
    let _server = Worker(child);
    // Kept open until the end: the server must not meet a closed stdout.
    let mut output = BufReader::new(stdout);
    let mut line = String::new();
    output.read_line(&mut line)?;
    let address: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .with_context(|| format!("strata serve did not start: {line:?}"))?
        .parse()
        .with_context(|| format!("strata serve's address in {line:?}"))?;

    check_sample(address)?;

    let mut row = None;
    let mut errors = 0;
    for (path, timed) in PAGES {
        // One first request, not counted: the first render also warms the allocator and caches.
        get(address, path)?;
        let (mut render, mut sample) = (Latencies::default(), Latencies::default());
        let mut round_trip = Latencies::default();
        let mut bytes = 0;
        for _ in 0..requests {
            let response = get(address, path)?;
            if response.status != 200 {
                errors += 1;
                continue;
            }
            if timed {
                let timing = response.timing.as_deref();
                let Some((rendered, sampled)) =
                    timing.and_then(|t| Some((dur(t, "render")?, dur(t, "sample")?)))
                else {
                    errors += 1;
                    continue;
                };
                record(&mut render, rendered);
                record(&mut sample, sampled);
            }
            round_trip.record(response.took);
            bytes = response.body.len();
        }
        report(path, &render, &sample, &round_trip, bytes);
        if path == "/" {
            if render.count() == 0 {
                bail!("{STATUS_PAGE}: no render of / was timed");
            }
            row = Some(render);
        }
    }
    drop(output);
    let render = row.context("the page / was not measured")?;
    Ok(vec![Row {
        system: "strata",
        workload: STATUS_PAGE.into(),
        concurrency: 1,
        events_per_sec: None,
        ops_per_sec: None,
        p50_ms: render.percentile(0.5),
        p99_ms: render.percentile(0.99),
        errors,
        retries: 0,
    }])
}

/// Refuses a sample that does not hold every seeded pair: a fast render of less would mean nothing.
fn check_sample(address: SocketAddr) -> Result<()> {
    let health = get(address, "/health")?;
    let health: serde_json::Value =
        serde_json::from_slice(&health.body).context("/health's JSON")?;
    let count = |state: &str| health["pairs"][state].as_u64().unwrap_or(0);
    let (healthy, catching_up, stalled) =
        (count("healthy"), count("catching_up"), count("stalled"));
    eprintln!(
        "bench: {STATUS_PAGE}: the sample holds {healthy} healthy, {catching_up} catching-up and \
         {stalled} stalled pairs, {} failed events",
        health["failed_events"]
    );
    let pairs = (PROJECTIONS * INSTANCES) as u64;
    if healthy + catching_up + stalled != pairs {
        bail!("{STATUS_PAGE}: strata serve's sample does not hold the {pairs} seeded pairs");
    }
    Ok(())
}

fn record(latencies: &mut Latencies, milliseconds: f64) {
    latencies.record(Duration::from_secs_f64(milliseconds.max(0.0) / 1000.0));
}

fn report(
    path: &str,
    render: &Latencies,
    sample: &Latencies,
    round_trip: &Latencies,
    bytes: usize,
) {
    let client = format!(
        "client round trip p50 {:.1} ms, p99 {:.1} ms",
        round_trip.percentile(0.5),
        round_trip.percentile(0.99)
    );
    if render.count() == 0 {
        eprintln!("bench: {STATUS_PAGE} GET {path}: {bytes} bytes, {client}");
    } else {
        eprintln!(
            "bench: {STATUS_PAGE} GET {path} x{}: render p50 {:.1} ms, p99 {:.1} ms; sample p50 \
             {:.1} ms, max {:.1} ms; {bytes} bytes; {client}",
            render.count(),
            render.percentile(0.5),
            render.percentile(0.99),
            sample.percentile(0.5),
            sample.percentile(1.0),
        );
    }
}

/// What a GET answered.
struct Response {
    status: u16,
    /// The `Server-Timing` header, if any.
    timing: Option<String>,
    body: Vec<u8>,
    /// From connecting to the last byte.
    took: Duration,
}

/// One GET on a connection of its own (`Connection: close`: the body ends where the stream does).
fn get(address: SocketAddr, path: &str) -> Result<Response> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading GET {path}"))?;
    let took = started.elapsed();
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .with_context(|| format!("GET {path}: no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).context("response headers")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|status| status.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("GET {path}: no status line"))?;
    let timing = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("server-timing"))
        .map(|(_, value)| value.trim());
    let timing = timing.map(str::to_owned);
    raw.drain(..end + 4);
    Ok(Response {
        status,
        timing,
        body: raw,
        took,
    })
}

/// The `dur` of metric `name` in a `Server-Timing` value, in milliseconds.
fn dur(timing: &str, name: &str) -> Option<f64> {
    timing.split(',').find_map(|metric| {
        metric
            .trim()
            .strip_prefix(name)?
            .strip_prefix(";dur=")?
            .parse()
            .ok()
    })
}
