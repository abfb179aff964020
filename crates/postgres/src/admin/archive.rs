//! Archiving: moving closed aggregates' events out of the hot table into
//! `eventstore.archived_events` and back, in resumable batches recorded in a manifest
//! (`eventstore.archive_runs`), verifying the archive against it, and reading through it.
//!
//! An aggregate moves whole, with every column kept (positions, sequences, payload text), so a
//! restore gives back exactly what was archived. A push to an archived aggregate continues its
//! sequence (`eventstore.current_sequence` asks the archive when the hot table has none of the
//! aggregate's events); ordinary reads see only the hot table, and [`query_including_archive`]
//! reads both (docs/operations.md, "Archiving"). Run these as the migrator.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{AggregateId, AggregateType, Event, EventType, InstanceId};
use strata_query::Query;

use crate::error::{from_sqlx, unexpected_answer};

/// Which aggregates an archive run moves: those of one instance whose latest event is older than
/// the horizon, optionally only of some types, optionally only those whose latest event closes
/// them (e.g. `user.removed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSelection {
    /// The instance.
    pub instance: InstanceId,
    /// Only aggregates of these types; every type when empty.
    pub aggregate_types: Vec<AggregateType>,
    /// Only aggregates whose latest event has one of these types; any when empty.
    pub closing_event_types: Vec<EventType>,
    /// Only aggregates whose latest event was created before this instant.
    pub horizon: DateTime<Utc>,
}

/// What an archive run of a selection would move, as of now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchivePlan {
    /// Aggregates that would move.
    pub aggregates: u64,
    /// Their events.
    pub events: u64,
    /// The events' size in the table (`pg_column_size` of the rows), without indexes.
    pub bytes: u64,
    /// Projections reading these aggregates that have not processed all of their events yet:
    /// while there are any, a run refuses ([`ArchiveError::ProjectionsBehind`]).
    pub projections_behind: Vec<String>,
}

/// Which archived aggregates a restore moves back: one instance's, optionally only some types,
/// or one aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSelection {
    /// The instance.
    pub instance: InstanceId,
    /// Only aggregates of these types; every type when empty.
    pub aggregate_types: Vec<AggregateType>,
    /// Only this aggregate (needs exactly one aggregate type).
    pub aggregate_id: Option<AggregateId>,
}

/// An archive or restore run, as recorded in `eventstore.archive_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveRun {
    /// The instance.
    pub instance: InstanceId,
    /// Its id in the manifest.
    pub id: i64,
    /// Whether an unfinished run with the same selection was found and continues.
    pub resumed: bool,
    /// The archive run's horizon (fixed when the run started); `None` for a restore.
    pub horizon: Option<DateTime<Utc>>,
    /// Aggregates per batch.
    pub batch_size: u32,
    /// Aggregates moved so far, by every batch of the run.
    pub aggregates: u64,
    /// Events moved so far.
    pub events: u64,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Aggregates moved by this batch.
    pub aggregates: u64,
    /// Events moved by this batch.
    pub events: u64,
    /// Whether the run has nothing more to move (it is recorded as finished).
    pub done: bool,
}

/// The archive of one instance checked against its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveVerification {
    /// The instance.
    pub instance_id: String,
    /// Events the manifest says are archived (archived minus restored minus hard deleted).
    pub manifest_events: i64,
    /// Events in the archive.
    pub archived_events: i64,
    /// The manifest's checksum (sum of `eventstore.event_digest`, signed like the counts).
    pub manifest_checksum: Decimal,
    /// The same checksum, recomputed from the archive.
    pub archived_checksum: Decimal,
    /// Events present both hot and archived (same primary key): never expected.
    pub in_both: i64,
    /// Aggregates with events both hot and archived: pushed to after they were archived (their
    /// sequence continued). Not an error, but their history is split: restore them to read it
    /// in one place.
    pub split_aggregates: i64,
    /// Runs that started and have not finished: `strata archive run` (or `restore`) again
    /// finishes them.
    pub unfinished_runs: i64,
}

impl ArchiveVerification {
    /// Whether the archive matches its manifest and shares no event with the hot table.
    pub fn is_consistent(&self) -> bool {
        self.manifest_events == self.archived_events
            && self.manifest_checksum == self.archived_checksum
            && self.in_both == 0
    }
}

/// Why an archive operation did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Projections reading the aggregates have not processed all their events yet. They read
    /// only the hot table, so archived events would never reach them; let them catch up first.
    #[error(
        "projection(s) {} have not processed every event of the aggregates to archive; let them \
         catch up (strata projections status) and run again",
        .projections.join(", ")
    )]
    ProjectionsBehind {
        /// The projections, by name.
        projections: Vec<String>,
    },
    /// The instance has no events, hot or archived.
    #[error("instance {instance} has no events, hot or archived")]
    UnknownInstance {
        /// The instance.
        instance: String,
    },
    /// The request itself is wrong (a batch size of 0, an aggregate id without one type).
    #[error("invalid archive request: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// The database failed or refused (for instance: the role may not archive).
    #[error(transparent)]
    Store(#[from] strata_store::Error),
}

fn strings<T: AsRef<str>>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .map(|value| value.as_ref().to_owned())
        .collect()
}

/// Refuses an instance with no events at all, hot or archived: a typo should not look like an
/// empty plan.
async fn known_instance(pool: &PgPool, instance: &InstanceId) -> Result<(), ArchiveError> {
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM eventstore.events WHERE instance_id = $1) \
         OR EXISTS (SELECT 1 FROM eventstore.archived_events WHERE instance_id = $1)",
    )
    .bind(instance.as_str())
    .fetch_one(pool)
    .await
    .map_err(|err| from_sqlx("looking the instance up", err))?;
    match known {
        true => Ok(()),
        false => Err(ArchiveError::UnknownInstance {
            instance: instance.to_string(),
        }),
    }
}

/// What archiving `selection` would move now, and which projections would stop it.
pub async fn plan_archive(
    pool: &PgPool,
    selection: &ArchiveSelection,
) -> Result<ArchivePlan, ArchiveError> {
    known_instance(pool, &selection.instance).await?;
    let failed = |err| from_sqlx("planning an archive run", err);
    /// Aggregates, events, bytes, aggregate types and the last (position, in_tx_order).
    type PlanRow = (
        i64,
        Option<Decimal>,
        Option<Decimal>,
        Option<Vec<String>>,
        Option<Decimal>,
        Option<i32>,
    );
    let (aggregates, events, bytes, types, last_position, last_in_tx_order): PlanRow =
        sqlx::query_as(
            "SELECT count(*), sum(c.events), sum(c.bytes), array_agg(DISTINCT c.aggregate_type), \
         (array_agg(c.last_position ORDER BY c.last_position DESC, c.last_in_tx_order DESC))[1], \
         (array_agg(c.last_in_tx_order ORDER BY c.last_position DESC, c.last_in_tx_order DESC))[1] \
         FROM eventstore.archive_candidates($1, $2, $3, $4, NULL, NULL, NULL) c",
        )
        .bind(selection.instance.as_str())
        .bind(strings(&selection.aggregate_types))
        .bind(strings(&selection.closing_event_types))
        .bind(selection.horizon)
        .fetch_one(pool)
        .await
        .map_err(failed)?;
    let projections_behind: Vec<String> = match (types, last_position) {
        (Some(types), Some(position)) => sqlx::query_scalar(
            "SELECT p.projection_name FROM projections.reading($1, $2) p \
             WHERE p.position IS NULL OR (p.position, p.in_tx_order) < ($3, $4) ORDER BY 1",
        )
        .bind(selection.instance.as_str())
        .bind(types)
        .bind(position)
        .bind(last_in_tx_order)
        .fetch_all(pool)
        .await
        .map_err(failed)?,
        _ => Vec::new(),
    };
    let count = |value: Option<Decimal>| {
        value
            .and_then(|value| u64::try_from(value).ok())
            .unwrap_or(0)
    };
    Ok(ArchivePlan {
        aggregates: u64::try_from(aggregates).unwrap_or(0),
        events: count(events),
        bytes: count(bytes),
        projections_behind,
    })
}

/// Starts an archive run of `selection` in batches of `batch_size` aggregates, or resumes the
/// unfinished one with the same instance, aggregate types and closing event types (which keeps
/// the horizon it started with). `actor` (who asks) is recorded in the manifest. Then call
/// [`archive_batch`] until it is done.
pub async fn start_archive_run(
    pool: &PgPool,
    selection: &ArchiveSelection,
    batch_size: u32,
    actor: &str,
) -> Result<ArchiveRun, ArchiveError> {
    start_run(
        pool,
        RunKind::Archive {
            selection,
            batch_size,
        },
        actor,
    )
    .await
}

/// Starts a restore run of `selection`, or resumes the unfinished one with the same selection;
/// then call [`restore_batch`] until it is done.
pub async fn start_restore_run(
    pool: &PgPool,
    selection: &RestoreSelection,
    batch_size: u32,
    actor: &str,
) -> Result<ArchiveRun, ArchiveError> {
    if selection.aggregate_id.is_some() && selection.aggregate_types.len() != 1 {
        return Err(ArchiveError::InvalidInput {
            reason: "restoring one aggregate id needs exactly one aggregate type".into(),
        });
    }
    start_run(
        pool,
        RunKind::Restore {
            selection,
            batch_size,
        },
        actor,
    )
    .await
}

enum RunKind<'a> {
    Archive {
        selection: &'a ArchiveSelection,
        batch_size: u32,
    },
    Restore {
        selection: &'a RestoreSelection,
        batch_size: u32,
    },
}

async fn start_run(
    pool: &PgPool,
    kind: RunKind<'_>,
    actor: &str,
) -> Result<ArchiveRun, ArchiveError> {
    let (instance, name, types, aggregate_id, closing, horizon, batch_size) = match &kind {
        RunKind::Archive {
            selection,
            batch_size,
        } => (
            &selection.instance,
            "archive",
            strings(&selection.aggregate_types),
            None,
            strings(&selection.closing_event_types),
            Some(selection.horizon),
            *batch_size,
        ),
        RunKind::Restore {
            selection,
            batch_size,
        } => (
            &selection.instance,
            "restore",
            strings(&selection.aggregate_types),
            selection
                .aggregate_id
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            Vec::new(),
            None,
            *batch_size,
        ),
    };
    if actor.trim().is_empty() {
        return Err(ArchiveError::InvalidInput {
            reason: "the actor (who asks) is empty".into(),
        });
    }
    let batch = i32::try_from(batch_size)
        .ok()
        .filter(|batch| *batch > 0)
        .ok_or_else(|| ArchiveError::InvalidInput {
            reason: format!("batch size {batch_size} is not between 1 and {}", i32::MAX),
        })?;
    known_instance(pool, instance).await?;
    let failed = |err| from_sqlx("starting an archive run", err);
    type RunRow = (i64, Option<DateTime<Utc>>, i32, i64, i64);
    let unfinished: Option<RunRow> = sqlx::query_as(
        "SELECT id, horizon, batch_size, aggregates, events FROM eventstore.archive_runs \
         WHERE instance_id = $1 AND kind = $2 AND aggregate_types = $3 \
           AND aggregate_id IS NOT DISTINCT FROM $4 AND closing_event_types = $5 \
           AND finished_at IS NULL \
         ORDER BY id LIMIT 1",
    )
    .bind(instance.as_str())
    .bind(name)
    .bind(&types)
    .bind(&aggregate_id)
    .bind(&closing)
    .fetch_optional(pool)
    .await
    .map_err(failed)?;
    let (resumed, (id, horizon, batch, aggregates, events)) = match unfinished {
        Some(row) => (true, row),
        None => {
            let row: RunRow = sqlx::query_as(
                "INSERT INTO eventstore.archive_runs (instance_id, kind, aggregate_types, \
                 aggregate_id, closing_event_types, horizon, batch_size, actor) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING id, horizon, batch_size, aggregates, events",
            )
            .bind(instance.as_str())
            .bind(name)
            .bind(&types)
            .bind(&aggregate_id)
            .bind(&closing)
            .bind(horizon)
            .bind(batch)
            .bind(actor)
            .fetch_one(pool)
            .await
            .map_err(failed)?;
            (false, row)
        }
    };
    Ok(ArchiveRun {
        instance: instance.clone(),
        id,
        resumed,
        horizon,
        batch_size: u32::try_from(batch).unwrap_or(batch_size),
        aggregates: u64::try_from(aggregates).unwrap_or(0),
        events: u64::try_from(events).unwrap_or(0),
    })
}

/// Moves the run's next batch of aggregates into the archive, in one transaction with the run's
/// progress: all of the batch or none of it. Refuses, moving nothing, while projections have not
/// processed the batch's events.
pub async fn archive_batch(pool: &PgPool, run: &ArchiveRun) -> Result<BatchOutcome, ArchiveError> {
    let (outcome, done, aggregates, events, projections): (String, bool, i64, i64, Vec<String>) =
        sqlx::query_as(
            "SELECT r_outcome, r_done, r_aggregates, r_events, r_projections \
         FROM eventstore.archive_batch($1, $2)",
        )
        .bind(run.instance.as_str())
        .bind(run.id)
        .fetch_one(pool)
        .await
        .map_err(|err| from_sqlx("archiving a batch", err))?;
    match outcome.as_str() {
        "moved" | "done" => Ok(BatchOutcome {
            aggregates: u64::try_from(aggregates).unwrap_or(0),
            events: u64::try_from(events).unwrap_or(0),
            done,
        }),
        "refused" => Err(ArchiveError::ProjectionsBehind { projections }),
        other => Err(unexpected_answer(
            "eventstore.archive_batch",
            format_args!("outcome {other:?}"),
        )
        .into()),
    }
}

/// Moves the restore run's next batch of aggregates back into the hot table, in one transaction
/// with the run's progress.
pub async fn restore_batch(pool: &PgPool, run: &ArchiveRun) -> Result<BatchOutcome, ArchiveError> {
    let (done, aggregates, events): (bool, i64, i64) = sqlx::query_as(
        "SELECT r_done, r_aggregates, r_events FROM eventstore.restore_batch($1, $2)",
    )
    .bind(run.instance.as_str())
    .bind(run.id)
    .fetch_one(pool)
    .await
    .map_err(|err| from_sqlx("restoring a batch", err))?;
    Ok(BatchOutcome {
        aggregates: u64::try_from(aggregates).unwrap_or(0),
        events: u64::try_from(events).unwrap_or(0),
        done,
    })
}

/// Checks the archive of `instance` (every instance with an archive or a manifest when `None`)
/// against the manifest: counts, checksums, no event both hot and archived. Reads the whole
/// archive of each instance.
pub async fn verify_archive(
    pool: &PgPool,
    instance: Option<&InstanceId>,
) -> Result<Vec<ArchiveVerification>, ArchiveError> {
    type Row = (String, i64, i64, Decimal, Decimal, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "WITH instances AS ( \
             SELECT DISTINCT instance_id FROM eventstore.archive_runs \
             WHERE $1::text IS NULL OR instance_id = $1 \
             UNION SELECT DISTINCT instance_id FROM eventstore.archived_events \
             WHERE $1::text IS NULL OR instance_id = $1) \
         SELECT i.instance_id, \
             (SELECT coalesce(sum(CASE r.kind WHEN 'archive' THEN r.events ELSE -r.events END), 0) \
              FROM eventstore.archive_runs r WHERE r.instance_id = i.instance_id)::bigint, \
             (SELECT count(*) FROM eventstore.archived_events a WHERE a.instance_id = i.instance_id), \
             (SELECT coalesce(sum(CASE r.kind WHEN 'archive' THEN r.checksum ELSE -r.checksum END), 0) \
              FROM eventstore.archive_runs r WHERE r.instance_id = i.instance_id), \
             (SELECT coalesce(sum(eventstore.event_digest(a.instance_id, a.aggregate_type, \
                  a.aggregate_id, a.sequence, a.event_type, a.revision, a.created_at, a.creator, \
                  a.owner, a.payload, a.position, a.in_tx_order, a.metadata)), 0) \
              FROM eventstore.archived_events a WHERE a.instance_id = i.instance_id), \
             (SELECT count(*) FROM eventstore.archived_events a JOIN eventstore.events e \
                  USING (instance_id, aggregate_type, aggregate_id, sequence) \
              WHERE a.instance_id = i.instance_id), \
             (SELECT count(*) FROM (SELECT DISTINCT a.aggregate_type, a.aggregate_id \
                  FROM eventstore.archived_events a WHERE a.instance_id = i.instance_id \
                    AND EXISTS (SELECT 1 FROM eventstore.events e WHERE e.instance_id = a.instance_id \
                        AND e.aggregate_type = a.aggregate_type AND e.aggregate_id = a.aggregate_id)) s), \
             (SELECT count(*) FROM eventstore.archive_runs r \
              WHERE r.instance_id = i.instance_id AND r.finished_at IS NULL) \
         FROM instances i ORDER BY i.instance_id",
    )
    .bind(instance.map(InstanceId::as_str))
    .fetch_all(pool)
    .await
    .map_err(|err| from_sqlx("verifying the archive", err))?;
    Ok(rows
        .into_iter()
        .map(
            |(
                instance_id,
                manifest_events,
                archived_events,
                manifest_checksum,
                archived_checksum,
                in_both,
                split_aggregates,
                unfinished_runs,
            )| ArchiveVerification {
                instance_id,
                manifest_events,
                archived_events,
                manifest_checksum,
                archived_checksum,
                in_both,
                split_aggregates,
                unfinished_runs,
            },
        )
        .collect())
}

/// Every event `query` selects from the hot table and the archive together, in the query's
/// order: what `strata query --include-archive` prints. The store's own reads
/// ([`EventStore::query`](strata_store::EventStore::query)) see only the hot table.
pub async fn query_including_archive(
    pool: &PgPool,
    query: &Query,
) -> strata_store::Result<Vec<Event>> {
    crate::read::fetch_all_with_archive(pool, query).await
}
