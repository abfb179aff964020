//! Reading events: a [`Query`] rendered to SQL (`render.rs`), and the rows decoded into events.

// Runs against a real server, through the integration tests' harness (a dev-dependency: see
// this crate's manifest), so `cargo test -p strata-postgres` needs PostgreSQL like the rest of the
// suite; `cargo xtask test` finds or starts one.
#[cfg(test)]
mod index_plans;
mod render;
#[cfg(test)]
mod render_fuzz;
#[cfg(test)]
mod render_snapshots;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{Executor, Postgres, Row};
use strata_event::{
    AggregateId, AggregateRef, AggregateType, Creator, Event, EventType, InstanceId, Metadata,
    Owner, Payload, Position,
};
use strata_query::Query;
use strata_store::Result;

use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::error::{from_sqlx, unexpected_answer};
use crate::pooling::Pooled;

pub(crate) use self::render::RenderedQuery;
pub(crate) use self::render::{
    INSTANCE_WALK, render_count, render_instance_heads, render_instance_ids,
    render_latest_position, render_query, render_query_with_archive,
};

/// Every event `query` selects, in its order.
pub(crate) async fn fetch_all(pool: Pooled<'_>, query: &Query) -> Result<Vec<Event>> {
    let rendered = render_query(query);
    let rows: Vec<EventRow> = rendered
        .to_query_as()
        .fetch_all(pool)
        .await
        .map_err(|err| from_sqlx("querying events", err))?;
    rows.into_iter().map(EventRow::into_event).collect()
}

/// Every event `query` selects in the hot table and the archive together, in its order.
pub(crate) async fn fetch_all_with_archive(
    pool: impl Executor<'_, Database = Postgres>,
    query: &Query,
) -> Result<Vec<Event>> {
    let rows: Vec<EventRow> = render_query_with_archive(query)
        .to_query_as()
        .fetch_all(pool)
        .await
        .map_err(|err| from_sqlx("querying events and the archive", err))?;
    rows.into_iter().map(EventRow::into_event).collect()
}

/// The `count` events stored at `position` from `first_in_tx_order` on, in order: what an
/// idempotency key recorded, read back for a push that replays it.
pub(crate) async fn fetch_recorded(
    pool: Pooled<'_>,
    position: Decimal,
    first_in_tx_order: i32,
    count: i32,
) -> Result<Vec<Event>> {
    // `events_position` answers it; the range is one push's events.
    let sql = format!(
        "SELECT {} FROM eventstore.events \
         WHERE position = $1 AND in_tx_order BETWEEN $2 AND $3 ORDER BY in_tx_order",
        render::EVENT_COLUMNS
    );
    let rows: Vec<EventRow> = sqlx::query_as(&sql)
        .bind(position)
        .bind(first_in_tx_order)
        .bind(first_in_tx_order.saturating_add(count.saturating_sub(1)))
        .fetch_all(pool)
        .await
        .map_err(|err| from_sqlx("reading a recorded push back", err))?;
    rows.into_iter().map(EventRow::into_event).collect()
}

/// A row of `eventstore.events`, as [`render::EVENT_COLUMNS`] selects it.
#[derive(Debug)]
pub(crate) struct EventRow {
    instance_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    revision: i32,
    created_at: DateTime<Utc>,
    creator: String,
    owner: String,
    /// The JSON payload as text, `NULL` for none.
    payload: Option<String>,
    position: Decimal,
    in_tx_order: i32,
    /// The metadata as JSON text, `NULL` for none.
    metadata: Option<String>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for EventRow {
    /// By index, in [`render::EVENT_COLUMNS`]' order: every read decodes each of its rows here,
    /// and a lookup by name costs a hash of the column name per value.
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(EventRow {
            instance_id: row.try_get(0)?,
            aggregate_type: row.try_get(1)?,
            aggregate_id: row.try_get(2)?,
            sequence: row.try_get(3)?,
            event_type: row.try_get(4)?,
            revision: row.try_get(5)?,
            created_at: row.try_get(6)?,
            creator: row.try_get(7)?,
            owner: row.try_get(8)?,
            payload: row.try_get(9)?,
            position: row.try_get(10)?,
            in_tx_order: row.try_get(11)?,
            metadata: row.try_get(12)?,
        })
    }
}

impl EventRow {
    /// The event this row stores.
    pub(crate) fn into_event(self) -> Result<Event> {
        // Every stored value passed the model's validation on the way in (events are append-only
        // and written only by the push function), so reading them back skips it: decoding is the
        // hot path of every read, and validating again would be a large share of it.
        let revision = u16::try_from(self.revision).map_err(|_| {
            unexpected_answer(
                "eventstore.events",
                format_args!("revision {} outside 0..=65535", self.revision),
            )
        })?;
        let position = Position::new(self.position).map_err(|err| {
            unexpected_answer("eventstore.events", format_args!("position: {err}"))
        })?;
        // Unlike the payload, metadata is decoded into its struct: a row the push function wrote
        // always decodes, so a failure means someone else wrote the row.
        let metadata = match self.metadata {
            None => Metadata::default(),
            Some(json) => serde_json::from_str(&json).map_err(|err| {
                unexpected_answer("eventstore.events", format_args!("metadata: {err}"))
            })?,
        };
        Ok(Event {
            aggregate: AggregateRef {
                instance_id: InstanceId::from_stored(self.instance_id),
                aggregate_type: AggregateType::from_stored(self.aggregate_type),
                aggregate_id: AggregateId::from_stored(self.aggregate_id),
            },
            event_type: EventType::from_stored(self.event_type),
            sequence: self.sequence as u64,
            revision,
            created_at: self.created_at,
            creator: Creator::from_stored(self.creator),
            owner: Owner::from_stored(self.owner),
            position,
            in_tx_order: self.in_tx_order as u32,
            raw_payload: self
                .payload
                .map(Payload::from_trusted_json)
                .unwrap_or_default(),
            metadata,
        })
    }
}

/// Fetches the rows of `rendered` from `pool` and sends them, decoded, in runs. An error before the
/// first run is returned unsent, so the caller may try another server; any later one is sent.
/// Most events [`PgStore`](crate::PgStore)'s `stream` hands over at once: a run of rows the connection already
/// received.
pub(crate) const STREAM_RUN: usize = 64;

pub(crate) async fn send_rows(
    pool: &PgPool,
    transaction_pooling: bool,
    rendered: &RenderedQuery,
    sender: &mpsc::Sender<Vec<Result<Event>>>,
) -> Result<()> {
    // Behind transaction pooling the rows come from a transaction of their own, which keeps one
    // server connection (`crate::pooling`).
    let mut tx = None;
    if transaction_pooling {
        let begun = pool.begin().await;
        tx = Some(begun.map_err(|err| from_sqlx("streaming events", err))?);
    }
    let query = rendered
        .to_query_as::<EventRow>()
        .persistent(!transaction_pooling);
    let rows = match tx.as_mut() {
        Some(tx) => query.fetch(&mut **tx),
        None => query.fetch(pool),
    };
    let mut rows = rows.ready_chunks(STREAM_RUN);
    let mut sent_any = false;
    while let Some(rows) = rows.next().await {
        let mut events = Vec::with_capacity(rows.len());
        let mut failed = false;
        for row in rows {
            let event = row
                .map_err(|err| from_sqlx("streaming events", err))
                .and_then(EventRow::into_event);
            failed = event.is_err();
            if failed && !sent_any && events.is_empty() {
                return event.map(drop);
            }
            events.push(event);
            if failed {
                break;
            }
        }
        sent_any = true;
        if sender.send(events).await.is_err() || failed {
            return Ok(());
        }
    }
    Ok(())
}
