//! P1 (catch-up), P2 (push-to-projection latency across processes) and W1P (writers beside 20
//! projections), plus the worker process P2 and W1P run their projections in.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{Event, InstanceId, Position};
use strata_postgres::{PgConfig, PgProjections, PgStore};
use strata_projection::{
    Projection, ProjectionConfig, ProjectionRuntime, Reads, ReduceError, RuntimeBuilder,
    RuntimeConfig, SqlValue, Statement,
};
use strata_store::EventStore;

use crate::perf::pollers::{self, POLL_EVERY};
use crate::perf::reader_cost::{self, ReaderCost, ReaderSample};
use crate::perf::runner::Timing;
use crate::perf::stats::{Latencies, Row, Samples};
use crate::perf::writes;

/// Events per projection batch (and raw P1's page); S3's consumer uses it too.
pub(crate) const BULK: u32 = 1_000;

/// One upsert per event into `bench_model`: P1's read model.
struct Model;

impl Projection for Model {
    fn name(&self) -> &str {
        "bench_model"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("session")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            "bench_model",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("aggregate_id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![
                ("last_sequence", event.sequence.into()),
                ("last_event", event.event_type.as_str().into()),
            ],
        )])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "bench_model",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: BULK,
            ..ProjectionConfig::default()
        }
    }
}

const MODEL_TABLES: &str = "
CREATE TABLE IF NOT EXISTS bench_model (instance_id TEXT, aggregate_id TEXT, last_sequence BIGINT,
    last_event TEXT, PRIMARY KEY (instance_id, aggregate_id));
CREATE TABLE IF NOT EXISTS raw_model (instance_id TEXT, aggregate_id TEXT, last_sequence BIGINT,
    last_event TEXT, PRIMARY KEY (instance_id, aggregate_id));
CREATE TABLE IF NOT EXISTS raw_checkpoint (id INT PRIMARY KEY, position NUMERIC, in_tx_order INT);
";

/// What P1 projects and S3 consumes: every `session` event, in every instance that has one, up to
/// the latest position.
pub(crate) struct SessionEvents {
    total: u64,
    instances: Vec<InstanceId>,
    latest: Position,
}

impl SessionEvents {
    pub(crate) async fn of(store: &PgStore) -> Result<SessionEvents> {
        let sessions = strata_query::Query::builder()
            .all_instances()
            .aggregate_types(["session"])
            .build()?;
        let latest = store
            .latest_position(&strata_query::Query::all())
            .await?
            .context("events loaded")?;
        Ok(SessionEvents {
            total: store.count(&sessions).await?,
            instances: store.instance_ids(&sessions).await?,
            latest,
        })
    }

    /// Starts `runtime` and times `name` (a projection or a consumer of one part) catching up on
    /// these events in every instance; the runtime is shut down afterwards.
    pub(crate) async fn timed_catch_up(
        &self,
        runtime: RuntimeBuilder<PgStore, PgProjections>,
        name: &str,
    ) -> Result<(Samples, Duration)> {
        let started = Instant::now();
        let runtime = runtime.start().await?;
        for instance in &self.instances {
            runtime
                .catch_up(name, instance, self.latest, Duration::from_secs(600))
                .await?;
        }
        let elapsed = started.elapsed();
        runtime.shutdown(Duration::from_secs(30)).await?;
        let samples = Samples {
            latencies: Latencies::of(elapsed),
            events: self.total,
            errors: 0,
        };
        Ok((samples, elapsed))
    }
}

/// P1: the runtime catching up on everything loaded, beside [`p1_raw`].
pub(crate) async fn p1(store: &PgStore, pool: &PgPool) -> Result<Vec<Row>> {
    eprintln!("bench: P1");
    Ok(vec![p1_strata(store, pool).await?, p1_raw(pool).await?])
}

/// Strata's side of P1 alone: the reference of workloads that compare with P1 when P1 itself
/// was not asked for.
pub(crate) async fn p1_strata(store: &PgStore, pool: &PgPool) -> Result<Row> {
    let (samples, elapsed) = p1_from_scratch(store, pool).await?;
    Ok(samples.events_row("strata", "P1", 1, elapsed))
}

/// P1 from scratch, also on a store that already ran it: the read model and the projection's
/// checkpoints are reset first, then the runtime is timed catching up on every instance's
/// `session` events (it runs every instance its projection reads, so the rate counts them all).
pub(crate) async fn p1_from_scratch(store: &PgStore, pool: &PgPool) -> Result<(Samples, Duration)> {
    sqlx::raw_sql(MODEL_TABLES).execute(pool).await?;
    sqlx::query("TRUNCATE bench_model").execute(pool).await?;
    sqlx::query("DELETE FROM projections.current_states WHERE projection_name = 'bench_model'")
        .execute(pool)
        .await?;
    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(Model)?;
    SessionEvents::of(store)
        .await?
        .timed_catch_up(runtime, "bench_model")
        .await
}

/// Raw P1's read model, empty: what a raw rebuild starts from.
pub(crate) async fn empty_raw_model(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql(MODEL_TABLES).execute(pool).await?;
    sqlx::query("TRUNCATE raw_model").execute(pool).await?;
    Ok(())
}

/// Raw P1: a loop that reads pages of P1's size and applies each as one multi-row upsert plus a
/// checkpoint per transaction.
pub(crate) async fn p1_raw(pool: &PgPool) -> Result<Row> {
    sqlx::raw_sql(MODEL_TABLES).execute(pool).await?;
    let started = Instant::now();
    let applied = raw_catch_up(pool).await?;
    Ok(Samples {
        latencies: Latencies::of(started.elapsed()),
        events: applied,
        errors: 0,
    }
    .events_row("raw", "P1", 1, started.elapsed()))
}

/// Raw P1's loop from the first event; returns the events applied.
pub(crate) async fn raw_catch_up(pool: &PgPool) -> Result<u64> {
    let mut cursor = (Decimal::ZERO, -1i32);
    let mut applied = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let page: Vec<(String, String, i64, String, Decimal, i32)> = sqlx::query_as(
            "SELECT instance_id, aggregate_id, sequence, event_type, position, in_tx_order \
             FROM raw.events WHERE aggregate_type = 'session' AND (position, in_tx_order) > ($1, $2) \
             ORDER BY position, in_tx_order LIMIT $3",
        )
        .bind(cursor.0)
        .bind(cursor.1)
        .bind(i64::from(BULK))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = page.last() else {
            tx.commit().await?;
            return Ok(applied);
        };
        cursor = (last.4, last.5);
        // Last write per key wins, as in the runtime's merged upserts.
        let mut rows: Vec<&(String, String, i64, String, Decimal, i32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in page.iter().rev() {
            if seen.insert((&row.0, &row.1)) {
                rows.push(row);
            }
        }
        let mut sql = String::from(
            "INSERT INTO raw_model (instance_id, aggregate_id, last_sequence, last_event) VALUES ",
        );
        for i in 0..rows.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${})",
                i * 4 + 1,
                i * 4 + 2,
                i * 4 + 3,
                i * 4 + 4
            ));
        }
        sql.push_str(
            " ON CONFLICT (instance_id, aggregate_id) DO UPDATE SET \
             last_sequence = EXCLUDED.last_sequence, last_event = EXCLUDED.last_event",
        );
        let mut query = sqlx::query(&sql);
        for row in rows {
            query = query.bind(&row.0).bind(&row.1).bind(row.2).bind(&row.3);
        }
        query.execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO raw_checkpoint VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE \
             SET position = EXCLUDED.position, in_tx_order = EXCLUDED.in_tx_order",
        )
        .bind(cursor.0)
        .bind(cursor.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += page.len() as u64;
    }
}

/// Records when each event reached the projection: P2's read model, in the worker process.
struct Arrivals {
    name: String,
}

impl Projection for Arrivals {
    fn name(&self) -> &str {
        &self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        // applied_at defaults to clock_timestamp() in the table: the time the row is written.
        Ok(vec![Statement::upsert(
            "arrivals",
            vec![
                ("projection", SqlValue::from(self.name.as_str())),
                ("aggregate_id", event.aggregate.aggregate_id.as_str().into()),
                ("sequence", event.sequence.into()),
            ],
            vec![("created_at", event.created_at.into())],
        )])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "arrivals",
            vec![("projection", SqlValue::from(self.name.as_str()))],
        )]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: BULK,
            ..ProjectionConfig::default()
        }
    }
}

/// W1P's read models: each projection keeps the latest sequence per aggregate in a table of its
/// own, as real projections own theirs. (One shared table keyed by projection name cost the
/// writers 0.64 of their rate against 0.72 with a table each, alternating rounds of one run:
/// its upserts compare a longer key in a twenty times larger index.)
pub(crate) const LATEST_TABLES: [&str; 20] = [
    "latest_0",
    "latest_1",
    "latest_2",
    "latest_3",
    "latest_4",
    "latest_5",
    "latest_6",
    "latest_7",
    "latest_8",
    "latest_9",
    "latest_10",
    "latest_11",
    "latest_12",
    "latest_13",
    "latest_14",
    "latest_15",
    "latest_16",
    "latest_17",
    "latest_18",
    "latest_19",
];

/// The latest event per aggregate, in the table named like the projection.
struct Latest {
    table: &'static str,
    /// `STRATA_BENCH_W1P_EMPTY`: reduce every event to no statement, so a run measures what the
    /// runtime costs the writers without any read-model writes (docs/benchmarks.md).
    empty: bool,
}

impl Projection for Latest {
    fn name(&self) -> &str {
        self.table
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if self.empty {
            return Ok(Vec::new());
        }
        Ok(vec![Statement::upsert(
            self.table,
            vec![("aggregate_id", event.aggregate.aggregate_id.as_str().into())],
            vec![("sequence", event.sequence.into())],
        )])
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // One instance per run: the table holds nothing else.
        vec![Statement::delete(self.table, Vec::new())]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: BULK,
            ..ProjectionConfig::default()
        }
    }
}

/// `cargo xtask bench-worker URL N arrivals|latest`: runs N projections until killed.
pub(crate) fn worker(args: &[String]) -> Result<()> {
    let [url, count, kind] = args else {
        bail!("usage: bench-worker URL PROJECTIONS arrivals|latest|poll|poll-grouped");
    };
    let count: usize = count.parse().context("PROJECTIONS")?;
    if kind != "arrivals" && count > LATEST_TABLES.len() {
        bail!("at most {} latest projections", LATEST_TABLES.len());
    }
    let runtime = crate::server::runtime()?;
    if kind == "poll" || kind == "poll-grouped" {
        return runtime.block_on(pollers::pollers(url, count, kind == "poll-grouped"));
    }
    runtime.block_on(async {
        let store = PgStore::connect(url, PgConfig::default()).await?;
        let mut backend = PgProjections::new(store.pools().projection().clone());
        if std::env::var_os("STRATA_BENCH_DURABLE_PROJECTIONS").is_some() {
            backend = backend.durable_commits();
        }
        let mut builder =
            ProjectionRuntime::builder(store.clone(), backend).config(RuntimeConfig {
                max_parallel_batches: std::env::var("STRATA_BENCH_PARALLEL")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(4),
                trigger_coalesce: std::env::var("STRATA_BENCH_COALESCE_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .map_or(
                        RuntimeConfig::default().trigger_coalesce,
                        Duration::from_millis,
                    ),
                ..RuntimeConfig::default()
            });
        let names: Vec<String> = if kind == "latest" {
            let empty = std::env::var_os("STRATA_BENCH_W1P_EMPTY").is_some();
            for &table in LATEST_TABLES.iter().take(count) {
                builder = builder.register(Latest { table, empty })?;
            }
            LATEST_TABLES[..count]
                .iter()
                .map(|&table| table.to_owned())
                .collect()
        } else {
            let names: Vec<String> = (0..count).map(|n| format!("arrivals_{n}")).collect();
            for name in &names {
                builder = builder.register(Arrivals { name: name.clone() })?;
            }
            names
        };
        let runtime = builder.start().await?;
        // Ready once every projection has caught up with what earlier workloads wrote: P2 and
        // W1P measure projections keeping up with live pushes, not a backlog (P1 measures that).
        let everything = strata_query::Query::all();
        if let Some(latest) = store.latest_position(&everything).await? {
            let instances = store.instance_ids(&everything).await?;
            for instance in &instances {
                futures::future::try_join_all(names.iter().map(|name| {
                    runtime.catch_up(name, instance, latest, Duration::from_secs(600))
                }))
                .await?;
            }
        }
        println!("ready");
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// A child process of the bench, killed when dropped.
pub(crate) struct Worker(pub(crate) Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(url: &str, projections: usize, kind: &str) -> Result<Worker> {
    let args = ["bench-worker", url, &projections.to_string(), kind];
    let (worker, _) = spawn_ready(&args, "the projection worker")?;
    Ok(worker)
}

/// Starts this executable with `args` and waits for the `ready` line it prints once it is set
/// up; returns the process and the rest of its output. Its input is a pipe the bench holds open:
/// S2's subscriber reports when it closes.
pub(crate) fn spawn_ready(args: &[&str], what: &str) -> Result<(Worker, BufReader<ChildStdout>)> {
    let mut child = Process::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let worker = Worker(child);
    let mut output = BufReader::new(stdout);
    let mut line = String::new();
    output.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("{what} did not start: {line:?}");
    }
    Ok((worker, output))
}

/// P2 and W1P on a fresh database: W1 alone at C = 8; then with one projection in another process
/// (P2: created-to-applied latency); then with 20 (W1P).
pub(crate) async fn p2_and_w1p(
    store: &PgStore,
    pool: &PgPool,
    url: &str,
    timing: Timing,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Row>> {
    sqlx::query(
        "CREATE TABLE arrivals (projection TEXT, aggregate_id TEXT, sequence BIGINT, \
         created_at TIMESTAMPTZ, applied_at TIMESTAMPTZ DEFAULT clock_timestamp(), PRIMARY KEY (projection, aggregate_id, sequence))",
    )
    .execute(pool)
    .await?;
    for table in LATEST_TABLES {
        sqlx::query(&format!(
            "CREATE TABLE {table} (aggregate_id TEXT COLLATE \"C\" PRIMARY KEY, sequence BIGINT) \
             WITH (fillfactor = 70)"
        ))
        .execute(pool)
        .await?;
    }
    let mut rows = Vec::new();
    if wanted("P2") {
        eprintln!("bench: P2");
        let worker = spawn_worker(url, 1, "arrivals")?;
        let window_start: chrono::DateTime<chrono::Utc> = chrono::Utc::now();
        let row = writes::w1_only(store, 8, timing).await;
        // Let the last pushes arrive before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(worker);
        let (p50, p99, count): (Option<f64>, Option<f64>, i64) = sqlx::query_as(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*) \
             FROM (SELECT extract(epoch FROM applied_at - created_at) * 1000 AS ms FROM arrivals \
                   WHERE projection = 'arrivals_0' AND created_at >= $1) t",
        )
        .bind(window_start)
        .fetch_one(pool)
        .await?;
        rows.push(Row {
            system: "strata",
            workload: "P2".into(),
            concurrency: 8,
            events_per_sec: row.events_per_sec,
            ops_per_sec: None,
            p50_ms: p50.unwrap_or(0.0),
            p99_ms: p99.unwrap_or(0.0),
            errors: row.errors,
            retries: 0,
        });
        eprintln!("bench: P2 measured {count} arrivals");
        if std::env::var_os("STRATA_BENCH_P2_DETAIL").is_some() {
            let detail: Vec<LatencyBucket> = sqlx::query_as(
                "SELECT (floor(extract(epoch FROM created_at - $1) * 4) / 4)::float8 AS s, count(*), \
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), \
                        percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) \
                 FROM (SELECT created_at, extract(epoch FROM applied_at - created_at)::float8 * 1000 AS ms \
                       FROM arrivals WHERE projection = 'arrivals_0' AND created_at >= $1) t \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(window_start)
            .fetch_all(pool)
            .await?;
            for (second, n, p50, p99, max) in detail {
                eprintln!(
                    "bench: P2 t={second:>6.2}s n={n:>5} p50={:>8.1} p99={:>8.1} max={:>8.1}",
                    p50.unwrap_or(0.0),
                    p99.unwrap_or(0.0),
                    max.unwrap_or(0.0)
                );
            }
        }
    }
    if wanted("W1P") {
        rows.extend(w1p(store, pool, url, timing).await?);
    }
    Ok(rows)
}

/// W1P: W1 at C = 8 with 20 projections applying every push in another process, against W1 alone
/// at C = 8, in alternating rounds (alone, with projections, alone, …). W1's absolute rate drifts
/// over minutes with the disk's flush latency; alternating short
/// rounds exposes both sides to the same drift, so their ratio holds where one long run each
/// would compare two different machines. Each round's worker catches up before it is measured.
async fn w1p(store: &PgStore, pool: &PgPool, url: &str, timing: Timing) -> Result<Vec<Row>> {
    // STRATA_BENCH_W1P_ROUNDS: more rounds for a steadier ratio (docs/benchmarks.md).
    let rounds: u32 = std::env::var("STRATA_BENCH_W1P_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if timing.measure >= Duration::from_secs(6) {
            3
        } else {
            2
        });
    // A warm-up of at least a second and rounds of at least three, also with --quick: the first
    // second beside a freshly started worker is its own warm-up (small batches while triggers
    // ramp up), and quick rounds measured mostly that.
    let round = Timing {
        warmup: (timing.warmup / 2).max(Duration::from_secs(1)),
        measure: (timing.measure / rounds).max(Duration::from_secs(3)),
    };
    // STRATA_BENCH_W1P_PROJECTIONS: how the writers' share falls with the projections' write
    // volume; the standard row is 20 (docs/benchmarks.md).
    let projections: usize = std::env::var("STRATA_BENCH_W1P_PROJECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LATEST_TABLES.len())
        .clamp(1, LATEST_TABLES.len());
    let detail = std::env::var_os("STRATA_BENCH_P2_DETAIL").is_some();
    let (mut alone, mut alone_elapsed) = (Samples::default(), Duration::ZERO);
    let (mut with, mut with_elapsed) = (Samples::default(), Duration::ZERO);
    let (mut polled, mut polled_elapsed) = (Samples::default(), Duration::ZERO);
    let (mut grouped, mut grouped_elapsed) = (Samples::default(), Duration::ZERO);
    // What each reader costs: [runtime, grouped poller, pollers].
    let mut costs = [ReaderCost::default(); 3];
    let statements = reader_cost::statements_available(pool).await;
    let reader_url = reader_cost::reader_url(url);
    for n in 1..=rounds {
        eprintln!("bench: W1P round {n}/{rounds}: W1 alone");
        let before = if detail {
            activity(pool).await?
        } else {
            (0, 0, 0, 0)
        };
        let (samples, elapsed) = writes::w1_samples(store, 8, round).await;
        if detail {
            let after = activity(pool).await?;
            eprintln!(
                "bench: W1P alone {:.0} WAL bytes per event pushed",
                (after.3 - before.3) as f64 / (after.2 - before.2).max(1) as f64,
            );
        }
        let alone_rate = samples.events as f64 / elapsed.as_secs_f64().max(1e-9);
        alone.merge(samples);
        alone_elapsed += elapsed;
        // Strata and the two references take turns at going first, so drift favours none.
        let mut order = ["strata", "poll-grouped", "poll"];
        order.rotate_left((n as usize - 1) % 3);
        for kind in order {
            if kind == "strata" {
                eprintln!("bench: W1P round {n}/{rounds}: W1 beside {projections} projections");
                let worker = spawn_worker(&reader_url, projections, "latest")?;
                eprintln!("bench: W1P round {n}/{rounds}: projections caught up, W1 starts");
                let before = if detail {
                    activity(pool).await?
                } else {
                    (0, 0, 0, 0)
                };
                let start = ReaderSample::now(pool, worker.0.id(), statements).await?;
                let (samples, elapsed) = writes::w1_samples(store, 8, round).await;
                let cost = start.until(
                    &ReaderSample::now(pool, worker.0.id(), statements).await?,
                    projections,
                );
                eprintln!(
                    "bench: W1P round {n}/{rounds}: the runtime: {}",
                    cost.describe()
                );
                costs[0].add(cost);
                if detail {
                    let after = activity(pool).await?;
                    let seconds = (round.warmup + round.measure).as_secs_f64();
                    let events = after.2 - before.2;
                    eprintln!(
                        "bench: W1P {:.0} batches/s, {:.0} transactions/s, {:.1} events per batch; \
                         {:.0} ev/s beside projections, {:.0} WAL bytes per event pushed",
                        (after.0 - before.0) as f64 / seconds,
                        (after.1 - before.1) as f64 / seconds,
                        (events * projections as i64) as f64 / (after.0 - before.0).max(1) as f64,
                        samples.events as f64 / elapsed.as_secs_f64().max(1e-9),
                        (after.3 - before.3) as f64 / events.max(1) as f64,
                    );
                }
                drop(worker);
                // Per round, so a round caught in a slow phase of the machine shows as one.
                let with_rate = samples.events as f64 / elapsed.as_secs_f64().max(1e-9);
                eprintln!(
                    "bench: W1P round {n}/{rounds}: {alone_rate:.0} ev/s alone, {with_rate:.0} beside \
                     projections ({:.2}x)",
                    with_rate / alone_rate.max(1e-9)
                );
                with.merge(samples);
                with_elapsed += elapsed;
            } else {
                let readers = if kind == "poll" {
                    format!("{projections} pollers")
                } else {
                    format!("one poller of {projections} read models")
                };
                eprintln!("bench: W1P round {n}/{rounds}: W1 beside {readers}");
                let pollers = spawn_worker(&reader_url, projections, kind)?;
                let start = ReaderSample::now(pool, pollers.0.id(), statements).await?;
                let (samples, elapsed) = writes::w1_samples(store, 8, round).await;
                let cost = start.until(
                    &ReaderSample::now(pool, pollers.0.id(), statements).await?,
                    projections,
                );
                drop(pollers);
                eprintln!(
                    "bench: W1P round {n}/{rounds}: {readers}: {}",
                    cost.describe()
                );
                costs[if kind == "poll" { 2 } else { 1 }].add(cost);
                let polled_rate = samples.events as f64 / elapsed.as_secs_f64().max(1e-9);
                eprintln!(
                    "bench: W1P round {n}/{rounds}: {polled_rate:.0} ev/s beside {readers} every \
                     {} ms ({:.2}x)",
                    POLL_EVERY.as_millis(),
                    polled_rate / alone_rate.max(1e-9)
                );
                if kind == "poll" {
                    polled.merge(samples);
                    polled_elapsed += elapsed;
                } else {
                    grouped.merge(samples);
                    grouped_elapsed += elapsed;
                }
            }
        }
    }
    for (reader, cost) in ["the runtime", "the grouped poller", "the pollers"]
        .iter()
        .zip(costs)
    {
        eprintln!("bench: W1P cost of {reader}: {}", cost.describe());
    }
    let alone = alone.events_row("strata-alone", "W1P", 8, alone_elapsed);
    let with = with.events_row("strata", "W1P", 8, with_elapsed);
    let polled = polled.events_row("raw-poll", "W1P", 8, polled_elapsed);
    let grouped = grouped.events_row("raw", "W1P", 8, grouped_elapsed);
    Ok(vec![alone, with, grouped, polled])
}

/// A quarter second of P2 arrivals: start (s after the window opened), count, p50, p99, max (ms).
type LatencyBucket = (f64, i64, Option<f64>, Option<f64>, Option<f64>);

/// Checkpoint moves, transactions, events and WAL bytes so far (statistics lag by up to a second).
async fn activity(pool: &PgPool) -> Result<(i64, i64, i64, i64)> {
    let _ = sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await;
    let moves: Option<i64> = sqlx::query_scalar(
        "SELECT (n_tup_upd + n_tup_ins)::int8 FROM pg_stat_user_tables \
         WHERE schemaname = 'projections' AND relname = 'current_states'",
    )
    .fetch_optional(pool)
    .await?;
    let transactions: i64 = sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(pool)
        .await?;
    let wal: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
        .fetch_one(pool)
        .await?;
    Ok((moves.unwrap_or(0), transactions, events, wal))
}
