//! Where projections keep their read models, checkpoints and failed events: the trait every
//! projection backend implements.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use strata_event::{AggregateRef, Event, InstanceId, Position, Sequence};

use crate::error::ProjectionError;
use crate::projection::Reads;
use crate::statement::Statement;

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

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events the checkpoint moved past (applied or given up on).
    pub processed: usize,
    /// Of those, events recorded as failed for good and skipped.
    pub skipped: usize,
    /// An event failed but has attempts left: the batch stopped before it, to retry it later.
    pub stalled: bool,
}

/// Storage for read models and projection bookkeeping.
///
/// A *lease* is the right to work on one (projection, instance) for one batch; at most one lease
/// per pair exists at a time, across every process sharing the backend. On PostgreSQL it is a
/// transaction holding a transaction-scoped advisory lock, so it vanishes with a crashed process.
pub trait ProjectionBackend: Send + Sync + 'static {
    /// The right to work on one (projection, instance) for one batch.
    type Lease: Send + 'static;

    /// Takes the lease of `(projection, instance)` if nobody holds it; `None` means another worker
    /// does and this one should move on.
    fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> impl Future<Output = Result<Option<Self::Lease>, ProjectionError>> + Send;

    /// The checkpoint of the leased pair, `None` before its first event.
    fn checkpoint(
        &self,
        lease: &mut Self::Lease,
    ) -> impl Future<Output = Result<Option<(Position, u32)>, ProjectionError>> + Send;

    /// The commit horizon as seen when [`ProjectionBackend::checkpoint`] read the checkpoint, if
    /// the backend can read both in one go (saving the runtime a round trip); `None` makes the
    /// runtime ask the event store.
    fn lease_horizon(&self, lease: &Self::Lease) -> Option<Position> {
        let _ = lease;
        None
    }

    /// Applies `batch` in order and moves the checkpoint past what it processed, atomically, then
    /// ends the lease. Each event's statements apply entirely or not at all. A failing event gets
    /// its failure count raised; below `max_failure_count` the batch stops before it, at the limit
    /// it is recorded as failed and skipped.
    fn apply(
        &self,
        lease: Self::Lease,
        batch: Vec<ReducedEvent>,
        max_failure_count: u32,
    ) -> impl Future<Output = Result<BatchOutcome, ProjectionError>> + Send;

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

    /// Sets a failed event's count to `max_failure_count`, so its projection passes it.
    fn give_up(
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

    /// Every failed event, of one projection or all.
    fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> impl Future<Output = Result<Vec<FailedEvent>, ProjectionError>> + Send;

    /// Records that this process runs `projection` (what it reads, whether it has side effects),
    /// so operator tools can report lag without the projection's code. Optional.
    fn register(
        &self,
        projection: &str,
        reads: &Reads,
        has_side_effects: bool,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = (projection, reads, has_side_effects);
        async { Ok(()) }
    }

    /// Takes (removes and returns) the operator requests queued for these projections. Optional.
    fn take_requests(
        &self,
        projections: &[String],
    ) -> impl Future<Output = Result<Vec<OperatorRequest>, ProjectionError>> + Send {
        let _ = projections;
        async { Ok(Vec::new()) }
    }

    /// The instances other processes announced pushes for, when the backend can tell.
    fn remote_pushes(&self) -> Option<tokio::sync::mpsc::Receiver<Vec<InstanceId>>> {
        None
    }
}
