//! A [`Query`] as SQL text whose every value is a bind parameter, shaped for the indexes of
//! `eventstore.events` (the snapshots in `render_snapshots.rs` show each shape).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use strata_event::Cursor;
use strata_query::{Order, Query, SubQuery};

/// A query rendered for PostgreSQL: SQL text whose every value is a bind parameter, and the values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RenderedQuery {
    /// The SQL text with `$1`, `$2`… placeholders.
    pub(crate) sql: String,
    /// The values for the placeholders, in order.
    pub(crate) binds: Vec<BindValue>,
}

/// One bind parameter of a [`RenderedQuery`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BindValue {
    /// A `text` value.
    Text(String),
    /// A `text[]` value.
    TextArray(Vec<String>),
    /// A `numeric` value.
    Numeric(Decimal),
    /// A `bigint` value.
    BigInt(i64),
    /// A `timestamptz` value.
    Timestamp(DateTime<Utc>),
    /// JSON text, cast to `jsonb` in the SQL.
    Json(String),
}

/// The columns of an event, in the order [`super::EventRow`] decodes them.
pub(crate) const EVENT_COLUMNS: &str = "instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, \
     created_at, creator, owner, payload::text, position, in_tx_order, metadata::text";

/// Renders the `SELECT` for `query`. Identifiers are fixed text; every value is a placeholder.
pub(crate) fn render_query(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery::new(format!("SELECT {EVENT_COLUMNS} FROM eventstore.events"));
    rendered.push_filters(query);
    let direction = match query.order() {
        Order::Ascending => "",
        Order::Descending => " DESC",
    };
    // Within one aggregate, sequence order is position order (a later push to an aggregate always
    // gets a later position), and sorting by sequence lets the primary key deliver rows in order.
    if query.single_aggregate().is_some() {
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
    if query.offset() > 0 {
        let placeholder = rendered.bind(BindValue::BigInt(query.offset() as i64));
        let _ = write!(rendered.sql, " OFFSET {placeholder}");
    }
    rendered
}

/// What an exclusion's sub-query reads: the hot table under a name of its own, so the row being
/// filtered stays reachable as `events`.
const EXCLUDED_EVENTS: &str = "eventstore.events AS excluded";

/// What a read through the archive selects from: the hot table and the archive as one relation.
/// Both have the same columns in the same order, and PostgreSQL pushes the filters into each side
/// of the `UNION ALL`, so each is answered by its own indexes.
const EVENTS_AND_ARCHIVE: &str = "(SELECT * FROM eventstore.events \
     UNION ALL SELECT * FROM eventstore.archived_events) AS events";
/// [`EXCLUDED_EVENTS`] through the archive.
const EXCLUDED_EVENTS_AND_ARCHIVE: &str = "(SELECT * FROM eventstore.events \
     UNION ALL SELECT * FROM eventstore.archived_events) AS excluded";

/// [`render_query`] over the hot table and the archive (`eventstore.archived_events`) together:
/// the exclusion's sub-query reads both too, so an aggregate's archived events exclude it as its
/// hot ones would. For operators' reads that ask for the archive (`strata query
/// --include-archive`).
pub(crate) fn render_query_with_archive(query: &Query) -> RenderedQuery {
    let mut rendered = render_query(query);
    // Every table reference `render_query` writes is the hot table, by this exact text (the
    // test below holds it to that), so the same query shape reads both. The exclusion's text
    // starts with the other's, so it is set aside first; `replace` never rescans what it wrote.
    const SET_ASIDE: &str = "FROM \u{1}excluded\u{1}";
    rendered.sql = rendered
        .sql
        .replace(&format!("FROM {EXCLUDED_EVENTS}"), SET_ASIDE)
        .replace(
            "FROM eventstore.events",
            &format!("FROM {EVENTS_AND_ARCHIVE}"),
        )
        .replace(SET_ASIDE, &format!("FROM {EXCLUDED_EVENTS_AND_ARCHIVE}"));
    rendered
}

/// Renders `SELECT max(position)` over what `query` selects (order, offset and limit ignored).
pub(crate) fn render_latest_position(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery::new("SELECT max(position) FROM eventstore.events".into());
    rendered.push_filters(query);
    rendered
}

/// Renders `SELECT count(*)` over what `query` selects (order, offset and limit ignored).
pub(crate) fn render_count(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery::new("SELECT count(*) FROM eventstore.events".into());
    rendered.push_filters(query);
    rendered
}

/// Renders the instances that have events matching `query` (order, offset and limit ignored; the
/// projection runtime's tick asks this for each projection).
///
/// PostgreSQL 15 has no skip scan, so `SELECT DISTINCT instance_id … WHERE …` reads every matching
/// event. Instead this walks the instances through the primary key (`instance_id` first), one
/// index probe per instance, and keeps those where an event matches — itself one probe of the
/// projection indexes for the usual filters. The cost follows the number of instances, not the
/// number of events.
pub(crate) fn render_instance_ids(query: &Query) -> RenderedQuery {
    let mut rendered = RenderedQuery::new(format!(
        "{INSTANCE_WALK} SELECT instances.id FROM instances WHERE instances.id IS NOT NULL \
         AND EXISTS (SELECT 1 FROM eventstore.events"
    ));
    // The filters' unqualified columns name the events of the EXISTS, tied to the instance
    // walked by the last condition.
    let unfiltered = rendered.sql.len();
    rendered.push_filters(query);
    rendered.sql.push_str(if rendered.sql.len() == unfiltered {
        " WHERE instance_id = instances.id)"
    } else {
        " AND instance_id = instances.id)"
    });
    rendered
}

/// The instances that have events, as the rows of `instances(id)` (and a last `NULL`), one probe
/// of the primary key each: PostgreSQL 15 has no skip scan.
pub(crate) const INSTANCE_WALK: &str = "WITH RECURSIVE instances(id) AS ( \
         SELECT min(instance_id) FROM eventstore.events \
         UNION ALL \
         SELECT (SELECT min(instance_id) FROM eventstore.events WHERE instance_id > instances.id) \
         FROM instances WHERE instances.id IS NOT NULL \
     )";

/// Every instance with the position of its latest event: the walk, and for each instance one
/// backward probe of `events_instance_position`.
pub(crate) fn render_instance_heads() -> String {
    format!(
        "{INSTANCE_WALK} SELECT instances.id, \
         (SELECT max(position) FROM eventstore.events WHERE instance_id = instances.id) \
         FROM instances WHERE instances.id IS NOT NULL"
    )
}

fn strings<T: AsRef<str>>(values: &[T]) -> Vec<String> {
    values.iter().map(|v| v.as_ref().to_owned()).collect()
}

impl RenderedQuery {
    fn new(sql: String) -> Self {
        RenderedQuery {
            sql,
            binds: Vec::new(),
        }
    }

    fn bind(&mut self, value: BindValue) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// `column = $n` for one value, `column = ANY($n)` for several, nothing for none.
    fn any_of(&mut self, conditions: &mut Vec<String>, column: &str, values: Vec<String>) {
        match <[String; 1]>::try_from(values) {
            Ok([value]) => {
                let placeholder = self.bind(BindValue::Text(value));
                conditions.push(format!("{column} = {placeholder}"));
            }
            Err(values) if values.is_empty() => {}
            Err(values) => {
                let placeholder = self.bind(BindValue::TextArray(values));
                conditions.push(format!("{column} = ANY({placeholder})"));
            }
        }
    }

    /// The instance filters, rendered once and reused (same placeholders) by the exclusion.
    fn instance_conditions(&mut self, query: &Query) -> Vec<String> {
        let mut conditions = Vec::new();
        self.any_of(
            &mut conditions,
            "instance_id",
            strings(query.instance_ids()),
        );
        if !query.excluded_instance_ids().is_empty() {
            let placeholder =
                self.bind(BindValue::TextArray(strings(query.excluded_instance_ids())));
            conditions.push(format!("instance_id <> ALL({placeholder})"));
        }
        conditions
    }

    fn sub_query_conditions(&mut self, sub_query: &SubQuery) -> Vec<String> {
        let mut conditions = Vec::new();
        self.any_of(
            &mut conditions,
            "aggregate_type",
            strings(sub_query.aggregate_types()),
        );
        self.any_of(
            &mut conditions,
            "aggregate_id",
            strings(sub_query.aggregate_ids()),
        );
        self.any_of(
            &mut conditions,
            "event_type",
            strings(sub_query.event_types()),
        );
        conditions
    }

    fn push_filters(&mut self, query: &Query) {
        let instance = self.instance_conditions(query);
        let mut conditions = instance.clone();
        self.any_of(&mut conditions, "owner", strings(query.owners()));
        self.any_of(&mut conditions, "creator", strings(query.creators()));
        if let Some(id) = query.correlation_id() {
            // `metadata IS NOT NULL` is implied, but spelt out so the planner can use the partial
            // index `events_correlation`, whose predicate it must prove.
            let placeholder = self.bind(BindValue::Text(id.to_owned()));
            conditions.push(format!(
                "metadata IS NOT NULL AND metadata->>'correlation_id' = {placeholder}"
            ));
        }
        self.any_of(
            &mut conditions,
            "aggregate_type",
            strings(query.aggregate_types()),
        );
        self.any_of(
            &mut conditions,
            "aggregate_id",
            strings(query.aggregate_ids()),
        );
        self.any_of(&mut conditions, "event_type", strings(query.event_types()));
        if !query.any_of().is_empty() {
            let branches: Vec<String> = query
                .any_of()
                .iter()
                .map(|sub_query| {
                    let parts = self.sub_query_conditions(sub_query);
                    if parts.is_empty() {
                        "TRUE".to_owned()
                    } else {
                        format!("({})", parts.join(" AND "))
                    }
                })
                .collect();
            conditions.push(format!("({})", branches.join(" OR ")));
        }
        let mut position_after = None;
        if let Some(after) = query.position_after() {
            let placeholder = self.bind(BindValue::Numeric(after.as_decimal()));
            conditions.push(format!("position > {placeholder}"));
            position_after = Some(placeholder);
        }
        if let Some(bound) = query.position_at_or_before() {
            let placeholder = self.bind(BindValue::Numeric(bound.as_decimal()));
            conditions.push(format!("position <= {placeholder}"));
        }
        if let Some(bound) = query.position_before() {
            let placeholder = self.bind(BindValue::Numeric(bound.as_decimal()));
            conditions.push(format!("position < {placeholder}"));
        }
        if let Some(sequence) = query.sequence_greater_than() {
            let placeholder = self.bind(BindValue::BigInt(
                i64::try_from(sequence).unwrap_or(i64::MAX),
            ));
            conditions.push(format!("sequence > {placeholder}"));
        }
        if let Some(after) = query.created_after() {
            let placeholder = self.bind(BindValue::Timestamp(after));
            conditions.push(format!("created_at > {placeholder}"));
        }
        if let Some(before) = query.created_before() {
            let placeholder = self.bind(BindValue::Timestamp(before));
            conditions.push(format!("created_at < {placeholder}"));
        }
        if let Some(filter) = query.payload_contains() {
            let placeholder = self.bind(BindValue::Json(filter.to_string()));
            conditions.push(format!("payload @> {placeholder}::jsonb"));
        }
        if let Some(exclusion) = query.exclusion() {
            // A correlated probe per candidate row, not a hashed `NOT IN` over every excluded
            // aggregate: the hashed form reads the whole excluded set (one heap page per excluded
            // aggregate) before the first row, so it grew with the instance's history (0.38 × at
            // 10 M events of the rate at 1 M). Probing `events_exclusion` per candidate costs one
            // index descent each, however large the table. `OFFSET 0` keeps it a probe: without
            // it PostgreSQL may turn the `NOT EXISTS` into an anti-join that scans the whole
            // excluded set once per candidate, which it did from a prepared statement's plan
            // (10.7 ms at 10 M events, against 0.9 ms as a probe). The sub-query repeats the
            // parent's instance filters and position lower bound (same placeholders); its
            // unqualified columns are its own, and `events` is the row being filtered.
            let mut inner = instance;
            self.any_of(
                &mut inner,
                "aggregate_type",
                strings(exclusion.aggregate_types()),
            );
            self.any_of(&mut inner, "event_type", strings(exclusion.event_types()));
            if let Some(placeholder) = position_after {
                inner.push(format!("position > {placeholder}"));
            }
            inner.push("instance_id = events.instance_id".to_owned());
            inner.push("aggregate_id = events.aggregate_id".to_owned());
            conditions.push(format!(
                "NOT EXISTS (SELECT 1 FROM {EXCLUDED_EVENTS} WHERE {} OFFSET 0)",
                inner.join(" AND ")
            ));
        }
        if let Some(Cursor {
            position,
            in_tx_order,
        }) = query.resume_after()
        {
            let position = self.bind(BindValue::Numeric(position.as_decimal()));
            // Bound as a bigint: in_tx_order is a u32, beyond the column's integer range at the
            // top, and the comparison must hold for every value a cursor can carry.
            let in_tx_order = self.bind(BindValue::BigInt(i64::from(in_tx_order)));
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
                BindValue::BigInt(value) => statement.bind(value),
                BindValue::Timestamp(value) => statement.bind(value),
                BindValue::Json(value) => statement.bind(value),
            };
        }
        statement
    }
}
