//! SCALEOUT: what a hot standby and a second shard buy, on servers this run starts itself
//! (docs/scaling.md, "Capacity on this machine").
//!
//! - **Readers beside writers.** W1 at C = 32 on a fresh primary, in rounds alternating three
//!   ways: alone, with readers (R2 paging through every event, P1 catching up from scratch, in a
//!   loop) reading from the primary, and with the same readers routed to a hot standby of it
//!   (`PgConfig::replica`). Rows `W1-readers-on-primary` and `W1-readers-on-replica`, each beside
//!   W1 alone from the same rounds.
//! - **Shards.** W1 at C = 32 spread over 16 instances through a `ShardedStore`, once over one
//!   server and once over two (instances alternating between them), in alternating rounds. Rows
//!   `W1-one-shard` and `W1-two-shards`.
//!
//! Every server is a fresh cluster with durable settings (`server::BENCH_SETTINGS`), so the
//! comparisons do not depend on the machine's own server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::FutureExt;
use sqlx::PgPool;
use strata_event::{Command, Cursor, InstanceId};
use strata_postgres::{PgConfig, PgStore, ReadServer, ReplicaConfig};
use strata_query::Query;
use strata_shard::{Fallback, ShardName, ShardedStore};
use strata_store::EventStore;

use crate::perf::cpu::{CpuSample, CpuUse};
use crate::perf::projections;
use crate::perf::reads;
use crate::perf::runner::{Operation, Timing, payload, run};
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::{Row, Samples};
use crate::perf::writes;
use crate::server::{BENCH_SETTINGS, ThrowawayCluster, find_bindir};

/// The name that runs this workload; it runs only when named.
pub(crate) const SCALEOUT: &str = "SCALEOUT";
pub(crate) const READERS_ON_PRIMARY: &str = "W1-readers-on-primary";
pub(crate) const READERS_ON_REPLICA: &str = "W1-readers-on-replica";
pub(crate) const ONE_SHARD: &str = "W1-one-shard";
pub(crate) const TWO_SHARDS: &str = "W1-two-shards";
/// The rows it prints.
pub(crate) const ROWS: [&str; 4] = [
    READERS_ON_PRIMARY,
    READERS_ON_REPLICA,
    ONE_SHARD,
    TWO_SHARDS,
];

const CLIENTS: usize = 32;
/// Events loaded for the readers before the rounds.
const READ_EVENTS: usize = 100_000;
/// Instances the sharded W1 spreads over.
const TENANTS: usize = 16;

pub(crate) async fn run_scaleout(timing: Timing, rounds: u32) -> Result<Vec<Row>> {
    let Some(bindir) = find_bindir() else {
        bail!("SCALEOUT starts servers of its own and needs PostgreSQL's server programs (initdb)");
    };
    let mut rows = readers(&bindir, timing, rounds).await?;
    rows.extend(shards(&bindir, timing, rounds).await?);
    Ok(rows)
}

/// What one condition of the reader comparison measured over its rounds.
#[derive(Default)]
struct Condition {
    writes: Samples,
    elapsed: Duration,
    rates: Vec<f64>,
    read: u64,
    projected: u64,
    cpu: CpuUse,
}

impl Condition {
    fn add(&mut self, samples: Samples, elapsed: Duration, read: u64, projected: u64, cpu: CpuUse) {
        self.cpu.add(cpu);
        self.rates
            .push(samples.events as f64 / elapsed.as_secs_f64());
        self.writes.merge(samples);
        self.elapsed += elapsed;
        self.read += read;
        self.projected += projected;
    }
}

async fn readers(bindir: &std::path::Path, timing: Timing, rounds: u32) -> Result<Vec<Row>> {
    eprintln!("bench: SCALEOUT: a primary and a hot standby, {READ_EVENTS} events to read");
    let primary = ThrowawayCluster::start(bindir, BENCH_SETTINGS)?;
    let database = BenchDatabase::create(&primary.url()).await?;
    let name = database
        .options
        .get_database()
        .context("a bench database has a name")?
        .to_owned();
    let writers = database.store(&PgConfig::default())?;
    let pool = database.pool(4);
    reads::load(&writers, &pool, READ_EVENTS).await?;
    database.settle().await?;
    let standby = primary.start_standby()?;

    let on_primary = database.store(&PgConfig::default())?;
    let mut replica = ReplicaConfig::new(standby.database_url(&name));
    replica.check_every = Duration::from_millis(200);
    replica.max_lag = Duration::from_secs(30);
    let on_replica = database.store(&PgConfig {
        replica: Some(replica),
        ..PgConfig::default()
    })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while on_replica.reads_from() != ReadServer::Replica {
        if Instant::now() > deadline {
            bail!("the standby did not catch up within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (primary_data, standby_data) = (primary.data_dir(), standby.data_dir());
    let servers = [primary_data.as_path(), standby_data.as_path()];
    let round = Timing {
        warmup: timing.warmup / 2,
        measure: timing.measure / rounds.max(1),
    };
    let (mut alone, mut beside_primary, mut beside_replica) = (
        Condition::default(),
        Condition::default(),
        Condition::default(),
    );
    for n in 0..rounds {
        // Each condition goes first in turn: the disk's flush latency drifts within minutes.
        let mut order: [u8; 3] = [0, 1, 2];
        order.rotate_left((n % 3) as usize);
        for condition in order {
            let (target, readers): (&mut Condition, Option<&PgStore>) = match condition {
                0 => (&mut alone, None),
                1 => (&mut beside_primary, Some(&on_primary)),
                _ => (&mut beside_replica, Some(&on_replica)),
            };
            let reading = readers.map(|store| Readers::start(store.clone(), pool.clone()));
            let before = CpuSample::now(servers);
            let (samples, elapsed) = writes::w1_samples(&writers, CLIENTS, round).await;
            let cpu = before.until(&CpuSample::now(servers));
            let (read, projected) = match reading {
                Some(reading) => reading.stop().await?,
                None => (0, 0),
            };
            target.add(samples, elapsed, read, projected, cpu);
        }
    }
    if on_replica.reads_from() != ReadServer::Replica {
        eprintln!("bench: SCALEOUT: the replica's readers fell back to the primary during the run");
    }
    for (condition, workload) in [
        (&alone, "W1 alone"),
        (&beside_primary, READERS_ON_PRIMARY),
        (&beside_replica, READERS_ON_REPLICA),
    ] {
        let seconds = condition.elapsed.as_secs_f64();
        eprintln!(
            "bench: {workload}: the primary server used {:.2} cores, the standby {:.2}; the \
             machine was {:.0} % busy",
            condition.cpu.server_cores(0, seconds),
            condition.cpu.server_cores(1, seconds),
            condition.cpu.machine_busy_share() * 100.0
        );
        if condition.read == 0 {
            continue;
        }
        eprintln!(
            "bench: {workload}: readers read {:.0} ev/s (R2) and projected {:.0} ev/s (P1); \
             writers' per-round ratios to W1 alone: {}",
            condition.read as f64 / seconds,
            condition.projected as f64 / seconds,
            ratios(&condition.rates, &alone.rates)
        );
    }
    let mut rows = Vec::new();
    for (condition, workload) in [
        (beside_primary, READERS_ON_PRIMARY),
        (beside_replica, READERS_ON_REPLICA),
    ] {
        rows.push(alone.writes.clone().events_row(
            "strata-alone",
            workload,
            CLIENTS,
            alone.elapsed,
        ));
        rows.push(
            condition
                .writes
                .events_row("strata", workload, CLIENTS, condition.elapsed),
        );
    }
    drop((writers, on_primary, on_replica));
    drop(standby);
    Ok(rows)
}

/// SCALEOUT's references, for `--json` (they are not standard rows): each reader row beside W1
/// alone from the same rounds, two shards beside one.
pub(crate) fn summary(rows: &[Row]) -> Vec<String> {
    let find = |system: &str, workload: &str| {
        rows.iter()
            .find(|row| row.system == system && row.workload == workload)
    };
    let rate = |row: &Row| row.events_per_sec.unwrap_or(0.0);
    let mut lines = Vec::new();
    for workload in [READERS_ON_PRIMARY, READERS_ON_REPLICA] {
        if let (Some(row), Some(alone)) = (find("strata", workload), find("strata-alone", workload))
        {
            lines.push(format!(
                "{workload} {:.0} ev/s beside W1 alone at C = {CLIENTS} {:.0} ev/s: ratio {:.2}",
                rate(row),
                rate(alone),
                rate(row) / rate(alone).max(1e-9)
            ));
        }
    }
    if let (Some(two), Some(one)) = (find("strata", TWO_SHARDS), find("strata", ONE_SHARD)) {
        lines.push(format!(
            "{TWO_SHARDS} {:.0} ev/s beside {ONE_SHARD} {:.0} ev/s: ratio {:.2}",
            rate(two),
            rate(one),
            rate(two) / rate(one).max(1e-9)
        ));
    }
    lines
}

/// The median of the per-round ratios `rates[i] / references[i]`, and their range.
fn ratios(rates: &[f64], references: &[f64]) -> String {
    let mut each: Vec<f64> = rates
        .iter()
        .zip(references)
        .map(|(rate, reference)| rate / reference.max(1e-9))
        .collect();
    each.sort_by(f64::total_cmp);
    match (each.first(), each.last()) {
        (Some(low), Some(high)) => {
            format!("median {:.3} ({low:.3}–{high:.3})", each[each.len() / 2])
        }
        _ => "none".into(),
    }
}

/// R2 passes and P1 catch-ups in a loop on a store, until stopped: the readers a replica is for.
struct Readers {
    stop: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
    projected: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Readers {
    fn start(store: PgStore, primary: PgPool) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicU64::new(0));
        let projected = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, read, projected) = (stop.clone(), read.clone(), projected.clone());
            async move {
                let r2 = tokio::spawn({
                    let (store, stop) = (store.clone(), stop.clone());
                    async move {
                        while !stop.load(Ordering::Relaxed) {
                            r2_pass(&store, &stop, &read).await?;
                        }
                        anyhow::Ok(())
                    }
                });
                // P1 projects every `session` event, all loaded before the rounds.
                let sessions = Query::builder()
                    .all_instances()
                    .aggregate_types(["session"])
                    .build()?;
                let per_pass = store.count(&sessions).await?;
                while !stop.load(Ordering::Relaxed) {
                    // From scratch each time: the read model emptied, the checkpoints gone.
                    sqlx::raw_sql(
                        "DELETE FROM projections.current_states WHERE projection_name = 'bench_model'; \
                         TRUNCATE bench_model",
                    )
                    .execute(&primary)
                    .await
                    .ok();
                    projections::p1_strata(&store, &primary).await?;
                    projected.fetch_add(per_pass, Ordering::Relaxed);
                }
                r2.await??;
                Ok(())
            }
        });
        Readers {
            stop,
            read,
            projected,
            task,
        }
    }

    /// Stops the readers and returns the events they read and projected.
    async fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await??;
        Ok((
            self.read.load(Ordering::Relaxed),
            self.projected.load(Ordering::Relaxed),
        ))
    }
}

/// One pass of R2 (every event, in pages), stopping early when asked.
async fn r2_pass(store: &PgStore, stop: &AtomicBool, read: &AtomicU64) -> Result<()> {
    let mut cursor: Option<Cursor> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut query = Query::builder().all_instances().limit(reads::PAGE);
        if let Some(cursor) = cursor {
            query = query.resume_after(cursor);
        }
        let page = store.query(&query.build()?).await?;
        read.fetch_add(page.len() as u64, Ordering::Relaxed);
        match page.last() {
            Some(last) if page.len() as i64 == reads::PAGE => cursor = Some(last.cursor()),
            _ => return Ok(()),
        }
    }
    Ok(())
}

async fn shards(bindir: &std::path::Path, timing: Timing, rounds: u32) -> Result<Vec<Row>> {
    eprintln!("bench: SCALEOUT: two servers, one shard each");
    let (first, second) = (
        ThrowawayCluster::start(bindir, BENCH_SETTINGS)?,
        ThrowawayCluster::start(bindir, BENCH_SETTINGS)?,
    );
    let (a, b) = (ShardName::new("a")?, ShardName::new("b")?);
    let store_on = |database: &BenchDatabase| database.store(&PgConfig::default());
    let (first_db, second_db) = (
        BenchDatabase::create(&first.url()).await?,
        BenchDatabase::create(&second.url()).await?,
    );
    let (on_first, on_second) = (store_on(&first_db)?, store_on(&second_db)?);
    let one = ShardedStore::new(vec![(a.clone(), on_first.clone())], Fallback::Refuse)?;
    let two = ShardedStore::new(
        vec![(a.clone(), on_first), (b.clone(), on_second)],
        Fallback::Refuse,
    )?;
    for tenant in 0..TENANTS {
        let instance = InstanceId::new(format!("tenant-{tenant}"))?;
        one.assign(instance.clone(), &a).await?;
        let shard = if tenant % 2 == 0 { &a } else { &b };
        two.assign(instance, shard).await?;
    }
    let (first_data, second_data) = (first.data_dir(), second.data_dir());
    let servers = [first_data.as_path(), second_data.as_path()];
    let round = Timing {
        warmup: timing.warmup / 2,
        measure: timing.measure / rounds.max(1),
    };
    let (mut on_one, mut on_two) = (Condition::default(), Condition::default());
    for n in 0..rounds {
        let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (target, store) = match side {
                0 => (&mut on_one, &one),
                _ => (&mut on_two, &two),
            };
            let before = CpuSample::now(servers);
            let (samples, elapsed) = run(CLIENTS, round, sharded_w1(store.clone())).await;
            let cpu = before.until(&CpuSample::now(servers));
            target.add(samples, elapsed, 0, 0, cpu);
        }
    }
    eprintln!(
        "bench: {TWO_SHARDS}: per-round ratios to one shard: {}",
        ratios(&on_two.rates, &on_one.rates)
    );
    for (condition, workload) in [(&on_one, ONE_SHARD), (&on_two, TWO_SHARDS)] {
        let seconds = condition.elapsed.as_secs_f64();
        eprintln!(
            "bench: {workload}: the first server used {:.2} cores, the second {:.2}; the machine \
             was {:.0} % busy",
            condition.cpu.server_cores(0, seconds),
            condition.cpu.server_cores(1, seconds),
            condition.cpu.machine_busy_share() * 100.0
        );
    }
    Ok(vec![
        on_one
            .writes
            .events_row("strata", ONE_SHARD, CLIENTS, on_one.elapsed),
        on_two
            .writes
            .events_row("strata", TWO_SHARDS, CLIENTS, on_two.elapsed),
    ])
}

/// W1's push, each client writing to one of [`TENANTS`] instances.
fn sharded_w1(store: ShardedStore<PgStore>) -> Operation {
    Arc::new(move |task, iteration| {
        let store = store.clone();
        async move {
            let (aggregate, _) = writes::w1_pick(task, iteration);
            let command = Command::builder(
                format!("tenant-{}", task % TENANTS),
                "user",
                aggregate,
                "user.changed",
            )
            .creator("bench")
            .owner("org")
            .payload(&payload(iteration))
            .build()?;
            store.push(vec![command]).await?;
            Ok(1)
        }
        .boxed()
    })
}
