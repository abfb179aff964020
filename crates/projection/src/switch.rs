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

use strata_event::Position;
use strata_query::Query;
use strata_store::EventStore;

use crate::backend::{CurrentState, ProjectionBackend};
use crate::error::ProjectionError;
use crate::projection::Reads;
use crate::version::{ProjectionVersion, VersionOperation, versioned_name};

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
    let states = checkpoints_of(backend, pair).await?;
    lag_against(store, reads, &states, below, false).await
}

async fn checkpoints_of<B: ProjectionBackend>(
    backend: &B,
    pair: &str,
) -> Result<Vec<CurrentState>, ProjectionError> {
    Ok(backend
        .states()
        .await?
        .into_iter()
        .filter(|state| state.projection == pair)
        .collect())
}

/// The lag of the pair whose checkpoints are `states`; with `first_only`, it stops at the first
/// event behind (a switch only needs to know whether there is one, and a count per instance
/// would hold the lock longer), and leaves `events_applied` at 0.
async fn lag_against<S: EventStore>(
    store: &S,
    reads: &Reads,
    states: &[CurrentState],
    below: Option<Position>,
    first_only: bool,
) -> Result<VersionLag, ProjectionError> {
    let bounded = |query: Query| match below {
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
        let left = |limit: Option<u64>| -> Result<Query, ProjectionError> {
            let mut builder = reads.query(&instance);
            if let Some(cursor) = checkpoint {
                builder = builder.resume_after(cursor);
            }
            if let Some(limit) = limit {
                builder = builder.limit(limit);
            }
            Ok(bounded(builder.build()?))
        };
        let behind = if first_only {
            u64::from(!store.query(&left(Some(1))?).await?.is_empty())
        } else {
            let behind = store.count(&left(None)?).await?;
            let all = bounded(reads.query(&instance).build()?);
            lag.events_applied += store.count(&all).await?.saturating_sub(behind);
            behind
        };
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

/// Makes version `to` of `projection` live, when it has caught up, and retires the live one.
/// `reads` is what version `to` reads. Fails with [`ProjectionError::VersionBehind`], changing
/// nothing, when it has events left, and with [`ProjectionError::VersionRefused`] when it is live
/// or dropped already, or has failed events no operator has skipped.
pub async fn switch_version<S: EventStore, B: ProjectionBackend>(
    store: &S,
    backend: &B,
    projection: &str,
    to: u32,
    reads: &Reads,
) -> Result<ProjectionVersion, ProjectionError> {
    switch_if_caught_up(store, backend, projection, to, reads, true).await
}

/// [`switch_version`]; without `count_behind`, a version behind is refused with
/// `events_behind` and `instances_behind` at 1 (a runtime trying every second does not need
/// the count, which reads every event left).
pub(crate) async fn switch_if_caught_up<S: EventStore, B: ProjectionBackend>(
    store: &S,
    backend: &B,
    projection: &str,
    to: u32,
    reads: &Reads,
    count_behind: bool,
) -> Result<ProjectionVersion, ProjectionError> {
    let versions = backend.versions(Some(projection)).await?;
    let target = versions
        .iter()
        .find(|version| version.version == to)
        .ok_or_else(|| ProjectionError::UnknownVersion {
            projection: projection.to_owned(),
            version: to,
        })?;
    VersionOperation::TAKE_OVER.check(target)?;
    let pair = versioned_name(projection, to);
    // A version that gave up on events would serve a read model without them: an operator
    // retries or skips them first (`skipped_by_operator` accepts the gap).
    let failed = backend
        .failed_events(Some(&pair))
        .await?
        .into_iter()
        .filter(|failed| !failed.skipped_by_operator)
        .count();
    if failed > 0 {
        return Err(ProjectionError::VersionRefused {
            projection: projection.to_owned(),
            version: to,
            state: target.state,
            reason: format!(
                "it has {failed} failed event(s); retry or skip them (strata projections failed) \
                 before it takes over"
            ),
        });
    }
    // Checked first without the lock, which stops every batch of the projection while held:
    // a version far behind is refused without stopping anyone.
    let states = checkpoints_of(backend, &pair).await?;
    if lag_against(store, reads, &states, None, true)
        .await?
        .events_behind
        > 0
    {
        let lag = if count_behind {
            lag_against(store, reads, &states, None, false).await?
        } else {
            VersionLag {
                events_behind: 1,
                instances_behind: 1,
                ..VersionLag::default()
            }
        };
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
