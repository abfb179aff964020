//! The runtime: triggers, a bounded worker pool, gap-free batches, failures, rebuilds and status.
//!
//! This file holds the public types and the state a runtime shares; each concern has a file:
//!
//! - `triggers.rs`: what makes a (projection, instance) pair run: pushes of this and other
//!   processes, ticks, and the heartbeat;
//! - `scheduler.rs`: queueing runs, the permits that bound them, graceful shutdown;
//! - `batch.rs`: one run of a pair, batch by batch, below the horizon;
//! - `group.rs`: one run of a group of pairs with the same reads, a round of batches per commit;
//! - `catch_up.rs`: read-your-writes;
//! - `operator.rs`: rebuilds, failed events, and the requests operators queue;
//! - `status.rs`: where every projection stands, and whether it is healthy;
//! - `versions.rs`: versioned projections: setting versions up, switching, rollback, dropping.

mod batch;
mod catch_up;
mod group;
mod operator;
mod scheduler;
mod status;
mod triggers;
mod versions;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_event::{InstanceId, Position};
use strata_store::EventStore;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::backend::{FailurePolicy, ProjectionBackend, Registration, RuntimeHeartbeat};
use crate::consumer::{Consumer, ConsumerPart, split_partition_name};
use crate::error::ProjectionError;
use crate::projection::{Projection, ProjectionConfig, Reads, is_projection_name};
use crate::version::{VersionSetup, VersionState, VersionedProjection};

pub use self::status::{Health, ProjectionStatus};

use self::scheduler::PairState;
use crate::telemetry::PairMetrics;

/// The largest `max_failure_count` a projection or consumer may set: attempts are counted in an
/// SQL `integer`. A consumer that should retry for as long as it takes sets this.
pub const MAX_FAILURE_COUNT: u32 = i32::MAX as u32;

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
    /// Most batches of versions being built (`Projection::version`) running at once in this
    /// process, out of `max_parallel_batches`: a build from the first event runs batch after
    /// batch, and the live versions keep the other permits. Default: 1.
    pub max_building_batches: usize,
    /// Whether the projection and consumer metrics carry an `instance` label
    /// ([`telemetry`](crate::telemetry)). Default: false, one series per projection however many
    /// tenants there are; turn it on only where the instances are few.
    pub instance_labels: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_parallel_batches: 4,
            lease_wait: Duration::from_secs(30),
            trigger_coalesce: Duration::from_millis(2),
            max_building_batches: 1,
            instance_labels: false,
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
    /// Names of the consumers added, whose parts are in `by_name` under their part names.
    consumers: HashSet<String>,
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

    /// Adds a projection. Refuses invalid definitions and duplicate names. A projection that
    /// declares [tables](Projection::tables) is versioned: several of its versions may be
    /// registered (during a rollout, the old one keeps the stable names current while the new one
    /// builds), each under its own pair name, `name@v{version}`.
    pub fn register(self, projection: impl Projection) -> Result<Self, ProjectionError> {
        let name = projection.name().to_owned();
        if !is_projection_name(&name) {
            return Err(invalid_name(name));
        }
        let projection: Arc<dyn Projection> = Arc::new(projection);
        if projection.tables().is_empty() {
            if projection.version() != 1 {
                return Err(ProjectionError::InvalidProjection {
                    name,
                    reason: "it declares a version but no tables: a version needs tables of its \
                             own to be built beside the live one (Projection::tables)"
                        .into(),
                });
            }
            return self.add(projection, &name, None, None);
        }
        let versioned = VersionedProjection::new(projection)?;
        let pair_name = versioned.name().to_owned();
        let setup = versioned.setup.clone();
        self.add(Arc::new(versioned), &pair_name, None, Some(setup))
    }

    /// Adds a [`Consumer`]: its events are handled, at least once and in order per aggregate,
    /// by the same workers, leases and checkpoints as projections (one pair per part and
    /// instance, see [`ConsumerConfig::partitions`](crate::ConsumerConfig::partitions)).
    /// Refuses invalid definitions and names already taken by a projection or consumer.
    pub fn consumer(mut self, consumer: impl Consumer) -> Result<Self, ProjectionError> {
        let name = consumer.name().to_owned();
        if !is_projection_name(&name) {
            return Err(invalid_name(name));
        }
        if self.by_name.contains_key(&name) || self.consumers.contains(&name) {
            return Err(ProjectionError::DuplicateName(name));
        }
        self.consumers.insert(name.clone());
        for part in ConsumerPart::split(consumer)? {
            let part = Arc::new(part);
            let part_name = part.name.clone();
            self = self.add(
                Arc::clone(&part) as Arc<dyn Projection>,
                &part_name,
                Some(part),
                None,
            )?;
        }
        Ok(self)
    }

    fn add(
        mut self,
        projection: Arc<dyn Projection>,
        name: &str,
        part: Option<Arc<ConsumerPart>>,
        version: Option<VersionSetup>,
    ) -> Result<Self, ProjectionError> {
        let name = name.to_owned();
        if self.by_name.contains_key(&name) || self.consumers.contains(&name) && part.is_none() {
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
        // Attempts are counted in an SQL integer: a larger limit could never be reached there.
        if config.max_failure_count > MAX_FAILURE_COUNT {
            return Err(ProjectionError::InvalidProjection {
                name,
                reason: format!("max_failure_count must be at most {MAX_FAILURE_COUNT}"),
            });
        }
        let metrics =
            PairMetrics::new(&name, part.as_ref().map(|part| part.consumer.name()), false);
        self.by_name.insert(name, self.projections.len());
        // A consumer's handler may take its time (it calls out): it runs alone, so no
        // projection waits for it in a shared run. So does a versioned projection: a version
        // being built runs from the first event, and the live ones must not wait for it. And so
        // does a projection with side effects: its batches wait for the disk's flush (a crash
        // must not undo a batch whose hook ran), and a group's round commits as one.
        let runs_alone =
            |part: bool, version: bool, side_effects: bool| part || version || side_effects;
        let same_reads: Vec<usize> = if runs_alone(
            part.is_some(),
            version.is_some(),
            projection.has_side_effects(),
        ) {
            Vec::new()
        } else {
            self.projections
                .iter()
                .enumerate()
                .filter(|(_, other)| {
                    !runs_alone(
                        other.part.is_some(),
                        other.version.is_some(),
                        other.projection.has_side_effects(),
                    ) && other.reads.entries() == reads.entries()
                })
                .map(|(index, _)| index)
                .collect()
        };
        let index = self.projections.len();
        for &other in &same_reads {
            self.projections[other].same_reads.push(index);
        }
        self.projections.push(Registered {
            projection,
            policy: FailurePolicy {
                max_failure_count: config.max_failure_count,
                on_failure: config.on_failure,
            },
            config,
            reads,
            same_reads,
            part,
            version,
            metrics,
        });
        Ok(self)
    }

    /// Starts the triggers (local pushes, other processes' pushes, ticks) on the current Tokio
    /// runtime and runs every projection once.
    pub async fn start(mut self) -> Result<ProjectionRuntime<S, B>, ProjectionError> {
        if self.config.max_parallel_batches == 0 {
            return Err(ProjectionError::InvalidProjection {
                name: "(runtime)".into(),
                reason: "max_parallel_batches must be at least 1".into(),
            });
        }
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        if self.config.max_building_batches == 0 {
            return Err(ProjectionError::InvalidProjection {
                name: "(runtime)".into(),
                reason: "max_building_batches must be at least 1".into(),
            });
        }
        for registered in &mut self.projections {
            registered
                .metrics
                .set_instance_labels(self.config.instance_labels);
        }
        let inner = Arc::new(Inner {
            permits: Semaphore::new(self.config.max_parallel_batches),
            building_permits: Semaphore::new(self.config.max_building_batches),
            version_states: Mutex::default(),
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
        runtime.check_consumer_partitions().await?;
        for index in 0..runtime.inner.projections.len() {
            runtime.register_pair(index).await?;
        }
        runtime.prepare_versions().await?;
        runtime.start_triggers();
        runtime.trigger_everything().await?;
        Ok(runtime)
    }
}

impl Registered {
    /// What the backend records about this pair.
    fn registration(&self) -> Registration<'_> {
        Registration {
            name: self.projection.name(),
            reads: &self.reads,
            has_side_effects: self.projection.has_side_effects(),
            consumer: self
                .part
                .as_ref()
                .map(|part| split_partition_name(&part.name).0),
            stall_after: self.config.stall_after,
        }
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
            consumers: HashSet::new(),
        }
    }

    /// Runs every projection in `instance` now (the runtime does this by itself after pushes).
    pub fn trigger(&self, instance: &InstanceId) {
        self.trigger_instances(std::slice::from_ref(instance));
    }

    /// Refuses to start a consumer whose checkpoints were made with another number of parts:
    /// its aggregates would change parts, and with them the order and exclusivity of their
    /// handling.
    async fn check_consumer_partitions(&self) -> Result<(), ProjectionError> {
        let parts: Vec<&ConsumerPart> = self
            .inner
            .projections
            .iter()
            .filter_map(|registered| registered.part.as_deref())
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        for state in self.inner.backend.states().await? {
            let (consumer, found) = split_partition_name(&state.projection);
            let Some(part) = parts
                .iter()
                .find(|part| split_partition_name(&part.name).0 == consumer)
            else {
                continue;
            };
            let found = found.map_or(1, |(_, count)| count);
            if found != part.partitions {
                return Err(ProjectionError::InvalidProjection {
                    name: consumer.to_owned(),
                    reason: format!(
                        "its checkpoints were made with {found} partition(s), not {}: drain it \
                         and unregister it (`strata consumers unregister`) before changing them",
                        part.partitions
                    ),
                });
            }
        }
        Ok(())
    }

    /// Records the pair of the projection at `index` with the backend, for operator tools.
    async fn register_pair(&self, index: usize) -> Result<(), ProjectionError> {
        let registration = self.inner.projections[index].registration();
        self.inner.backend.register(&registration).await
    }

    /// The name of the pair's projection.
    fn name(&self, pair: &PairKey) -> &str {
        self.inner.projections[pair.index].projection.name()
    }

    /// The projection registered as `projection`: a pair name, or a versioned projection's own
    /// name, which means its live version when this runtime runs it (the version readers see),
    /// else the version it builds.
    fn index(&self, projection: &str) -> Result<usize, ProjectionError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(ProjectionError::Stopped);
        }
        if let Some(&index) = self.inner.by_name.get(projection) {
            return Ok(index);
        }
        let states = lock(&self.inner.version_states);
        self.inner
            .projections
            .iter()
            .enumerate()
            .filter(|(_, registered)| {
                registered
                    .version
                    .as_ref()
                    .is_some_and(|setup| setup.projection == projection)
            })
            .min_by_key(|(index, _)| match states.get(index) {
                Some(VersionState::Live) => 0,
                Some(VersionState::Building) => 1,
                _ => 2,
            })
            .map(|(index, _)| index)
            .ok_or_else(|| ProjectionError::UnknownProjection(projection.to_owned()))
    }
}

struct Registered {
    projection: Arc<dyn Projection>,
    /// Set for a consumer's part: its events are handled by the consumer, not reduced.
    part: Option<Arc<ConsumerPart>>,
    config: ProjectionConfig,
    policy: FailurePolicy,
    reads: Reads,
    /// The other projections that read exactly the same events: a run of this one takes along
    /// those queued for the same instance and fetches each batch of events once for all of them.
    same_reads: Vec<usize>,
    /// Set for a versioned projection: its version and tables.
    version: Option<VersionSetup>,
    /// Its batches' metrics and the lag it last saw per instance.
    metrics: PairMetrics,
}

struct Inner<S, B> {
    store: S,
    backend: B,
    config: RuntimeConfig,
    projections: Vec<Registered>,
    by_name: HashMap<String, usize>,
    permits: Semaphore,
    /// Bounds the runs of versions being built, taken before `permits`.
    building_permits: Semaphore,
    /// Where each versioned projection's version stands, as last read from the backend; only
    /// building and live versions run.
    version_states: Mutex<HashMap<usize, VersionState>>,
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

/// The error for a projection or consumer name outside the grammar.
fn invalid_name(name: String) -> ProjectionError {
    ProjectionError::InvalidProjection {
        name,
        reason: "names are 1 to 100 characters of [a-z0-9_.], starting with a letter or _".into(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
