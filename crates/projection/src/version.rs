//! Versioned read models: a projection that declares its [`Table`]s gets a set of tables per
//! version, so a new version is built beside the live one and takes over behind a stable name.
//!
//! The names:
//!
//! - a version's **pair name** keys its checkpoints, leases and failed events:
//!   `usernames@v2` ([`versioned_name`]); version 0 is an unversioned projection's, its plain name;
//! - a table's **physical name** is its declared name with the version: `usernames_v2`
//!   ([`physical_table`]); the projection's statements name the declared table and the runtime
//!   rewrites them;
//! - the **stable name** is the declared name itself: on PostgreSQL a view over the live
//!   version's table, which readers query and a switch replaces in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use strata_event::{AggregateRef, Event, InstanceId};

use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionConfig, Reads, ReduceError};
use crate::statement::{Statement, is_identifier};

/// A read-model table of a versioned projection: its declared (stable) name and how to create
/// it. The runtime creates it per version, as `CREATE TABLE IF NOT EXISTS {name}_v{version}
/// ({columns})` plus one index per [`Table::index`].
///
/// ```
/// use strata_projection::Table;
///
/// let users = Table::new(
///     "users",
///     "instance_id text NOT NULL, user_id text NOT NULL, name text, \
///      PRIMARY KEY (instance_id, user_id)",
/// )
/// .index("(instance_id, name)");
/// # let _ = users;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    name: &'static str,
    columns: &'static str,
    indexes: Vec<&'static str>,
}

impl Table {
    /// A table named `name` (`[a-z_][a-z0-9_]*`, optionally `schema.name`), created with the
    /// column and constraint definitions `columns` (what goes between the parentheses of
    /// `CREATE TABLE`).
    pub fn new(name: &'static str, columns: &'static str) -> Table {
        Table {
            name,
            columns,
            indexes: Vec::new(),
        }
    }

    /// Adds an index over `columns`, written as after `CREATE INDEX … ON table`:
    /// `"(instance_id, name)"`, `"USING gin (tags)"`.
    #[must_use]
    pub fn index(mut self, columns: &'static str) -> Table {
        self.indexes.push(columns);
        self
    }

    /// The declared (stable) name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The column and constraint definitions.
    pub fn columns(&self) -> &'static str {
        self.columns
    }

    /// The indexes' definitions.
    pub fn indexes(&self) -> &[&'static str] {
        &self.indexes
    }
}

/// Where a version of a projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionState {
    /// Being built beside the live version, from the first event; readers do not see it yet.
    Building,
    /// Served under the stable names; exactly one version of a projection is live.
    Live,
    /// Replaced by a switch: no longer applied, its tables kept for a rollback until dropped.
    Retired,
    /// Its tables dropped and its checkpoints forgotten; kept as a record so that a process
    /// still running its code does not build it again by itself.
    Dropped,
}

impl VersionState {
    /// The state's name as stored and printed: `building`, `live`, `retired`, `dropped`.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Building => "building",
            VersionState::Live => "live",
            VersionState::Retired => "retired",
            VersionState::Dropped => "dropped",
        }
    }

    /// Parses [`VersionState::as_str`]'s names.
    pub fn parse(name: &str) -> Option<VersionState> {
        Some(match name {
            "building" => VersionState::Building,
            "live" => VersionState::Live,
            "retired" => VersionState::Retired,
            "dropped" => VersionState::Dropped,
            _ => return None,
        })
    }

    /// Whether a runtime applies events to a version in this state.
    pub fn is_applied(self) -> bool {
        matches!(self, VersionState::Building | VersionState::Live)
    }
}

impl std::fmt::Display for VersionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version of a projection, as the backend records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionVersion {
    /// The projection's name.
    pub projection: String,
    /// The version; 0 is the projection as it was before it declared versions.
    pub version: u32,
    /// Where it stands.
    pub state: VersionState,
    /// The declared names of its tables.
    pub tables: Vec<String>,
    /// When it was first registered.
    pub created_at: DateTime<Utc>,
    /// When it last became live.
    pub switched_at: Option<DateTime<Utc>>,
    /// When it was last retired (replaced by a switch).
    pub retired_at: Option<DateTime<Utc>>,
}

impl ProjectionVersion {
    /// The name its checkpoints, leases and failed events are kept under.
    pub fn pair_name(&self) -> String {
        versioned_name(&self.projection, self.version)
    }
}

/// What a backend needs to set a version up: its names and its tables' definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSetup {
    /// The projection's name.
    pub projection: String,
    /// The version (at least 1).
    pub version: u32,
    /// Its tables, with their physical names.
    pub tables: Vec<VersionTable>,
}

/// A declared table with the physical name of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTable {
    /// The declared (stable) name.
    pub name: String,
    /// This version's table: `{name}_v{version}`.
    pub physical: String,
    /// The column and constraint definitions.
    pub columns: String,
    /// The indexes' definitions.
    pub indexes: Vec<String>,
}

/// An operation on a version: the states it accepts, and what to say otherwise. Every backend
/// checks with these, so all refuse alike.
#[derive(Debug, Clone, Copy)]
pub struct VersionOperation {
    allowed: [VersionState; 2],
    reason: &'static str,
}

impl VersionOperation {
    /// Making a version live.
    pub const TAKE_OVER: VersionOperation = VersionOperation {
        allowed: [VersionState::Building, VersionState::Retired],
        reason: "only a building or retired version can take over",
    };

    /// Setting a version building again.
    pub const BUILD_AGAIN: VersionOperation = VersionOperation {
        allowed: [VersionState::Retired, VersionState::Dropped],
        reason: "only a retired or dropped version can be built again",
    };

    /// Dropping a version's tables.
    pub const DROP: VersionOperation = VersionOperation {
        allowed: [VersionState::Building, VersionState::Retired],
        reason: "only a building or retired version can be dropped (switch away from a live one \
                 first)",
    };

    /// Refuses `record` when its state is not allowed.
    pub fn check(self, record: &ProjectionVersion) -> Result<(), ProjectionError> {
        if self.allowed.contains(&record.state) {
            return Ok(());
        }
        Err(ProjectionError::VersionRefused {
            projection: record.projection.clone(),
            version: record.version,
            state: record.state,
            reason: self.reason.into(),
        })
    }
}

/// The pair name of a projection's version: `name@v{version}`, or the plain name for version 0
/// (an unversioned projection).
pub fn versioned_name(projection: &str, version: u32) -> String {
    if version == 0 {
        projection.to_owned()
    } else {
        format!("{projection}@v{version}")
    }
}

/// Splits a pair name into the projection's name and its version (0 when unversioned); a
/// consumer part's name comes back whole, with version 0.
pub fn split_versioned_name(pair: &str) -> (&str, u32) {
    match pair.rsplit_once("@v") {
        Some((projection, version)) => match version.parse() {
            Ok(version) => (projection, version),
            Err(_) => (pair, 0),
        },
        None => (pair, 0),
    }
}

/// The physical name of a declared table in `version`: `{table}_v{version}`, in the declared
/// table's schema.
pub fn physical_table(table: &str, version: u32) -> String {
    format!("{table}_v{version}")
}

/// A projection of a given version as the runtime runs it: its pair name is the version's, and
/// its statements name the version's physical tables.
pub(crate) struct VersionedProjection {
    inner: Arc<dyn Projection>,
    pair_name: String,
    pub(crate) setup: VersionSetup,
    /// Declared table → physical table. The physical names are leaked once per registration:
    /// statements carry `&'static str` table names, and a runtime registers a bounded number of
    /// tables.
    renames: HashMap<&'static str, &'static str>,
    /// Raw SQL with `{table}` placeholders → the same with physical names, leaked once per
    /// distinct statement text (statements are `&'static str` in the projection's code, so
    /// their number is bounded).
    rewritten_sql: Mutex<HashMap<&'static str, &'static str>>,
}

impl VersionedProjection {
    /// Wraps `projection`, which declares tables, checking its version and table names.
    pub(crate) fn new(projection: Arc<dyn Projection>) -> Result<Self, ProjectionError> {
        let name = projection.name().to_owned();
        let version = projection.version();
        let invalid = |reason: String| ProjectionError::InvalidProjection {
            name: name.clone(),
            reason,
        };
        if version == 0 {
            return Err(invalid(
                "a projection that declares tables has a version of at least 1".into(),
            ));
        }
        let mut tables = Vec::new();
        let mut renames = HashMap::new();
        for table in projection.tables() {
            let physical = physical_table(table.name(), version);
            if !is_identifier(table.name()) || !is_identifier(&physical) {
                return Err(invalid(format!(
                    "table {:?} is not a valid name, or too long with its version suffix \
                     ({physical:?}; at most 63 characters)",
                    table.name()
                )));
            }
            let bare = physical
                .rsplit_once('.')
                .map_or(physical.as_str(), |(_, bare)| bare);
            if !table.indexes().is_empty()
                && bare.len() + 1 + (table.indexes().len() - 1).to_string().len() > 63
            {
                return Err(invalid(format!(
                    "the indexes of table {:?} would be named {bare}_0…, longer than 63 characters",
                    table.name()
                )));
            }
            if renames.contains_key(table.name()) {
                return Err(invalid(format!(
                    "table {:?} is declared twice",
                    table.name()
                )));
            }
            let leaked: &'static str = Box::leak(physical.clone().into_boxed_str());
            renames.insert(table.name(), leaked);
            tables.push(VersionTable {
                name: table.name().to_owned(),
                physical,
                columns: table.columns().to_owned(),
                indexes: table
                    .indexes()
                    .iter()
                    .map(|index| (*index).to_owned())
                    .collect(),
            });
        }
        Ok(VersionedProjection {
            pair_name: versioned_name(&name, version),
            setup: VersionSetup {
                projection: name,
                version,
                tables,
            },
            inner: projection,
            renames,
            rewritten_sql: Mutex::default(),
        })
    }

    /// The projection's statements with the version's physical tables.
    fn rename(&self, statements: Vec<Statement>) -> Vec<Statement> {
        statements
            .into_iter()
            .map(|statement| self.rename_one(statement))
            .collect()
    }

    fn rename_one(&self, mut statement: Statement) -> Statement {
        match &mut statement {
            Statement::Upsert { table, .. }
            | Statement::Increment { table, .. }
            | Statement::Update { table, .. }
            | Statement::Delete { table, .. } => {
                if let Some(physical) = self.renames.get(*table) {
                    *table = physical;
                }
            }
            Statement::Sql { sql, .. } => *sql = self.rewrite_sql(sql),
        }
        statement
    }

    /// `sql` with every `{table}` of a declared table replaced by its physical name.
    fn rewrite_sql(&self, sql: &'static str) -> &'static str {
        if !sql.contains('{') {
            return sql;
        }
        let mut cache = self
            .rewritten_sql
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.entry(sql).or_insert_with(|| {
            let rewritten = self
                .renames
                .iter()
                .fold(sql.to_owned(), |sql, (declared, physical)| {
                    sql.replace(&format!("{{{declared}}}"), physical)
                });
            Box::leak(rewritten.into_boxed_str())
        })
    }
}

impl Projection for VersionedProjection {
    fn name(&self) -> &str {
        &self.pair_name
    }

    fn reads(&self) -> Reads {
        self.inner.reads()
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        self.inner
            .reduce(event)
            .map(|statements| self.rename(statements))
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        self.rename(self.inner.reset(instance))
    }

    fn has_side_effects(&self) -> bool {
        self.inner.has_side_effects()
    }

    fn config(&self) -> ProjectionConfig {
        self.inner.config()
    }

    fn version(&self) -> u32 {
        self.setup.version
    }

    fn prepare<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        self.inner.prepare(events)
    }

    fn after_commit<'a>(&'a self, touched: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        self.inner.after_commit(touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(versioned_name("users", 0), "users");
        assert_eq!(versioned_name("users", 3), "users@v3");
        assert_eq!(split_versioned_name("users@v3"), ("users", 3));
        assert_eq!(split_versioned_name("users"), ("users", 0));
        assert_eq!(split_versioned_name("mailer#1/4"), ("mailer#1/4", 0));
        assert_eq!(physical_table("app.users", 2), "app.users_v2");
    }
}
