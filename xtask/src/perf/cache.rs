//! C1: the cache's get (hit and miss) and set on each connector, through `strata_cache::Cache`,
//! each beside its raw baseline where one exists (`cache_baselines.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheConfig, Entry, Index};

use crate::perf::cache_baselines::{Baseline, RawMemory, RawObjects, RawRedis};
use crate::perf::runner::{Operation, Timing, run};
use crate::perf::setup::BenchDatabase;
use crate::perf::stats::Row;

/// The connectors, in the order they run.
pub(crate) const CONNECTORS: [&str; 3] = ["memory", "postgres", "redis"];
/// The operations measured on each connector, in the order they run.
pub(crate) const OPS: [&str; 3] = ["get-hit", "get-miss", "set"];

/// Objects in each cache (two keys each), and rows in the raw baseline's table.
const ENTRIES: u64 = 10_000;
/// The PostgreSQL cache's objects with `--quick`: a set takes about a millisecond and sets of one
/// cache do not overlap, so writing 10 000 would take longer than the measurements.
const QUICK_PG_ENTRIES: u64 = 2_000;
/// Tasks per workload, Strata and raw alike.
pub(crate) const CONCURRENCY: usize = 8;
/// Connections of the cache's pool, and of the raw baseline's.
const POOL: u32 = 8;

/// `C1-<connector>-<op>`.
pub(crate) fn workload(connector: &str, op: &str) -> String {
    format!("C1-{connector}-{op}")
}

/// Every C1 workload name.
pub(crate) fn workloads() -> impl Iterator<Item = String> {
    CONNECTORS
        .iter()
        .flat_map(|connector| OPS.iter().map(move |op| workload(connector, op)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TenantIndex {
    Id,
    Domain,
}

impl Index for TenantIndex {
    const ALL: &'static [Self] = &[TenantIndex::Id, TenantIndex::Domain];

    fn name(self) -> &'static str {
        match self {
            TenantIndex::Id => "id",
            TenantIndex::Domain => "domain",
        }
    }
}

/// What the benchmark caches: an instance-like object found by its id or its domain, about 80
/// bytes encoded. The memory connector clones the value on every hit; this one has four heap
/// allocations (id, domain list, domain, name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) domains: Vec<String>,
    name: String,
    plan: u8,
    features: u32,
    version: u64,
}

impl Entry for Tenant {
    type Index = TenantIndex;

    fn keys(&self, index: TenantIndex) -> Vec<String> {
        match index {
            TenantIndex::Id => vec![self.id.clone()],
            TenantIndex::Domain => self.domains.clone(),
        }
    }
}

pub(crate) fn id_key(slot: u64) -> String {
    format!("tenant-{slot:05}")
}

pub(crate) fn tenant(slot: u64, version: u64) -> Tenant {
    Tenant {
        id: id_key(slot),
        domains: vec![format!("tenant-{slot:05}.bench.example")],
        name: format!("Tenant number {slot} of the benchmark"),
        plan: 3,
        features: 0b1011,
        version,
    }
}

/// A pseudo-random object per (task, iteration), spread over `entries`.
pub(crate) fn slot(task: usize, iteration: u64, entries: u64) -> u64 {
    let mut x = (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ iteration.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    x % entries
}

/// What one task's operations use. Each task has its own, in cache lines of its own: a memory hit
/// takes about a microsecond, and eight tasks bumping one shared reference count per operation
/// would measure that count's cache line moving between cores rather than the cache.
#[repr(align(128))]
struct TaskHandle {
    cache: Cache<Tenant>,
    /// The id keys of the objects, made once: not formatting them in the timed part.
    keys: Arc<[String]>,
    /// As many keys that find nothing.
    absent: Arc<[String]>,
}

/// One handle per task of a run.
fn handles(cache: &Cache<Tenant>, entries: u64) -> Arc<[Arc<TaskHandle>]> {
    let keys: Arc<[String]> = (0..entries).map(id_key).collect();
    let absent: Arc<[String]> = (0..entries).map(|n| format!("absent-{n:05}")).collect();
    (0..CONCURRENCY)
        .map(|_| {
            Arc::new(TaskHandle {
                cache: cache.clone(),
                keys: Arc::clone(&keys),
                absent: Arc::clone(&absent),
            })
        })
        .collect()
}

/// The same for every connector: entries expire an hour after they were written or ten minutes
/// after their last read, as a service would configure. A hit then writes nothing during a run
/// (the last-use time is rewritten only when older than a quarter of the ten minutes). No pruner:
/// nothing expires during a run, and a pass would land at a different moment in every run.
fn config() -> CacheConfig {
    CacheConfig {
        max_age: Some(Duration::from_secs(3600)),
        last_use_age: Some(Duration::from_secs(600)),
        prune_interval: None,
        ..CacheConfig::default()
    }
}

/// A cache name no other run (or process) uses: the Redis workload shares a server with whoever
/// else uses it, so it must never touch keys it did not write.
fn unique_name(connector: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "bench_c1_{connector}_{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// Writes every object once, from `CONCURRENCY` tasks, and checks both ends are there.
async fn populate(cache: &Cache<Tenant>, entries: u64) -> Result<()> {
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for task in 0..CONCURRENCY {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let mut slot = task as u64;
            while slot < entries {
                cache.set(tenant(slot, 0)).await?;
                slot += CONCURRENCY as u64;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a populating task panicked")??;
    }
    for slot in [0, entries - 1] {
        if cache.get(TenantIndex::Id, &id_key(slot)).await.is_none() {
            bail!(
                "the {} cache does not return what was just written to it (is its server up?)",
                cache.connector_kind()
            );
        }
    }
    Ok(())
}

/// After the set workload: objects are still found, and sets did land (some have a newer
/// version). A connector that drops writes with a warning would otherwise report a fast `set`.
async fn check_sets(cache: &Cache<Tenant>, entries: u64) -> Result<()> {
    let mut updated = 0;
    for slot in (0..entries).step_by(10) {
        match cache.get(TenantIndex::Id, &id_key(slot)).await {
            Some(value) if value.version > 0 => updated += 1,
            Some(_) => {}
            None => bail!(
                "after C1-{}-set, object {slot} is no longer found",
                cache.connector_kind()
            ),
        }
    }
    if updated == 0 {
        bail!(
            "after C1-{}-set, no object has a newer version: the sets were dropped",
            cache.connector_kind()
        );
    }
    Ok(())
}

fn get_hit(handles: &Arc<[Arc<TaskHandle>]>, entries: u64) -> Operation {
    let handles = Arc::clone(handles);
    Arc::new(move |task, iteration| {
        let handle = Arc::clone(&handles[task % handles.len()]);
        async move {
            let key = &handle.keys[slot(task, iteration, entries) as usize];
            match handle.cache.get(TenantIndex::Id, key).await {
                Some(_) => Ok(1),
                None => bail!("{key} missed"),
            }
        }
        .boxed()
    })
}

fn get_miss(handles: &Arc<[Arc<TaskHandle>]>, entries: u64) -> Operation {
    let handles = Arc::clone(handles);
    Arc::new(move |task, iteration| {
        let handle = Arc::clone(&handles[task % handles.len()]);
        async move {
            let key = &handle.absent[slot(task, iteration, entries) as usize];
            match handle.cache.get(TenantIndex::Id, key).await {
                None => Ok(1),
                Some(_) => bail!("{key} was found"),
            }
        }
        .boxed()
    })
}

/// Replaces one of the objects under its same two keys: the set path looks up the keys, removes
/// the previous copy with all its keys and writes the new one.
fn set(handles: &Arc<[Arc<TaskHandle>]>, entries: u64) -> Operation {
    let handles = Arc::clone(handles);
    Arc::new(move |task, iteration| {
        let handle = Arc::clone(&handles[task % handles.len()]);
        async move {
            let value = tenant(slot(task, iteration, entries), iteration + 1);
            handle.cache.set(value).await?;
            Ok(1)
        }
        .boxed()
    })
}

/// get-hit, get-miss and set on one cache of `entries` objects, as `wanted` asks; `raw`'s
/// operation of the same name runs right after each.
async fn measure(
    connector: &str,
    cache: &Cache<Tenant>,
    entries: u64,
    raw: Option<&dyn Baseline>,
    timing: Timing,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Row>> {
    let handles = handles(cache, entries);
    let mut rows = Vec::new();
    for op in OPS {
        let name = workload(connector, op);
        if !wanted(&name) {
            continue;
        }
        eprintln!("bench: {name} at C={CONCURRENCY}");
        let operation = match op {
            "get-hit" => get_hit(&handles, entries),
            "get-miss" => get_miss(&handles, entries),
            _ => set(&handles, entries),
        };
        let (samples, elapsed) = run(CONCURRENCY, timing, operation).await;
        rows.push(samples.ops_row("strata", &name, CONCURRENCY, elapsed));
        if op == "set" {
            check_sets(cache, entries).await?;
        }
        let baseline = raw.and_then(|raw| match op {
            "get-hit" => raw.get_hit(),
            "set" => raw.set(),
            _ => None,
        });
        if let Some(baseline) = baseline {
            let (samples, elapsed) = run(CONCURRENCY, timing, baseline).await;
            rows.push(samples.ops_row("raw", &name, CONCURRENCY, elapsed));
        }
    }
    Ok(rows)
}

fn any_wanted(connector: &str, wanted: &dyn Fn(&str) -> bool) -> bool {
    OPS.iter().any(|op| wanted(&workload(connector, op)))
}

/// Where the Redis workload runs: `REDIS_URL`, by default the local server.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether a Redis server answers at `url`, within two seconds.
async fn redis_answers(url: &str) -> Result<()> {
    let client = redis::Client::open(url).context("REDIS_URL is not a Redis URL")?;
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => bail!("{err}"),
        Err(_) => bail!("no answer within 2 s"),
    }
}

/// Empties the Redis cache `name` and removes its id counter, which `truncate` keeps on purpose:
/// afterwards nothing of this run is left on the server. Touches only keys of this cache's own
/// namespace (never `FLUSHDB`).
async fn remove_redis_cache(url: &str, cache: &Cache<Tenant>) -> Result<()> {
    cache.truncate().await;
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    // The connector's layout (docs/cache.md): every key of cache `name` is `strata:cache:{name}:…`.
    let namespace = format!("strata:cache:{{{}}}", cache.name());
    let mut cursor: u64 = 0;
    loop {
        let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        if !names.is_empty() {
            redis::cmd("UNLINK")
                .arg(names)
                .query_async::<i64>(&mut connection)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// C1 on every connector `wanted` names. PostgreSQL runs on a fresh database of `admin_url`'s
/// server. `redis_required`: fail when Redis does not answer (the workloads were asked for by
/// name) rather than skip them with a warning.
pub(crate) async fn run_cache(
    admin_url: &str,
    timing: Timing,
    quick: bool,
    wanted: &dyn Fn(&str) -> bool,
    redis_required: bool,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();

    if any_wanted("memory", wanted) {
        let cache: Cache<Tenant> = Cache::memory(&unique_name("memory"), config())?;
        populate(&cache, ENTRIES).await?;
        let raw = RawMemory::populated(ENTRIES);
        rows.extend(measure("memory", &cache, ENTRIES, Some(&raw), timing, wanted).await?);
    }

    if any_wanted("postgres", wanted) {
        let entries = if quick { QUICK_PG_ENTRIES } else { ENTRIES };
        let database = BenchDatabase::create(admin_url).await?;
        let cache: Cache<Tenant> =
            Cache::postgres(database.pool(POOL), &unique_name("postgres"), config()).await?;
        let started = Instant::now();
        populate(&cache, entries).await?;
        eprintln!(
            "bench: C1 wrote {entries} objects to PostgreSQL in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let raw =
            if wanted(&workload("postgres", "get-hit")) || wanted(&workload("postgres", "set")) {
                // The baseline's own pool, as large as the cache's.
                Some(RawObjects::create(database.pool(POOL), cache.name(), entries).await?)
            } else {
                None
            };
        let mut tables = vec!["cache.objects", "cache.string_keys"];
        if raw.is_some() {
            tables.push("raw.cache_objects");
        }
        database.settle_tables(&tables).await?;
        let raw = raw.as_ref().map(|raw| raw as &dyn Baseline);
        rows.extend(measure("postgres", &cache, entries, raw, timing, wanted).await?);
    }

    if any_wanted("redis", wanted) {
        let url = redis_url();
        match redis_answers(&url).await {
            Ok(()) => {
                let cache: Cache<Tenant> = Cache::redis(&url, &unique_name("redis"), config())?;
                let measured = async {
                    populate(&cache, ENTRIES).await?;
                    let raw = RawRedis::connect(&url, cache.name(), ENTRIES).await?;
                    measure("redis", &cache, ENTRIES, Some(&raw), timing, wanted).await
                }
                .await;
                // Removed whatever happened, so a failed run leaves nothing on the server.
                if let Err(err) = remove_redis_cache(&url, &cache).await {
                    eprintln!(
                        "bench: could not remove the Redis cache {}: {err:#}",
                        cache.name()
                    );
                }
                rows.extend(measured?);
            }
            Err(err) if redis_required => {
                bail!("no Redis at {url} ({err:#}); start one or set REDIS_URL")
            }
            Err(err) => eprintln!(
                "bench: skipping C1-redis-*: no Redis at {url} ({err:#}); start one or set REDIS_URL"
            ),
        }
    }
    Ok(rows)
}
