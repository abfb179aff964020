//! A broken cache is a miss: unreachable Redis or PostgreSQL, a dropped partition and values that
//! no longer decode never fail the caller. Also the PostgreSQL specifics: concurrent starts, the
//! pruner, and the restricted application role.

#![allow(clippy::unwrap_used)] // Helpers shared by tests: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;
use strata_cache::conformance::{Instance, InstanceIndex, unique_name};
use strata_cache::{Cache, CacheConfig, Entry};
use strata_integration_tests::TestDatabase;

use InstanceIndex::{Domain, Id};

/// Runs every operation against a cache that cannot reach its backend: none fails or panics, reads
/// miss, and each finishes promptly.
async fn everything_misses(cache: &Cache<Instance>) {
    let started = Instant::now();
    cache
        .set(Instance::new("i1", &["a.example"]))
        .await
        .expect("a broken backend is not the caller's error");
    assert_eq!(cache.get(Id, "i1").await, None);
    assert_eq!(cache.get(Domain, "a.example").await, None);
    cache.invalidate(Id, &["i1"]).await;
    cache.delete(Domain, &["a.example"]).await;
    cache.truncate().await;
    cache.prune().await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a broken backend made the cache hang for {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_redis_is_a_miss() {
    // Nothing listens on port 1.
    let cache = Cache::<Instance>::redis(
        "redis://127.0.0.1:1",
        &unique_name(),
        CacheConfig::default(),
    )
    .unwrap();
    everything_misses(&cache).await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_miss() {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .unwrap();
    let cache = Cache::<Instance>::postgres(pool, &unique_name(), CacheConfig::default())
        .await
        .expect("a database that is down does not keep the cache from starting");
    everything_misses(&cache).await;
}

/// Drops a cache's partitions behind its back, as an operator cleaning up by hand might.
async fn drop_partitions(pool: &sqlx::PgPool, name: &str) {
    pool.execute(
        format!(r#"DROP TABLE cache."objects_{name}", cache."string_keys_{name}""#).as_str(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn dropped_partition_is_a_miss_and_heals() {
    let database = TestDatabase::create().await;
    let pool = database.pool(4);
    let name = unique_name();
    let cache = Cache::<Instance>::postgres(pool.clone(), &name, CacheConfig::default())
        .await
        .unwrap();
    let i1 = Instance::new("i1", &["a.example"]);
    cache.set(i1.clone()).await.unwrap();
    assert_eq!(cache.get(Id, "i1").await, Some(i1.clone()));

    drop_partitions(&pool, &name).await;
    assert_eq!(cache.get(Id, "i1").await, None);
    // The miss found the partitions gone, so the next write recreates them.
    cache.set(i1.clone()).await.unwrap();
    assert_eq!(cache.get(Domain, "a.example").await, Some(i1.clone()));

    // Dropped again with no read in between: the first write fails (logged) and marks the
    // partitions as unknown; the next recreates them.
    drop_partitions(&pool, &name).await;
    cache.set(i1.clone()).await.unwrap();
    cache.set(i1.clone()).await.unwrap();
    assert_eq!(cache.get(Domain, "a.example").await, Some(i1));
}

/// A value of another shape under the same cache name: what a deploy that changed the value type
/// without renaming the cache would read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Narrow(u8);

impl Entry for Narrow {
    type Index = InstanceIndex;

    fn keys(&self, index: InstanceIndex) -> Vec<String> {
        match index {
            InstanceIndex::Id => vec![self.0.to_string()],
            InstanceIndex::Domain => Vec::new(),
        }
    }
}

async fn undecodable_is_a_miss(wide: Cache<Instance>, narrow: Cache<Narrow>) {
    let i1 = Instance::new("7", &["a.example"]);
    wide.set(i1.clone()).await.unwrap();
    assert_eq!(wide.get(Id, "7").await, Some(i1));
    assert_eq!(narrow.get(Id, "7").await, None);
    // Writing the other shape over it takes the key, and the old object with it.
    narrow.set(Narrow(7)).await.unwrap();
    assert_eq!(narrow.get(Id, "7").await, Some(Narrow(7)));
    assert_eq!(wide.get(Id, "7").await, None);
    assert_eq!(wide.get(Domain, "a.example").await, None);
}

#[tokio::test]
async fn undecodable_value_is_a_miss_on_postgres() {
    let database = TestDatabase::create().await;
    let pool = database.pool(4);
    let name = unique_name();
    let wide = Cache::postgres(pool.clone(), &name, CacheConfig::default())
        .await
        .unwrap();
    let narrow = Cache::postgres(pool.clone(), &name, CacheConfig::default())
        .await
        .unwrap();
    undecodable_is_a_miss(wide.clone(), narrow).await;

    // Bytes that are no payload at all.
    let i2 = Instance::new("i2", &[]);
    wide.set(i2.clone()).await.unwrap();
    sqlx::query("UPDATE cache.objects SET payload = '\\x00ff' WHERE cache_name = $1")
        .bind(&name)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(wide.get(Id, "i2").await, None);
}

#[tokio::test]
async fn undecodable_value_is_a_miss_on_redis() {
    let url = "redis://127.0.0.1:6379";
    let name = unique_name();
    let wide = Cache::redis(url, &name, CacheConfig::default()).unwrap();
    let narrow = Cache::redis(url, &name, CacheConfig::default()).unwrap();
    undecodable_is_a_miss(wide.clone(), narrow).await;
    wide.truncate().await;
}

#[tokio::test]
async fn concurrent_starts_of_one_cache_all_succeed() {
    let database = TestDatabase::create().await;
    let name = unique_name();
    let mut starts = Vec::new();
    for n in 0..8 {
        // A pool each, as separate processes would have.
        let pool = database.pool(2);
        let name = name.clone();
        starts.push(tokio::spawn(async move {
            let cache = Cache::<Instance>::postgres(pool, &name, CacheConfig::default())
                .await
                .unwrap();
            let instance = Instance::new(&format!("i{n}"), &[]);
            cache.set(instance.clone()).await.unwrap();
            assert_eq!(cache.get(Id, &instance.id).await, Some(instance));
        }));
    }
    for start in starts {
        start.await.unwrap();
    }
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE c.relname IN ($1, $2) AND c.relpersistence = 'u'",
    )
    .bind(format!("objects_{name}"))
    .bind(format!("string_keys_{name}"))
    .fetch_one(&database.pool(1))
    .await
    .unwrap();
    assert_eq!(partitions, 2, "expected two unlogged partitions");
}

#[tokio::test]
async fn pruner_removes_expired_and_orphaned_rows() {
    let database = TestDatabase::create().await;
    let pool = database.pool(4);
    let name = unique_name();
    let cache = Cache::<Instance>::postgres(
        pool.clone(),
        &name,
        CacheConfig {
            max_age: Some(Duration::from_millis(200)),
            prune_interval: Some(Duration::from_millis(100)),
            ..CacheConfig::default()
        },
    )
    .await
    .unwrap();
    cache
        .set(Instance::new("i1", &["a.example"]))
        .await
        .unwrap();
    // An object nothing points at, as a crash half-way through could leave.
    sqlx::query("INSERT INTO cache.objects (cache_name, payload) VALUES ($1, '\\x01')")
        .bind(&name)
        .execute(&pool)
        .await
        .unwrap();
    let rows = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM cache.objects WHERE cache_name = $1) \
                  + (SELECT count(*) FROM cache.string_keys WHERE cache_name = $1)",
        )
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(rows().await, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while 0 < rows().await {
        assert!(
            Instant::now() < deadline,
            "the pruner left {} rows",
            rows().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cache.stop_pruner().await;
}

#[tokio::test]
async fn restricted_role_can_run_a_cache() {
    let database = TestDatabase::create().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET ROLE strata_writer").await?;
                Ok(())
            })
        })
        .connect_lazy_with(database.options.clone());
    let cache = Cache::<Instance>::postgres(pool, &unique_name(), CacheConfig::default())
        .await
        .unwrap();
    let i1 = Instance::new("i1", &["a.example"]);
    cache.set(i1.clone()).await.unwrap();
    assert_eq!(cache.get(Domain, "a.example").await, Some(i1.clone()));
    cache.truncate().await;
    assert_eq!(cache.get(Id, "i1").await, None, "truncate did not work");
    cache.set(i1.clone()).await.unwrap();
    cache.invalidate(Id, &["i1"]).await;
    assert_eq!(cache.get(Domain, "a.example").await, None);
    cache.prune().await;
}
