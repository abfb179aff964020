//! Versioned projections in a runtime: setting each registered version up at start, following
//! the states other processes and operators give them, switching a built version in, dropping
//! retired ones after their grace period, and the operator API (switch, rollback, drop).

use std::time::Duration;

use chrono::Utc;
use strata_store::EventStore;

use crate::backend::ProjectionBackend;
use crate::error::ProjectionError;
use crate::projection::SwitchWhen;
use crate::switch::{switch_if_caught_up, switch_version, version_lag};
use crate::version::{ProjectionVersion, VersionState, versioned_name};

use crate::runtime::{ProjectionRuntime, lock};

/// How often a runtime with versioned projections reads their states, and tries to switch in
/// a version that was building.
pub(super) const VERSIONS_EVERY: Duration = Duration::from_secs(1);

/// A building version is checked for a switch every round while none of its runs is queued or
/// running in this process, and every this many rounds otherwise (other processes may be
/// building the rest): the check reads every instance.
const SWITCH_CHECK_EVERY_ROUNDS: u64 = 10;

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Records every registered version with the backend (creating its tables) and notes its
    /// state: only building and live versions run here.
    pub(super) async fn prepare_versions(&self) -> Result<(), ProjectionError> {
        for (index, registered) in self.inner.projections.iter().enumerate() {
            let Some(setup) = &registered.version else {
                continue;
            };
            let record = self.inner.backend.prepare_version(setup).await?;
            if !record.state.is_applied() {
                tracing::warn!(
                    projection = %setup.projection,
                    version = setup.version,
                    state = %record.state,
                    "this process runs a projection version that is not applied any more; it \
                     stays idle here (`strata projections build` sets it building again)"
                );
            }
            lock(&self.inner.version_states).insert(index, record.state);
        }
        Ok(())
    }

    /// Whether the registered projection at `index` runs: every unversioned one, and versions
    /// that are building or live.
    pub(super) fn is_applied(&self, index: usize) -> bool {
        // Asked on every trigger of every pair: an unversioned projection answers without the lock.
        if self.inner.projections[index].version.is_none() {
            return true;
        }
        lock(&self.inner.version_states)
            .get(&index)
            .is_none_or(|state| state.is_applied())
    }

    /// Whether the registered projection at `index` is a version being built.
    pub(super) fn is_building(&self, index: usize) -> bool {
        self.inner.projections[index].version.is_some()
            && lock(&self.inner.version_states).get(&index) == Some(&VersionState::Building)
    }

    /// Notes that a batch found its version retired (a switch happened elsewhere).
    pub(super) fn note_retired(&self, index: usize) {
        lock(&self.inner.version_states).insert(index, VersionState::Retired);
    }

    /// Whether this runtime runs versioned projections (and so needs [`Self::follow_versions`]).
    pub(super) fn has_versions(&self) -> bool {
        self.inner
            .projections
            .iter()
            .any(|registered| registered.version.is_some())
    }

    /// One round of following the versions: new states from the backend, a switch for each
    /// caught-up version that switches by itself, and the drop of retired versions whose grace
    /// period is over.
    pub(super) async fn follow_versions(&self, round: u64) -> Result<(), ProjectionError> {
        let records = self.inner.backend.versions(None).await?;
        for (index, registered) in self.inner.projections.iter().enumerate() {
            let Some(setup) = &registered.version else {
                continue;
            };
            let Some(record) = records.iter().find(|record| {
                record.projection == setup.projection && record.version == setup.version
            }) else {
                continue;
            };
            let before = lock(&self.inner.version_states).get(&index).copied();
            let revived =
                record.state.is_applied() && before.is_none_or(|state| !state.is_applied());
            if revived {
                // Set building again by an operator: its tables and registration may need
                // creating (dropping forgets both), before any batch of it runs.
                self.inner.backend.prepare_version(setup).await?;
                self.register_pair(index).await?;
            }
            lock(&self.inner.version_states).insert(index, record.state);
            if revived {
                self.trigger_projection(index).await?;
            }
            if record.state == VersionState::Building
                && registered.config.switch == SwitchWhen::CaughtUp
                && (round.is_multiple_of(SWITCH_CHECK_EVERY_ROUNDS) || self.is_idle(index))
            {
                self.switch_if_caught_up(index).await?;
            }
        }
        self.drop_expired(&records).await
    }

    /// Whether no run of the projection at `index` is queued or running in this process: a
    /// version being built runs without pause while it has events left, so idle means it has
    /// most likely caught up here.
    fn is_idle(&self, index: usize) -> bool {
        !lock(&self.inner.pairs)
            .keys()
            .any(|pair| pair.index == index)
    }

    /// Switches the version at `index` in when it has caught up; a version still behind is left
    /// building.
    async fn switch_if_caught_up(&self, index: usize) -> Result<(), ProjectionError> {
        let registered = &self.inner.projections[index];
        let Some(setup) = &registered.version else {
            return Ok(());
        };
        match switch_if_caught_up(
            &self.inner.store,
            &self.inner.backend,
            &setup.projection,
            setup.version,
            &registered.reads,
            false,
        )
        .await
        {
            Ok(live) => {
                self.note_switch(&live);
                Ok(())
            }
            Err(ProjectionError::VersionBehind { .. } | ProjectionError::VersionRefused { .. }) => {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Updates the states of this runtime's versions of `live`'s projection after a switch.
    fn note_switch(&self, live: &ProjectionVersion) {
        let mut states = lock(&self.inner.version_states);
        for (index, registered) in self.inner.projections.iter().enumerate() {
            let Some(setup) = &registered.version else {
                continue;
            };
            if setup.projection != live.projection {
                continue;
            }
            if setup.version == live.version {
                states.insert(index, VersionState::Live);
            } else if states.get(&index) == Some(&VersionState::Live) {
                states.insert(index, VersionState::Retired);
            }
        }
    }

    /// Drops the retired versions of this runtime's projections whose
    /// [`drop_retired_after`](crate::ProjectionConfig::drop_retired_after) has passed.
    async fn drop_expired(&self, records: &[ProjectionVersion]) -> Result<(), ProjectionError> {
        for record in records {
            if record.state != VersionState::Retired {
                continue;
            }
            let grace = self.inner.projections.iter().find_map(|registered| {
                let setup = registered.version.as_ref()?;
                (setup.projection == record.projection)
                    .then_some(registered.config.drop_retired_after)
            });
            let (Some(Some(grace)), Some(retired_at)) = (grace, record.retired_at) else {
                continue;
            };
            let expired = Utc::now() - retired_at
                > chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
            if !expired {
                continue;
            }
            match self
                .inner
                .backend
                .drop_version(&record.projection, record.version)
                .await
            {
                Ok(_) => tracing::info!(
                    projection = %record.projection,
                    version = record.version,
                    "dropped a retired projection version after its grace period"
                ),
                // Another process dropped or revived it meanwhile.
                Err(ProjectionError::VersionRefused { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The versions of `projection`, by version.
    pub async fn versions(
        &self,
        projection: &str,
    ) -> Result<Vec<ProjectionVersion>, ProjectionError> {
        self.inner.backend.versions(Some(projection)).await
    }

    /// Makes `version` of `projection` live now, if it has caught up, and retires the live one.
    /// The version must be registered in this runtime (its reads are needed to tell whether it
    /// caught up); `strata projections switch` does the same from outside. Fails with
    /// [`ProjectionError::VersionBehind`] while it has events left.
    pub async fn switch(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let index = self.index(&versioned_name(projection, version))?;
        let live = switch_version(
            &self.inner.store,
            &self.inner.backend,
            projection,
            version,
            &self.inner.projections[index].reads,
        )
        .await?;
        self.note_switch(&live);
        Ok(live)
    }

    /// Goes back to the version that was live before: the most recently retired one. When it
    /// has caught up it is switched in at once; otherwise it is set building, resumes from where
    /// it stopped in the runtimes that run its code, and takes over when it has caught up.
    /// Returns its record.
    pub async fn rollback(&self, projection: &str) -> Result<ProjectionVersion, ProjectionError> {
        let versions = self.inner.backend.versions(Some(projection)).await?;
        let previous = versions
            .iter()
            .filter(|record| record.state == VersionState::Retired)
            .max_by_key(|record| record.retired_at)
            .ok_or_else(|| ProjectionError::VersionRefused {
                projection: projection.to_owned(),
                version: versions
                    .iter()
                    .find(|record| record.state == VersionState::Live)
                    .map_or(0, |record| record.version),
                state: VersionState::Live,
                reason: "there is no retired version to roll back to".into(),
            })?;
        let pair = previous.pair_name();
        let registered = self.inner.by_name.get(&pair).copied();
        if let Some(index) = registered {
            let reads = &self.inner.projections[index].reads;
            let lag =
                version_lag(&self.inner.store, &self.inner.backend, &pair, reads, None).await?;
            if lag.events_behind == 0 {
                return self.switch(projection, previous.version).await;
            }
        }
        let building = self
            .inner
            .backend
            .rebuild_version(projection, previous.version)
            .await?;
        if let Some(index) = registered {
            lock(&self.inner.version_states).insert(index, VersionState::Building);
            self.trigger_projection(index).await?;
        }
        Ok(building)
    }

    /// Drops `version` of `projection` (not the live one): its tables, checkpoints and failed
    /// events.
    pub async fn drop_version(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let dropped = self.inner.backend.drop_version(projection, version).await?;
        if let Some(&index) = self.inner.by_name.get(&dropped.pair_name()) {
            lock(&self.inner.version_states).insert(index, VersionState::Dropped);
        }
        Ok(dropped)
    }
}
