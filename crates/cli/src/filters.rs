//! The event filters `strata query` and `strata subscribe` share: one flag per query-builder
//! filter, their parsers, and the query they describe.
//!
//! Only *which* events: the order, limit and offset are `query`'s own flags, since a subscription
//! has none of them. `--after` is here because both take it, but each uses it its own way: a
//! query pages with it, a subscription starts after it.

use clap::Args;
use strata_event::{Cursor, Position};
use strata_query::{Query, QueryBuilder, QueryError};

use crate::usage;

/// Which events to read.
#[derive(Debug, Args)]
pub(crate) struct QueryFilters {
    /// Only this instance (repeatable)
    #[arg(long = "instance", value_name = "ID", conflicts_with = "all_instances")]
    pub(crate) instances: Vec<String>,
    /// Read every instance (a query without --instance must say so)
    #[arg(long)]
    pub(crate) all_instances: bool,
    /// Not this instance (repeatable)
    #[arg(long = "exclude-instance", value_name = "ID")]
    pub(crate) exclude_instances: Vec<String>,
    /// Only this aggregate type (repeatable)
    #[arg(long = "aggregate-type", value_name = "TYPE")]
    pub(crate) aggregate_types: Vec<String>,
    /// Only this aggregate id (repeatable)
    #[arg(long = "aggregate-id", value_name = "ID")]
    pub(crate) aggregate_ids: Vec<String>,
    /// Only this event type (repeatable)
    #[arg(long = "event-type", value_name = "TYPE")]
    pub(crate) event_types: Vec<String>,
    /// Only this owner (repeatable)
    #[arg(long = "owner", value_name = "OWNER")]
    pub(crate) owners: Vec<String>,
    /// Only this creator (repeatable)
    #[arg(long = "creator", value_name = "CREATOR")]
    pub(crate) creators: Vec<String>,
    /// Only events whose metadata carries this correlation id
    #[arg(long, value_name = "ID")]
    pub(crate) correlation_id: Option<String>,
    /// Only events after a cursor (POS:ORDER, from a JSON line's `cursor`: the next page), or
    /// strictly after a position (POS: every event of that position is left out)
    #[arg(long, value_name = "CURSOR|POS", allow_negative_numbers = true, value_parser = parse_after)]
    pub(crate) after: Option<After>,
    /// Only events positioned at or before POS
    #[arg(long, value_name = "POS", allow_negative_numbers = true)]
    pub(crate) at_or_before: Option<Position>,
    /// Only events with a sequence greater than N
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) sequence_greater_than: Option<u64>,
    /// Only events created strictly after TIME, an RFC 3339 instant with its offset (e.g.
    /// 2026-01-31T12:00:00Z or 2026-01-31T13:00:00+01:00)
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub(crate) created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events created strictly before TIME (RFC 3339, as for --created-after)
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub(crate) created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events whose payload contains this JSON object (PostgreSQL `@>`)
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub(crate) payload_contains: Option<serde_json::Value>,
    /// Drop aggregates that have an event of --exclude-aggregates-with-event on an aggregate of
    /// this type (repeatable; any type when absent)
    #[arg(
        long = "exclude-aggregates-with-type",
        value_name = "TYPE",
        requires = "exclude_event_types"
    )]
    pub(crate) exclude_aggregate_types: Vec<String>,
    /// Drop every event of an aggregate id that also has an event of this type (repeatable)
    #[arg(
        long = "exclude-aggregates-with-event",
        value_name = "TYPE",
        id = "exclude_event_types"
    )]
    pub(crate) exclude_event_types: Vec<String>,
}

/// What `--after` took: a cursor (resume after that event) or a bare position (after every event
/// of that position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Cursor(Cursor),
    Position(Position),
}

impl After {
    /// The cursor to read after: a bare position stands for its last possible event, so every
    /// event of that position is left out.
    pub(crate) fn cursor(self) -> Cursor {
        match self {
            After::Cursor(cursor) => cursor,
            After::Position(position) => Cursor::new(position, u32::MAX),
        }
    }
}

/// Reads `--after`: `POS:ORDER` is a cursor, `POS` a position.
pub(crate) fn parse_after(text: &str) -> Result<After, String> {
    if text.contains(':') {
        return text
            .parse()
            .map(After::Cursor)
            .map_err(|err: strata_event::CursorError| err.to_string());
    }
    text.parse()
        .map(After::Position)
        .map_err(|err: strata_event::PositionError| err.to_string())
}

/// Reads `--created-after` and `--created-before`.
pub(crate) fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|instant| instant.to_utc())
        .map_err(|err| {
            format!(
                "{text:?} is not an RFC 3339 instant ({err}): give a date, a time and an offset, \
                 e.g. 2026-01-31T12:00:00Z or 2026-01-31T13:00:00+01:00"
            )
        })
}

/// Reads `--payload-contains`.
fn parse_json_object(text: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("not JSON: {err}"))?;
    if !value.is_object() {
        return Err("must be a JSON object, e.g. '{\"plan\": \"pro\"}'".into());
    }
    Ok(value)
}

impl QueryFilters {
    /// Whether an aggregate exclusion was asked for.
    pub(crate) fn excludes_aggregates(&self) -> bool {
        !self.exclude_event_types.is_empty()
    }

    /// The query the filters describe, without `--after` (whose meaning is the command's).
    pub(crate) fn builder(&self) -> QueryBuilder {
        let mut builder = if self.all_instances {
            Query::builder().all_instances()
        } else {
            Query::builder().instances(self.instances.iter().map(String::as_str))
        };
        builder = builder
            .exclude_instances(self.exclude_instances.iter().map(String::as_str))
            .aggregate_types(self.aggregate_types.iter().map(String::as_str))
            .aggregate_ids(self.aggregate_ids.iter().map(String::as_str))
            .event_types(self.event_types.iter().map(String::as_str));
        for owner in &self.owners {
            builder = builder.owner(owner.as_str());
        }
        for creator in &self.creators {
            builder = builder.creator(creator.as_str());
        }
        if let Some(id) = &self.correlation_id {
            builder = builder.correlation_id(id.as_str());
        }
        if let Some(position) = self.at_or_before {
            builder = builder.position_at_or_before(position);
        }
        if let Some(sequence) = self.sequence_greater_than {
            builder = builder.sequence_greater_than(sequence);
        }
        if let Some(instant) = self.created_after {
            builder = builder.created_after(instant);
        }
        if let Some(instant) = self.created_before {
            builder = builder.created_before(instant);
        }
        if let Some(filter) = &self.payload_contains {
            builder = builder.payload_contains(filter.clone());
        }
        if self.excludes_aggregates() {
            builder = builder.exclude_aggregates_with(
                self.exclude_aggregate_types.iter().map(String::as_str),
                self.exclude_event_types.iter().map(String::as_str),
            );
        }
        builder
    }
}

/// Builds a query from the flags; what the builder refuses is bad usage (exit code 2).
pub(crate) fn build(builder: QueryBuilder) -> anyhow::Result<Query> {
    builder.build().map_err(|err| match err {
        QueryError::NoInstance => usage(
            "name the instance(s) to read with --instance, or read every instance with \
             --all-instances",
        ),
        err => usage(format!("invalid query: {err}")),
    })
}
