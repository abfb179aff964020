//! Where every projection stands in every instance it has events in.

use chrono::Utc;
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
}

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Where every projection stands in every instance it has events in.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let states = self.inner.backend.states().await?;
        let failed = self.inner.backend.failed_events(None).await?;
        let mut statuses = Vec::new();
        for registered in &self.inner.projections {
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
                statuses.push(ProjectionStatus {
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
