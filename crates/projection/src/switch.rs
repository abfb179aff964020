//! Switching a projection to another version, and how far a version is from being able to: what
//! a runtime does by itself and an operator's tool does without the projection's code (both need
//! only the version's [`Reads`], which the registry keeps).
//!
//! The rule a switch keeps: readers are never shown a read model behind the one they had. The
//! switch takes the projection's switch lock exclusively, so no batch of any version is in
//! flight and the live version cannot move; it then reads the commit horizon, below which the
//! live version has applied at most everything; and it swaps the stable names only when the
//! new version has nothing left below that horizon in any instance. All in one transaction, so
//! a crash leaves exactly the old or exactly the new version live.

use strata_event::{InstanceId, Position};
use strata_store::EventStore;

use crate::backend::{CurrentState, ProjectionBackend};
use crate::error::ProjectionError;
use crate::projection::Reads;
use crate::version::{ProjectionVersion, VersionState, versioned_name};

/// How far a version is from the events: what [`version_lag`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionLag {
    /// Events it reads and has processed (applied or given up on).
    pub events_applied: u64,
    /// Events it reads and has not processed yet.
    pub events_behind: u64,
    /// Instances it reads events in.
    pub instances: u64,
    /// Of those, instances where it has events left.
    pub instances_behind: u64,
}

/// How far the pair `pair` (a version's [pair name](crate::versioned_name)) reading `reads` is
/// from the latest events, counted in every instance; `below` bounds the count (a switch's
/// horizon).
pub async fn version_lag<S: EventStore, B: ProjectionBackend>(
    store: &S,
    backend: &B,
    pair: &str,
    reads: &Reads,
    below: Option<Position>,
) -> Result<VersionLag, ProjectionError> {
    let states: Vec<CurrentState> = backend
        .states()
        .await?
        .into_iter()
        .filter(|state| state.projection == pair)
        .collect();
    lag_against(store, reads, &states, below, false).await
}

/// The lag of the pair whose checkpoints are `states`; with `first_only`, it stops at the first
/// instance behind (a switch only needs to know whether there is one).
async fn lag_against<S: EventStore>(
    store: &S,
    reads: &Reads,
    states: &[CurrentState],
    below: Option<Position>,
    first_only: bool,
) -> Result<VersionLag, ProjectionError> {
    let bounded = |query: strata_query::Query| match below {
        Some(horizon) => query.below(horizon),
        None => query,
    };
    let everywhere = bounded(reads.query_all_instances().build()?);
    let mut lag = VersionLag::default();
    for instance in store.instance_ids(&everywhere).await? {
        lag.instances += 1;
        let checkpoint = states
            .iter()
            .find(|state| state.instance_id == instance)
            .map(CurrentState::cursor);
        let all = bounded(reads.query(&instance).build()?);
        let left = match checkpoint {
            Some(cursor) => all.resumed_after(cursor),
            None => all.clone(),
        };
        let behind = if first_only {
            // One event says it is behind; counting them all would hold the lock longer.
            let first = bounded(left_query(reads, &instance, checkpoint)?);
            u64::from(!store.query(&first).await?.is_empty())
        } else {
            store.count(&left).await?
        };
        if !first_only {
            lag.events_applied += store.count(&all).await? - behind;
        }
        if behind > 0 {
            lag.events_behind += behind;
            lag.instances_behind += 1;
            if first_only {
                break;
            }
        }
    }
    Ok(lag)
}

fn left_query(
    reads: &Reads,
    instance: &InstanceId,
    checkpoint: Option<strata_event::Cursor>,
) -> Result<strata_query::Query, ProjectionError> {
    let builder = reads.query(instance).limit(1u64);
    let builder = match checkpoint {
        Some(cursor) => builder.resume_after(cursor),
        None => builder,
    };
    Ok(builder.build()?)
}

/// Makes version `to` of `projection` live, when it has caught up, and retires the live one.
/// `reads` is what version `to` reads. Fails with [`ProjectionError::VersionBehind`], changing
/// nothing, when it has events left, and with [`ProjectionError::VersionRefused`] when it is live
/// or dropped already.
pub async fn switch_version<S: EventStore, B: ProjectionBackend>(
    store: &S,
    backend: &B,
    projection: &str,
    to: u32,
    reads: &Reads,
) -> Result<ProjectionVersion, ProjectionError> {
    let versions = backend.versions(Some(projection)).await?;
    let target = versions
        .iter()
        .find(|version| version.version == to)
        .ok_or_else(|| ProjectionError::UnknownVersion {
            projection: projection.to_owned(),
            version: to,
        })?;
    if matches!(target.state, VersionState::Live | VersionState::Dropped) {
        return Err(ProjectionError::VersionRefused {
            projection: projection.to_owned(),
            version: to,
            state: target.state,
            reason: "only a building or retired version can take over".into(),
        });
    }
    let pair = versioned_name(projection, to);
    // Checked first without the lock, which stops every batch of the projection while held:
    // a version far behind is refused without stopping anyone.
    let lag = version_lag(store, backend, &pair, reads, None).await?;
    if lag.events_behind > 0 {
        return Err(behind(projection, to, lag));
    }
    let mut switch = backend.begin_switch(projection).await?;
    // Read under the lock: the live version applied nothing at or above it.
    let horizon = store.commit_horizon().await?;
    let states = backend.switch_checkpoints(&mut switch, &pair).await?;
    let lag = lag_against(store, reads, &states, Some(horizon), true).await?;
    if lag.events_behind > 0 {
        drop(switch);
        return Err(behind(projection, to, lag));
    }
    let live = backend.commit_switch(switch, to).await?;
    tracing::info!(projection, version = to, "projection version switched in");
    Ok(live)
}

fn behind(projection: &str, version: u32, lag: VersionLag) -> ProjectionError {
    ProjectionError::VersionBehind {
        projection: projection.to_owned(),
        version,
        events_behind: lag.events_behind,
        instances_behind: lag.instances_behind,
    }
}
