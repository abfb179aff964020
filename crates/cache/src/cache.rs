//! [`Cache`]: the one interface every connector sits behind, where failures turn into misses.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

use crate::codec;
use crate::config::{CacheConfig, ConnectorKind, Connectors};
#[cfg(not(feature = "memory"))]
use crate::disabled::MemoryConnector;
#[cfg(not(feature = "postgres"))]
use crate::disabled::PgConnector;
#[cfg(not(feature = "redis"))]
use crate::disabled::RedisConnector;
use crate::entry::{self, Entry, Index};
use crate::error::{Error, Result};
#[cfg(feature = "memory")]
use crate::memory::MemoryConnector;
#[cfg(feature = "postgres")]
use crate::postgres::PgConnector;
#[cfg(feature = "redis")]
use crate::redis::{RedisConnection, RedisConnector};
use crate::telemetry::{CacheMetrics, Operation, Outcome};

/// A cache of `V` values, found by any of their keys in any of their indices.
///
/// Cloning is cheap (a reference count) and clones share the entries. See the crate docs for the
/// semantics every connector shares.
pub struct Cache<V: Entry> {
    inner: Arc<Inner<V>>,
}

struct Inner<V: Entry> {
    name: String,
    config: CacheConfig,
    connector: Connector<V>,
    pruner: Mutex<Option<Pruner>>,
    metrics: CacheMetrics,
}

/// Enum dispatch rather than a boxed trait: the memory hit path stays a direct call with no
/// allocation. A connector whose feature is off is a stand-in with no values (`disabled.rs`).
#[cfg_attr(
    not(all(feature = "memory", feature = "postgres", feature = "redis")),
    allow(dead_code) // A connector whose feature is off is never constructed.
)]
enum Connector<V> {
    Memory(MemoryConnector<V>),
    Postgres(Arc<PgConnector>),
    Redis(RedisConnector),
}

impl<V: Entry> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V: Entry> fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("connector", &self.connector_kind())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl<V: Entry> Cache<V> {
    /// Starts a cache with the connector `config.connector` chooses, on the resources in
    /// `connectors`. For PostgreSQL this creates the cache's partitions (see
    /// [`Cache::postgres`]).
    ///
    /// # Errors
    ///
    /// Only for a mistake in the arguments: an invalid name ([`Error::InvalidCacheName`]), index
    /// names ([`Error::InvalidIndexName`]) or configuration ([`Error::InvalidConfig`]), or a
    /// connector `connectors` lacks ([`Error::ConnectorNotConfigured`]). A database or Redis that
    /// cannot be reached is not an error: the cache misses until it can.
    pub async fn start(name: &str, config: CacheConfig, connectors: &Connectors) -> Result<Self> {
        match config.connector {
            #[cfg(feature = "memory")]
            ConnectorKind::Memory => Cache::memory(name, config),
            #[cfg(feature = "postgres")]
            ConnectorKind::Postgres => match &connectors.postgres {
                Some(pool) => Cache::postgres(pool.clone(), name, config).await,
                None => Err(Error::ConnectorNotConfigured {
                    connector: ConnectorKind::Postgres,
                }),
            },
            #[cfg(feature = "redis")]
            ConnectorKind::Redis => match &connectors.redis {
                Some(connection) => Cache::on_redis(connection.clone(), name, config),
                None => Err(Error::ConnectorNotConfigured {
                    connector: ConnectorKind::Redis,
                }),
            },
            #[allow(unreachable_patterns)] // Reached only when a connector's feature is off.
            connector => {
                let _ = (name, connectors);
                Err(Error::ConnectorNotEnabled { connector })
            }
        }
    }

    /// A cache in this process's memory. `config.connector` is ignored.
    ///
    /// # Errors
    ///
    /// As [`Cache::start`].
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub fn memory(name: &str, config: CacheConfig) -> Result<Self> {
        check::<V>(name, &config)?;
        let connector = MemoryConnector::new(&config, V::Index::ALL.len());
        Ok(Cache::from_parts(
            name,
            config,
            Connector::Memory(connector),
        ))
    }

    /// A cache in the `cache` schema of the database `pool` is on (migration
    /// `20261206000003_cache.sql` must have run). Creates the cache's partitions if they do not
    /// exist yet, and starts the pruner if `config.prune_interval` asks for one. `config.connector`
    /// is ignored.
    ///
    /// Give the cache a pool of its own (for example 2–8 connections): cache traffic then never
    /// queues behind, or in front of, the event store.
    ///
    /// # Errors
    ///
    /// As [`Cache::start`].
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres(pool: PgPool, name: &str, config: CacheConfig) -> Result<Self> {
        check::<V>(name, &config)?;
        let connector = PgConnector::start(pool, name, &config).await;
        let prune_interval = config.prune_interval;
        let cache = Cache::from_parts(name, config, Connector::Postgres(connector));
        if let Some(interval) = prune_interval {
            let pruner = cache.spawn_pruner(interval);
            *cache
                .inner
                .pruner
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(pruner);
        }
        Ok(cache)
    }

    /// A cache on the Redis server at `url` (e.g. `redis://127.0.0.1:6379`). Nothing connects
    /// until the first operation. `config.connector` is ignored.
    ///
    /// Each call opens its own connection; to share one among many caches, use
    /// [`Connectors::with_redis`] and [`Cache::start`].
    ///
    /// # Errors
    ///
    /// As [`Cache::start`], and [`Error::InvalidRedisUrl`].
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(url: &str, name: &str, config: CacheConfig) -> Result<Self> {
        Cache::on_redis(RedisConnection::open(url)?, name, config)
    }

    #[cfg(feature = "redis")]
    fn on_redis(connection: RedisConnection, name: &str, config: CacheConfig) -> Result<Self> {
        check::<V>(name, &config)?;
        let connector = RedisConnector::new(connection, name, &config);
        Ok(Cache::from_parts(name, config, Connector::Redis(connector)))
    }

    fn from_parts(name: &str, config: CacheConfig, connector: Connector<V>) -> Self {
        let kind = match connector {
            Connector::Memory(_) => ConnectorKind::Memory,
            Connector::Postgres(_) => ConnectorKind::Postgres,
            Connector::Redis(_) => ConnectorKind::Redis,
        };
        Cache {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                config,
                connector,
                pruner: Mutex::new(None),
                metrics: CacheMetrics::new(name, kind),
            }),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The connector this cache runs on.
    pub fn connector_kind(&self) -> ConnectorKind {
        match self.inner.connector {
            Connector::Memory(_) => ConnectorKind::Memory,
            Connector::Postgres(_) => ConnectorKind::Postgres,
            Connector::Redis(_) => ConnectorKind::Redis,
        }
    }

    /// The value `key` finds in `index`, unless there is none or it has expired.
    ///
    /// Never fails: a connector error, or a stored value that no longer decodes, is a miss and a
    /// `tracing` warning.
    pub async fn get(&self, index: V::Index, key: &str) -> Option<V> {
        let metrics = &self.inner.metrics;
        let value = match &self.inner.connector {
            // The hot path: no validation beyond what the lookup itself does, and no span.
            Connector::Memory(memory) => {
                let value =
                    entry::position_of(index).and_then(|position| memory.get(position, key));
                let outcome = if value.is_some() {
                    Outcome::Hit
                } else {
                    Outcome::Miss
                };
                metrics.record(Operation::Get, outcome, None);
                value
            }
            Connector::Postgres(_) | Connector::Redis(_) if !entry::key_is_storable(key) => {
                metrics.record(Operation::Get, Outcome::Miss, None);
                return None;
            }
            Connector::Postgres(pg) => {
                let started = Instant::now();
                let span = metrics.span(Operation::Get, index.name(), 1);
                let payload = pg.get(index.name(), key).instrument(span.clone()).await;
                self.decode_counted(payload, &span, started)
            }
            Connector::Redis(redis) => {
                let started = Instant::now();
                let span = metrics.span(Operation::Get, index.name(), 1);
                let payload = redis.get(index.name(), key).instrument(span.clone()).await;
                self.decode_counted(payload, &span, started)
            }
        };
        if self.inner.config.log_operations {
            tracing::debug!(cache = %self.inner.name, index = index.name(), key, hit = value.is_some(), "cache get");
        }
        value
    }

    /// Stores `value` under every key it yields for every index. Any object one of those keys
    /// found before is removed with all its keys, so nothing stale stays reachable through a key
    /// the new value no longer has.
    ///
    /// # Errors
    ///
    /// Only when the value yields a key that could never be stored ([`Error::EmptyKey`],
    /// [`Error::KeyTooLong`], [`Error::KeyWithNul`]) or no key at all ([`Error::NoKeys`]); nothing is written then. A
    /// connector failure is not an error: the write is dropped with a warning.
    pub async fn set(&self, value: V) -> Result<()> {
        let keys = entry::keys_of(&value)?;
        if self.inner.config.log_operations {
            tracing::debug!(cache = %self.inner.name, keys = keys.len(), "cache set");
        }
        let metrics = &self.inner.metrics;
        match &self.inner.connector {
            Connector::Memory(memory) => {
                memory.set(keys, value);
                metrics.record(Operation::Set, Outcome::Ok, None);
            }
            Connector::Postgres(pg) => {
                let started = Instant::now();
                let Some(payload) = self.encode(&value) else {
                    metrics.record(Operation::Set, Outcome::Error, None);
                    return Ok(());
                };
                let span = metrics.span(Operation::Set, "", keys.len());
                let (names, keys): (Vec<&'static str>, Vec<String>) = keys
                    .into_iter()
                    .map(|(position, key)| (V::Index::ALL[position].name(), key))
                    .unzip();
                let result = pg.set(names, keys, payload).instrument(span.clone()).await;
                self.finish(Operation::Set, result, &span, started);
            }
            Connector::Redis(redis) => {
                let started = Instant::now();
                let Some(payload) = self.encode(&value) else {
                    metrics.record(Operation::Set, Outcome::Error, None);
                    return Ok(());
                };
                let span = metrics.span(Operation::Set, "", keys.len());
                let named = keys
                    .iter()
                    .map(|(position, key)| (V::Index::ALL[*position].name(), key.as_str()));
                let result = redis.set(named, payload).instrument(span.clone()).await;
                self.finish(Operation::Set, result, &span, started);
            }
        }
        Ok(())
    }

    /// Removes the objects `keys` find in `index`, with all their keys: use it when the objects
    /// changed. Keys that find nothing are ignored.
    pub async fn invalidate<K: AsRef<str>>(&self, index: V::Index, keys: &[K]) {
        let Some((position, keys)) = storable(index, keys) else {
            return;
        };
        if self.inner.config.log_operations {
            tracing::debug!(cache = %self.inner.name, index = index.name(), keys = keys.len(), "cache invalidate");
        }
        let started = Instant::now();
        let span = || {
            self.inner
                .metrics
                .span(Operation::Invalidate, index.name(), keys.len())
        };
        match &self.inner.connector {
            Connector::Memory(memory) => {
                memory.invalidate(position, &keys);
                self.inner
                    .metrics
                    .record(Operation::Invalidate, Outcome::Ok, None);
            }
            Connector::Postgres(pg) => {
                let span = span();
                let result = pg
                    .invalidate(index.name(), &keys)
                    .instrument(span.clone())
                    .await;
                self.finish(Operation::Invalidate, result, &span, started);
            }
            Connector::Redis(redis) => {
                let span = span();
                let result = redis
                    .invalidate(index.name(), &keys)
                    .instrument(span.clone())
                    .await;
                self.finish(Operation::Invalidate, result, &span, started);
            }
        }
    }

    /// Removes only `keys` from `index`: the objects stay reachable through their other keys (an
    /// object left with no key at all is removed). Use it when a key stopped naming an object,
    /// e.g. a domain was removed from an instance that is otherwise unchanged.
    pub async fn delete<K: AsRef<str>>(&self, index: V::Index, keys: &[K]) {
        let Some((position, keys)) = storable(index, keys) else {
            return;
        };
        if self.inner.config.log_operations {
            tracing::debug!(cache = %self.inner.name, index = index.name(), keys = keys.len(), "cache delete");
        }
        let started = Instant::now();
        let span = || {
            self.inner
                .metrics
                .span(Operation::Delete, index.name(), keys.len())
        };
        match &self.inner.connector {
            Connector::Memory(memory) => {
                memory.delete(position, &keys);
                self.inner
                    .metrics
                    .record(Operation::Delete, Outcome::Ok, None);
            }
            Connector::Postgres(pg) => {
                let span = span();
                let result = pg
                    .delete(index.name(), &keys)
                    .instrument(span.clone())
                    .await;
                self.finish(Operation::Delete, result, &span, started);
            }
            Connector::Redis(redis) => {
                let span = span();
                let result = redis
                    .delete(index.name(), &keys)
                    .instrument(span.clone())
                    .await;
                self.finish(Operation::Delete, result, &span, started);
            }
        }
    }

    /// Removes every entry of this cache, and nothing of any other cache.
    pub async fn truncate(&self) {
        if self.inner.config.log_operations {
            tracing::debug!(cache = %self.inner.name, "cache truncate");
        }
        match &self.inner.connector {
            Connector::Memory(memory) => memory.truncate(),
            Connector::Postgres(pg) => {
                let result = pg.truncate().await;
                self.warn_on_failure("truncate", result);
            }
            Connector::Redis(redis) => {
                let result = redis.truncate().await;
                self.warn_on_failure("truncate", result);
            }
        }
    }

    /// Removes expired entries now, and what invalidation could leave behind after a crash
    /// (objects without keys, keys without objects). Expired entries are never returned even
    /// without it; pruning only frees the room they take.
    ///
    /// PostgreSQL: one `DELETE` pass over the cache's partitions (the pruner calls this on its
    /// interval). Memory: moka's pending maintenance. Redis: nothing, Redis expires keys itself.
    pub async fn prune(&self) {
        match &self.inner.connector {
            Connector::Memory(memory) => memory.prune(),
            Connector::Postgres(pg) => match pg.prune().await {
                Ok(removed) => {
                    if self.inner.config.log_operations {
                        tracing::debug!(cache = %self.inner.name, removed, "cache pruned");
                    }
                }
                Err(err) => self.warn("prune", &err),
            },
            Connector::Redis(_) => {}
        }
    }

    /// Starts a task that calls [`Cache::prune`] every `interval` until the returned [`Pruner`] is
    /// stopped or dropped, or every clone of this cache is dropped. [`Cache::postgres`] starts one
    /// by itself when `config.prune_interval` is set; see [`Cache::stop_pruner`].
    ///
    /// Must be called inside a Tokio runtime.
    pub fn spawn_pruner(&self, interval: Duration) -> Pruner {
        let (stop, mut stopped) = oneshot::channel();
        let cache: Weak<Inner<V>> = Arc::downgrade(&self.inner);
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; a freshly started cache has nothing to prune.
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                let Some(inner) = cache.upgrade() else {
                    return;
                };
                Cache { inner }.prune().await;
            }
        });
        Pruner {
            stop: Some(stop),
            handle,
        }
    }

    /// Stops the pruner [`Cache::postgres`] started, waiting for a pass in progress to finish.
    /// Does nothing if there is none.
    pub async fn stop_pruner(&self) {
        let pruner = self
            .inner
            .pruner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pruner) = pruner {
            pruner.stop().await;
        }
    }

    fn encode(&self, value: &V) -> Option<Vec<u8>> {
        match codec::encode(value) {
            Ok(payload) => Some(payload),
            Err(err) => {
                self.warn("set", &err);
                None
            }
        }
    }

    fn decode<E: std::error::Error + 'static>(
        &self,
        payload: Result<Option<Vec<u8>>, E>,
    ) -> Option<V> {
        match payload {
            Ok(Some(payload)) => match codec::decode(&payload) {
                Ok(value) => Some(value),
                Err(err) => {
                    self.warn("get", &err);
                    None
                }
            },
            Ok(None) => None,
            Err(err) => {
                self.warn("get", &err);
                None
            }
        }
    }

    /// [`Self::decode`], counted: a hit, a miss, or an error (the connector's or the codec's).
    fn decode_counted<E: std::error::Error + 'static>(
        &self,
        payload: Result<Option<Vec<u8>>, E>,
        span: &Span,
        started: Instant,
    ) -> Option<V> {
        let answered = matches!(payload, Ok(Some(_)));
        let failed = payload.is_err();
        let value = self.decode(payload);
        let outcome = match (&value, answered, failed) {
            (Some(_), _, _) => Outcome::Hit,
            (None, true, _) | (None, _, true) => Outcome::Error,
            (None, false, false) => Outcome::Miss,
        };
        span.record("strata.cache_result", outcome.as_str());
        self.inner
            .metrics
            .record(Operation::Get, outcome, Some(started));
        value
    }

    /// Counts a write that left the process and warns when it failed.
    fn finish<E: std::error::Error + 'static>(
        &self,
        operation: Operation,
        result: Result<(), E>,
        span: &Span,
        started: Instant,
    ) {
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        span.record("strata.cache_result", outcome.as_str());
        self.inner.metrics.record(operation, outcome, Some(started));
        self.warn_on_failure(operation.as_str(), result);
    }

    fn warn_on_failure<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        result: Result<(), E>,
    ) {
        if let Err(err) = result {
            self.warn(operation, &err);
        }
    }

    fn warn(&self, operation: &'static str, err: &(dyn std::error::Error + 'static)) {
        // Recorded as an error value, so the subscriber prints its causes too (the driver's
        // error under ours, the server's under the driver's).
        tracing::warn!(
            cache = %self.inner.name,
            connector = %self.connector_kind(),
            operation,
            error = err,
            "cache operation failed; treated as a miss"
        );
    }
}

/// The position of `index` and the keys that could have been stored; `None` when nothing could
/// match.
fn storable<I: Index, K: AsRef<str>>(index: I, keys: &[K]) -> Option<(usize, Vec<String>)> {
    let position = entry::position_of(index)?;
    let keys: Vec<String> = keys
        .iter()
        .map(AsRef::as_ref)
        .filter(|key| entry::key_is_storable(key))
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return None;
    }
    Some((position, keys))
}

fn check<V: Entry>(name: &str, config: &CacheConfig) -> Result<()> {
    entry::validate_cache_name(name)?;
    entry::check_indices::<V::Index>()?;
    config.validate()
}

/// The handle of a background pruner ([`Cache::spawn_pruner`]). Dropping it stops the pruner
/// abruptly; [`Pruner::stop`] lets a pass in progress finish.
#[derive(Debug)]
pub struct Pruner {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Pruner {
    /// Stops the pruner and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended (its cache was dropped); nothing to tell it then.
            let _ = stop.send(());
        }
        // A pruner that panicked has nothing left to stop.
        let _ = (&mut self.handle).await;
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The hook a projection calls after its transaction commits, to invalidate the cache entries of
/// what it touched. Object-safe, so a projection runtime can hold `Arc<dyn CacheInvalidator>`s
/// without knowing the caches' value types.
///
/// ```
/// # #![allow(dead_code)] // Shows the calls only.
/// use std::sync::Arc;
/// use strata_cache::CacheInvalidator;
///
/// async fn after_commit(caches: &[Arc<dyn CacheInvalidator>], instance_id: &str) {
///     for cache in caches {
///         cache.invalidate_keys("id", &[instance_id.to_owned()]).await;
///     }
/// }
/// ```
pub trait CacheInvalidator: Send + Sync + fmt::Debug {
    /// The cache's name, for logs.
    fn cache_name(&self) -> &str;

    /// Invalidates (see [`Cache::invalidate`]) the objects `keys` find in the index named
    /// `index_name`. An index name the cache does not have is logged and ignored: invalidation
    /// never fails the projection that asks for it.
    fn invalidate_keys<'a>(
        &'a self,
        index_name: &'a str,
        keys: &'a [String],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl<V: Entry> CacheInvalidator for Cache<V> {
    fn cache_name(&self) -> &str {
        self.name()
    }

    fn invalidate_keys<'a>(
        &'a self,
        index_name: &'a str,
        keys: &'a [String],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let index = V::Index::ALL
                .iter()
                .copied()
                .find(|index| index.name() == index_name);
            match index {
                Some(index) => self.invalidate(index, keys).await,
                None => tracing::warn!(
                    cache = %self.inner.name,
                    index = index_name,
                    "invalidation for an index this cache does not have; ignored"
                ),
            }
        })
    }
}
