//! The PostgreSQL connector, and maintenance of its caches by name.
//!
//! A service reaches the connector through [`Cache::postgres`](crate::Cache::postgres) or
//! [`Cache::start`](crate::Cache::start); this module's public functions are for tools that manage
//! a cache without knowing its value type, such as `strata cache prune|truncate`. They call the
//! same SQL functions the connector does (`cache.prune`, `cache.truncate`), so a tool and a
//! service cannot disagree on what pruning means.

mod connector;
mod maintenance;

pub(crate) use self::connector::PgConnector;
pub use self::maintenance::{MaintenanceError, prune, truncate};
