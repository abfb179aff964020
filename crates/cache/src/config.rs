//! Per-cache configuration and the shared resources (pool, Redis connection) connectors run on.

use std::fmt;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::PgPool;

use crate::error::{Error, Result};
#[cfg(feature = "redis")]
use crate::redis::RedisConnection;

/// Which connector a cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ConnectorKind {
    /// In the process, on moka: the fastest, but each process has its own copy and a restart
    /// empties it.
    #[default]
    Memory,
    /// The `cache` schema of a PostgreSQL database: shared by every process on that database.
    Postgres,
    /// A Redis server: shared, with native expiry.
    Redis,
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectorKind::Memory => "memory",
            ConnectorKind::Postgres => "postgres",
            ConnectorKind::Redis => "redis",
        })
    }
}

/// How one cache behaves. Start from [`CacheConfig::default`] and set what you need:
///
/// ```
/// use std::time::Duration;
/// use strata_cache::{CacheConfig, ConnectorKind};
///
/// let config = CacheConfig {
///     connector: ConnectorKind::Postgres,
///     max_age: Some(Duration::from_secs(3600)),
///     last_use_age: Some(Duration::from_secs(600)),
///     ..CacheConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// The connector, used by [`Cache::start`](crate::Cache::start). By default
    /// [`ConnectorKind::Memory`].
    pub connector: ConnectorKind,
    /// An entry expires this long after it was written, however often it is read. By default
    /// `None`: no limit.
    pub max_age: Option<Duration>,
    /// An entry expires this long after it was last read (or written). By default `None`: no
    /// limit.
    ///
    /// The PostgreSQL and Redis connectors record reads coarsely (see
    /// [`CacheConfig::touch_fraction`]), so an idle entry may expire up to that fraction of
    /// `last_use_age` early, never late.
    pub last_use_age: Option<Duration>,
    /// For the PostgreSQL and Redis connectors: a hit writes the entry's last-use time only when
    /// the stored one is older than this fraction of [`CacheConfig::last_use_age`], so most hits are
    /// pure reads. Between 0 (exclusive; tiny values write on almost every hit) and 1. By default
    /// `0.25`.
    pub touch_fraction: f64,
    /// For the memory connector: at most this many keys are kept per index; beyond it, the least
    /// recently used key is evicted, and an object losing any key that way is dropped entirely.
    /// Reading an object through one index refreshes only that key, so an object read by one key
    /// and never by another ages out with the other. By default 100 000.
    pub max_entries: u64,
    /// For the PostgreSQL connector: how often a background task removes expired and orphaned
    /// rows. `None` starts no pruner (call [`Cache::prune`](crate::Cache::prune) yourself). By
    /// default every 60 seconds. The memory and Redis connectors expire entries natively.
    pub prune_interval: Option<Duration>,
    /// Emit a `tracing` debug event for every operation (hit or miss, keys written). By default
    /// off. Failures are always logged, as warnings.
    pub log_operations: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            connector: ConnectorKind::Memory,
            max_age: None,
            last_use_age: None,
            touch_fraction: 0.25,
            max_entries: 100_000,
            prune_interval: Some(Duration::from_secs(60)),
            log_operations: false,
        }
    }
}

impl CacheConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let too_short =
            |age: Option<Duration>| age.is_some_and(|age| age < Duration::from_millis(1));
        if too_short(self.max_age) || too_short(self.last_use_age) {
            return Err(Error::InvalidConfig {
                reason: "max_age and last_use_age must be at least one millisecond",
            });
        }
        let fraction_in_range = 0.0 < self.touch_fraction && self.touch_fraction <= 1.0;
        if !fraction_in_range {
            return Err(Error::InvalidConfig {
                reason: "touch_fraction must be in (0, 1]",
            });
        }
        if self.max_entries == 0 {
            return Err(Error::InvalidConfig {
                reason: "max_entries must be at least 1",
            });
        }
        if self
            .prune_interval
            .is_some_and(|interval| interval < Duration::from_millis(10))
        {
            return Err(Error::InvalidConfig {
                reason: "prune_interval must be at least 10 milliseconds",
            });
        }
        Ok(())
    }

    /// How old a stored last-use time may get before a hit rewrites it.
    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub(crate) fn touch_after(&self) -> Option<Duration> {
        self.last_use_age.map(|age| {
            age.mul_f64(self.touch_fraction)
                .max(Duration::from_millis(1))
        })
    }
}

/// The resources the connectors run on, shared by every cache started from them.
///
#[cfg_attr(all(feature = "postgres", feature = "redis"), doc = "```no_run")]
#[cfg_attr(not(all(feature = "postgres", feature = "redis")), doc = "```ignore")]
/// # #![allow(dead_code)] // Shows the calls only.
/// # async fn example(pool: sqlx::PgPool) -> Result<(), strata_cache::Error> {
/// let connectors = strata_cache::Connectors::default()
///     .with_postgres(pool)
///     .with_redis("redis://127.0.0.1:6379")?;
/// # let _ = connectors;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    #[cfg(feature = "postgres")]
    pub(crate) postgres: Option<PgPool>,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<RedisConnection>,
}

impl Connectors {
    /// Adds the pool the PostgreSQL connector uses. Give the cache a pool of its own, so a burst
    /// of cache traffic cannot starve the event store's pools (and the reverse).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn with_postgres(mut self, pool: PgPool) -> Self {
        self.postgres = Some(pool);
        self
    }

    /// Adds the Redis server the Redis connector uses. Nothing connects yet: the connection is
    /// made on first use and remade after it breaks, so a Redis that is down at start-up only
    /// makes the caches miss until it is back.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRedisUrl`] when `url` does not parse.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn with_redis(mut self, url: &str) -> Result<Self> {
        self.redis = Some(RedisConnection::open(url)?);
        Ok(self)
    }

    /// Adds a Redis server reached over TLS (`rediss://host:port`) whose certificate is signed by
    /// `root_ca_pem`, a certificate authority in PEM, instead of one the system trusts. Plain
    /// [`Connectors::with_redis`] takes `rediss://` URLs too, trusting the usual public
    /// authorities. Connects lazily, like `with_redis`; a certificate that does not verify makes
    /// every operation a miss, with a warning naming the TLS error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRedisUrl`] when `url` does not parse or `root_ca_pem` holds no certificate.
    #[cfg(all(feature = "redis", feature = "tls"))]
    #[cfg_attr(docsrs, doc(cfg(all(feature = "redis", feature = "tls"))))]
    pub fn with_redis_tls(mut self, url: &str, root_ca_pem: &[u8]) -> Result<Self> {
        self.redis = Some(RedisConnection::open_tls(url, root_ca_pem)?);
        Ok(self)
    }
}
