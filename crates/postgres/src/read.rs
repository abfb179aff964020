//! Reading: a [`Query`] rendered to SQL with bind parameters only, and rows decoded into events.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgPool, Postgres};
use strata_event::{
    AggregateId, AggregateRef, AggregateType, Creator, Event, EventType, InstanceId, Owner,
    Payload, Position,
};
use strata_query::{Order, Query};
use strata_store::{Error, Result};

use crate::error::from_sqlx;

/// A query rendered for PostgreSQL: SQL text whose every value is a bind parameter, and the values.
/// Public so its shape can be inspected and snapshot-tested; [`crate::PgStore`] runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedQuery {
    /// The SQL text with `$1`, `$2`… placeholders.
    pub sql: String,
    /// The values for the placeholders, in order.
    pub binds: Vec<BindValue>,
}

/// One bind parameter of a [`RenderedQuery`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BindValue {
    /// A `text` value.
    Text(String),
    /// A `text[]` value.
    TextArray(Vec<String>),
    /// A `numeric` value.
    Numeric(Decimal),
    /// An `integer` value.
    Integer(i32),
    /// A `bigint` value.
    BigInt(i64),
}

const EVENT_COLUMNS: &str = "instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, \
     created_at, creator, owner, payload::text, position, in_tx_order";

pub(crate) type EventRow = (
    String,
    String,
    String,
    i64,
    String,
    i32,
    DateTime<Utc>,
    String,
    String,
    Option<String>,
    Decimal,
    i32,
);

/// Renders the `SELECT` for `query`. Identifiers are fixed text; every value is a placeholder.
pub fn render_query(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery {
        sql: format!("SELECT {EVENT_COLUMNS} FROM eventstore.events"),
        binds: Vec::new(),
    };
    rendered.push_filters(query, true);
    let direction = match query.order() {
        Order::Ascending => "",
        Order::Descending => " DESC",
    };
    // Within one aggregate, sequence order is position order (a later push to an aggregate always
    // gets a later position), and sorting by sequence lets the primary key deliver rows in order.
    if is_single_aggregate(query) {
        let _ = write!(rendered.sql, " ORDER BY sequence{direction}");
    } else {
        let _ = write!(
            rendered.sql,
            " ORDER BY position{direction}, in_tx_order{direction}"
        );
    }
    if let Some(limit) = query.limit() {
        let placeholder = rendered.bind(BindValue::BigInt(limit as i64));
        let _ = write!(rendered.sql, " LIMIT {placeholder}");
    }
    rendered
}

/// Renders `SELECT max(position)` over what `query` filters (its order and limit ignored).
pub(crate) fn render_latest_position(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery {
        sql: "SELECT max(position) FROM eventstore.events".into(),
        binds: Vec::new(),
    };
    rendered.push_filters(query, true);
    rendered
}

fn is_single_aggregate(query: &Query) -> bool {
    query.instance_ids().len() == 1
        && query.aggregate_types().len() == 1
        && query.aggregate_ids().len() == 1
}

impl RenderedQuery {
    fn bind(&mut self, value: BindValue) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn push_filters(&mut self, query: &Query, with_cursor: bool) {
        let mut conditions: Vec<String> = Vec::new();
        let mut any_of = |this: &mut Self, column: &str, values: Vec<String>| match values.len() {
            0 => {}
            1 => {
                let placeholder = this.bind(BindValue::Text(
                    values.into_iter().next().unwrap_or_default(),
                ));
                conditions.push(format!("{column} = {placeholder}"));
            }
            _ => {
                let placeholder = this.bind(BindValue::TextArray(values));
                conditions.push(format!("{column} = ANY({placeholder})"));
            }
        };
        fn strings<T: AsRef<str>>(values: &[T]) -> Vec<String> {
            values.iter().map(|v| v.as_ref().to_owned()).collect()
        }
        any_of(self, "instance_id", strings(query.instance_ids()));
        any_of(self, "aggregate_type", strings(query.aggregate_types()));
        any_of(self, "aggregate_id", strings(query.aggregate_ids()));
        any_of(self, "event_type", strings(query.event_types()));
        if let Some(after) = query.position_after() {
            let placeholder = self.bind(BindValue::Numeric(after.as_decimal()));
            conditions.push(format!("position > {placeholder}"));
        }
        if with_cursor && let Some((position, in_tx_order)) = query.resume_after() {
            let position = self.bind(BindValue::Numeric(position.as_decimal()));
            let in_tx_order = self.bind(BindValue::Integer(in_tx_order as i32));
            let comparison = match query.order() {
                Order::Ascending => ">",
                Order::Descending => "<",
            };
            conditions.push(format!(
                "(position, in_tx_order) {comparison} ({position}, {in_tx_order})"
            ));
        }
        if !conditions.is_empty() {
            self.sql.push_str(" WHERE ");
            self.sql.push_str(&conditions.join(" AND "));
        }
    }

    pub(crate) fn to_query_as<'q, O>(&'q self) -> QueryAs<'q, Postgres, O, PgArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let mut statement = sqlx::query_as(&self.sql);
        for bind in &self.binds {
            statement = match bind {
                BindValue::Text(value) => statement.bind(value),
                BindValue::TextArray(values) => statement.bind(values),
                BindValue::Numeric(value) => statement.bind(value),
                BindValue::Integer(value) => statement.bind(value),
                BindValue::BigInt(value) => statement.bind(value),
            };
        }
        statement
    }
}

/// Turns a row into an event, re-checking the stored ids against the model so a row written by
/// other means (a hand-made import) cannot smuggle an invalid value into the API.
pub(crate) fn decode_event(row: EventRow) -> Result<Event> {
    let (
        instance_id,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        revision,
        created_at,
        creator,
        owner,
        payload,
        position,
        in_tx_order,
    ) = row;
    let invalid = |err: strata_event::ValidationError| Error::Backend {
        message: format!("a stored event breaks the event model: {err}"),
        source: None,
    };
    Ok(Event {
        aggregate: AggregateRef {
            instance_id: InstanceId::new(instance_id).map_err(invalid)?,
            aggregate_type: AggregateType::new(aggregate_type).map_err(invalid)?,
            aggregate_id: AggregateId::new(aggregate_id).map_err(invalid)?,
        },
        event_type: EventType::new(event_type).map_err(invalid)?,
        sequence: sequence as u64,
        revision: u16::try_from(revision).map_err(|_| Error::Backend {
            message: format!("a stored event has revision {revision}, outside 0..=65535"),
            source: None,
        })?,
        created_at,
        creator: Creator::new(creator).map_err(invalid)?,
        owner: Owner::new(owner).map_err(invalid)?,
        position: Position::new(position).map_err(|err| Error::Backend {
            message: format!("a stored event has an invalid position: {err}"),
            source: None,
        })?,
        in_tx_order: in_tx_order as u32,
        raw_payload: payload.map(Payload::from_trusted_json).unwrap_or_default(),
    })
}

pub(crate) async fn fetch_all(pool: &PgPool, query: &Query) -> Result<Vec<Event>> {
    let rendered = render_query(query);
    let rows: Vec<EventRow> = rendered
        .to_query_as()
        .fetch_all(pool)
        .await
        .map_err(|err| from_sqlx("querying events", err))?;
    rows.into_iter().map(decode_event).collect()
}
