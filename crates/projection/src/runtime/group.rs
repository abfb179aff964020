//! One run of a group: projections with the same reads in one instance, run together until each
//! is up to date, busy or stalled. Each batch of events is fetched once for all of them, and each
//! round (one batch of every member) is leased, applied and committed as one unit of work on the
//! backend, one transaction on PostgreSQL: a round of twenty projections costs one lease, one
//! checkpoint read, one checkpoint write and one commit, not twenty of each. That is what keeps
//! projections beside live writers cheap (`docs/benchmarks.md`, W1P).
//!
//! The group's commit has no savepoints. When a member's reduction fails, or a statement of the
//! round does, the members concerned run the round alone (`batch.rs`), where the failing event
//! is found and recorded. A round that outlives its time bound rolls back, and the run goes on
//! member by member, so only the slow member's batch is halved.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use strata_event::{AggregateRef, InstanceId};
use strata_store::EventStore;
use tracing::Instrument;

use crate::backend::{BatchOutcome, Checkpoint, ProjectionBackend, ReducedEvent};
use crate::error::ProjectionError;
use crate::runtime::batch::{
    Applying, BatchStep, Fetched, PairRun, Sharing, first_touches, panic_message, reduce_window,
};
use crate::runtime::{PairKey, ProjectionRuntime};
use crate::telemetry::{BatchEnd, batch_span, error_type};

/// How a member's part in a group round ended.
enum MemberStep {
    /// Its batch ran in the round (or its run ended there).
    Ran(Result<BatchStep, ProjectionError>),
    /// Its batch runs alone this round: its reduction failed, or a statement of the round did,
    /// and only a batch of its own finds and records the failing event.
    Alone,
}

/// A member whose batch the round committed, with what its bookkeeping needs.
struct Committed {
    slot: usize,
    pair: PairKey,
    /// Each aggregate the batch touched (all of it committed).
    touched: Vec<AggregateRef>,
    /// When the batch's last event was created.
    newest: Option<chrono::DateTime<chrono::Utc>>,
    count: usize,
    complete: bool,
}

/// A member whose batch the round applies.
struct Applied {
    slot: usize,
    pair: PairKey,
    /// Its index among the projections the round leased.
    leased: usize,
    batch: Vec<ReducedEvent>,
    complete: bool,
}

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Runs the pairs of `members` in `instance` until each is up to date, busy or stalled, and
    /// returns how each run ended, in the order of `members`. One member's failure or panic ends
    /// only its own run.
    pub(super) async fn run_group(
        &self,
        members: &[usize],
        instance: &InstanceId,
    ) -> Vec<Result<PairRun, ProjectionError>> {
        let mut outcomes: Vec<Option<Result<PairRun, ProjectionError>>> =
            members.iter().map(|_| None).collect();
        let mut limits: Vec<u32> = members
            .iter()
            .map(|&member| self.inner.projections[member].config.bulk_limit)
            .collect();
        let mut fetched = None;
        let mut together = true;
        loop {
            let active: Vec<usize> = (0..members.len())
                .filter(|&slot| outcomes[slot].is_none())
                .collect();
            if active.is_empty() {
                break;
            }
            if self.inner.stopping.load(Ordering::SeqCst) {
                for slot in active {
                    outcomes[slot] = Some(Ok(PairRun::Stopped));
                }
                break;
            }
            let mut alone = active.clone();
            if together && active.len() > 1 {
                let (steps, keep_together) = self
                    .group_round(members, &active, instance, &limits, &mut fetched)
                    .await;
                together = keep_together;
                alone.clear();
                for (slot, step) in steps {
                    match step {
                        MemberStep::Ran(Ok(BatchStep::More)) => {}
                        MemberStep::Ran(Ok(BatchStep::Finished(run))) => {
                            outcomes[slot] = Some(Ok(run));
                        }
                        MemberStep::Ran(Err(err)) => outcomes[slot] = Some(Err(err)),
                        MemberStep::Alone => alone.push(slot),
                    }
                }
            }
            // Keeping a copy of each fetch pays only while another member may use it.
            let sharing = if active.len() > 1 {
                Sharing::Shared
            } else {
                Sharing::Own
            };
            for slot in alone {
                let pair = PairKey::new(members[slot], instance);
                let step = self
                    .run_batch_guarded(&pair, &mut limits[slot], &mut fetched, sharing)
                    .await;
                match step {
                    Ok(BatchStep::More) => {}
                    Ok(BatchStep::Finished(run)) => outcomes[slot] = Some(Ok(run)),
                    Err(err) => outcomes[slot] = Some(Err(err)),
                }
            }
        }
        outcomes.into_iter().flatten().collect()
    }

    /// One batch of each member in `slots`, leased, applied and committed together. Returns each
    /// member's step, and whether the run should keep running rounds together (not after a
    /// round that outlived its time bound: which member was slow is not known).
    async fn group_round(
        &self,
        members: &[usize],
        slots: &[usize],
        instance: &InstanceId,
        limits: &[u32],
        fetched: &mut Option<Fetched>,
    ) -> (Vec<(usize, MemberStep)>, bool) {
        let backend = &self.inner.backend;
        let pairs: Vec<PairKey> = slots
            .iter()
            .map(|&slot| PairKey::new(members[slot], instance))
            .collect();
        let names: Vec<&str> = pairs.iter().map(|pair| self.name(pair)).collect();
        let failed_all = |err: ProjectionError| {
            let steps = slots
                .iter()
                .map(|&slot| (slot, MemberStep::Ran(Err(err.clone()))))
                .collect();
            (steps, true)
        };
        let (mut lease, held) = match backend.try_lease_group(&names, instance).await {
            Ok(leased) => leased,
            Err(err) => return failed_all(err),
        };
        let checkpoints = match backend.group_checkpoints(&mut lease).await {
            Ok(checkpoints) => checkpoints,
            Err(err) => {
                backend.release_group(lease).await;
                return failed_all(err);
            }
        };
        let mut steps = Vec::with_capacity(slots.len());
        let mut applied = Vec::new();
        for (leased, ((&slot, pair), checkpoint)) in
            slots.iter().zip(pairs).zip(checkpoints).enumerate()
        {
            let checkpoint = match (held.get(leased), checkpoint) {
                (Some(true), Some(checkpoint)) => checkpoint,
                _ => {
                    steps.push((
                        slot,
                        MemberStep::Ran(Ok(BatchStep::Finished(PairRun::Busy))),
                    ));
                    continue;
                }
            };
            match self
                .member_batch(&pair, checkpoint, limits[slot], fetched)
                .await
            {
                Ok(Some((batch, complete))) => applied.push(Applied {
                    slot,
                    pair,
                    leased,
                    batch,
                    complete,
                }),
                Ok(None) => steps.push((slot, MemberStep::Alone)),
                Err(step) => steps.push((slot, MemberStep::Ran(step))),
            }
        }
        if applied.is_empty() {
            backend.release_group(lease).await;
            return (steps, true);
        }
        let together = self.apply_round(lease, applied, &mut steps).await;
        (steps, together)
    }

    /// A member's batch for the round: `Ok(Some)` its reduced events and whether they reach the
    /// horizon, `Ok(None)` when it must run alone (a reduction failed), `Err` when its run ends
    /// here (with the step it ends on).
    async fn member_batch(
        &self,
        pair: &PairKey,
        checkpoint: Checkpoint,
        limit: u32,
        fetched: &mut Option<Fetched>,
    ) -> Result<Option<(Vec<ReducedEvent>, bool)>, Result<BatchStep, ProjectionError>> {
        if checkpoint.retired {
            self.note_retired(pair.index);
            return Err(Ok(BatchStep::Finished(PairRun::Done)));
        }
        if let Some(retry_at) = self.retry_not_due(pair, &checkpoint) {
            return Err(Ok(BatchStep::Finished(PairRun::Stalled { retry_at })));
        }
        let window = self
            .next_events(pair, &checkpoint, limit, fetched, Sharing::Shared)
            .await
            .map_err(Err)?;
        if window.events.is_empty() {
            // Noted while the group holds the lease, so no rebuild of this process comes between.
            self.note_complete(pair, window.horizon);
            return Err(Ok(BatchStep::Finished(PairRun::Done)));
        }
        let parked: HashSet<AggregateRef> = checkpoint.parked.into_iter().collect();
        let projection = self.inner.projections[pair.index].projection.as_ref();
        // `prepare` is the projection's code: its panic ends this member's run only.
        let batch = std::panic::AssertUnwindSafe(reduce_window(projection, window.events, &parked))
            .catch_unwind()
            .await
            .map_err(|_| {
                Err(ProjectionError::Panicked {
                    projection: self.name(pair).to_owned(),
                })
            })?;
        if batch.iter().any(|reduced| reduced.statements.is_err()) {
            return Ok(None);
        }
        Ok(Some((batch, window.complete)))
    }

    /// Applies the members' batches in one unit of work, bounded by the shortest
    /// `transaction_duration` among them, then records each member's batch and runs its
    /// `after_commit` hook. Returns whether the run should keep running rounds together.
    async fn apply_round(
        &self,
        lease: B::GroupLease,
        applied: Vec<Applied>,
        steps: &mut Vec<(usize, MemberStep)>,
    ) -> bool {
        let bound = applied
            .iter()
            .map(|member| {
                self.inner.projections[member.pair.index]
                    .config
                    .transaction_duration
            })
            .min()
            .unwrap_or(Duration::MAX);
        let events: usize = applied.iter().map(|member| member.batch.len()).sum();
        let instance = applied
            .first()
            .map(|member| member.pair.instance.as_str().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "strata.projection_group_batch",
            otel.name = "projection_group_batch",
            otel.status_code = tracing::field::Empty,
            strata.instance_id = instance,
            strata.projection_count = applied.len(),
            strata.event_count = events,
            error.type = tracing::field::Empty,
        );
        let applying: Vec<Applying<'_>> = applied
            .iter()
            .map(|member| Applying::start(&self.inner, member.pair.clone()))
            .collect();
        // What each member needs after the commit, kept before its batch moves to the backend.
        let mut members = Vec::with_capacity(applied.len());
        let mut batches = Vec::with_capacity(applied.len());
        for member in applied {
            members.push(Committed {
                slot: member.slot,
                touched: first_touches(member.batch.iter().map(|reduced| reduced.event.as_ref()))
                    .into_iter()
                    .map(|(_, aggregate)| aggregate)
                    .collect(),
                newest: member.batch.last().map(|reduced| reduced.event.created_at),
                count: member.batch.len(),
                complete: member.complete,
                pair: member.pair,
            });
            batches.push((member.leased, member.batch));
        }
        let started = Instant::now();
        let result = tokio::time::timeout(bound, self.inner.backend.apply_group(lease, batches))
            .instrument(span.clone())
            .await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(Ok(true)) => {
                span.record("otel.status_code", "OK");
                for (member, applying) in members.into_iter().zip(applying) {
                    let slot = member.slot;
                    let step = self
                        .after_member_commit(member, seconds)
                        .instrument(span.clone())
                        .await;
                    drop(applying);
                    steps.push((slot, MemberStep::Ran(step)));
                }
                true
            }
            Ok(Ok(false)) => {
                // A statement failed and the round changed nothing: each member's batch runs
                // alone, where the failing event is found and recorded.
                span.record("otel.status_code", "OK");
                steps.extend(
                    members
                        .into_iter()
                        .map(|member| (member.slot, MemberStep::Alone)),
                );
                true
            }
            Ok(Err(err)) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error_type(&err));
                for Committed { slot, pair, .. } in members {
                    self.inner.projections[pair.index].metrics.record_batch(
                        &pair.instance,
                        BatchEnd::Error,
                        seconds,
                        None,
                        None,
                        false,
                    );
                    steps.push((slot, MemberStep::Ran(Err(err.clone()))));
                }
                false
            }
            Err(_) => {
                // Dropping the lease rolled the round back. Which member was slow is not known:
                // the run goes on member by member, each with its own bound, so only the slow
                // one's batch is halved.
                span.record("otel.status_code", "ERROR");
                span.in_scope(|| {
                    tracing::warn!(
                        bound_ms = bound.as_millis() as u64,
                        "a group's round exceeded its time bound; its members go on one by one"
                    )
                });
                steps.extend(
                    members
                        .into_iter()
                        .map(|member| (member.slot, MemberStep::Alone)),
                );
                false
            }
        }
    }

    /// A member's batch after the round committed: its metrics and span, its `after_commit`
    /// hook (a panic there ends this member's run only), and the step its run takes next.
    async fn after_member_commit(
        &self,
        member: Committed,
        seconds: f64,
    ) -> Result<BatchStep, ProjectionError> {
        let Committed {
            pair,
            touched,
            newest,
            count,
            complete,
            ..
        } = member;
        let registered = &self.inner.projections[pair.index];
        let outcome = BatchOutcome {
            processed: count,
            ..BatchOutcome::default()
        };
        registered.metrics.record_batch(
            &pair.instance,
            BatchEnd::Applied,
            seconds,
            Some(&outcome),
            newest,
            complete,
        );
        let span = batch_span(self.name(&pair), None, &pair.instance, count);
        span.record("otel.status_code", "OK");
        span.record("strata.processed", count);
        let hook = std::panic::AssertUnwindSafe(registered.projection.after_commit(&touched))
            .catch_unwind()
            .instrument(span)
            .await;
        if let Err(panic) = hook {
            tracing::warn!(
                projection = %self.name(&pair),
                panic = %panic_message(&*panic),
                "an after_commit hook panicked"
            );
            return Err(ProjectionError::Panicked {
                projection: self.name(&pair).to_owned(),
            });
        }
        Ok(if complete {
            BatchStep::Finished(PairRun::Done)
        } else {
            BatchStep::More
        })
    }
}
