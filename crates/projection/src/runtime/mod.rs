//! The runtime: triggers, a bounded worker pool, gap-free batches, failures, rebuilds and status.
//!
//! This file holds the public types and the state a runtime shares; each concern has a file:
//!
//! - `triggers.rs`: what makes a (projection, instance) pair run: pushes of this and other
//!   processes, ticks, and the heartbeat;
//! - `scheduler.rs`: queueing runs, the permits that bound them, graceful shutdown;
//! - `batch.rs`: one run of a pair or a group of pairs, batch by batch, below the horizon;
//! - `catch_up.rs`: read-your-writes;
//! - `operator.rs`: rebuilds, failed events, and the requests operators queue;
//! - `status.rs`: where every projection stands.

mod batch;
mod catch_up;
mod operator;
mod scheduler;
mod status;
mod triggers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_event::{InstanceId, Position};
use strata_store::EventStore;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::backend::{ProjectionBackend, RuntimeHeartbeat};
use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionConfig, Reads, is_projection_name};

pub use self::status::ProjectionStatus;

use self::scheduler::PairState;

/// Settings of a whole runtime (one per process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Most batches running at once in this process. Default: 4. Each running batch holds one connection
    /// of the projection pool, and on PostgreSQL listening for other processes' pushes holds one
    /// more, so keep it below that pool's size: then no number of projections and instances can
    /// exhaust the pool.
    pub max_parallel_batches: usize,
    /// How long [`ProjectionRuntime::rebuild`] and failed-event retries wait for a busy
    /// (projection, instance) to become free. Default: 30 s.
    pub lease_wait: Duration,
    /// How long a triggered (projection, instance) waits before it runs, so the triggers of a
    /// burst of pushes coalesce into one batch instead of one batch each. Default: 2 ms. Under a
    /// steady stream of pushes a pair runs, pauses this long, runs again, so an event waits for up
    /// to a batch plus this pause before its batch starts: longer pauses add their length to every
    /// event's latency without making writers beside the projections faster
    /// (`docs/benchmarks.md`, P2). `catch_up` does not wait.
    pub trigger_coalesce: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_parallel_batches: 4,
            lease_wait: Duration::from_secs(30),
            trigger_coalesce: Duration::from_millis(2),
        }
    }
}

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
        if self.config.max_parallel_batches == 0 {
            return Err(ProjectionError::InvalidProjection {
                name: "(runtime)".into(),
                reason: "max_parallel_batches must be at least 1".into(),
            });
        }
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        let inner = Arc::new(Inner {
            permits: Semaphore::new(self.config.max_parallel_batches),
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

    /// Runs every projection in `instance` now (the runtime does this by itself after pushes).
    pub fn trigger(&self, instance: &InstanceId) {
        self.trigger_instances(std::slice::from_ref(instance));
    }

    /// The name of the pair's projection.
    fn name(&self, pair: &PairKey) -> &str {
        self.inner.projections[pair.index].projection.name()
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
}

struct Registered {
    projection: Arc<dyn Projection>,
    config: ProjectionConfig,
    reads: Reads,
    /// The other projections that read exactly the same events: a run of this one takes along
    /// those queued for the same instance and fetches each batch of events once for all of them.
    same_reads: Vec<usize>,
}

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
    pairs: Mutex<HashMap<PairKey, PairState>>,
    /// Numbers the queued runs, so a task whose queued run another run took along can tell.
    next_ticket: AtomicU64,
    /// Batches of each pair in this process that may have committed but whose
    /// [`Projection::after_commit`] has not finished: `catch_up` waits for them, so a caller that
    /// caught up never reads a cache entry the hook is about to drop.
    applying: Mutex<HashMap<PairKey, usize>>,
    /// Instances seen so far, so ticks and lag reports know where to look.
    known_instances: Mutex<HashSet<InstanceId>>,
    /// For each pair, a horizon below which a run of this process found nothing left to apply.
    /// Below a horizon the events are final and checkpoints only move forward (a rebuild forgets
    /// the note), so while the instance's latest event is below it the pair has nothing to do and
    /// ticks pass it over. See [`TICKS_PER_SWEEP`](triggers::TICKS_PER_SWEEP) for what the note cannot see.
    complete_below: Mutex<HashMap<PairKey, Position>>,
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

/// One projection in one instance: the unit of leases, checkpoints and runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PairKey {
    /// The projection's place in `Inner::projections`.
    index: usize,
    instance: InstanceId,
}

impl PairKey {
    fn new(index: usize, instance: &InstanceId) -> Self {
        PairKey {
            index,
            instance: instance.clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
