//! Where projections keep their read models, checkpoints and failed events: the trait every
//! projection backend implements.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use strata_event::{AggregateRef, Cursor, Event, InstanceId, Position, Sequence};

use crate::error::ProjectionError;
use crate::projection::{OnFailure, Reads};
use crate::statement::Statement;
use crate::version::{ProjectionVersion, VersionSetup};

/// How far a projection got in one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentState {
    /// The projection.
    pub projection: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// The `(position, in_tx_order)` of the last event processed (applied or skipped).
    pub position: Position,
    /// See [`CurrentState::position`].
    pub in_tx_order: u32,
    /// The aggregate of the last event processed.
    pub aggregate: AggregateRef,
    /// The sequence of the last event processed.
    pub sequence: Sequence,
    /// When the state last moved.
    pub updated_at: DateTime<Utc>,
}

impl CurrentState {
    /// The cursor of the last event processed.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.position, self.in_tx_order)
    }
}

/// An event a projection could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEvent {
    /// The projection.
    pub projection: String,
    /// The event's aggregate.
    pub aggregate: AggregateRef,
    /// The event's sequence.
    pub sequence: Sequence,
    /// The event's position.
    pub position: Position,
    /// The event's order in its push.
    pub in_tx_order: u32,
    /// Attempts so far.
    pub failure_count: u32,
    /// The last error.
    pub error: String,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
    /// An operator gave up on it ([`ProjectionRuntime::skip_failed`](crate::ProjectionRuntime::skip_failed)):
    /// the gap it leaves in the read model is accepted, so
    /// [`catch_up`](crate::ProjectionRuntime::catch_up) no longer reports it.
    pub skipped_by_operator: bool,
    /// Its aggregate is parked ([`OnFailure::Park`](crate::OnFailure::Park)): the aggregate's
    /// later events in this pair wait until it is retried or skipped.
    pub parked: bool,
}

/// Where a leased pair stands, as [`ProjectionBackend::checkpoint`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The cursor of the last event processed; `None` before the first.
    pub cursor: Option<Cursor>,
    /// The commit horizon, when the backend read it in the same round trip (saving the runtime
    /// one); `None` makes the runtime ask the event store.
    pub horizon: Option<Position>,
    /// The failure recorded for the next event, if it failed before and has not been passed:
    /// the runtime waits out [`ProjectionConfig::retry_failed_after`](crate::ProjectionConfig::retry_failed_after)
    /// from it before trying that event again.
    pub next_failure: Option<NextFailure>,
    /// The aggregates parked in this pair ([`FailedEvent::parked`]): the runtime holds their
    /// events back.
    pub parked: Vec<AggregateRef>,
    /// The pair is a version that was retired or dropped ([`VersionState`]): the runtime stops
    /// applying it. Read after the lease, so no batch of a version follows its switch.
    ///
    /// [`VersionState`]: crate::VersionState
    pub retired: bool,
}

/// The failure recorded for the event a pair stopped before (see [`Checkpoint::next_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextFailure {
    /// Attempts so far.
    pub failure_count: u32,
    /// When it last failed (the backend's clock).
    pub last_failed_at: DateTime<Utc>,
}

/// An event with what its reducer made of it.
#[derive(Debug, Clone)]
pub struct ReducedEvent {
    /// The event, shared with the other projections of a group that read it in the same fetch.
    pub event: Arc<Event>,
    /// The statements, or why there are none.
    pub statements: Result<Vec<Statement>, String>,
}

/// Something an operator asked for from outside the process (the CLI), carried out by whichever
/// runtime runs the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperatorRequest {
    /// Rebuild the projection in one instance.
    Rebuild {
        /// The projection.
        projection: String,
        /// The instance.
        instance_id: InstanceId,
    },
    /// Retry a failed event.
    Retry(FailedEventKey),
    /// Give up on a failed event.
    Skip(FailedEventKey),
}

impl OperatorRequest {
    /// The projection the request is for.
    pub fn projection(&self) -> &str {
        match self {
            OperatorRequest::Rebuild { projection, .. } => projection,
            OperatorRequest::Retry(key) | OperatorRequest::Skip(key) => &key.projection,
        }
    }
}

/// Names one failed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEventKey {
    /// The projection.
    pub projection: String,
    /// The event's aggregate.
    pub aggregate: AggregateRef,
    /// The event's sequence.
    pub sequence: Sequence,
}

/// A running runtime, as [`ProjectionBackend::heartbeat`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHeartbeat {
    /// Unique per runtime: host, process id and start time.
    pub runtime_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The projections it runs.
    pub projections: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events the checkpoint moved past (applied or given up on).
    pub processed: usize,
    /// Of those, events recorded as failed for good and skipped.
    pub skipped: usize,
    /// Of those, events whose last attempt failed and parked their aggregate.
    pub parked: usize,
    /// An event failed but has attempts left: the batch stopped before it, to retry it later.
    pub stalled: bool,
}

/// How a pair treats failing events: attempts, then skip or park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Attempts before an event is given up on.
    pub max_failure_count: u32,
    /// What giving up means.
    pub on_failure: OnFailure,
}

/// What [`ProjectionBackend::unpark`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unparked {
    /// Events of the batch applied.
    pub applied: usize,
    /// The sequence of the event that failed and parks the aggregate again; `None` when the
    /// aggregate flows again.
    pub parked_at: Option<Sequence>,
}

/// A pair as the runtime registers it with [`ProjectionBackend::register`].
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The pair's name: a projection's, or a consumer part's
    /// ([`partition_name`](crate::partition_name)).
    pub name: &'a str,
    /// What it reads.
    pub reads: &'a Reads,
    /// Whether applying it causes effects outside its read model.
    pub has_side_effects: bool,
    /// The consumer it is a part of; `None` for a projection.
    pub consumer: Option<&'a str>,
    /// How long it may sit still with events waiting before it counts as stalled
    /// ([`Health`](crate::Health)).
    pub stall_after: std::time::Duration,
}

/// Storage for read models and projection bookkeeping.
///
/// A *lease* is the right to work on one (projection, instance) for one batch; at most one lease
/// per pair exists at a time, across every process sharing the backend. On PostgreSQL it is a
/// transaction holding a transaction-scoped advisory lock, so it vanishes with a crashed process.
///
/// A lease also holds its projection's *switch lock* shared (every version of a projection has
/// the same one; a consumer part's is its own): a [switch](ProjectionBackend::begin_switch) holds
/// it exclusively, so it waits for the batches in flight and no batch overlaps it.
pub trait ProjectionBackend: Send + Sync + 'static {
    /// The right to work on one (projection, instance) for one batch.
    type Lease: Send + 'static;

    /// The right to work on several pairs of one instance for one batch each, in one unit of
    /// work ([`ProjectionBackend::try_lease_group`]).
    type GroupLease: Send + 'static;

    /// A switch in progress: the projection's switch lock held exclusively (no batch of any of
    /// its versions runs), in the transaction that will swap the stable names. Dropping it
    /// abandons the switch.
    type Switch: Send + 'static;

    /// Takes the lease of `(projection, instance)` if nobody holds it; `None` means another worker
    /// does and this one should move on.
    fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Option<Self::Lease>, ProjectionError>> + Send;

    /// The checkpoint of the leased pair, with the failure recorded for its next event.
    fn checkpoint(
        &self,
        lease: &mut Self::Lease,
    ) -> impl Future<Output = Result<Checkpoint, ProjectionError>> + Send;

    /// Applies `batch` in order and moves the checkpoint past what it processed, atomically, then
    /// ends the lease. Each event's statements apply entirely or not at all. A failing event gets
    /// its failure count raised; below `policy.max_failure_count` the batch stops before it, at
    /// the limit it is recorded as failed and passed, and with [`OnFailure::Park`] also marked
    /// parked, and the batch's later events of its aggregate are passed without applying them
    /// (they are owed to the aggregate, see [`ProjectionBackend::unpark`]).
    fn apply(
        &self,
        lease: Self::Lease,
        batch: Vec<ReducedEvent>,
        policy: FailurePolicy,
    ) -> impl Future<Output = Result<BatchOutcome, ProjectionError>> + Send;

    /// Takes, together, the leases of the pairs of `projections` in `instance` that nobody holds:
    /// one unit of work holding several pairs (on PostgreSQL, one transaction), so that a group
    /// of projections reading the same events costs one lease, one checkpoint read and one commit
    /// per round instead of one of each per projection. The flags say, in the order of
    /// `projections`, which pairs it holds; the others are held by another worker.
    fn try_lease_group(
        &self,
        projections: &[&str],
        instance: &InstanceId,
    ) -> impl Future<Output = Result<(Self::GroupLease, Vec<bool>), ProjectionError>> + Send;

    /// The checkpoints of the pairs a group lease holds, as [`ProjectionBackend::checkpoint`]
    /// reads them, in the order of its projections (`None` for a pair it does not hold). They
    /// all carry the same horizon, when the backend reads one.
    fn group_checkpoints(
        &self,
        lease: &mut Self::GroupLease,
    ) -> impl Future<Output = Result<Vec<Option<Checkpoint>>, ProjectionError>> + Send;

    /// Applies one batch for each of several pairs the group lease holds (`batches` pairs each
    /// batch with its projection's index in the lease) and moves their checkpoints past every
    /// event, all atomically, then ends the lease. No batch may hold a failed reduction.
    ///
    /// Returns `false`, having applied nothing and ended the lease, when a statement fails: the
    /// caller then applies the batches one pair at a time with [`ProjectionBackend::apply`],
    /// which finds the failing event and records it. So the common case runs no savepoints.
    fn apply_group(
        &self,
        lease: Self::GroupLease,
        batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send;

    /// Ends a group lease without changing anything.
    fn release_group(&self, lease: Self::GroupLease) -> impl Future<Output = ()> + Send;

    /// Lets the parked aggregate of `parked` flow again, then ends the lease. `batch` holds the
    /// events it is owed, in order: its events from the parked one (from the one after it when
    /// `skip_parked`) up to the checkpoint. They are applied in order until one fails: then the
    /// aggregate stays parked at that event (its failure recorded, its count raised when it is
    /// `parked`'s event, 1 otherwise, replacing `parked`'s record); otherwise `parked`'s record is removed, or, when
    /// `skip_parked`, kept as skipped by an operator and no longer parked. All atomically. Fails
    /// with [`ProjectionError::UnknownFailedEvent`], changing nothing, when `parked`'s record is
    /// no longer parked (another operator got there first).
    fn unpark(
        &self,
        lease: Self::Lease,
        parked: &FailedEvent,
        batch: Vec<ReducedEvent>,
        skip_parked: bool,
    ) -> impl Future<Output = Result<Unparked, ProjectionError>> + Send;

    /// Ends a lease without changing anything.
    fn release(&self, lease: Self::Lease) -> impl Future<Output = ()> + Send;

    /// Removes the leased pair's checkpoint and failed events and runs `statements` (the
    /// projection's reset), atomically, then ends the lease.
    fn reset(
        &self,
        lease: Self::Lease,
        statements: Vec<Statement>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Applies `statements` for a failed event out of band and forgets the failure, atomically,
    /// then ends the lease.
    fn apply_retried(
        &self,
        lease: Self::Lease,
        failed: &FailedEvent,
        statements: Vec<Statement>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Sets a failed event's count to `max_failure_count`, so its projection passes it, and marks
    /// it as skipped by an operator.
    fn skip(
        &self,
        failed: &FailedEvent,
        max_failure_count: u32,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// The checkpoint of one pair, read without a lease.
    fn state(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Option<CurrentState>, ProjectionError>> + Send;

    /// Every checkpoint.
    fn states(&self) -> impl Future<Output = Result<Vec<CurrentState>, ProjectionError>> + Send;

    /// Every failed event, of one projection or all, in `(position, in_tx_order)` order per
    /// projection.
    fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> impl Future<Output = Result<Vec<FailedEvent>, ProjectionError>> + Send;

    /// The failed events of one projection in one instance, in `(position, in_tx_order)` order.
    /// The default filters [`ProjectionBackend::failed_events`]; a backend should ask for just
    /// these.
    fn failed_events_in(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Vec<FailedEvent>, ProjectionError>> + Send {
        async move {
            let mut failed = self.failed_events(Some(projection)).await?;
            failed.retain(|failed| &failed.aggregate.instance_id == instance);
            Ok(failed)
        }
    }

    /// Forgets `projection`: its registration, every checkpoint and failed event, and queued
    /// operator requests. Its read-model tables are the application's to drop. Optional (the
    /// default forgets nothing).
    fn unregister(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = projection;
        async { Ok(()) }
    }

    /// Records that the runtime `runtime` is alive and runs `projections`, so operator tools can
    /// tell whether anyone will carry out their requests. Called every few seconds. Optional.
    fn heartbeat(
        &self,
        runtime: &RuntimeHeartbeat,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = runtime;
        async { Ok(()) }
    }

    /// Removes the heartbeat of a runtime that shut down. Optional.
    fn runtime_stopped(&self, runtime_id: &str) -> impl Future<Output = ()> + Send {
        let _ = runtime_id;
        async {}
    }

    /// Records that this process runs a pair (what it reads, whether it has side effects, the
    /// consumer it belongs to), so operator tools can report lag without the projection's code. Optional.
    fn register(
        &self,
        registration: &Registration<'_>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = registration;
        async { Ok(()) }
    }

    /// Records a version of a versioned projection and creates its tables when it is building or
    /// live, and returns its record. A version met for the first time is `Live` (with its
    /// stable names) when the projection has no other version and never ran unversioned, and
    /// `Building` otherwise (an unversioned predecessor is recorded as version 0, live). A known
    /// version keeps its state: a retired or dropped one is not revived by a process that still
    /// runs its code.
    fn prepare_version(
        &self,
        setup: &VersionSetup,
    ) -> impl Future<Output = Result<ProjectionVersion, ProjectionError>> + Send;

    /// The versions of one projection, or of every versioned projection, by projection and
    /// version.
    fn versions(
        &self,
        projection: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ProjectionVersion>, ProjectionError>> + Send;

    /// Takes `projection`'s switch lock exclusively, waiting for the batches in flight.
    fn begin_switch(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Self::Switch, ProjectionError>> + Send;

    /// The checkpoints of the pair named `pair`, read within the switch.
    fn switch_checkpoints(
        &self,
        switch: &mut Self::Switch,
        pair: &str,
    ) -> impl Future<Output = Result<Vec<CurrentState>, ProjectionError>> + Send;

    /// Makes `version` live and retires the live one, pointing the stable names at `version`'s
    /// tables, atomically, and ends the switch. `version` must be building or retired.
    fn commit_switch(
        &self,
        switch: Self::Switch,
        version: u32,
    ) -> impl Future<Output = Result<ProjectionVersion, ProjectionError>> + Send;

    /// Sets a retired or dropped version building again: runtimes that run its code resume it
    /// from its checkpoints (a dropped one from the first event, its tables created again).
    fn rebuild_version(
        &self,
        projection: &str,
        version: u32,
    ) -> impl Future<Output = Result<ProjectionVersion, ProjectionError>> + Send;

    /// Drops a version that is not live: its tables, checkpoints, failed events and
    /// registration; its record stays, as [`VersionState::Dropped`](crate::VersionState::Dropped).
    fn drop_version(
        &self,
        projection: &str,
        version: u32,
    ) -> impl Future<Output = Result<ProjectionVersion, ProjectionError>> + Send;

    /// Takes (removes and returns) the operator requests queued for these projections. Optional.
    fn take_requests(
        &self,
        projections: &[String],
    ) -> impl Future<Output = Result<Vec<OperatorRequest>, ProjectionError>> + Send {
        let _ = projections;
        async { Ok(Vec::new()) }
    }
}
