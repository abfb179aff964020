//! Versions of versioned projections in memory: their records, the stable names, and the
//! switch lock every lease holds shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::State;
use crate::error::ProjectionError;
use crate::version::{
    ProjectionVersion, VersionOperation, VersionSetup, VersionState, physical_table,
    split_versioned_name,
};

/// One read-write lock per projection (all its versions share it): leases hold it shared, a
/// switch exclusively.
#[derive(Debug, Clone, Default)]
pub(super) struct SwitchLocks(Arc<Mutex<HashMap<String, Arc<RwLock<()>>>>>);

impl SwitchLocks {
    fn of(&self, pair: &str) -> Arc<RwLock<()>> {
        let projection = split_versioned_name(pair).0;
        let mut locks = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(locks.entry(projection.to_owned()).or_default())
    }

    pub(super) async fn shared(&self, pair: &str) -> OwnedRwLockReadGuard<()> {
        self.of(pair).read_owned().await
    }

    pub(super) async fn exclusive(&self, projection: &str) -> MemorySwitch {
        MemorySwitch {
            projection: projection.to_owned(),
            _exclusive: self.of(projection).write_owned().await,
        }
    }
}

/// A switch in progress in memory: the projection's switch lock held exclusively.
#[derive(Debug)]
pub struct MemorySwitch {
    pub(super) projection: String,
    _exclusive: OwnedRwLockWriteGuard<()>,
}

impl State {
    /// Whether the pair named `pair` is a version no longer applied.
    pub(super) fn is_retired(&self, pair: &str) -> bool {
        let (projection, version) = split_versioned_name(pair);
        self.versions
            .get(&(projection.to_owned(), version))
            .is_some_and(|record| !record.state.is_applied())
    }

    pub(super) fn prepare_version(&mut self, setup: &VersionSetup) -> ProjectionVersion {
        let key = (setup.projection.clone(), setup.version);
        if let Some(known) = self.versions.get(&key) {
            return known.clone();
        }
        let now = Utc::now();
        let others = self
            .versions
            .keys()
            .any(|(projection, _)| projection == &setup.projection);
        let ran_unversioned = self
            .checkpoints
            .keys()
            .any(|key| key.projection == setup.projection);
        if !others && ran_unversioned {
            self.versions.insert(
                (setup.projection.clone(), 0),
                ProjectionVersion {
                    projection: setup.projection.clone(),
                    version: 0,
                    state: VersionState::Live,
                    tables: Vec::new(),
                    created_at: now,
                    switched_at: Some(now),
                    retired_at: None,
                },
            );
        }
        let first = !others && !ran_unversioned;
        let record = ProjectionVersion {
            projection: setup.projection.clone(),
            version: setup.version,
            state: if first {
                VersionState::Live
            } else {
                VersionState::Building
            },
            tables: setup
                .tables
                .iter()
                .map(|table| table.name.clone())
                .collect(),
            created_at: now,
            switched_at: first.then_some(now),
            retired_at: None,
        };
        if first {
            self.point_views(&record);
        }
        self.versions.insert(key, record.clone());
        record
    }

    /// Points the stable names of `record`'s tables at its version's tables.
    fn point_views(&mut self, record: &ProjectionVersion) {
        for table in &record.tables {
            let physical: &'static str =
                Box::leak(physical_table(table, record.version).into_boxed_str());
            self.views.insert(table.clone(), physical);
        }
    }

    pub(super) fn switch(
        &mut self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let target = self.version_in(projection, version, VersionOperation::TAKE_OVER)?;
        let now = Utc::now();
        let live = self
            .versions
            .values()
            .find(|record| record.projection == projection && record.state == VersionState::Live)
            .cloned();
        if let Some(live) = &live {
            for table in &live.tables {
                self.views.remove(table);
            }
            if live.version == 0 {
                // The unversioned tables keep their rows as version 0's.
                let mut renamed = Vec::new();
                for table in &target.tables {
                    if let Some(rows) = self.tables.remove(table.as_str()) {
                        let physical: &'static str =
                            Box::leak(physical_table(table, 0).into_boxed_str());
                        self.tables.insert(physical, rows);
                        renamed.push(table.clone());
                    }
                }
                if let Some(record) = self.versions.get_mut(&(projection.to_owned(), 0)) {
                    record.tables = renamed;
                }
            }
            if let Some(record) = self
                .versions
                .get_mut(&(projection.to_owned(), live.version))
            {
                record.state = VersionState::Retired;
                record.retired_at = Some(now);
            }
        }
        if version == 0 {
            for table in &target.tables {
                if let Some(rows) = self.tables.remove(physical_table(table, 0).as_str()) {
                    let declared: &'static str = Box::leak(table.clone().into_boxed_str());
                    self.tables.insert(declared, rows);
                }
            }
        } else {
            self.point_views(&target);
        }
        let record = self
            .versions
            .get_mut(&(projection.to_owned(), version))
            .ok_or_else(|| unknown(projection, version))?;
        record.state = VersionState::Live;
        record.switched_at = Some(now);
        Ok(record.clone())
    }

    pub(super) fn rebuild_version(
        &mut self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        self.version_in(projection, version, VersionOperation::BUILD_AGAIN)?;
        let record = self
            .versions
            .get_mut(&(projection.to_owned(), version))
            .ok_or_else(|| unknown(projection, version))?;
        record.state = VersionState::Building;
        Ok(record.clone())
    }

    pub(super) fn drop_version(
        &mut self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let target = self.version_in(projection, version, VersionOperation::DROP)?;
        for table in &target.tables {
            self.tables.remove(physical_table(table, version).as_str());
        }
        let pair = target.pair_name();
        self.checkpoints.retain(|key, _| key.projection != pair);
        self.failed.retain(|(name, _, _), _| name != &pair);
        let record = self
            .versions
            .get_mut(&(projection.to_owned(), version))
            .ok_or_else(|| unknown(projection, version))?;
        record.state = VersionState::Dropped;
        Ok(record.clone())
    }

    /// The record of `version`, when `operation` allows its state.
    fn version_in(
        &self,
        projection: &str,
        version: u32,
        operation: VersionOperation,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let record = self
            .versions
            .get(&(projection.to_owned(), version))
            .ok_or_else(|| unknown(projection, version))?;
        operation.check(record)?;
        Ok(record.clone())
    }
}

fn unknown(projection: &str, version: u32) -> ProjectionError {
    ProjectionError::UnknownVersion {
        projection: projection.to_owned(),
        version,
    }
}
