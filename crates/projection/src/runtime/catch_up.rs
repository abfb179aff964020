//! Read-your-writes: bring one pair to a position, or say which event stands in the way.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_event::{InstanceId, Position};
use strata_store::EventStore;

use crate::backend::ProjectionBackend;
use crate::error::ProjectionError;

use crate::runtime::batch::PairRun;
use crate::runtime::{PairKey, ProjectionRuntime, lock};

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Brings `projection` in `instance` to at least `position` (read-your-writes: pass the
    /// position of your push), working on it in this task if needed, then returns `Ok` when every
    /// event the projection reads up to `position` has been applied.
    ///
    /// An event that fails is retried on the projection's schedule
    /// ([`ProjectionConfig::retry_failed_after`](crate::ProjectionConfig::retry_failed_after) between attempts, whoever triggers them), and
    /// this call waits for those retries while its `timeout` allows. It fails with
    /// [`ProjectionError::EventFailed`], naming the event and its last error, when such an event
    /// (at or before `position`) was skipped after its last attempt, or still has attempts left
    /// that cannot happen before the timeout; an event an operator skipped no longer counts. It
    /// fails with [`ProjectionError::Timeout`] when the projection simply did not get there in
    /// time, and with [`ProjectionError::Stopped`] once the runtime is shutting down.
    pub async fn catch_up(
        &self,
        projection: &str,
        instance: &InstanceId,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let index = self.index(projection)?;
        let deadline = Instant::now() + timeout;
        let timed_out = || ProjectionError::Timeout {
            projection: projection.to_owned(),
            timeout,
        };
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(ProjectionError::Stopped);
            }
            // Created before the checks, so progress made while they run still wakes it.
            let progressed = self.inner.progress.notified();
            if self.reached(index, instance, position).await? {
                if !self.applying(index, instance) {
                    return match self.failure_up_to(index, instance, position).await? {
                        Some(failed) => Err(failed),
                        None => Ok(()),
                    };
                }
                // A batch of this pair committed here but its after_commit hook is still running.
                tokio::time::timeout_at(deadline.into(), progressed)
                    .await
                    .map_err(|_| timed_out())?;
                continue;
            }
            let run = tokio::time::timeout_at(deadline.into(), self.start_run())
                .await
                .map_err(|_| timed_out())?
                .ok_or(ProjectionError::Stopped)?;
            let outcome = self.run_pair(&PairKey::new(index, instance)).await;
            drop(run);
            let resume_at = match outcome? {
                PairRun::Done => None,
                // Someone else is on it: wait for progress, briefly.
                PairRun::Busy => Some(Instant::now() + Duration::from_millis(20)),
                // The next event's retry comes too late for this call: say which event it is.
                PairRun::Stalled { retry_at } if retry_at >= deadline => {
                    let failed = self.failure_up_to(index, instance, position).await?;
                    return Err(failed.unwrap_or_else(timed_out));
                }
                PairRun::Stalled { retry_at } => Some(retry_at),
                PairRun::Stopped => return Err(ProjectionError::Stopped),
            };
            if let Some(resume_at) = resume_at {
                tokio::select! {
                    _ = progressed => {}
                    _ = tokio::time::sleep_until(resume_at.min(deadline).into()) => {}
                }
            }
            if Instant::now() >= deadline {
                let reached = self.reached(index, instance, position).await?;
                return match self.failure_up_to(index, instance, position).await? {
                    Some(failed) => Err(failed),
                    None if reached => Ok(()),
                    None => Err(timed_out()),
                };
            }
        }
    }

    /// The first event the pair failed on, at or before `position`, that no operator has skipped,
    /// as the error `catch_up` returns for it.
    pub(super) async fn failure_up_to(
        &self,
        index: usize,
        instance: &InstanceId,
        position: Position,
    ) -> Result<Option<ProjectionError>, ProjectionError> {
        let registered = &self.inner.projections[index];
        let failed = self
            .inner
            .backend
            .failed_events_in(registered.projection.name(), instance)
            .await?;
        Ok(failed
            .into_iter()
            .filter(|failed| failed.position <= position && !failed.skipped_by_operator)
            .min_by_key(|failed| (failed.position, failed.in_tx_order))
            .map(|failed| ProjectionError::EventFailed {
                skipped: failed.failure_count >= registered.config.max_failure_count,
                failed: Box::new(failed),
            }))
    }

    /// Whether a batch of the pair is being applied in this process (see `Inner::applying`).
    pub(super) fn applying(&self, index: usize, instance: &InstanceId) -> bool {
        lock(&self.inner.applying).contains_key(&PairKey::new(index, instance))
    }

    /// Whether the pair has processed everything it reads at or below `position`, and that is
    /// final (the horizon is past it).
    pub(super) async fn reached(
        &self,
        index: usize,
        instance: &InstanceId,
        position: Position,
    ) -> Result<bool, ProjectionError> {
        let registered = &self.inner.projections[index];
        let state = self
            .inner
            .backend
            .state(registered.projection.name(), instance)
            .await?;
        // Strictly past: the events of one push share its position, and a batch may end
        // between them; at the position itself the query below tells whether any is left.
        if state
            .as_ref()
            .is_some_and(|state| state.position > position)
        {
            return Ok(true);
        }
        let horizon = self.inner.store.commit_horizon().await?;
        if horizon <= position {
            return Ok(false);
        }
        let mut pending = registered
            .reads
            .query(instance)
            .position_at_or_before(position)
            .limit(1);
        if let Some(state) = state {
            pending = pending.resume_after(state.cursor());
        }
        Ok(self.inner.store.query(&pending.build()?).await?.is_empty())
    }
}
