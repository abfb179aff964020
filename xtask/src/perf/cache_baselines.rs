//! C1's raw baselines: each connector's operation written by hand against the same store, run
//! right after Strata's row from as many tasks. Moka alone for memory; a primary-key `SELECT` and
//! a plain upsert on an unlogged table shaped like `cache.objects` for PostgreSQL; a `SET` with
//! expiry for Redis.
//!
//! None keeps the cache's promises: one object under several keys, where replacing it leaves no
//! "ghost" reachable through a key the new value lacks, and per-object expiry. That bookkeeping is
//! what the ratio prices.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::FutureExt;
use moka::policy::EvictionPolicy;
use moka::sync::Cache as Moka;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use strata_cache::CacheConfig;

use crate::perf::cache::{CONCURRENCY, Tenant, id_key, slot, tenant};
use crate::perf::runner::Operation;

/// The operations a baseline has; `None` where it has none.
pub(crate) trait Baseline: Send + Sync {
    fn get_hit(&self) -> Option<Operation>;
    fn set(&self) -> Option<Operation>;
}

/// How long the baselines' entries live: the benchmark cache's `max_age`.
const TIME_TO_LIVE: Duration = Duration::from_secs(3600);

/// Moka as a user would use it for an object with two keys: one map per key kind, LRU, the
/// memory connector's capacity and time-to-live, the value stored in each and cloned on a hit.
/// One handle per task, as the Strata workload has: a shared reference count touched by every
/// operation would measure its cache line moving between cores.
pub(crate) struct RawMemory(Arc<[Arc<MemoryHandle>]>);

#[repr(align(128))]
struct MemoryHandle {
    by_id: Moka<String, Tenant>,
    by_domain: Moka<String, Tenant>,
    keys: Arc<[String]>,
    entries: u64,
}

impl RawMemory {
    /// The maps, holding the benchmark's `entries` objects.
    pub(crate) fn populated(entries: u64) -> RawMemory {
        let map = || {
            Moka::builder()
                .max_capacity(CacheConfig::default().max_entries)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(TIME_TO_LIVE)
                .build()
        };
        let (by_id, by_domain): (Moka<String, Tenant>, Moka<String, Tenant>) = (map(), map());
        for n in 0..entries {
            let value = tenant(n, 0);
            for domain in &value.domains {
                by_domain.insert(domain.clone(), value.clone());
            }
            by_id.insert(value.id.clone(), value);
        }
        let keys: Arc<[String]> = (0..entries).map(id_key).collect();
        RawMemory(
            (0..CONCURRENCY)
                .map(|_| {
                    Arc::new(MemoryHandle {
                        by_id: by_id.clone(),
                        by_domain: by_domain.clone(),
                        keys: Arc::clone(&keys),
                        entries,
                    })
                })
                .collect(),
        )
    }
}

impl Baseline for RawMemory {
    fn get_hit(&self) -> Option<Operation> {
        let handles = Arc::clone(&self.0);
        Some(Arc::new(move |task, iteration| {
            let handle = Arc::clone(&handles[task % handles.len()]);
            async move {
                let key = &handle.keys[slot(task, iteration, handle.entries) as usize];
                match handle.by_id.get(key.as_str()) {
                    Some(_) => Ok(1),
                    None => bail!("{key} missed moka"),
                }
            }
            .boxed()
        }))
    }

    fn set(&self) -> Option<Operation> {
        let handles = Arc::clone(&self.0);
        Some(Arc::new(move |task, iteration| {
            let handle = Arc::clone(&handles[task % handles.len()]);
            async move {
                let value = tenant(slot(task, iteration, handle.entries), iteration + 1);
                for domain in &value.domains {
                    handle.by_domain.insert(domain.clone(), value.clone());
                }
                handle.by_id.insert(value.id.clone(), value);
                Ok(1)
            }
            .boxed()
        }))
    }
}

/// The PostgreSQL baseline: `raw.cache_objects`, an unlogged table shaped like `cache.objects`
/// (same columns, types and key), holding a copy of the cache's objects (same rows, same payload
/// bytes).
pub(crate) struct RawObjects {
    pool: PgPool,
    cache_name: Arc<str>,
    ids: Arc<Vec<i64>>,
}

impl RawObjects {
    pub(crate) async fn create(pool: PgPool, cache_name: &str, entries: u64) -> Result<RawObjects> {
        sqlx::query(
            "CREATE UNLOGGED TABLE raw.cache_objects (LIKE cache.objects INCLUDING INDEXES)",
        )
        .execute(&pool)
        .await
        .context("creating raw.cache_objects")?;
        sqlx::query(
            "INSERT INTO raw.cache_objects SELECT * FROM cache.objects WHERE cache_name = $1",
        )
        .bind(cache_name)
        .execute(&pool)
        .await
        .context("copying the cache's objects into raw.cache_objects")?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM raw.cache_objects WHERE cache_name = $1 ORDER BY id",
        )
        .bind(cache_name)
        .fetch_all(&pool)
        .await?;
        let bytes: f64 = sqlx::query_scalar(
            "SELECT coalesce(avg(octet_length(payload)), 0)::float8 FROM raw.cache_objects \
             WHERE cache_name = $1",
        )
        .bind(cache_name)
        .fetch_one(&pool)
        .await?;
        eprintln!("bench: C1 stored values average {bytes:.0} bytes");
        if ids.len() as u64 != entries {
            bail!(
                "raw.cache_objects holds {} objects, the cache {entries}",
                ids.len()
            );
        }
        Ok(RawObjects {
            pool,
            cache_name: cache_name.into(),
            ids: Arc::new(ids),
        })
    }
}

impl RawObjects {
    /// What an operation's closure owns.
    fn parts(&self) -> (PgPool, Arc<str>, Arc<Vec<i64>>) {
        (
            self.pool.clone(),
            Arc::clone(&self.cache_name),
            Arc::clone(&self.ids),
        )
    }
}

impl Baseline for RawObjects {
    fn get_hit(&self) -> Option<Operation> {
        let (pool, cache_name, ids) = self.parts();
        Some(Arc::new(move |task, iteration| {
            let (pool, cache_name) = (pool.clone(), Arc::clone(&cache_name));
            let id = ids[slot(task, iteration, ids.len() as u64) as usize];
            async move {
                let payload: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT payload FROM raw.cache_objects WHERE cache_name = $1 AND id = $2",
                )
                .bind(&*cache_name)
                .bind(id)
                .fetch_optional(&pool)
                .await?;
                match payload {
                    Some(_) => Ok(1),
                    None => bail!("object {id} missing from raw.cache_objects"),
                }
            }
            .boxed()
        }))
    }

    /// One upsert by primary key of a payload encoded per call (JSON, a little larger than the
    /// cache's bincode).
    fn set(&self) -> Option<Operation> {
        let (pool, cache_name, ids) = self.parts();
        Some(Arc::new(move |task, iteration| {
            let (pool, cache_name) = (pool.clone(), Arc::clone(&cache_name));
            let slot = slot(task, iteration, ids.len() as u64);
            let id = ids[slot as usize];
            async move {
                let payload = serde_json::to_vec(&tenant(slot, iteration + 1))?;
                sqlx::query(
                    "INSERT INTO raw.cache_objects (cache_name, id, created_at, last_used_at, \
                     payload) VALUES ($1, $2, now(), now(), $3) \
                     ON CONFLICT (cache_name, id) DO UPDATE SET payload = excluded.payload, \
                     created_at = excluded.created_at, last_used_at = excluded.last_used_at",
                )
                .bind(&*cache_name)
                .bind(id)
                .bind(payload)
                .execute(&pool)
                .await?;
                Ok(1)
            }
            .boxed()
        }))
    }
}

/// The Redis baseline: `SET key payload PX <max_age>` on one multiplexed connection, as the
/// connector uses. Its keys sit in the cache's own namespace, so removing the cache removes them.
pub(crate) struct RawRedis {
    connection: ConnectionManager,
    namespace: Arc<str>,
    entries: u64,
}

impl RawRedis {
    pub(crate) async fn connect(url: &str, cache_name: &str, entries: u64) -> Result<RawRedis> {
        let client = redis::Client::open(url)?;
        Ok(RawRedis {
            connection: client.get_connection_manager().await?,
            namespace: format!("strata:cache:{{{cache_name}}}:raw").into(),
            entries,
        })
    }
}

impl Baseline for RawRedis {
    fn get_hit(&self) -> Option<Operation> {
        None
    }

    fn set(&self) -> Option<Operation> {
        let (connection, namespace, entries) = (
            self.connection.clone(),
            Arc::clone(&self.namespace),
            self.entries,
        );
        let ttl_ms = TIME_TO_LIVE.as_millis() as u64;
        Some(Arc::new(move |task, iteration| {
            let mut connection = connection.clone();
            let slot = slot(task, iteration, entries);
            let key = format!("{namespace}:{}", id_key(slot));
            async move {
                let payload = serde_json::to_vec(&tenant(slot, iteration + 1))?;
                redis::cmd("SET")
                    .arg(key)
                    .arg(payload)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut connection)
                    .await?;
                Ok(1)
            }
            .boxed()
        }))
    }
}
