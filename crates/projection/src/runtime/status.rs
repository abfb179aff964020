//! Where every projection stands in every instance it has events in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_event::{Cursor, InstanceId};
use strata_store::EventStore;

use crate::backend::{CurrentState, ProjectionBackend};
use crate::error::ProjectionError;

use crate::runtime::ProjectionRuntime;

/// Where one projection stands in one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The projection.
    pub projection: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// The cursor of the last event processed, `None` before the first event.
    pub position: Option<Cursor>,
    /// Events the projection reads that it has not processed yet.
    pub events_behind: u64,
    /// Age of the oldest unprocessed event, 0 when up to date.
    pub seconds_behind: f64,
    /// Failed events recorded for this projection and instance (parked ones included).
    pub failed_events: u64,
    /// Aggregates parked in this pair ([`OnFailure::Park`](crate::OnFailure::Park)): their later
    /// events wait for an operator's retry or skip.
    pub parked_aggregates: u64,
    /// When the checkpoint last moved, `None` before the first event.
    pub last_moved_at: Option<DateTime<Utc>>,
    /// Whether the pair is making progress: lag alone cannot tell (see [`Health`]).
    pub health: Health,
}

/// Whether a pair is making progress.
///
/// Lag alone cannot say: a lag measured against a horizon that stopped moving reads small while
/// nothing moves, and a large lag is healthy while a rebuild works through it. So a pair is
/// [`Stalled`](Health::Stalled) only when both hold for the projection's
/// [`stall_after`](crate::ProjectionConfig::stall_after): an event it reads has waited that long,
/// and its checkpoint has not moved for that long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Nothing waits longer than `stall_after`.
    Healthy,
    /// Events wait longer than `stall_after`, but the checkpoint moved within it: working
    /// through a backlog.
    CatchingUp,
    /// Events wait and the checkpoint has not moved for `stall_after`: nothing applies them (no
    /// runtime runs the pair, or its event keeps failing).
    Stalled,
}

impl Health {
    /// Judges a pair `events_behind` events behind, whose oldest waiting event is
    /// `seconds_behind` old and whose checkpoint last moved at `last_moved_at`, at `now`. Operator
    /// tools judge with this too, so every view of a pair says the same.
    pub fn assess(
        events_behind: u64,
        seconds_behind: f64,
        last_moved_at: Option<DateTime<Utc>>,
        stall_after: Duration,
        now: DateTime<Utc>,
    ) -> Health {
        let stall_after_seconds = stall_after.as_secs_f64();
        if events_behind == 0 || seconds_behind < stall_after_seconds {
            return Health::Healthy;
        }
        let still_for = last_moved_at.map_or(f64::INFINITY, |moved| {
            (now - moved).num_milliseconds().max(0) as f64 / 1000.0
        });
        if still_for >= stall_after_seconds {
            Health::Stalled
        } else {
            Health::CatchingUp
        }
    }

    /// When a pair last moved, as [`Health::assess`] should see it: its own checkpoint's time,
    /// except for a version being built, which works through its instances one after another
    /// (bounded by `max_building_batches`) and so moves when any of its checkpoints does; an
    /// instance it has not reached yet is waiting its turn, not stalled.
    pub fn last_moved(
        states: &[CurrentState],
        pair: &str,
        instance: &InstanceId,
        building: bool,
    ) -> Option<DateTime<Utc>> {
        states
            .iter()
            .filter(|state| {
                state.projection == pair && (building || &state.instance_id == instance)
            })
            .map(|state| state.updated_at)
            .max()
    }

    /// The health's name as printed: `healthy`, `catching up`, `stalled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::CatchingUp => "catching up",
            Health::Stalled => "stalled",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Where every projection stands in every instance it has events in, with its health. A
    /// versioned projection appears once per version this runtime runs that is building or
    /// live, under its pair name (`users@v2`).
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let states = self.inner.backend.states().await?;
        let failed = self.inner.backend.failed_events(None).await?;
        let now = Utc::now();
        let mut statuses = Vec::new();
        for (index, registered) in self.inner.projections.iter().enumerate() {
            if !self.is_applied(index) {
                continue;
            }
            let name = registered.projection.name();
            let query = registered.reads.query_all_instances().build()?;
            for instance in self.inner.store.instance_ids(&query).await? {
                let state = states
                    .iter()
                    .find(|state| state.projection == name && state.instance_id == instance);
                let behind = || {
                    let builder = registered.reads.query(&instance);
                    match state {
                        Some(state) => builder.resume_after(state.cursor()),
                        None => builder,
                    }
                };
                let events_behind = self.inner.store.count(&behind().build()?).await?;
                let seconds_behind = if events_behind == 0 {
                    0.0
                } else {
                    let oldest = behind().limit(1).build()?;
                    self.inner
                        .store
                        .query(&oldest)
                        .await?
                        .first()
                        .map_or(0.0, |event| {
                            (Utc::now() - event.created_at).num_milliseconds().max(0) as f64
                                / 1000.0
                        })
                };
                let last_moved_at = state.map(|state| state.updated_at);
                let moved = Health::last_moved(&states, name, &instance, self.is_building(index));
                statuses.push(ProjectionStatus {
                    health: Health::assess(
                        events_behind,
                        seconds_behind,
                        moved,
                        registered.config.stall_after,
                        now,
                    ),
                    last_moved_at,
                    projection: name.to_owned(),
                    position: state.map(CurrentState::cursor),
                    events_behind,
                    seconds_behind,
                    failed_events: failed
                        .iter()
                        .filter(|f| f.projection == name && f.aggregate.instance_id == instance)
                        .count() as u64,
                    parked_aggregates: failed
                        .iter()
                        .filter(|f| {
                            f.parked && f.projection == name && f.aggregate.instance_id == instance
                        })
                        .count() as u64,
                    instance_id: instance,
                });
            }
        }
        Ok(statuses)
    }
}
