//! The SQL of `strata mirror`: copying events, unique constraints and personal-data keys into
//! another store, idempotently.
//!
//! This module serves the `strata` CLI; a service does not need it, and its items follow the CLI
//! and may change between minor versions.
//!
//! The source is read through [`strata_store::EventStore`] below its commit horizon; this module
//! holds only what the trait cannot say: writing copied events with their original sequence and
//! timestamps, the progress row, unique constraints, per-instance counts and the checkpoints of
//! projections with side effects.
//!
//! Idempotence does not rest on the progress row alone: every copied event is inserted with
//! `ON CONFLICT (instance_id, aggregate_type, aggregate_id, sequence) DO NOTHING`, so a batch copied
//! twice (a lost progress row, two mirrors at once) still stores each event once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use strata_event::{Cursor, Event, InstanceId, Position};
use strata_store::{Error, Result};
use tracing::Instrument;

use crate::announce::announce_in_transaction;
use crate::error::{from_sqlx, unexpected_answer};
use crate::push::metadata_json;
use crate::store::PgStore;

/// Where a mirror (one source, one instance filter) stands in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorProgress {
    /// The source `(position, in_tx_order)` of the last event copied.
    pub cursor: Cursor,
    /// Events inserted so far by every run of this mirror (already present ones not counted).
    pub events_copied: u64,
    /// When a batch last committed.
    pub updated_at: DateTime<Utc>,
}

/// Names one mirror in the destination's `eventstore.mirror_progress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorKey {
    /// The source, without credentials (e.g. `db.example:5432/app`).
    pub source: String,
    /// The mirrored instances, sorted and comma-separated, or `*` for every instance.
    pub instances: String,
}

/// A unique constraint as stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UniqueConstraintRow {
    /// The instance.
    pub instance_id: String,
    /// The constraint's type.
    pub unique_type: String,
    /// The taken value.
    pub unique_field: String,
}

/// The progress of `key` in the destination, `None` before its first batch.
pub async fn progress(destination: &PgStore, key: &MirrorKey) -> Result<Option<MirrorProgress>> {
    /// The row of `eventstore.mirror_progress` for one mirror.
    #[derive(sqlx::FromRow)]
    struct ProgressRow {
        position: Decimal,
        in_tx_order: i32,
        events_copied: i64,
        updated_at: DateTime<Utc>,
    }
    let row: Option<ProgressRow> = sqlx::query_as(
        "SELECT position, in_tx_order, events_copied, updated_at FROM eventstore.mirror_progress \
         WHERE source = $1 AND instances = $2",
    )
    .bind(&key.source)
    .bind(&key.instances)
    .fetch_optional(destination.pools().query())
    .await
    .map_err(|err| from_sqlx("reading the mirror's progress", err))?;
    row.map(|row| {
        Ok(MirrorProgress {
            cursor: Cursor::new(
                Position::new(row.position).map_err(|err| corrupt("mirror position", err))?,
                u32::try_from(row.in_tx_order).map_err(|err| corrupt("mirror in_tx_order", err))?,
            ),
            events_copied: u64::try_from(row.events_copied).unwrap_or_default(),
            updated_at: row.updated_at,
        })
    })
    .transpose()
}

/// Copies `events` (a batch read from the source, in source order) into the destination in one
/// transaction, and in that same transaction moves `key`'s progress to the last event's source
/// cursor and the checkpoints of `side_effect_projections` to the head of each instance in the
/// batch. Returns how many events were inserted (events already present are skipped).
///
/// The destination assigns the positions: one transaction id for the batch, with `in_tx_order`
/// following the source order. Sequence, revision, created_at, creator, owner, payload and metadata
/// are kept.
pub async fn copy_batch(
    destination: &PgStore,
    key: &MirrorKey,
    events: &[Event],
    side_effect_projections: &[String],
) -> Result<u64> {
    let span = tracing::info_span!(
        "strata.mirror_batch",
        otel.name = "mirror_batch",
        otel.kind = "client",
        db.system = "postgresql",
        db.operation.name = "mirror",
        strata.event_count = events.len(),
    );
    copy_events(destination, key, events, side_effect_projections)
        .instrument(span)
        .await
}

async fn copy_events(
    destination: &PgStore,
    key: &MirrorKey,
    events: &[Event],
    side_effect_projections: &[String],
) -> Result<u64> {
    let Some(last) = events.last() else {
        return Ok(0);
    };
    let column = |f: fn(&Event) -> &str| events.iter().map(f).collect::<Vec<&str>>();
    let mut tx = destination
        .pools()
        .push()
        .begin()
        .await
        .map_err(|err| from_sqlx("starting a mirror batch", err))?;
    let inserted = sqlx::query(
        "INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence, \
         event_type, revision, created_at, creator, owner, payload, position, in_tx_order, \
         metadata) \
         SELECT i, t, a, s, e, r, c, cr, o, p::jsonb, pg_current_xact_id()::text::numeric, \
                (ord - 1)::integer, m::jsonb \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::integer[], \
                     $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[]) \
              WITH ORDINALITY AS b(i, t, a, s, e, r, c, cr, o, p, m, ord) \
         ORDER BY ord \
         ON CONFLICT (instance_id, aggregate_type, aggregate_id, sequence) DO NOTHING",
    )
    .bind(column(|e| e.aggregate.instance_id.as_str()))
    .bind(column(|e| e.aggregate.aggregate_type.as_str()))
    .bind(column(|e| e.aggregate.aggregate_id.as_str()))
    .bind(
        events
            .iter()
            .map(|e| i64::try_from(e.sequence).unwrap_or(i64::MAX))
            .collect::<Vec<i64>>(),
    )
    .bind(column(|e| e.event_type.as_str()))
    .bind(
        events
            .iter()
            .map(|e| i32::from(e.revision))
            .collect::<Vec<i32>>(),
    )
    .bind(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
    .bind(column(|e| e.creator.as_str()))
    .bind(column(|e| e.owner.as_str()))
    .bind(
        events
            .iter()
            .map(|e| e.raw_payload.json())
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| metadata_json(&e.metadata))
            .collect::<Result<Vec<Option<String>>>>()?,
    )
    .execute(&mut *tx)
    .await
    .map_err(|err| from_sqlx("copying a batch of events", err))?
    .rows_affected();

    sqlx::query(
        "INSERT INTO eventstore.mirror_progress \
         (source, instances, position, in_tx_order, events_copied, updated_at) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (source, instances) DO UPDATE SET position = EXCLUDED.position, \
         in_tx_order = EXCLUDED.in_tx_order, \
         events_copied = mirror_progress.events_copied + EXCLUDED.events_copied, updated_at = now()",
    )
    .bind(&key.source)
    .bind(&key.instances)
    .bind(last.position.as_decimal())
    .bind(i32::try_from(last.in_tx_order).unwrap_or(i32::MAX))
    .bind(i64::try_from(inserted).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await
    .map_err(|err| from_sqlx("recording the mirror's progress", err))?;

    let mut instances: Vec<&str> = column(|e| e.aggregate.instance_id.as_str());
    instances.sort_unstable();
    instances.dedup();
    if !side_effect_projections.is_empty() {
        // In the same transaction as the events, so a destination runtime can never see the copied
        // events without the checkpoint already past them: nothing is sent twice.
        move_checkpoints_to_head(&mut tx, side_effect_projections, &instances).await?;
    }
    // Delivered at commit: destination runtimes pick the copied events up at once instead of at
    // their next tick. One writer, so the notification queue's lock costs nothing here.
    announce_in_transaction(&mut tx, &instances)
        .await
        .map_err(|err| from_sqlx("announcing a mirror batch", err))?;
    tx.commit()
        .await
        .map_err(|err| from_sqlx("committing a mirror batch", err))?;
    Ok(inserted)
}

/// Moves the checkpoint of each of `projections` in each of `instances` to the instance's newest
/// event in the destination (only ever forward), so those projections do not replay copied events.
/// Returns how many checkpoints moved.
pub async fn skip_to_head(
    destination: &PgStore,
    projections: &[String],
    instances: &[InstanceId],
) -> Result<u64> {
    let instances: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
    let mut tx = destination
        .pools()
        .push()
        .begin()
        .await
        .map_err(|err| from_sqlx("starting to move checkpoints", err))?;
    let moved = move_checkpoints_to_head(&mut tx, projections, &instances).await?;
    tx.commit()
        .await
        .map_err(|err| from_sqlx("committing moved checkpoints", err))?;
    Ok(moved)
}

/// Every unique constraint of `instances` (every instance when `None`), sorted.
pub async fn unique_constraints(
    store: &PgStore,
    instances: Option<&[InstanceId]>,
) -> Result<Vec<UniqueConstraintRow>> {
    let filter: Option<Vec<&str>> =
        instances.map(|list| list.iter().map(InstanceId::as_str).collect());
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT instance_id, unique_type, unique_field FROM eventstore.unique_constraints \
         WHERE $1::text[] IS NULL OR instance_id = ANY($1) \
         ORDER BY instance_id, unique_type, unique_field",
    )
    .bind(filter)
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading unique constraints", err))?;
    Ok(rows
        .into_iter()
        .map(
            |(instance_id, unique_type, unique_field)| UniqueConstraintRow {
                instance_id,
                unique_type,
                unique_field,
            },
        )
        .collect())
}

/// Makes the destination's unique constraints of `instances` exactly `constraints`, in one
/// transaction: a value the source released is released here too. Returns how many rows it wrote.
pub async fn replace_unique_constraints(
    destination: &PgStore,
    instances: &[InstanceId],
    constraints: &[UniqueConstraintRow],
) -> Result<u64> {
    let instances: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
    let mut tx = destination
        .pools()
        .push()
        .begin()
        .await
        .map_err(|err| from_sqlx("starting to copy unique constraints", err))?;
    sqlx::query("DELETE FROM eventstore.unique_constraints WHERE instance_id = ANY($1)")
        .bind(&instances)
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx("clearing unique constraints", err))?;
    let mut written = 0;
    // Chunks keep each statement's arrays (and the server's memory for them) bounded.
    for chunk in constraints.chunks(5_000) {
        written += sqlx::query(
            "INSERT INTO eventstore.unique_constraints (instance_id, unique_type, unique_field) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(
            chunk
                .iter()
                .map(|c| c.instance_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|c| c.unique_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|c| c.unique_field.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx("copying unique constraints", err))?
        .rows_affected();
    }
    tx.commit()
        .await
        .map_err(|err| from_sqlx("committing unique constraints", err))?;
    Ok(written)
}

/// How many events each instance has (of `instances`, or every instance when `None`), counting
/// only events positioned strictly below `below` when given. Sorted by instance.
pub async fn event_counts(
    store: &PgStore,
    instances: Option<&[InstanceId]>,
    below: Option<Position>,
) -> Result<Vec<(InstanceId, u64)>> {
    let filter: Option<Vec<&str>> =
        instances.map(|list| list.iter().map(InstanceId::as_str).collect());
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT instance_id, count(*) FROM eventstore.events \
         WHERE ($1::text[] IS NULL OR instance_id = ANY($1)) \
           AND ($2::numeric IS NULL OR position < $2) \
         GROUP BY instance_id ORDER BY instance_id",
    )
    .bind(filter)
    .bind(below.map(|position| position.as_decimal()))
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("counting events per instance", err))?;
    Ok(rows
        .into_iter()
        .map(|(instance, count)| {
            (
                InstanceId::from_stored(instance),
                u64::try_from(count).unwrap_or_default(),
            )
        })
        .collect())
}

async fn move_checkpoints_to_head(
    tx: &mut sqlx::PgConnection,
    projections: &[String],
    instances: &[&str],
) -> Result<u64> {
    // `events_instance_position` answers each instance's head with one index probe.
    let moved = sqlx::query(
        "INSERT INTO projections.current_states (instance_id, projection_name, position, \
         in_tx_order, aggregate_type, aggregate_id, sequence, updated_at) \
         SELECT i.instance_id, p.name, h.position, h.in_tx_order, h.aggregate_type, \
                h.aggregate_id, h.sequence, now() \
         FROM unnest($1::text[]) AS p(name) \
         CROSS JOIN unnest($2::text[]) AS i(instance_id) \
         CROSS JOIN LATERAL ( \
             SELECT e.position, e.in_tx_order, e.aggregate_type, e.aggregate_id, e.sequence \
             FROM eventstore.events e WHERE e.instance_id = i.instance_id \
             ORDER BY e.position DESC, e.in_tx_order DESC LIMIT 1) h \
         ON CONFLICT (instance_id, projection_name) DO UPDATE SET position = EXCLUDED.position, \
         in_tx_order = EXCLUDED.in_tx_order, aggregate_type = EXCLUDED.aggregate_type, \
         aggregate_id = EXCLUDED.aggregate_id, sequence = EXCLUDED.sequence, updated_at = now() \
         WHERE (current_states.position, current_states.in_tx_order) \
               < (EXCLUDED.position, EXCLUDED.in_tx_order)",
    )
    .bind(projections)
    .bind(instances)
    .execute(&mut *tx)
    .await
    .map_err(|err| from_sqlx("moving side-effect projections to the mirrored head", err))?;
    Ok(moved.rows_affected())
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    unexpected_answer(
        "eventstore.mirror_progress",
        format_args!("an invalid {what}: {err}"),
    )
}

/// The personal-data key state of some instances: wrapped keys (still wrapped by the source's
/// master keys: a copy is readable with the same keyring) and erased subjects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectKeyRows {
    /// `(instance, subject, version, master key id, wrapped key)`, sorted.
    pub keys: Vec<(String, String, i32, String, Vec<u8>)>,
    /// `(instance, subject)` of erased subjects, sorted.
    pub erased: Vec<(String, String)>,
}

/// The personal-data key state of `instances` (every instance when `None`).
pub async fn subject_key_rows(
    store: &PgStore,
    instances: Option<&[InstanceId]>,
) -> Result<SubjectKeyRows> {
    let filter: Option<Vec<&str>> =
        instances.map(|list| list.iter().map(InstanceId::as_str).collect());
    let keys = sqlx::query_as(
        "SELECT instance_id, subject_id, key_version, master_key_id, wrapped_key \
         FROM eventstore.subject_keys WHERE $1::text[] IS NULL OR instance_id = ANY($1) \
         ORDER BY instance_id, subject_id, key_version",
    )
    .bind(&filter)
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading subject keys", err))?;
    let erased = sqlx::query_as(
        "SELECT instance_id, subject_id FROM eventstore.erased_subjects \
         WHERE $1::text[] IS NULL OR instance_id = ANY($1) ORDER BY instance_id, subject_id",
    )
    .bind(&filter)
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading erased subjects", err))?;
    Ok(SubjectKeyRows { keys, erased })
}

/// Makes the destination's personal-data keys and erased subjects of `instances` exactly `rows`,
/// in one transaction: a subject erased in the source is erased here too (its keys deleted), so a
/// copy never keeps what the source forgot.
pub async fn replace_subject_keys(
    destination: &PgStore,
    instances: &[InstanceId],
    rows: &SubjectKeyRows,
) -> Result<()> {
    let instances: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
    let mut tx = destination
        .pools()
        .push()
        .begin()
        .await
        .map_err(|err| from_sqlx("starting to copy subject keys", err))?;
    for table in ["eventstore.subject_keys", "eventstore.erased_subjects"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE instance_id = ANY($1)"))
            .bind(&instances)
            .execute(&mut *tx)
            .await
            .map_err(|err| from_sqlx("clearing subject keys", err))?;
    }
    for chunk in rows.keys.chunks(5_000) {
        sqlx::query(
            "INSERT INTO eventstore.subject_keys \
                 (instance_id, subject_id, key_version, master_key_id, wrapped_key) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bytea[])",
        )
        .bind(chunk.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.2).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.3.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|k| k.4.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx("copying subject keys", err))?;
    }
    for chunk in rows.erased.chunks(5_000) {
        sqlx::query(
            "INSERT INTO eventstore.erased_subjects (instance_id, subject_id) \
             SELECT * FROM unnest($1::text[], $2::text[])",
        )
        .bind(chunk.iter().map(|e| e.0.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.1.as_str()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx("copying erased subjects", err))?;
    }
    tx.commit()
        .await
        .map_err(|err| from_sqlx("committing subject keys", err))
}
