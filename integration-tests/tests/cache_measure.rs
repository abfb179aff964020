//! Ad-hoc throughput of the cache connectors, behind `STRATA_CACHE_MEASURE=1` so ordinary runs
//! skip it (it prints figures; it asserts nothing about speed). Run it in release mode, alone:
//!
//! ```text
//! STRATA_CACHE_MEASURE=1 cargo test --release -p strata-integration-tests --test cache_measure -- --nocapture --test-threads 1
//! ```
//!
//! The figures in docs/cache.md come from here. `cargo xtask bench` (workload C1) is the
//! reproducible benchmark.

#![allow(clippy::unwrap_used)] // Helpers shared by tests: a failed unwrap is a failed test.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cache::conformance::{Instance, InstanceIndex, unique_name};
use strata_cache::{Cache, CacheConfig};
use strata_integration_tests::TestDatabase;

const ENTRIES: usize = 10_000;

fn enabled() -> bool {
    std::env::var("STRATA_CACHE_MEASURE").is_ok_and(|value| value == "1")
}

fn instance(n: usize) -> Instance {
    let id = format!("instance-{n}");
    Instance::new(&id, &[&format!("{id}.example")])
}

/// Runs `op(i)` for `total` values of `i` split over `concurrency` tasks; returns ops/s.
async fn throughput<F, Fut>(total: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while i < total {
                op(i).await;
                i += concurrency;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn populate(cache: &Cache<Instance>) {
    for n in 0..ENTRIES {
        cache.set(instance(n)).await.unwrap();
    }
}

async fn report(connector: &str, cache: Cache<Instance>, ops: usize, concurrency: usize) {
    let hits = cache.clone();
    let hit = throughput(ops, concurrency, move |i| {
        let cache = hits.clone();
        async move {
            let key = format!("instance-{}", i % ENTRIES);
            assert!(cache.get(InstanceIndex::Id, &key).await.is_some());
        }
    })
    .await;
    let misses = cache.clone();
    let miss = throughput(ops, concurrency, move |i| {
        let cache = misses.clone();
        async move {
            let key = format!("absent-{i}");
            assert!(cache.get(InstanceIndex::Id, &key).await.is_none());
        }
    })
    .await;
    let sets = cache.clone();
    let set = throughput(ops / 4, concurrency, move |i| {
        let cache = sets.clone();
        async move { cache.set(instance(i % ENTRIES)).await.unwrap() }
    })
    .await;
    println!(
        "C1-{connector} concurrency {concurrency}: get-hit {hit:.0} ops/s, get-miss {miss:.0} ops/s, set {set:.0} ops/s"
    );
}

/// One core: the current-thread runtime and one task.
#[tokio::test(flavor = "current_thread")]
async fn memory() {
    if !enabled() {
        return;
    }
    let cache = Cache::memory("measure_memory", CacheConfig::default()).unwrap();
    populate(&cache).await;
    let ops = 2_000_000;
    let keys: Vec<String> = (0..ENTRIES).map(|n| format!("instance-{n}")).collect();
    // A tight loop without the spawn-per-op harness: what one caller on one core gets.
    let started = Instant::now();
    for i in 0..ops {
        assert!(
            cache
                .get(InstanceIndex::Id, &keys[i % ENTRIES])
                .await
                .is_some()
        );
    }
    let hit = ops as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..ops {
        assert!(
            cache
                .get(InstanceIndex::Domain, &keys[i % ENTRIES])
                .await
                .is_none()
        );
    }
    let miss = ops as f64 / started.elapsed().as_secs_f64();
    let values: Vec<Instance> = (0..ENTRIES).map(instance).collect();
    let sets = 200_000;
    let started = Instant::now();
    for i in 0..sets {
        cache.set(values[i % ENTRIES].clone()).await.unwrap();
    }
    let set = sets as f64 / started.elapsed().as_secs_f64();
    println!(
        "C1-memory one core: get-hit {hit:.0} ops/s, get-miss {miss:.0} ops/s, set {set:.0} ops/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    if !enabled() {
        return;
    }
    let database = TestDatabase::create().await;
    let pool = database.pool(8);
    let name = unique_name();
    let cache = Cache::postgres(
        pool.clone(),
        &name,
        CacheConfig {
            last_use_age: Some(Duration::from_secs(600)),
            ..CacheConfig::default()
        },
    )
    .await
    .unwrap();
    let started = Instant::now();
    populate(&cache).await;
    let populate_rate = ENTRIES as f64 / started.elapsed().as_secs_f64();
    println!("C1-postgres populate (set of new keys, concurrency 1): {populate_rate:.0} ops/s");
    for concurrency in [1, 8] {
        // The raw baseline: a primary-key SELECT of the payload on the same table.
        let ids: Arc<Vec<i64>> = Arc::new(
            sqlx::query_scalar("SELECT id FROM cache.objects WHERE cache_name = $1 ORDER BY id")
                .bind(&name)
                .fetch_all(&pool)
                .await
                .unwrap(),
        );
        let (raw_pool, raw_name) = (pool.clone(), name.clone());
        let raw = throughput(20_000, concurrency, move |i| {
            let (pool, name, ids) = (raw_pool.clone(), raw_name.clone(), Arc::clone(&ids));
            async move {
                let payload: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT payload FROM cache.objects WHERE cache_name = $1 AND id = $2",
                )
                .bind(&name)
                .bind(ids[i % ids.len()])
                .fetch_optional(&pool)
                .await
                .unwrap();
                assert!(payload.is_some());
            }
        })
        .await;
        println!("C1-postgres-get-hit raw concurrency {concurrency}: {raw:.0} ops/s");
        report("postgres", cache.clone(), 20_000, concurrency).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    if !enabled() {
        return;
    }
    let cache = Cache::redis(
        "redis://127.0.0.1:6379",
        &unique_name(),
        CacheConfig {
            last_use_age: Some(Duration::from_secs(600)),
            ..CacheConfig::default()
        },
    )
    .unwrap();
    populate(&cache).await;
    for concurrency in [1, 8] {
        report("redis", cache.clone(), 40_000, concurrency).await;
    }
    cache.truncate().await;
}
