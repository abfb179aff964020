//! The typed errors of the cache: only for input that could never be cached, never for a cache that
//! is down (that is a miss, see the crate docs).

use thiserror::Error;

use crate::config::ConnectorKind;

/// `Result` with the cache's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the cache refused a request.
///
/// Every variant is the caller's mistake, found before anything was written: a cache that cannot
/// reach its database or Redis does not return errors, it misses (see the crate docs, "Failure is a
/// miss").
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache name breaks the grammar `[a-z][a-z0-9_]{0,47}`. Names become PostgreSQL partition
    /// names and Redis key prefixes, so the grammar is strict.
    #[error("invalid cache name {name:?}: {reason}")]
    InvalidCacheName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An index of the value type has an unusable name (empty, too long, not `[a-z0-9_]`, or the
    /// same as another index's).
    #[error("invalid index name {name:?}: {reason}")]
    InvalidIndexName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value yielded an empty key.
    #[error("empty key for index {index}")]
    EmptyKey {
        /// The index's name.
        index: &'static str,
    },
    /// A value yielded a key longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
    #[error("key for index {index} is {len} bytes, more than the limit of {max}")]
    KeyTooLong {
        /// The index's name.
        index: &'static str,
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value yielded a key containing a NUL character, which PostgreSQL text cannot hold (refused
    /// on every connector, so they behave alike).
    #[error("key for index {index} contains a NUL character")]
    KeyWithNul {
        /// The index's name.
        index: &'static str,
    },
    /// A value yielded no key for any index, so nothing could ever find it.
    #[error("the value has no key for any index")]
    NoKeys,
    /// The configuration chose a connector whose resource (pool, Redis URL) was not given to
    /// [`Connectors`](crate::Connectors).
    #[error("the {connector} connector is not configured")]
    ConnectorNotConfigured {
        /// The connector chosen.
        connector: ConnectorKind,
    },
    /// The configuration chose a connector this build leaves out: turn on strata-cache's feature
    /// of the same name (`memory`, `postgres` or `redis`), which the `strata` crate calls `cache`,
    /// `cache-postgres` and `cache-redis`.
    #[error(
        "the {connector} connector is not compiled in: enable strata-cache's `{connector}` feature \
         ({})",
        umbrella_feature(*connector)
    )]
    ConnectorNotEnabled {
        /// The connector chosen.
        connector: ConnectorKind,
    },
    /// The Redis URL does not parse.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("invalid Redis URL")]
    InvalidRedisUrl(#[source] redis::RedisError),
    /// A configuration value is out of range.
    #[error("invalid cache configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: &'static str,
    },
}

/// The feature of the `strata` crate that turns `connector` on.
fn umbrella_feature(connector: ConnectorKind) -> &'static str {
    match connector {
        ConnectorKind::Memory => "`cache` of the strata crate",
        ConnectorKind::Postgres => "`cache-postgres` of the strata crate",
        ConnectorKind::Redis => "`cache-redis` of the strata crate",
    }
}

/// What kind of mistake an [`Error`](enum@Error) is, so callers can branch without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A name, key or value is malformed.
    InvalidInput,
    /// The configuration is incomplete or out of range.
    InvalidConfig,
}

impl Error {
    /// What kind of mistake this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCacheName { .. }
            | Error::InvalidIndexName { .. }
            | Error::EmptyKey { .. }
            | Error::KeyTooLong { .. }
            | Error::KeyWithNul { .. }
            | Error::NoKeys => ErrorKind::InvalidInput,
            Error::ConnectorNotConfigured { .. }
            | Error::ConnectorNotEnabled { .. }
            | Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            #[cfg(feature = "redis")]
            Error::InvalidRedisUrl(_) => ErrorKind::InvalidConfig,
        }
    }
}
