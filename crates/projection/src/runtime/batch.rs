//! One run of a pair: batch after batch below the commit horizon until the pair is up to date,
//! busy elsewhere or stalled on a failing event; and the pieces a group's round shares with it
//! (`group.rs`): the fetch kept for the next member, reducing a window, the applying mark.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use strata_event::{AggregateRef, Cursor, Event, Position};
use strata_store::EventStore;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::backend::{BatchOutcome, Checkpoint, ProjectionBackend, ReducedEvent};
use crate::consumer::{ConsumerPart, HandleError, Handled};
use crate::error::ProjectionError;
use crate::projection::{Projection, ReduceError};
use crate::statement::Statement;
use crate::telemetry::{BatchEnd, batch_span, error_type};

use crate::runtime::{Inner, PairKey, ProjectionRuntime, lock};

/// Whether other members of a group run may use a batch's fetch: then it is kept for them, and
/// nothing is read ahead (the next member needs the same events, not the next ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sharing {
    Shared,
    Own,
}

/// What a batch works on: events after the checkpoint, all below `horizon`.
pub(super) struct Window {
    pub(super) events: Vec<Arc<Event>>,
    /// Fewer than the limit came back: these are all the events below the horizon.
    pub(super) complete: bool,
    pub(super) horizon: Position,
}

/// How a run of a pair ended.
pub(super) enum PairRun {
    /// Up to date as of the horizon it read under.
    Done,
    /// Another worker holds the pair.
    Busy,
    /// The next event failed and has attempts left: it is tried again at `retry_at`, the
    /// projection's `retry_failed_after` after its last failure.
    Stalled { retry_at: Instant },
    /// The runtime is shutting down; the run stopped between batches.
    Stopped,
}

/// What one batch left to do.
pub(super) enum BatchStep {
    /// The batch was full (or cut short): there may be more.
    More,
    /// The run is over.
    Finished(PairRun),
}

/// Events fetched in a run and kept for a later batch of the same run: one another projection
/// with the same reads takes from them (a group of projections then costs one read per batch
/// instead of one each), or the same projection's next batch, read ahead while this one applied.
///
/// Reusing them is as safe as fetching: they are every matching event after `after` below a
/// horizon read after the run began, and below a horizon the set of events is final.
pub(super) struct Fetched {
    after: Option<Cursor>,
    /// The horizon the events were read below.
    horizon: Position,
    /// Shared: every member of a group reads the same events, so they are counted, not copied.
    events: Vec<Arc<Event>>,
    /// Fewer than the limit came back: these are all the matching events below the horizon.
    complete: bool,
}

impl Fetched {
    /// What a fetch of at most `limit` events after `after` below `horizon` returned.
    pub(super) fn new(
        after: Option<Cursor>,
        horizon: Position,
        events: Vec<Arc<Event>>,
        limit: u32,
    ) -> Self {
        Fetched {
            after,
            horizon,
            complete: events.len() < limit as usize,
            events,
        }
    }

    /// The window of at most `limit` events after `cursor`; `None` when this fetch does not
    /// cover `cursor` (it started later, or ended before it).
    pub(super) fn after_cursor(&self, cursor: Option<Cursor>, limit: u32) -> Option<Window> {
        let covers_start = match (self.after, cursor) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(after), Some(cursor)) => after <= cursor,
        };
        if !covers_start {
            return None;
        }
        let start = cursor.map_or(0, |cursor| {
            self.events
                .partition_point(|event| event.cursor() <= cursor)
        });
        let rest = &self.events[start..];
        if rest.is_empty() && !self.complete {
            return None;
        }
        let take = rest.len().min(limit as usize);
        Some(Window {
            events: rest[..take].to_vec(),
            complete: self.complete && take == rest.len(),
            horizon: self.horizon,
        })
    }
}

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// The next `limit` events the projection reads in `instance` after `cursor`, below
    /// `horizon`.
    pub(super) async fn fetch(
        &self,
        pair: &PairKey,
        cursor: Option<Cursor>,
        horizon: Position,
        limit: u32,
    ) -> Result<Vec<Arc<Event>>, ProjectionError> {
        let mut query = self.inner.projections[pair.index]
            .reads
            .query(&pair.instance)
            .position_before(horizon)
            .limit(limit);
        if let Some(cursor) = cursor {
            query = query.resume_after(cursor);
        }
        let events = self.inner.store.query(&query.build()?).await?;
        Ok(events.into_iter().map(Arc::new).collect())
    }

    /// Processes batches of one pair until it is up to date, another worker holds it, or an event
    /// stalls it.
    pub(super) async fn run_pair(&self, pair: &PairKey) -> Result<PairRun, ProjectionError> {
        let mut bulk_limit = self.inner.projections[pair.index].config.bulk_limit;
        let mut fetched = None;
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Ok(PairRun::Stopped);
            }
            if let BatchStep::Finished(run) = self
                .run_batch_guarded(pair, &mut bulk_limit, &mut fetched, Sharing::Own)
                .await?
            {
                return Ok(run);
            }
        }
    }

    /// [`Self::run_batch`], with a panic of the projection's own code (a reducer, a hook) turned
    /// into [`ProjectionError::Panicked`]: the pair must not stay marked running for ever (no
    /// trigger would start it again), so a panic ends its run like an error does. What the batch
    /// holds (its lease, its mark as applying) is released as the panic unwinds.
    pub(super) async fn run_batch_guarded(
        &self,
        pair: &PairKey,
        bulk_limit: &mut u32,
        fetched: &mut Option<Fetched>,
        sharing: Sharing,
    ) -> Result<BatchStep, ProjectionError> {
        std::panic::AssertUnwindSafe(self.run_batch(pair, bulk_limit, fetched, sharing))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(ProjectionError::Panicked {
                    projection: self.name(pair).to_owned(),
                })
            })
    }

    /// Leases the pair, takes its next events (from `fetched`: what another projection with the
    /// same reads fetched in this run, or what the previous batch read ahead; or from the store)
    /// and applies them as one batch. The steps are named below.
    async fn run_batch(
        &self,
        pair: &PairKey,
        bulk_limit: &mut u32,
        fetched: &mut Option<Fetched>,
        sharing: Sharing,
    ) -> Result<BatchStep, ProjectionError> {
        let backend = &self.inner.backend;
        let Some(mut lease) = backend.try_lease(self.name(pair), &pair.instance).await? else {
            return Ok(BatchStep::Finished(PairRun::Busy));
        };
        let checkpoint = match backend.checkpoint(&mut lease).await {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                backend.release(lease).await;
                return Err(err);
            }
        };
        if checkpoint.retired {
            // Switched away from (or dropped) by another process since this one last looked.
            self.note_retired(pair.index);
            backend.release(lease).await;
            return Ok(BatchStep::Finished(PairRun::Done));
        }
        if let Some(retry_at) = self.retry_not_due(pair, &checkpoint) {
            backend.release(lease).await;
            return Ok(BatchStep::Finished(PairRun::Stalled { retry_at }));
        }
        let window = self
            .next_events(pair, &checkpoint, *bulk_limit, fetched, sharing)
            .await;
        let window = match window {
            Ok(window) => window,
            Err(err) => {
                backend.release(lease).await;
                return Err(err);
            }
        };
        if window.events.is_empty() {
            // Noted while the lease is held, so no rebuild of this process can come in between.
            self.note_complete(pair, window.horizon);
            backend.release(lease).await;
            return Ok(BatchStep::Finished(PairRun::Done));
        }
        let parked: HashSet<AggregateRef> = checkpoint.parked.into_iter().collect();
        self.apply_window(pair, lease, window, &parked, bulk_limit, fetched, sharing)
            .await
    }

    /// When the next event failed before with attempts left: the instant it may be tried again,
    /// `retry_failed_after` after its recorded failure, if that is still to come. Whoever triggers
    /// the run (a push, a tick, a catch_up, another process) waits for it, so the attempts are
    /// spread as configured.
    pub(super) fn retry_not_due(&self, pair: &PairKey, checkpoint: &Checkpoint) -> Option<Instant> {
        let config = &self.inner.projections[pair.index].config;
        let failure = checkpoint.next_failure.as_ref()?;
        if failure.failure_count >= config.max_failure_count {
            return None;
        }
        let retry_at = failure.last_failed_at
            + chrono::Duration::from_std(config.retry_failed_after)
                .unwrap_or(chrono::Duration::MAX);
        // The failure's time is the backend's clock; the wait is measured on this one.
        let wait = (retry_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        (!wait.is_zero()).then(|| Instant::now() + wait)
    }

    /// The next events after the checkpoint, at most `limit`: from `fetched` when it covers them,
    /// otherwise from the store below a horizon read first (below it no event can still appear, so
    /// the checkpoint may move past what it returns; `docs/position.md`).
    pub(super) async fn next_events(
        &self,
        pair: &PairKey,
        checkpoint: &Checkpoint,
        limit: u32,
        fetched: &mut Option<Fetched>,
        sharing: Sharing,
    ) -> Result<Window, ProjectionError> {
        let reused = fetched
            .as_ref()
            .and_then(|fetched| fetched.after_cursor(checkpoint.cursor, limit));
        if let Some(window) = reused {
            return Ok(window);
        }
        let horizon = match checkpoint.horizon {
            Some(horizon) => horizon,
            None => self.inner.store.commit_horizon().await?,
        };
        let events = self.fetch(pair, checkpoint.cursor, horizon, limit).await?;
        if sharing == Sharing::Shared {
            *fetched = Some(Fetched::new(
                checkpoint.cursor,
                horizon,
                events.clone(),
                limit,
            ));
        }
        Ok(Window {
            complete: events.len() < limit as usize,
            events,
            horizon,
        })
    }

    /// Notes that the pair has nothing left below `horizon` (see `Inner::complete_below`).
    pub(super) fn note_complete(&self, pair: &PairKey, horizon: Position) {
        let mut complete_below = lock(&self.inner.complete_below);
        let noted = complete_below.entry(pair.clone()).or_insert(horizon);
        *noted = (*noted).max(horizon);
    }

    /// Reduces the window's events and applies them with the new checkpoint in the lease's
    /// transaction, bounded by the projection's `transaction_duration`; then runs the
    /// `after_commit` hook for what the batch applied.
    ///
    /// When the window did not reach the horizon and no other projection shares this run, the
    /// next batch is read while this one applies (on the query pool, beside the batch's own
    /// connection): a lone projection catching up keeps the database's reading and its writing busy
    /// instead of taking turns.
    #[allow(clippy::too_many_arguments)] // The batch's inputs, each used once.
    async fn apply_window(
        &self,
        pair: &PairKey,
        lease: B::Lease,
        window: Window,
        parked: &HashSet<AggregateRef>,
        bulk_limit: &mut u32,
        fetched: &mut Option<Fetched>,
        sharing: Sharing,
    ) -> Result<BatchStep, ProjectionError> {
        let registered = &self.inner.projections[pair.index];
        let Window {
            events,
            mut complete,
            horizon,
        } = window;
        let count = events.len();
        let newest = events.last().map(|event| event.created_at);
        let span = batch_span(
            self.name(pair),
            registered.part.as_deref(),
            &pair.instance,
            count,
        );
        let started = Instant::now();
        let record = |end: BatchEnd, outcome: Option<&BatchOutcome>, complete: bool| {
            let seconds = started.elapsed().as_secs_f64();
            registered.metrics.record_batch(
                &pair.instance,
                end,
                seconds,
                outcome,
                newest,
                complete,
            );
            span.record(
                "otel.status_code",
                if end == BatchEnd::Error {
                    "ERROR"
                } else {
                    "OK"
                },
            );
            if let Some(outcome) = outcome {
                span.record("strata.processed", outcome.processed);
            }
        };
        let batch = match &registered.part {
            Some(part) => {
                let handling = tokio::time::timeout(
                    registered.config.transaction_duration,
                    handle_window(part, events, parked),
                )
                .instrument(span.clone());
                let Ok(handled) = handling.await else {
                    self.inner.backend.release(lease).await;
                    *bulk_limit = (*bulk_limit / 2).max(1);
                    record(BatchEnd::TimedOut, None, false);
                    span.in_scope(|| {
                        tracing::warn!(
                            bulk_limit = *bulk_limit,
                            "handling a batch exceeded its time bound; retrying smaller"
                        )
                    });
                    return Ok(BatchStep::More);
                };
                if handled.len() < count {
                    // The consumer stopped early: what follows is delivered in the next batch.
                    complete = false;
                }
                handled
            }
            None => reduce_window(registered.projection.as_ref(), events, parked).await,
        };
        // Each aggregate once, with the index of its first event: after the commit, those the
        // checkpoint moved past are what the batch touched.
        let first_touches = first_touches(batch.iter().map(|reduced| reduced.event.as_ref()));
        // The next batch, read while this one applies: below the same horizon, after this
        // batch's last event. It serves the next batch if that starts where this one ends.
        let ahead = (!complete && sharing == Sharing::Own && registered.part.is_none())
            .then(|| batch.last())
            .flatten()
            .map(|last| last.event.cursor());
        let limit = *bulk_limit;
        let read_ahead = async {
            match ahead {
                Some(after) => Some(
                    self.fetch(pair, Some(after), horizon, limit)
                        .await
                        .map(|events| (after, events)),
                ),
                None => None,
            }
        };
        let applying = Applying::start(&self.inner, pair.clone());
        let apply = tokio::time::timeout(
            registered.config.transaction_duration,
            self.inner.backend.apply(lease, batch, registered.policy),
        )
        .instrument(span.clone());
        let (applied, read_ahead) = tokio::join!(apply, read_ahead);
        if let Some(Ok((after, events))) = read_ahead {
            *fetched = Some(Fetched::new(Some(after), horizon, events, limit));
        }
        let outcome = match applied {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => {
                record(BatchEnd::Error, None, false);
                span.record("error.type", error_type(&err));
                return Err(err);
            }
            Err(_) => {
                // Dropping the lease rolled the batch back; try again with a smaller one.
                *bulk_limit = (*bulk_limit / 2).max(1);
                record(BatchEnd::TimedOut, None, false);
                span.in_scope(|| {
                    tracing::warn!(
                        bulk_limit = *bulk_limit,
                        "batch exceeded its time bound; retrying smaller"
                    )
                });
                return Ok(BatchStep::More);
            }
        };
        let end = if outcome.stalled {
            BatchEnd::Stalled
        } else {
            BatchEnd::Applied
        };
        record(end, Some(&outcome), complete && !outcome.stalled);
        span.in_scope(|| {
            tracing::debug!(
                processed = outcome.processed,
                skipped = outcome.skipped,
                stalled = outcome.stalled,
                millis = started.elapsed().as_millis() as u64,
                "batch applied"
            );
            if outcome.skipped > 0 {
                tracing::warn!(
                    skipped = outcome.skipped,
                    "events failed for good and were skipped"
                );
            }
            if outcome.parked > 0 {
                tracing::warn!(
                    parked = outcome.parked,
                    "events failed for good and parked their aggregates"
                );
            }
        });
        let touched: Vec<AggregateRef> = first_touches
            .into_iter()
            .filter(|(first, _)| *first < outcome.processed)
            .map(|(_, aggregate)| aggregate)
            .collect();
        if !touched.is_empty() {
            registered
                .projection
                .after_commit(&touched)
                .instrument(span.clone())
                .await;
        }
        // Wakes catch_up waiters: the batch and its hook are done.
        drop(applying);
        if outcome.stalled {
            return Ok(BatchStep::Finished(PairRun::Stalled {
                retry_at: Instant::now() + registered.config.retry_failed_after,
            }));
        }
        if complete {
            return Ok(BatchStep::Finished(PairRun::Done));
        }
        Ok(BatchStep::More)
    }
}

/// The window's events reduced, those of parked aggregates passed without reducing (they are
/// owed to their aggregate until it is unparked).
pub(super) async fn reduce_window(
    projection: &dyn Projection,
    events: Vec<Arc<Event>>,
    parked: &HashSet<AggregateRef>,
) -> Vec<ReducedEvent> {
    projection.prepare(&events).await;
    events
        .into_iter()
        .map(|event| {
            let statements = if parked.contains(&event.aggregate) {
                Ok(Vec::new())
            } else {
                reduce_guarded(projection, &event).map_err(|err| err.to_string())
            };
            ReducedEvent { event, statements }
        })
        .collect()
}

/// The window's events handed to a consumer part: those of other parts and of parked aggregates
/// are passed, the rest handled in one call. The batch ends at the first event the consumer did
/// not acknowledge: with its error when it failed, before it when the consumer simply stopped.
pub(super) async fn handle_window(
    part: &ConsumerPart,
    events: Vec<Arc<Event>>,
    parked: &HashSet<AggregateRef>,
) -> Vec<ReducedEvent> {
    // Decided once per event: the hash of its aggregate is not free.
    let mine: Vec<bool> = events
        .iter()
        .map(|event| part.owns(event) && !parked.contains(&event.aggregate))
        .collect();
    let delivered: Vec<Arc<Event>> = events
        .iter()
        .zip(&mine)
        .filter(|(_, mine)| **mine)
        .map(|(event, _)| Arc::clone(event))
        .collect();
    let handled = handle_guarded(part, &delivered).await;
    let acknowledged = handled.acknowledged.min(delivered.len());
    let mut batch = Vec::with_capacity(events.len());
    let mut passed = 0;
    for (event, mine) in events.into_iter().zip(mine) {
        if mine {
            if passed == acknowledged {
                if let Some(failure) = handled.failure {
                    batch.push(ReducedEvent {
                        event,
                        statements: Err(failure.to_string()),
                    });
                }
                break;
            }
            passed += 1;
        }
        batch.push(ReducedEvent {
            event,
            statements: Ok(Vec::new()),
        });
    }
    batch
}

/// Runs the consumer on `events`, a panic of its code turned into a failure of the first event
/// it did not acknowledge (it cannot say which: the first of the batch).
pub(super) async fn handle_guarded(part: &ConsumerPart, events: &[Arc<Event>]) -> Handled {
    if events.is_empty() {
        return Handled::all(0);
    }
    std::panic::AssertUnwindSafe(part.consumer.handle_batch(events))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            Handled::failed_at(
                0,
                HandleError::new(format!("the handler panicked: {}", panic_message(&*panic))),
            )
        })
}

/// The message a panic carried.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Each aggregate of `events` once, with the index of its first event, so the runtime can tell
/// [`Projection::after_commit`](crate::Projection::after_commit) which aggregates a partly applied
/// batch touched without cloning every event's reference.
pub(super) fn first_touches<'a>(
    events: impl Iterator<Item = &'a Event>,
) -> Vec<(usize, AggregateRef)> {
    let mut seen = HashSet::new();
    events
        .enumerate()
        .filter(|(_, event)| seen.insert(&event.aggregate))
        .map(|(index, event)| (index, event.aggregate.clone()))
        .collect()
}

/// Marks a batch of a pair as being applied until dropped (also when the batch fails, is
/// cancelled or panics); dropping it wakes `catch_up` waiters, whatever the outcome.
pub(super) struct Applying<'a> {
    registry: &'a Mutex<HashMap<PairKey, usize>>,
    progress: &'a Notify,
    key: PairKey,
}

impl<'a> Applying<'a> {
    pub(super) fn start<S, B>(inner: &'a Inner<S, B>, key: PairKey) -> Self {
        *lock(&inner.applying).entry(key.clone()).or_insert(0) += 1;
        Applying {
            registry: &inner.applying,
            progress: &inner.progress,
            key,
        }
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        {
            let mut registry = lock(self.registry);
            if let Some(count) = registry.get_mut(&self.key) {
                *count -= 1;
                if *count == 0 {
                    registry.remove(&self.key);
                }
            }
        }
        self.progress.notify_waiters();
    }
}

/// Reduces `event`, turning a panic in the reducer (the caller's code) into a [`ReduceError`], so
/// a reducer that panics on some event takes the failure path (retried, recorded, skipped)
/// instead of stopping its projection at that event for ever.
pub(super) fn reduce_guarded(
    projection: &dyn Projection,
    event: &Event,
) -> Result<Vec<Statement>, ReduceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| projection.reduce(event)))
        .unwrap_or_else(|panic| {
            Err(ReduceError::new(format!(
                "the reducer panicked: {}",
                panic_message(&*panic)
            )))
        })
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use strata_event::{
        AggregateId, AggregateType, Creator, EventType, InstanceId, Owner, Payload,
    };

    use super::*;

    fn event(position: u64, in_tx_order: u32) -> Event {
        Event {
            aggregate: AggregateRef {
                instance_id: InstanceId::from_stored("tenant".into()),
                aggregate_type: AggregateType::from_stored("user".into()),
                aggregate_id: AggregateId::from_stored(format!("u{position}")),
            },
            event_type: EventType::from_stored("user.added".into()),
            sequence: 1,
            revision: 1,
            created_at: Utc::now(),
            creator: Creator::from_stored("c".into()),
            owner: Owner::from_stored("o".into()),
            position: Position::from(position),
            in_tx_order,
            raw_payload: Payload::default(),
            metadata: Default::default(),
        }
    }

    fn fetched(after: Option<(u64, u32)>, events: &[(u64, u32)], complete: bool) -> Fetched {
        Fetched {
            after: after.map(|(position, order)| Cursor::new(Position::from(position), order)),
            horizon: Position::from(100),
            events: events
                .iter()
                .map(|&(position, order)| Arc::new(event(position, order)))
                .collect(),
            complete,
        }
    }

    fn cursors(window: Option<Window>) -> Option<(Vec<(u64, u32)>, bool)> {
        window.map(
            |Window {
                 events, complete, ..
             }| {
                (
                    events
                        .iter()
                        .map(|event| {
                            let position: Decimal = event.position.into();
                            (position.try_into().unwrap_or(0), event.in_tx_order)
                        })
                        .collect(),
                    complete,
                )
            },
        )
    }

    fn at(position: u64, order: u32) -> Option<Cursor> {
        Some(Cursor::new(Position::from(position), order))
    }

    #[test]
    fn a_fetch_serves_cursors_it_covers_and_only_those() {
        let full = fetched(Some((10, 0)), &[(11, 0), (11, 1), (12, 0)], true);
        // From its start, from inside (between two events of one position) and from its end.
        assert_eq!(
            cursors(full.after_cursor(at(10, 0), 100)),
            Some((vec![(11, 0), (11, 1), (12, 0)], true))
        );
        assert_eq!(
            cursors(full.after_cursor(at(11, 0), 100)),
            Some((vec![(11, 1), (12, 0)], true))
        );
        assert_eq!(
            cursors(full.after_cursor(at(12, 0), 100)),
            Some((vec![], true))
        );
        // A cursor before the fetch's start, or no cursor at all, needs events it never read.
        assert_eq!(cursors(full.after_cursor(at(9, 0), 100)), None);
        assert_eq!(cursors(full.after_cursor(None, 100)), None);
        // A smaller limit cuts the slice, which then no longer reaches the horizon.
        assert_eq!(
            cursors(full.after_cursor(at(10, 0), 2)),
            Some((vec![(11, 0), (11, 1)], false))
        );

        // A fetch that hit its limit says nothing past its last event.
        let cut = fetched(None, &[(1, 0), (2, 0)], false);
        assert_eq!(
            cursors(cut.after_cursor(None, 100)),
            Some((vec![(1, 0), (2, 0)], false))
        );
        assert_eq!(
            cursors(cut.after_cursor(at(1, 0), 100)),
            Some((vec![(2, 0)], false))
        );
        assert_eq!(cursors(cut.after_cursor(at(2, 0), 100)), None);
    }
}
