//! Queueing runs of pairs: one queued or running run per pair in a process, at most
//! `max_parallel_batches` running at once, and graceful shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strata_store::EventStore;
use tokio::sync::Notify;

use crate::backend::ProjectionBackend;
use crate::error::ProjectionError;

use crate::runtime::batch::PairRun;
use crate::runtime::{PairKey, ProjectionRuntime, lock};

/// Where a pair stands in this process's scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PairState {
    /// A run is waiting (coalescing triggers, or for a permit) in the task holding `ticket`.
    Queued { ticket: u64 },
    /// A run is in progress; `again` records a trigger that arrived meanwhile.
    Running { again: bool },
}

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Stops the runtime gracefully and waits, at most `deadline`, until every batch it was
    /// running has finished: triggers, ticks and operator-request polling stop at once, queued
    /// runs are dropped, and a run in progress (a trigger's or a `catch_up`'s) stops after its
    /// current batch, which commits (with its `after_commit` hook) or rolls back whole; no batch
    /// is cut halfway, and each lease ends with its batch. Later calls (`catch_up`, `rebuild`…)
    /// return [`ProjectionError::Stopped`].
    ///
    /// Fails with [`ProjectionError::ShutdownTimeout`] when batches still run at the deadline:
    /// they finish on their own, or roll back if the process exits first (a batch is one
    /// transaction, so either way nothing is half-applied).
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), ProjectionError> {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for task in lock(&self.inner.background).drain(..) {
            task.abort();
        }
        // Runs waiting for a permit give up; new ones cannot start.
        self.inner.permits.close();
        self.inner.building_permits.close();
        let waited = tokio::time::timeout(deadline, async {
            loop {
                let ended = self.inner.run_ended.notified();
                if self.inner.active_runs.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
        self.inner
            .backend
            .runtime_stopped(&self.inner.heartbeat.runtime_id)
            .await;
        self.inner.progress.notify_waiters();
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(ProjectionError::ShutdownTimeout {
                deadline,
                running: self.inner.active_runs.load(Ordering::SeqCst),
            }),
        }
    }

    /// Takes a permit to run batches and counts the run as active until the returned guard is
    /// dropped; `None` once the runtime is shutting down.
    pub(super) async fn start_run(&self) -> Option<ActiveRun<'_>> {
        let permit = self.inner.permits.acquire().await.ok()?;
        self.inner.active_runs.fetch_add(1, Ordering::SeqCst);
        Some(ActiveRun {
            _permit: permit,
            active_runs: &self.inner.active_runs,
            run_ended: &self.inner.run_ended,
        })
    }

    /// Queues one run of the pair unless one is already queued; if the pair is running, makes it
    /// run once more when it is done (no trigger is lost, and the two runs never compete for the
    /// lease).
    pub(super) fn schedule(&self, pair: PairKey) {
        if self.inner.stopping.load(Ordering::SeqCst) || !self.is_applied(pair.index) {
            return;
        }
        let ticket = {
            let mut pairs = lock(&self.inner.pairs);
            match pairs.get_mut(&pair) {
                Some(PairState::Queued { .. }) => return,
                Some(PairState::Running { again }) => {
                    *again = true;
                    return;
                }
                None => {
                    // Queued under the same lock as the check, so two triggers cannot both
                    // start a task.
                    let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
                    pairs.insert(pair.clone(), PairState::Queued { ticket });
                    ticket
                }
            }
        };
        self.start_queued(pair, ticket);
    }

    /// Starts the task of a pair already marked queued under `ticket`.
    fn start_queued(&self, pair: PairKey, ticket: u64) {
        let runtime = self.clone();
        tokio::spawn(async move { runtime.run_scheduled(pair, ticket).await });
    }

    /// Runs a queued pair, and again for as long as triggers arrive while it runs. Each run first
    /// waits `trigger_coalesce`, so under a steady stream of pushes a pair runs at most once per
    /// run time plus that pause, with everything that arrived meanwhile in one batch. A run takes
    /// along the queued pairs of the same instance whose projections read the same events (see
    /// `Fetched`); their own tasks then find their ticket gone and stop.
    async fn run_scheduled(&self, pair: PairKey, ticket: u64) {
        loop {
            let coalesce = self.inner.config.trigger_coalesce;
            if !coalesce.is_zero() {
                tokio::time::sleep(coalesce).await;
            }
            // A version being built takes a building permit first, so it never holds a permit
            // the live versions could use while it waits.
            let building = if self.is_building(pair.index) {
                self.inner.building_permits.acquire().await.ok()
            } else {
                None
            };
            let Some(run) = self.start_run().await else {
                let mut pairs = lock(&self.inner.pairs);
                if pairs.get(&pair) == Some(&PairState::Queued { ticket }) {
                    pairs.remove(&pair);
                }
                return;
            };
            let Some(members) = self.claim_group(&pair, ticket) else {
                // Another run took this one along.
                return;
            };
            let outcomes = self.run_group(&members, &pair.instance).await;
            drop(run);
            drop(building);
            for (&member, outcome) in members.iter().zip(outcomes) {
                self.after_run(PairKey::new(member, &pair.instance), outcome);
            }
            if !self.release_group(&pair, &members, ticket) {
                return;
            }
        }
    }

    /// Marks the pair running, with every queued pair of its instance whose projection reads the
    /// same events, and returns their projections (the pair's first); `None` when the pair's
    /// ticket is gone because another run took it along. From here a trigger no longer joins this
    /// run (its horizon may already be read) but asks for the next one.
    fn claim_group(&self, pair: &PairKey, ticket: u64) -> Option<Vec<usize>> {
        let mut pairs = lock(&self.inner.pairs);
        if pairs.get(pair) != Some(&PairState::Queued { ticket }) {
            return None;
        }
        pairs.insert(pair.clone(), PairState::Running { again: false });
        let mut members = vec![pair.index];
        for &other in &self.inner.projections[pair.index].same_reads {
            let other_pair = PairKey::new(other, &pair.instance);
            if matches!(pairs.get(&other_pair), Some(PairState::Queued { .. })) {
                pairs.insert(other_pair, PairState::Running { again: false });
                members.push(other);
            }
        }
        Some(members)
    }

    /// What follows a member's run: a stalled pair is scheduled for its retry, a failure is logged
    /// (the next trigger tries again).
    fn after_run(&self, pair: PairKey, outcome: Result<PairRun, ProjectionError>) {
        match outcome {
            Ok(PairRun::Stalled { retry_at }) => {
                let retry = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(retry_at.into()).await;
                    retry.schedule(pair);
                });
            }
            Ok(PairRun::Done | PairRun::Busy | PairRun::Stopped) => {}
            Err(err) => {
                tracing::warn!(projection = %self.name(&pair), instance = %pair.instance, error = %err, "projection batch failed; retrying at the next trigger");
            }
        }
    }

    /// Ends the group's run. A member triggered while it ran runs again: the pair itself in this
    /// task (returns `true`, its ticket queued again), the others in tasks of their own.
    fn release_group(&self, pair: &PairKey, members: &[usize], ticket: u64) -> bool {
        let mut again_here = false;
        let mut requeue = Vec::new();
        {
            let mut pairs = lock(&self.inner.pairs);
            for &member in members {
                let member_pair = PairKey::new(member, &pair.instance);
                let again = pairs.remove(&member_pair) == Some(PairState::Running { again: true });
                if again && member == pair.index {
                    pairs.insert(member_pair, PairState::Queued { ticket });
                    again_here = true;
                } else if again {
                    // Queued under the same lock, so no trigger in between can start a second
                    // task for it.
                    let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
                    pairs.insert(member_pair.clone(), PairState::Queued { ticket });
                    requeue.push((member_pair, ticket));
                }
            }
        }
        for (member_pair, ticket) in requeue {
            self.start_queued(member_pair, ticket);
        }
        again_here
    }
}

/// A run holding one of the runtime's permits; dropping it ends the run for
/// [`ProjectionRuntime::shutdown`].
pub(super) struct ActiveRun<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    active_runs: &'a AtomicUsize,
    run_ended: &'a Notify,
}

impl Drop for ActiveRun<'_> {
    fn drop(&mut self) {
        self.active_runs.fetch_sub(1, Ordering::SeqCst);
        self.run_ended.notify_waiters();
    }
}
