//! What makes a (projection, instance) pair run: pushes of this and other processes, ticks that
//! catch what no notice announced, and the heartbeat that says the runtime is alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use strata_event::InstanceId;
use strata_store::EventStore;
use tokio::sync::broadcast;

use crate::backend::{ProjectionBackend, RuntimeHeartbeat};
use crate::error::ProjectionError;

use crate::runtime::versions::VERSIONS_EVERY;
use crate::runtime::{PairKey, ProjectionRuntime, lock};

/// How often a runtime looks for requests operators queued (rebuild, retry, skip).
const OPERATOR_REQUEST_POLL: Duration = Duration::from_secs(1);

/// Every this-many ticks of a projection, it is scheduled in every instance with events it reads,
/// notes or not. A note is of this process's runs only: a rebuild carried out by another process
/// moves a checkpoint back unseen, and if that process dies mid-replay with no pushes following,
/// this sweep is what finishes the replay (within `TICKS_PER_SWEEP × requeue_every`).
pub(super) const TICKS_PER_SWEEP: u64 = 6;

/// How often a runtime records that it is alive ([`ProjectionBackend::heartbeat`]).
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    pub(super) fn start_triggers(&self) {
        let mut background = lock(&self.inner.background);
        if let Some(mut pushes) = self.inner.store.subscribe_pushes() {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                loop {
                    match pushes.recv().await {
                        // No instances: notices may have been lost, so check everything.
                        Ok(pushed) if pushed.instance_ids.is_empty() => {
                            let _ = runtime.trigger_everything().await;
                        }
                        Ok(pushed) => runtime.trigger_instances(&pushed.instance_ids),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = runtime.trigger_everything().await;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(OPERATOR_REQUEST_POLL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    runtime.serve_operator_requests().await;
                }
            }));
        }
        {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(err) = runtime
                        .inner
                        .backend
                        .heartbeat(&runtime.inner.heartbeat)
                        .await
                    {
                        tracing::warn!(error = %err, "could not record the runtime's heartbeat");
                    }
                }
            }));
        }
        if self.has_versions() {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(VERSIONS_EVERY);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for round in 1u64.. {
                    ticks.tick().await;
                    if let Err(err) = runtime.follow_versions(round).await {
                        tracing::warn!(error = %err, "could not follow the projection versions");
                    }
                }
            }));
        }
        for index in 0..self.inner.projections.len() {
            let runtime = self.clone();
            let every = self.inner.projections[index].config.requeue_every;
            background.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                for tick in 1u64.. {
                    ticks.tick().await;
                    let outcome = if tick % TICKS_PER_SWEEP == 0 {
                        runtime.trigger_projection(index).await
                    } else {
                        runtime.trigger_unfinished(index).await
                    };
                    if let Err(err) = outcome {
                        tracing::warn!(error = %err, "projection tick could not list instances");
                    }
                }
            }));
        }
    }

    pub(super) fn trigger_instances(&self, instances: &[InstanceId]) {
        {
            let mut known = lock(&self.inner.known_instances);
            known.extend(instances.iter().cloned());
        }
        for index in 0..self.inner.projections.len() {
            for instance in instances {
                self.schedule(PairKey {
                    index,
                    instance: instance.clone(),
                });
            }
        }
    }

    /// A tick: schedules the projection in every instance where it may have work, passing over
    /// those where a run found it complete below a horizon the instance's latest event is still
    /// under (one query for all instances, where every pair's run would be a few round trips).
    pub(super) async fn trigger_unfinished(&self, index: usize) -> Result<(), ProjectionError> {
        let heads = self.inner.store.instance_heads().await?;
        let unfinished: Vec<InstanceId> = {
            let complete_below = lock(&self.inner.complete_below);
            heads
                .into_iter()
                .filter(|(instance, head)| {
                    complete_below
                        .get(&PairKey::new(index, instance))
                        .is_none_or(|horizon| head >= horizon)
                })
                .map(|(instance, _)| instance)
                .collect()
        };
        for instance in unfinished {
            self.schedule(PairKey { index, instance });
        }
        Ok(())
    }

    /// Schedules the projection in every instance that has events it reads.
    pub(super) async fn trigger_projection(&self, index: usize) -> Result<(), ProjectionError> {
        let query = self.inner.projections[index]
            .reads
            .query_all_instances()
            .build()?;
        let instances = self.inner.store.instance_ids(&query).await?;
        lock(&self.inner.known_instances).extend(instances.iter().cloned());
        for instance in instances {
            self.schedule(PairKey { index, instance });
        }
        Ok(())
    }

    pub(super) async fn trigger_everything(&self) -> Result<(), ProjectionError> {
        for index in 0..self.inner.projections.len() {
            self.trigger_projection(index).await?;
        }
        Ok(())
    }
}

impl RuntimeHeartbeat {
    /// This process's runtime, running `projections`.
    pub(super) fn of_this_process(projections: &[String]) -> Self {
        let started_at = Utc::now();
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|host| !host.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|host| host.trim().to_owned())
            })
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let pid = std::process::id();
        // Several runtimes may share a process: the start instant and a counter tell them apart.
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        RuntimeHeartbeat {
            runtime_id: format!(
                "{host}/{pid}/{}/{number}",
                started_at.timestamp_nanos_opt().unwrap_or_default()
            ),
            host,
            pid,
            projections: projections.to_vec(),
            started_at,
        }
    }
}
