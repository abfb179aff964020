//! [`PgProjections`]: read models, checkpoints and failed events in PostgreSQL, with a lease per
//! (projection, instance) that is a transaction holding an advisory lock.
//!
//! This file is the backend; `render.rs` turns statements into SQL, `failures.rs` is the slow
//! path of a batch that failed, `checkpoints.rs` reads and moves checkpoints, `group.rs` leases a
//! group's pairs in one transaction, `rows.rs` decodes the bookkeeping tables.

mod checkpoints;
mod failures;
mod group;
mod render;
pub(crate) mod rows;
mod versions;

pub use self::group::PgGroupLease;
pub use self::versions::PgSwitch;

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::{PgPool, Postgres, Transaction};
use strata_event::{Cursor, InstanceId};
use strata_projection::{
    BatchOutcome, Checkpoint, CurrentState, FailedEvent, FailurePolicy, NextFailure,
    OperatorRequest, ProjectionBackend, ProjectionError, ProjectionVersion, ReducedEvent,
    Registration, RuntimeHeartbeat, Statement, Unparked, VersionSetup, split_versioned_name,
};

use crate::error::{from_sqlx, unexpected_answer};
use crate::pooling::{self, Pooled, Pooler};
use crate::projection::checkpoints::{CheckpointMoves, read_checkpoints};
use crate::projection::failures::{apply_event_by_event, unpark_in_order};
use crate::projection::render::{execute, execute_merged};
use crate::projection::rows::{
    FAILED_COLUMNS, FailedRow, RequestRow, STATE_COLUMNS, StateRow, decode_failed, decode_state,
};

/// Projection storage on PostgreSQL. Give it the store's projection pool
/// (`store.pools().projection()`), so projection work can never take the connections pushes and
/// queries need. Cheap to clone.
///
/// # Commits
///
/// A batch commits without waiting for its WAL record to reach the disk
/// (`synchronous_commit = off` for that transaction only): a batch that waits for its flush
/// holds its pair, and the next batch, for that long, so under write load read models would lag
/// by the disk's flush latency (`docs/benchmarks.md`, P2). Nothing is lost that matters: the read model and its checkpoint are one
/// transaction, so a crash loses both together (at most the last `3 × wal_writer_delay`, 0.6 s
/// by default) and the projection applies those events again, exactly once. Events themselves
/// always commit durably. Two cases ask for durable commits instead: projections that declare
/// [side effects](strata_projection::Projection::has_side_effects), whose
/// `after_commit` hook must not run for a batch a crash could undo, and every projection once
/// [`PgProjections::durable_commits`] is set.
#[derive(Debug, Clone)]
pub struct PgProjections {
    pool: PgPool,
    durable_commits: bool,
    /// Projections registered with side effects: their batches always commit durably.
    durable_projections: Arc<RwLock<HashSet<String>>>,
    /// How the pool reaches the database ([`PgProjections::pooler`]).
    pooler: Pooler,
    /// Whether it is through transaction pooling, once known (`crate::pooling`).
    transaction_pooling: Arc<tokio::sync::OnceCell<bool>>,
}

/// The lease of one (projection, instance): an open transaction holding a transaction-scoped
/// advisory lock. Committing or rolling back ends it; so does a crash, with the session.
#[derive(Debug)]
pub struct PgLease {
    tx: Transaction<'static, Postgres>,
    projection: String,
    instance: InstanceId,
    /// What [`ProjectionBackend::checkpoint`] read (the cursor and the next event's failure),
    /// so the fast path's fallback can tell whether another worker moved on meanwhile.
    read_cursor: Option<Cursor>,
    read_next_failure: Option<NextFailure>,
}

pub(crate) fn store_error(context: &str, err: sqlx::Error) -> ProjectionError {
    ProjectionError::Store(from_sqlx(context, err))
}

pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Store(unexpected_answer(
        "the projection bookkeeping",
        format_args!("an invalid {what}: {err}"),
    ))
}

impl PgProjections {
    /// Projection storage on `pool`. Whether `pool` reaches the database through transaction
    /// pooling is found out at first use ([`Pooler::Detect`]); the pool should then keep no
    /// prepared statements, as a [`PgStore`](crate::PgStore)'s pools do (`docs/pooling.md`).
    pub fn new(pool: PgPool) -> Self {
        PgProjections {
            pool,
            durable_commits: false,
            durable_projections: Arc::default(),
            pooler: Pooler::Detect,
            transaction_pooling: Arc::default(),
        }
    }

    /// Says how the pool reaches the database instead of finding out at first use. By default,
    /// this is [`Pooler::Detect`].
    pub fn pooler(mut self, pooler: Pooler) -> Self {
        self.pooler = pooler;
        self
    }

    /// The pool, running statements outside a lease safely for how it reaches the database. The
    /// leases need nothing of it: each is one transaction, which keeps its server connection.
    async fn db(&self) -> Pooled<'_> {
        let found = self
            .transaction_pooling
            .get_or_try_init(|| async {
                match self.pooler {
                    Pooler::Direct => Ok(false),
                    Pooler::TransactionPooling => Ok(true),
                    _ => pooling::detect(self.pool.connect_options().as_ref())
                        .await
                        .map(|found| found == Pooler::TransactionPooling),
                }
            })
            .await;
        // Not knowing yet (the database may be down), run the statement as transaction pooling
        // needs it, which is correct either way, and find out next time.
        Pooled::new(&self.pool, found.copied().unwrap_or(true))
    }

    /// Every batch waits for its commit to be flushed to disk, as pushes do (see
    /// [Commits](PgProjections#commits) for why that is not the default).
    pub fn durable_commits(mut self) -> Self {
        self.durable_commits = true;
        self
    }

    fn commits_durably(&self, projection: &str) -> bool {
        self.durable_commits
            || self
                .durable_projections
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(projection)
    }
}

impl ProjectionBackend for PgProjections {
    type Lease = PgLease;
    type GroupLease = PgGroupLease;
    type Switch = PgSwitch;

    async fn prepare_version(
        &self,
        setup: &VersionSetup,
    ) -> Result<ProjectionVersion, ProjectionError> {
        versions::prepare(self.db().await, setup).await
    }

    async fn versions(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<ProjectionVersion>, ProjectionError> {
        versions::list(self.db().await, projection).await
    }

    async fn begin_switch(&self, projection: &str) -> Result<PgSwitch, ProjectionError> {
        versions::begin_switch(self.db().await, projection).await
    }

    async fn switch_checkpoints(
        &self,
        switch: &mut PgSwitch,
        pair: &str,
    ) -> Result<Vec<CurrentState>, ProjectionError> {
        versions::switch_checkpoints(switch, pair).await
    }

    async fn commit_switch(
        &self,
        switch: PgSwitch,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        versions::commit_switch(switch, version).await
    }

    async fn rebuild_version(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        versions::rebuild(self.db().await, projection, version).await
    }

    async fn drop_version(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        versions::drop_version(self.db().await, projection, version).await
    }

    async fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<PgLease>, ProjectionError> {
        let mut tx = self
            .db()
            .await
            .begin()
            .await
            .map_err(|err| store_error("starting a projection batch", err))?;
        crate::telemetry::record_usage(&self.pool, "projection");
        // The commit mode is set in the same round trip, for this transaction only. A durable
        // batch keeps the session's own setting (which may ask for more than a local flush, e.g.
        // `remote_apply` with a synchronous standby).
        // The switch lock is taken shared first (the subquery in FROM runs before the select
        // list): a switch of the projection in progress holds it exclusively, and the batch waits
        // for it rather than finding its pair busy and skipping a run.
        let locked: bool = sqlx::query_scalar(if self.commits_durably(projection) {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key($1, $2)) \
             FROM (SELECT pg_advisory_xact_lock_shared(projections.switch_key($3))) AS switch"
        } else {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key($1, $2)) \
                    AND set_config('synchronous_commit', 'off', true) IS NOT NULL \
             FROM (SELECT pg_advisory_xact_lock_shared(projections.switch_key($3))) AS switch"
        })
        .bind(projection)
        .bind(instance.as_str())
        .bind(split_versioned_name(projection).0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| store_error("taking a projection lease", err))?;
        if !locked {
            let _ = tx.rollback().await;
            return Ok(None);
        }
        Ok(Some(PgLease {
            tx,
            projection: projection.to_owned(),
            instance: instance.clone(),
            read_cursor: None,
            read_next_failure: None,
        }))
    }

    async fn checkpoint(&self, lease: &mut PgLease) -> Result<Checkpoint, ProjectionError> {
        let rows =
            read_checkpoints(&mut lease.tx, &lease.instance, &[lease.projection.as_str()]).await?;
        let Some(row) = rows.into_iter().next() else {
            return Err(corrupt("answer to a checkpoint read", "no row"));
        };
        let checkpoint = row.decode(&lease.instance)?;
        lease.read_cursor = checkpoint.cursor;
        lease.read_next_failure = checkpoint.next_failure.clone();
        Ok(checkpoint)
    }

    async fn apply(
        &self,
        mut lease: PgLease,
        batch: Vec<ReducedEvent>,
        policy: FailurePolicy,
    ) -> Result<BatchOutcome, ProjectionError> {
        // Fast path: every statement of the batch (runs of upserts merged), then the checkpoint, in
        // as few round trips as possible and without savepoints. Only when something fails is the
        // batch redone event by event to find and record the culprit. A reducer that failed
        // leaves nothing to try: that batch goes event by event at once, on the same lease.
        if batch.iter().any(|reduced| reduced.statements.is_err()) {
            return apply_event_by_event(lease, batch, policy).await;
        }
        let statements: Vec<&Statement> = batch
            .iter()
            .filter_map(|reduced| reduced.statements.as_ref().ok())
            .flatten()
            .collect();
        if execute_merged(&mut lease.tx, &statements).await.is_ok() {
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                // A batch starting at an event that failed before (with attempts left) has now
                // applied it: its failure record goes with the checkpoint move.
                move_checkpoint(&mut lease, &last.event, Some(&first.event)).await?;
            }
            lease
                .tx
                .commit()
                .await
                .map_err(|err| store_error("committing a projection batch", err))?;
            return Ok(BatchOutcome {
                processed: batch.len(),
                ..BatchOutcome::default()
            });
        }
        // The failed statement aborted the transaction, and with it the lease's lock. Take the
        // lease again; if someone else has it, or has meanwhile moved the checkpoint or recorded
        // another attempt at the next event, this batch is stale and the next run starts afresh
        // (so no attempt skips the retry schedule).
        let PgLease {
            tx,
            projection,
            instance,
            read_cursor,
            read_next_failure,
        } = lease;
        let _ = tx.rollback().await;
        let Some(mut lease) = self.try_lease(&projection, &instance).await? else {
            return Ok(BatchOutcome::default());
        };
        self.checkpoint(&mut lease).await?;
        if lease.read_cursor != read_cursor || lease.read_next_failure != read_next_failure {
            self.release(lease).await;
            return Ok(BatchOutcome::default());
        }
        apply_event_by_event(lease, batch, policy).await
    }

    async fn try_lease_group(
        &self,
        projections: &[&str],
        instance: &InstanceId,
    ) -> Result<(PgGroupLease, Vec<bool>), ProjectionError> {
        self.lease_group(projections, instance).await
    }

    async fn group_checkpoints(
        &self,
        lease: &mut PgGroupLease,
    ) -> Result<Vec<Option<Checkpoint>>, ProjectionError> {
        self.read_group_checkpoints(lease).await
    }

    async fn apply_group(
        &self,
        lease: PgGroupLease,
        batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> Result<bool, ProjectionError> {
        self.apply_group_batches(lease, batches).await
    }

    async fn release_group(&self, lease: PgGroupLease) {
        self.release_group_lease(lease).await;
    }

    async fn unpark(
        &self,
        lease: PgLease,
        parked: &FailedEvent,
        batch: Vec<ReducedEvent>,
        skip_parked: bool,
    ) -> Result<Unparked, ProjectionError> {
        unpark_in_order(lease, parked, batch, skip_parked).await
    }

    async fn release(&self, lease: PgLease) {
        let _ = lease.tx.rollback().await;
    }

    async fn reset(
        &self,
        mut lease: PgLease,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        execute(&mut lease.tx, &statements)
            .await
            .map_err(ProjectionError::Statement)?;
        for table in ["projections.current_states", "projections.failed_events"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE instance_id = $1 AND projection_name = $2"
            ))
            .bind(lease.instance.as_str())
            .bind(&lease.projection)
            .execute(&mut *lease.tx)
            .await
            .map_err(|err| store_error("resetting a projection", err))?;
        }
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a projection reset", err))
    }

    async fn apply_retried(
        &self,
        mut lease: PgLease,
        failed: &FailedEvent,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        execute(&mut lease.tx, &statements)
            .await
            .map_err(ProjectionError::Statement)?;
        sqlx::query(
            "DELETE FROM projections.failed_events WHERE instance_id = $1 AND projection_name = $2 \
             AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
        )
        .bind(failed.aggregate.instance_id.as_str())
        .bind(&failed.projection)
        .bind(failed.aggregate.aggregate_type.as_str())
        .bind(failed.aggregate.aggregate_id.as_str())
        .bind(failed.sequence as i64)
        .execute(&mut *lease.tx)
        .await
        .map_err(|err| store_error("forgetting a failed event", err))?;
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a retried event", err))
    }

    async fn skip(
        &self,
        failed: &FailedEvent,
        max_failure_count: u32,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE projections.failed_events SET failure_count = GREATEST(failure_count, $6), \
             skipped_by_operator = true \
             WHERE instance_id = $1 AND projection_name = $2 AND aggregate_type = $3 \
             AND aggregate_id = $4 AND sequence = $5",
        )
        .bind(failed.aggregate.instance_id.as_str())
        .bind(&failed.projection)
        .bind(failed.aggregate.aggregate_type.as_str())
        .bind(failed.aggregate.aggregate_id.as_str())
        .bind(failed.sequence as i64)
        .bind(i32::try_from(max_failure_count).unwrap_or(i32::MAX))
        .execute(self.db().await)
        .await
        .map(drop)
        .map_err(|err| store_error("skipping a failed event", err))
    }

    async fn state(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<CurrentState>, ProjectionError> {
        let row: Option<StateRow> = sqlx::query_as(&format!(
            "SELECT {STATE_COLUMNS} FROM projections.current_states \
             WHERE instance_id = $1 AND projection_name = $2"
        ))
        .bind(instance.as_str())
        .bind(projection)
        .fetch_optional(self.db().await)
        .await
        .map_err(|err| store_error("reading a projection state", err))?;
        row.map(decode_state).transpose()
    }

    async fn states(&self) -> Result<Vec<CurrentState>, ProjectionError> {
        let rows: Vec<StateRow> = sqlx::query_as(&format!(
            "SELECT {STATE_COLUMNS} FROM projections.current_states"
        ))
        .fetch_all(self.db().await)
        .await
        .map_err(|err| store_error("reading projection states", err))?;
        let mut states = rows
            .into_iter()
            .map(decode_state)
            .collect::<Result<Vec<_>, _>>()?;
        states
            .sort_by(|a, b| (&a.projection, &a.instance_id).cmp(&(&b.projection, &b.instance_id)));
        Ok(states)
    }

    async fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        let rows: Vec<FailedRow> = sqlx::query_as(&format!(
            "SELECT {FAILED_COLUMNS} FROM projections.failed_events \
             WHERE $1::text IS NULL OR projection_name = $1 \
             ORDER BY projection_name, position, in_tx_order"
        ))
        .bind(projection)
        .fetch_all(self.db().await)
        .await
        .map_err(|err| store_error("reading failed events", err))?;
        rows.into_iter().map(decode_failed).collect()
    }

    async fn failed_events_in(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        let rows: Vec<FailedRow> = sqlx::query_as(&format!(
            "SELECT {FAILED_COLUMNS} FROM projections.failed_events \
             WHERE instance_id = $1 AND projection_name = $2 ORDER BY position, in_tx_order"
        ))
        .bind(instance.as_str())
        .bind(projection)
        .fetch_all(self.db().await)
        .await
        .map_err(|err| store_error("reading failed events", err))?;
        rows.into_iter().map(decode_failed).collect()
    }

    async fn unregister(&self, projection: &str) -> Result<(), ProjectionError> {
        crate::admin::unregister_projection(&self.pool, projection)
            .await
            .map(drop)
            .map_err(ProjectionError::Store)
    }

    async fn heartbeat(&self, runtime: &RuntimeHeartbeat) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO projections.runtimes \
             (runtime_id, host, pid, projections, started_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, now()) \
             ON CONFLICT (runtime_id) DO UPDATE SET last_seen_at = now(), \
             projections = EXCLUDED.projections",
        )
        .bind(&runtime.runtime_id)
        .bind(&runtime.host)
        .bind(i32::try_from(runtime.pid).unwrap_or(i32::MAX))
        .bind(&runtime.projections)
        .bind(runtime.started_at)
        .execute(self.db().await)
        .await
        .map(drop)
        .map_err(|err| store_error("recording a runtime heartbeat", err))
    }

    async fn runtime_stopped(&self, runtime_id: &str) {
        let removed = sqlx::query("DELETE FROM projections.runtimes WHERE runtime_id = $1")
            .bind(runtime_id)
            .execute(self.db().await)
            .await;
        if let Err(err) = removed {
            tracing::warn!(error = %err, "could not remove the runtime's heartbeat");
        }
    }

    async fn register(&self, registration: &Registration<'_>) -> Result<(), ProjectionError> {
        if registration.has_side_effects {
            self.durable_projections
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(registration.name.to_owned());
        }
        let reads = serde_json::to_string(registration.reads.entries())
            .map_err(|err| corrupt("reads", err))?;
        sqlx::query(
            "INSERT INTO projections.registry \
             (projection_name, reads, has_side_effects, consumer_name, stall_after_ms, \
              registered_at) \
             VALUES ($1, $2::jsonb, $3, $4, $5, now()) ON CONFLICT (projection_name) DO UPDATE \
             SET reads = EXCLUDED.reads, has_side_effects = EXCLUDED.has_side_effects, \
             consumer_name = EXCLUDED.consumer_name, stall_after_ms = EXCLUDED.stall_after_ms, \
             registered_at = now()",
        )
        .bind(registration.name)
        .bind(reads)
        .bind(registration.has_side_effects)
        .bind(registration.consumer)
        .bind(i64::try_from(registration.stall_after.as_millis()).unwrap_or(i64::MAX))
        .execute(self.db().await)
        .await
        .map(drop)
        .map_err(|err| store_error("registering a projection", err))
    }

    async fn take_requests(
        &self,
        projections: &[String],
    ) -> Result<Vec<OperatorRequest>, ProjectionError> {
        let rows: Vec<RequestRow> = sqlx::query_as(
            "DELETE FROM projections.requests WHERE projection_name = ANY($1) \
             RETURNING instance_id, projection_name, kind, aggregate_type, aggregate_id, sequence",
        )
        .bind(projections)
        .fetch_all(self.db().await)
        .await
        .map_err(|err| store_error("taking operator requests", err))?;
        rows.into_iter().map(RequestRow::decode).collect()
    }
}

/// Moves the checkpoint to `last`, and forgets a failure recorded for `retried` (an event that
/// failed before with attempts left), in one statement.
pub(crate) async fn move_checkpoint(
    lease: &mut PgLease,
    last: &strata_event::Event,
    retried: Option<&strata_event::Event>,
) -> Result<(), ProjectionError> {
    let mut moves = CheckpointMoves::default();
    moves.push(&lease.projection, last, retried);
    moves.run(&mut lease.tx, &lease.instance).await
}
