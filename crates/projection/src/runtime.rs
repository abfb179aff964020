//! The runtime: triggers, a bounded worker pool, gap-free batches, failures, rebuilds and status.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use strata_event::{AggregateRef, Cursor, Event, InstanceId, Position};
use strata_query::Query;
use strata_store::EventStore;
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backend::{
    Checkpoint, CurrentState, FailedEvent, FailedEventKey, OperatorRequest, ProjectionBackend,
    ReducedEvent, RuntimeHeartbeat,
};
use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionConfig, Reads, ReduceError, is_projection_name};
use crate::statement::Statement;

/// How often a runtime looks for requests operators queued (rebuild, retry, skip).
const OPERATOR_REQUEST_POLL: Duration = Duration::from_secs(1);

/// Settings of a whole runtime (one per process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Most batches running at once in this process. Default: 4. Each running batch holds one connection
    /// of the projection pool, and on PostgreSQL listening for other processes' pushes holds one
    /// more, so keep it below that pool's size: then no number of projections and instances can
    /// exhaust the pool.
    pub max_parallel_triggers: usize,
    /// How long [`ProjectionRuntime::rebuild`] and failed-event retries wait for a busy
    /// (projection, instance) to become free. Default: 30 s.
    pub lease_wait: Duration,
    /// How long a triggered (projection, instance) waits before it runs, so the triggers of a
    /// burst of pushes coalesce into one batch instead of one batch each. Default: 2 ms. Under a steady
    /// stream of pushes a pair runs, pauses this long, runs again, so an event waits for up to a
    /// batch plus this pause before its batch starts: at 10 ms, P2's latency was 23 ms p50 and
    /// 82–100 ms p99 on this project's machine, at 2 ms 4–5 ms and 10–14 ms, with writers beside
    /// twenty projections as fast either way. `catch_up` does not wait.
    pub trigger_coalesce: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_parallel_triggers: 4,
            lease_wait: Duration::from_secs(30),
            trigger_coalesce: Duration::from_millis(2),
        }
    }
}

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
    /// Failed events recorded for this projection and instance.
    pub failed_events: u64,
}

struct Registered {
    projection: Arc<dyn Projection>,
    config: ProjectionConfig,
    reads: Reads,
    /// The other projections that read exactly the same events: a run of this one takes along
    /// those queued for the same instance and fetches each batch of events once for all of them.
    same_reads: Vec<usize>,
}

/// Every this-many ticks of a projection, it is scheduled in every instance with events it reads,
/// notes or not. A note is of this process's runs only: a rebuild carried out by another process
/// moves a checkpoint back unseen, and if that process dies mid-replay with no pushes following,
/// this sweep is what finishes the replay (within `TICKS_PER_SWEEP × requeue_every`).
const TICKS_PER_SWEEP: u64 = 6;

struct Inner<S, B> {
    store: S,
    backend: B,
    config: RuntimeConfig,
    projections: Vec<Registered>,
    by_name: HashMap<String, usize>,
    permits: Semaphore,
    /// Pairs queued or running in this process; absent means idle. A trigger for a queued pair is
    /// already covered; one for a running pair makes it run once more when it finishes, so runs of
    /// one pair in one process never overlap (and never find each other's lease taken).
    pairs: Mutex<HashMap<(usize, InstanceId), PairState>>,
    /// Numbers the queued runs, so a task whose queued run another run took along can tell.
    next_ticket: AtomicU64,
    /// Batches of each pair in this process that may have committed but whose
    /// [`Projection::after_commit`] has not finished: `catch_up` waits for them, so a caller that
    /// caught up never reads a cache entry the hook is about to drop.
    applying: Mutex<HashMap<(usize, InstanceId), usize>>,
    /// Instances seen so far, so ticks and lag reports know where to look.
    known_instances: Mutex<HashSet<InstanceId>>,
    /// For each pair, a horizon below which a run of this process found nothing left to apply.
    /// Below a horizon the events are final and checkpoints only move forward (a rebuild forgets
    /// the note), so while the instance's latest event is below it the pair has nothing to do and
    /// ticks pass it over. See [`TICKS_PER_SWEEP`] for what the note cannot see.
    complete_below: Mutex<HashMap<(usize, InstanceId), Position>>,
    /// Signalled after every batch, for catch-up waiters.
    progress: Notify,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Set by [`ProjectionRuntime::shutdown`]: runs stop after their current batch.
    stopping: AtomicBool,
    /// Runs holding a permit (a batch may be in flight), and a signal when one ends, for shutdown.
    active_runs: AtomicUsize,
    run_ended: Notify,
    /// What this runtime's heartbeat says about it.
    heartbeat: RuntimeHeartbeat,
}

/// How often a runtime records that it is alive ([`ProjectionBackend::heartbeat`]).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Registers projections and starts a [`ProjectionRuntime`].
pub struct RuntimeBuilder<S, B> {
    store: S,
    backend: B,
    config: RuntimeConfig,
    projections: Vec<Registered>,
    by_name: HashMap<String, usize>,
}

impl<S, B> std::fmt::Debug for RuntimeBuilder<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("config", &self.config)
            .field("projections", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<S, B> RuntimeBuilder<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Sets the runtime configuration.
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a projection. Refuses invalid definitions and duplicate names.
    pub fn register(mut self, projection: impl Projection) -> Result<Self, ProjectionError> {
        let name = projection.name().to_owned();
        if !is_projection_name(&name) {
            return Err(ProjectionError::InvalidProjection {
                name,
                reason: "names are 1 to 100 characters of [a-z0-9_.], starting with a letter or _"
                    .into(),
            });
        }
        if self.by_name.contains_key(&name) {
            return Err(ProjectionError::DuplicateName(name));
        }
        let reads = projection.reads();
        reads.validate(&name)?;
        let config = projection.config();
        if config.bulk_limit == 0 || config.max_failure_count == 0 {
            return Err(ProjectionError::InvalidProjection {
                name,
                reason: "bulk_limit and max_failure_count must be at least 1".into(),
            });
        }
        self.by_name.insert(name, self.projections.len());
        let same_reads: Vec<usize> = self
            .projections
            .iter()
            .enumerate()
            .filter(|(_, other)| other.reads.entries() == reads.entries())
            .map(|(index, _)| index)
            .collect();
        let index = self.projections.len();
        for &other in &same_reads {
            self.projections[other].same_reads.push(index);
        }
        self.projections.push(Registered {
            projection: Arc::new(projection),
            config,
            reads,
            same_reads,
        });
        Ok(self)
    }

    /// Starts the triggers (local pushes, other processes' pushes, ticks) on the current Tokio
    /// runtime and runs every projection once.
    pub async fn start(self) -> Result<ProjectionRuntime<S, B>, ProjectionError> {
        if self.config.max_parallel_triggers == 0 {
            return Err(ProjectionError::InvalidProjection {
                name: "(runtime)".into(),
                reason: "max_parallel_triggers must be at least 1".into(),
            });
        }
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        let inner = Arc::new(Inner {
            permits: Semaphore::new(self.config.max_parallel_triggers),
            store: self.store,
            backend: self.backend,
            config: self.config,
            projections: self.projections,
            by_name: self.by_name,
            pairs: Mutex::default(),
            next_ticket: AtomicU64::new(0),
            applying: Mutex::default(),
            known_instances: Mutex::default(),
            complete_below: Mutex::default(),
            progress: Notify::new(),
            background: Mutex::default(),
            stopping: AtomicBool::new(false),
            active_runs: AtomicUsize::new(0),
            run_ended: Notify::new(),
            heartbeat: RuntimeHeartbeat::of_this_process(&names),
        });
        let runtime = ProjectionRuntime { inner };
        for registered in &runtime.inner.projections {
            runtime
                .inner
                .backend
                .register(
                    registered.projection.name(),
                    &registered.reads,
                    registered.projection.has_side_effects(),
                )
                .await?;
        }
        runtime.start_triggers();
        runtime.trigger_everything().await?;
        Ok(runtime)
    }
}

/// Runs projections: a handle to the runtime's triggers and its API. Cheap to clone.
pub struct ProjectionRuntime<S, B> {
    inner: Arc<Inner<S, B>>,
}

impl<S, B> Clone for ProjectionRuntime<S, B> {
    fn clone(&self) -> Self {
        ProjectionRuntime {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S, B> std::fmt::Debug for ProjectionRuntime<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRuntime")
            .field("config", &self.inner.config)
            .field(
                "projections",
                &self.inner.by_name.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a pair stands in this process's scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    /// A run is waiting (coalescing triggers, or for a permit) in the task holding `ticket`.
    Queued { ticket: u64 },
    /// A run is in progress; `again` records a trigger that arrived meanwhile.
    Running { again: bool },
}

/// What one batch left to do.
enum BatchStep {
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
struct Fetched {
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
    fn new(after: Option<Cursor>, horizon: Position, events: Vec<Arc<Event>>, limit: u32) -> Self {
        Fetched {
            after,
            horizon,
            complete: events.len() < limit as usize,
            events,
        }
    }

    /// The events after `cursor`, at most `limit`, and whether they reach the horizon; `None`
    /// when this fetch does not cover `cursor` (it started later, or ended before it).
    fn after_cursor(&self, cursor: Option<Cursor>, limit: u32) -> Option<(Vec<Arc<Event>>, bool)> {
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
        Some((rest[..take].to_vec(), self.complete && take == rest.len()))
    }
}

enum PairRun {
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

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Starts building a runtime over `store` (events) and `backend` (read models).
    pub fn builder(store: S, backend: B) -> RuntimeBuilder<S, B> {
        RuntimeBuilder {
            store,
            backend,
            config: RuntimeConfig::default(),
            projections: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    fn start_triggers(&self) {
        let mut background = lock(&self.inner.background);
        if let Some(mut local) = self.inner.store.subscribe_pushes() {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                loop {
                    match local.recv().await {
                        Ok(pushed) => runtime.trigger_instances(&pushed.instance_ids),
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = runtime.trigger_everything().await;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        if let Some(mut remote) = self.inner.backend.remote_pushes() {
            let runtime = self.clone();
            background.push(tokio::spawn(async move {
                while let Some(instances) = remote.recv().await {
                    // An empty list means notices may have been lost: check everything.
                    if instances.is_empty() {
                        let _ = runtime.trigger_everything().await;
                    } else {
                        runtime.trigger_instances(&instances);
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

    async fn serve_operator_requests(&self) {
        let names: Vec<String> = self.inner.by_name.keys().cloned().collect();
        let requests = match self.inner.backend.take_requests(&names).await {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(error = %err, "could not read operator requests");
                return;
            }
        };
        for request in requests {
            let outcome = match &request {
                OperatorRequest::Rebuild {
                    projection,
                    instance_id,
                } => self.rebuild(projection, Some(instance_id)).await,
                OperatorRequest::Retry(key) => match self.find_failed(key).await {
                    Ok(failed) => self.retry_failed(&failed).await,
                    Err(err) => Err(err),
                },
                OperatorRequest::Skip(key) => match self.find_failed(key).await {
                    Ok(failed) => self.skip_failed(&failed).await,
                    Err(err) => Err(err),
                },
            };
            match outcome {
                Ok(()) => tracing::info!(?request, "operator request carried out"),
                Err(err) => tracing::warn!(?request, error = %err, "operator request failed"),
            }
        }
    }

    async fn find_failed(&self, key: &FailedEventKey) -> Result<FailedEvent, ProjectionError> {
        self.inner
            .backend
            .failed_events(Some(&key.projection))
            .await?
            .into_iter()
            .find(|failed| failed.aggregate == key.aggregate && failed.sequence == key.sequence)
            .ok_or_else(|| ProjectionError::UnknownFailedEvent {
                projection: key.projection.clone(),
                aggregate: key.aggregate.to_string(),
                sequence: key.sequence,
            })
    }

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
    async fn start_run(&self) -> Option<ActiveRun<'_>> {
        let permit = self.inner.permits.acquire().await.ok()?;
        self.inner.active_runs.fetch_add(1, Ordering::SeqCst);
        Some(ActiveRun {
            _permit: permit,
            active_runs: &self.inner.active_runs,
            run_ended: &self.inner.run_ended,
        })
    }

    fn trigger_instances(&self, instances: &[InstanceId]) {
        {
            let mut known = lock(&self.inner.known_instances);
            known.extend(instances.iter().cloned());
        }
        for index in 0..self.inner.projections.len() {
            for instance in instances {
                self.schedule(index, instance.clone());
            }
        }
    }

    /// A tick: schedules the projection in every instance where it may have work, passing over
    /// those where a run found it complete below a horizon the instance's latest event is still
    /// under (one query for all instances, where every pair's run would be a few round trips).
    async fn trigger_unfinished(&self, index: usize) -> Result<(), ProjectionError> {
        let heads = self.inner.store.instance_heads().await?;
        let unfinished: Vec<InstanceId> = {
            let complete_below = lock(&self.inner.complete_below);
            heads
                .into_iter()
                .filter(|(instance, head)| {
                    complete_below
                        .get(&(index, instance.clone()))
                        .is_none_or(|horizon| head >= horizon)
                })
                .map(|(instance, _)| instance)
                .collect()
        };
        for instance in unfinished {
            self.schedule(index, instance);
        }
        Ok(())
    }

    /// Schedules the projection in every instance that has events it reads.
    async fn trigger_projection(&self, index: usize) -> Result<(), ProjectionError> {
        let query = self.inner.projections[index]
            .reads
            .query_all_instances()
            .build()?;
        let instances = self.inner.store.instance_ids(&query).await?;
        lock(&self.inner.known_instances).extend(instances.iter().cloned());
        for instance in instances {
            self.schedule(index, instance);
        }
        Ok(())
    }

    async fn trigger_everything(&self) -> Result<(), ProjectionError> {
        for index in 0..self.inner.projections.len() {
            self.trigger_projection(index).await?;
        }
        Ok(())
    }

    /// Queues one run of `(projection, instance)` unless one is already queued; if the pair is
    /// running, makes it run once more when it is done (no trigger is lost, and the two runs never
    /// compete for the lease).
    fn schedule(&self, index: usize, instance: InstanceId) {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let ticket = {
            let mut pairs = lock(&self.inner.pairs);
            match pairs.get_mut(&(index, instance.clone())) {
                Some(PairState::Queued { .. }) => return,
                Some(PairState::Running { again }) => {
                    *again = true;
                    return;
                }
                None => {
                    // Queued under the same lock as the check, so two triggers cannot both
                    // start a task.
                    let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
                    pairs.insert((index, instance.clone()), PairState::Queued { ticket });
                    ticket
                }
            }
        };
        self.start_queued(index, instance, ticket);
    }

    /// Starts the task of a pair already marked queued under `ticket`.
    fn start_queued(&self, index: usize, instance: InstanceId, ticket: u64) {
        let runtime = self.clone();
        tokio::spawn(async move { runtime.run_scheduled(index, instance, ticket).await });
    }

    /// Runs a queued pair, and again for as long as triggers arrive while it runs. Each run first
    /// waits `trigger_coalesce`, so under a steady stream of pushes a pair runs at most once per
    /// run time plus that pause, with everything that arrived meanwhile in one batch. A run takes
    /// along the queued pairs of the same instance whose projections read the same events (see
    /// [`Fetched`]); their own tasks then find their ticket gone and stop.
    async fn run_scheduled(&self, index: usize, instance: InstanceId, ticket: u64) {
        let key = (index, instance);
        loop {
            let coalesce = self.inner.config.trigger_coalesce;
            if !coalesce.is_zero() {
                tokio::time::sleep(coalesce).await;
            }
            let Some(run) = self.start_run().await else {
                let mut pairs = lock(&self.inner.pairs);
                if pairs.get(&key) == Some(&PairState::Queued { ticket }) {
                    pairs.remove(&key);
                }
                return;
            };
            // From here a trigger no longer joins this run (its horizon may already be read) but
            // asks for the next one.
            let members = {
                let mut pairs = lock(&self.inner.pairs);
                if pairs.get(&key) != Some(&PairState::Queued { ticket }) {
                    // Another run took this one along.
                    return;
                }
                pairs.insert(key.clone(), PairState::Running { again: false });
                let mut members = vec![index];
                for &other in &self.inner.projections[index].same_reads {
                    let other_key = (other, key.1.clone());
                    if matches!(pairs.get(&other_key), Some(PairState::Queued { .. })) {
                        pairs.insert(other_key, PairState::Running { again: false });
                        members.push(other);
                    }
                }
                members
            };
            let outcomes = self.run_group(&members, &key.1).await;
            drop(run);
            for (member, outcome) in members.iter().copied().zip(outcomes) {
                match outcome {
                    Ok(PairRun::Stalled { retry_at }) => {
                        let retry = self.clone();
                        let instance = key.1.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(retry_at.into()).await;
                            retry.schedule(member, instance);
                        });
                    }
                    Ok(PairRun::Done | PairRun::Busy | PairRun::Stopped) => {}
                    Err(err) => {
                        let name = self.inner.projections[member].projection.name();
                        tracing::warn!(projection = %name, instance = %key.1, error = %err, "projection batch failed; retrying at the next trigger");
                    }
                }
            }
            let mut again_here = false;
            let mut requeue = Vec::new();
            {
                let mut pairs = lock(&self.inner.pairs);
                for &member in &members {
                    let member_key = (member, key.1.clone());
                    let again =
                        pairs.remove(&member_key) == Some(PairState::Running { again: true });
                    if again && member == index {
                        pairs.insert(member_key, PairState::Queued { ticket });
                        again_here = true;
                    } else if again {
                        // Queued under the same lock, so no trigger in between can start a
                        // second task for it.
                        let ticket = self.inner.next_ticket.fetch_add(1, Ordering::Relaxed);
                        pairs.insert(member_key, PairState::Queued { ticket });
                        requeue.push((member, ticket));
                    }
                }
            }
            // A member triggered while it ran runs again, in a task of its own.
            for (member, ticket) in requeue {
                self.start_queued(member, key.1.clone(), ticket);
            }
            if !again_here {
                return;
            }
        }
    }

    /// The next `limit` events the projection reads in `instance` after `cursor`, below
    /// `horizon`.
    async fn fetch(
        &self,
        index: usize,
        instance: &InstanceId,
        cursor: Option<Cursor>,
        horizon: Position,
        limit: u32,
    ) -> Result<Vec<Arc<Event>>, ProjectionError> {
        let mut query = self.inner.projections[index]
            .reads
            .query(instance)
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
    async fn run_pair(
        &self,
        index: usize,
        instance: &InstanceId,
    ) -> Result<PairRun, ProjectionError> {
        let mut bulk_limit = self.inner.projections[index].config.bulk_limit;
        let mut fetched = None;
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Ok(PairRun::Stopped);
            }
            if let BatchStep::Finished(run) = self
                .run_batch(index, instance, &mut bulk_limit, &mut fetched, false)
                .await?
            {
                return Ok(run);
            }
        }
    }

    /// Runs the pairs of `members` (projections with the same reads) in `instance` until each is
    /// up to date, busy or stalled, a batch of each in turn, so that each batch of events is
    /// fetched once for all of them. One member's failure or panic ends only its own run.
    async fn run_group(
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
        loop {
            let active = outcomes.iter().filter(|outcome| outcome.is_none()).count();
            if active == 0 {
                break;
            }
            // Keeping a copy of each fetch pays only while another member may use it.
            let share = active > 1;
            for (slot, &member) in members.iter().enumerate() {
                if outcomes[slot].is_some() {
                    continue;
                }
                if self.inner.stopping.load(Ordering::SeqCst) {
                    outcomes[slot] = Some(Ok(PairRun::Stopped));
                    continue;
                }
                // A reducer or hook is the caller's code and may panic; the pair must not stay
                // marked running for ever (no trigger would start it again), so a panic ends its
                // run like an error does.
                let step = std::panic::AssertUnwindSafe(self.run_batch(
                    member,
                    instance,
                    &mut limits[slot],
                    &mut fetched,
                    share,
                ))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(ProjectionError::Statement(
                        "the projection panicked while running a batch".into(),
                    ))
                });
                match step {
                    Ok(BatchStep::More) => {}
                    Ok(BatchStep::Finished(run)) => outcomes[slot] = Some(Ok(run)),
                    Err(err) => outcomes[slot] = Some(Err(err)),
                }
            }
        }
        outcomes.into_iter().flatten().collect()
    }

    /// Leases the pair, fetches its next events (or takes them from `fetched`: what another
    /// projection with the same reads fetched in this run, or what the previous batch fetched
    /// ahead) and applies them as one batch.
    ///
    /// `shared`: other projections of the run may use this batch's fetch, so it is kept in
    /// `fetched`. Otherwise a full batch fetches the next one while it applies (on the query pool,
    /// beside the batch's own connection): a lone projection catching up then keeps both the
    /// database's reading and its writing busy instead of taking turns.
    async fn run_batch(
        &self,
        index: usize,
        instance: &InstanceId,
        bulk_limit: &mut u32,
        fetched: &mut Option<Fetched>,
        shared: bool,
    ) -> Result<BatchStep, ProjectionError> {
        let registered = &self.inner.projections[index];
        let name = registered.projection.name();
        let Some(mut lease) = self.inner.backend.try_lease(name, instance).await? else {
            return Ok(BatchStep::Finished(PairRun::Busy));
        };
        let Checkpoint {
            cursor,
            horizon: known_horizon,
            next_failure,
        } = match self.inner.backend.checkpoint(&mut lease).await {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                self.inner.backend.release(lease).await;
                return Err(err);
            }
        };
        // The next event failed before with attempts left: it is tried again only once the
        // projection's retry_failed_after has passed since that failure, whoever triggers the run
        // (a push, a tick, a catch_up, another process), so its attempts are spread as configured.
        if let Some(failure) = next_failure
            && failure.failure_count < registered.config.max_failure_count
        {
            let retry_at = failure.last_failed_at
                + chrono::Duration::from_std(registered.config.retry_failed_after)
                    .unwrap_or(chrono::Duration::MAX);
            let wait = (retry_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                self.inner.backend.release(lease).await;
                return Ok(BatchStep::Finished(PairRun::Stalled {
                    retry_at: Instant::now() + wait,
                }));
            }
        }
        let reused = fetched.as_ref().and_then(|fetched| {
            fetched
                .after_cursor(cursor, *bulk_limit)
                .map(|(events, complete)| (events, complete, fetched.horizon))
        });
        let (events, complete, horizon) = match reused {
            Some(reused) => reused,
            None => {
                // The horizon is read before the events: below it no transaction is still
                // running, so no event can appear behind the cursor once it has moved past
                // (docs/position.md).
                let limit = *bulk_limit;
                let events = async {
                    let horizon = match known_horizon {
                        Some(horizon) => horizon,
                        None => self.inner.store.commit_horizon().await?,
                    };
                    let events = self.fetch(index, instance, cursor, horizon, limit).await?;
                    Ok::<_, ProjectionError>((events, horizon))
                }
                .await;
                let (events, horizon) = match events {
                    Ok(events) => events,
                    Err(err) => {
                        self.inner.backend.release(lease).await;
                        return Err(err);
                    }
                };
                let complete = events.len() < limit as usize;
                if shared {
                    *fetched = Some(Fetched::new(cursor, horizon, events.clone(), limit));
                }
                (events, complete, horizon)
            }
        };
        if events.is_empty() {
            // Noted while the lease is held, so no rebuild of this process can come in between.
            {
                let mut complete_below = lock(&self.inner.complete_below);
                let noted = complete_below
                    .entry((index, instance.clone()))
                    .or_insert(horizon);
                *noted = (*noted).max(horizon);
            }
            self.inner.backend.release(lease).await;
            return Ok(BatchStep::Finished(PairRun::Done));
        }
        let count = events.len();
        let batch: Vec<ReducedEvent> = events
            .into_iter()
            .map(|event| {
                let statements = reduce_guarded(registered.projection.as_ref(), &event)
                    .map_err(|err| err.to_string());
                ReducedEvent { event, statements }
            })
            .collect();
        // Each aggregate once, with the index of its first event: after the commit, those the
        // checkpoint moved past are what the batch touched.
        let first_touches = first_touches(batch.iter().map(|reduced| reduced.event.as_ref()));
        let span = tracing::info_span!("projection_batch", projection = %name, instance = %instance, events = count);
        let started = Instant::now();
        // The next batch, read while this one applies: below the same horizon, after this
        // batch's last event. It serves the next batch if that starts where this one ends.
        let ahead = (!complete && !shared)
            .then(|| batch.last())
            .flatten()
            .map(|last| last.event.cursor());
        let limit = *bulk_limit;
        let read_ahead = async {
            match ahead {
                Some(after) => Some(
                    self.fetch(index, instance, Some(after), horizon, limit)
                        .await
                        .map(|events| (after, events)),
                ),
                None => None,
            }
        };
        let applying = Applying::start(&self.inner, (index, instance.clone()));
        let apply = tokio::time::timeout(
            registered.config.transaction_duration,
            self.inner
                .backend
                .apply(lease, batch, registered.config.max_failure_count),
        )
        .instrument(span.clone());
        let (applied, read_ahead) = tokio::join!(apply, read_ahead);
        if let Some(Ok((after, events))) = read_ahead {
            *fetched = Some(Fetched::new(Some(after), horizon, events, limit));
        }
        let outcome = match applied {
            Ok(outcome) => outcome?,
            Err(_) => {
                // Dropping the lease rolled the batch back; try again with a smaller one.
                *bulk_limit = (*bulk_limit / 2).max(1);
                span.in_scope(|| {
                    tracing::warn!(
                        bulk_limit = *bulk_limit,
                        "batch exceeded its time bound; retrying smaller"
                    )
                });
                return Ok(BatchStep::More);
            }
        };
        span.in_scope(|| {
            tracing::debug!(
                processed = outcome.processed,
                skipped = outcome.skipped,
                stalled = outcome.stalled,
                millis = started.elapsed().as_millis() as u64,
                "batch applied"
            );
        });
        if outcome.skipped > 0 {
            span.in_scope(|| {
                tracing::warn!(
                    skipped = outcome.skipped,
                    "events failed for good and were skipped"
                )
            });
        }
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

    fn index(&self, projection: &str) -> Result<usize, ProjectionError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(ProjectionError::Stopped);
        }
        self.inner
            .by_name
            .get(projection)
            .copied()
            .ok_or_else(|| ProjectionError::UnknownProjection(projection.to_owned()))
    }

    /// Brings `projection` in `instance` to at least `position` (read-your-writes: pass the
    /// position of your push), working on it in this task if needed, then returns `Ok` when every
    /// event the projection reads up to `position` has been applied.
    ///
    /// An event that fails is retried on the projection's schedule
    /// ([`ProjectionConfig::retry_failed_after`] between attempts, whoever triggers them), and
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
            let outcome = self.run_pair(index, instance).await;
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
    async fn failure_up_to(
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
    fn applying(&self, index: usize, instance: &InstanceId) -> bool {
        lock(&self.inner.applying).contains_key(&(index, instance.clone()))
    }

    /// Whether the pair has processed everything it reads at or below `position`, and that is
    /// final (the horizon is past it).
    async fn reached(
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
        if state
            .as_ref()
            .is_some_and(|state| state.position >= position)
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
                    instance_id: instance,
                });
            }
        }
        Ok(statuses)
    }

    /// Resets `projection` (in one instance, or in all) and replays it from the first event, while
    /// every other projection keeps running.
    pub async fn rebuild(
        &self,
        projection: &str,
        instance: Option<&InstanceId>,
    ) -> Result<(), ProjectionError> {
        let index = self.index(projection)?;
        let registered = &self.inner.projections[index];
        let instances: Vec<InstanceId> = match instance {
            Some(instance) => vec![instance.clone()],
            None => {
                let query = registered.reads.query_all_instances().build()?;
                let mut all: HashSet<InstanceId> = self
                    .inner
                    .store
                    .instance_ids(&query)
                    .await?
                    .into_iter()
                    .collect();
                all.extend(
                    self.inner
                        .backend
                        .states()
                        .await?
                        .into_iter()
                        .filter(|state| state.projection == projection)
                        .map(|state| state.instance_id),
                );
                all.into_iter().collect()
            }
        };
        for instance in instances {
            let lease = self.wait_for_lease(projection, &instance).await?;
            self.inner
                .backend
                .reset(lease, registered.projection.reset(&instance))
                .await?;
            // The checkpoint went back: what was complete is not any more.
            lock(&self.inner.complete_below).remove(&(index, instance.clone()));
            self.schedule(index, instance);
        }
        Ok(())
    }

    async fn wait_for_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<B::Lease, ProjectionError> {
        let deadline = Instant::now() + self.inner.config.lease_wait;
        loop {
            if let Some(lease) = self.inner.backend.try_lease(projection, instance).await? {
                return Ok(lease);
            }
            if Instant::now() >= deadline {
                return Err(ProjectionError::Timeout {
                    projection: projection.to_owned(),
                    timeout: self.inner.config.lease_wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Failed events, of one projection or all.
    pub async fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        if let Some(name) = projection {
            self.index(name)?;
        }
        self.inner.backend.failed_events(projection).await
    }

    /// Re-reduces and applies a failed event now (after a fix), and forgets the failure. The
    /// projection has moved on meanwhile, so the event is applied out of order, as in ZITADEL.
    pub async fn retry_failed(&self, failed: &FailedEvent) -> Result<(), ProjectionError> {
        let index = self.index(&failed.projection)?;
        let registered = &self.inner.projections[index];
        let query = Query::builder()
            .instance(failed.aggregate.instance_id.as_str())
            .aggregate_types([failed.aggregate.aggregate_type.as_str()])
            .aggregate_ids([failed.aggregate.aggregate_id.as_str()])
            .sequence_greater_than(failed.sequence.saturating_sub(1))
            .limit(1)
            .build()?;
        let unknown = || ProjectionError::UnknownFailedEvent {
            projection: failed.projection.clone(),
            aggregate: failed.aggregate.to_string(),
            sequence: failed.sequence,
        };
        let event = self
            .inner
            .store
            .query(&query)
            .await?
            .into_iter()
            .find(|event| event.sequence == failed.sequence)
            .ok_or_else(unknown)?;
        let statements = reduce_guarded(registered.projection.as_ref(), &event)
            .map_err(|err| ProjectionError::Statement(err.to_string()))?;
        let lease = self
            .wait_for_lease(&failed.projection, &failed.aggregate.instance_id)
            .await?;
        self.inner
            .backend
            .apply_retried(lease, failed, statements)
            .await?;
        registered
            .projection
            .after_commit(std::slice::from_ref(&event.aggregate))
            .await;
        Ok(())
    }

    /// Gives up on a failed event now: its projection passes it without further attempts.
    pub async fn skip_failed(&self, failed: &FailedEvent) -> Result<(), ProjectionError> {
        let index = self.index(&failed.projection)?;
        let max = self.inner.projections[index].config.max_failure_count;
        self.inner.backend.give_up(failed, max).await?;
        self.schedule(index, failed.aggregate.instance_id.clone());
        Ok(())
    }

    /// Runs every projection in `instance` now (the runtime does this by itself after pushes).
    pub fn trigger(&self, instance: &InstanceId) {
        self.trigger_instances(std::slice::from_ref(instance));
    }
}

/// Each aggregate of `events` once, with the index of its first event, so the runtime can tell
/// [`Projection::after_commit`](crate::Projection::after_commit) which aggregates a partly applied
/// batch touched without cloning every event's reference.
fn first_touches<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<(usize, AggregateRef)> {
    let mut seen = HashSet::new();
    events
        .enumerate()
        .filter(|(_, event)| seen.insert(&event.aggregate))
        .map(|(index, event)| (index, event.aggregate.clone()))
        .collect()
}

/// Marks a batch of a pair as being applied until dropped (also when the batch fails, is
/// cancelled or panics); dropping it wakes `catch_up` waiters, whatever the outcome.
struct Applying<'a> {
    registry: &'a Mutex<HashMap<(usize, InstanceId), usize>>,
    progress: &'a Notify,
    key: (usize, InstanceId),
}

impl<'a> Applying<'a> {
    fn start<S, B>(inner: &'a Inner<S, B>, key: (usize, InstanceId)) -> Self {
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

/// A run holding one of the runtime's permits; dropping it ends the run for
/// [`ProjectionRuntime::shutdown`].
struct ActiveRun<'a> {
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

impl RuntimeHeartbeat {
    /// This process's runtime, running `projections`.
    fn of_this_process(projections: &[String]) -> Self {
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

/// Reduces `event`, turning a panic in the reducer (the caller's code) into a [`ReduceError`], so
/// a reducer that panics on some event takes the failure path (retried, recorded, skipped)
/// instead of stopping its projection at that event for ever.
fn reduce_guarded(
    projection: &dyn Projection,
    event: &Event,
) -> Result<Vec<Statement>, ReduceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| projection.reduce(event)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Err(ReduceError::new(format!("the reducer panicked: {message}")))
        })
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use strata_event::{AggregateId, AggregateType, Creator, EventType, Owner, Payload};

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

    fn cursors(slice: Option<(Vec<Arc<Event>>, bool)>) -> Option<(Vec<(u64, u32)>, bool)> {
        slice.map(|(events, complete)| {
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
        })
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
