//! `strata query`: every query-builder filter as a flag, JSON lines or a table out, and `--follow`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use serde::Serialize;
use strata_event::{Cursor, Event, Position};
use strata_postgres::PgStore;
use strata_query::{Query, QueryBuilder, QueryError};
use strata_store::EventStore;

use crate::connect::connect;
use crate::output::{OutputFormat, shorten, write_json_line, write_table};
use crate::{QueryArgs, usage};

/// How often `--follow` looks for newly committed events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Events per read while following: bounded so memory stays flat while catching up.
const FOLLOW_PAGE: u64 = 1000;

const TABLE_HEADERS: [&str; 10] = [
    "POSITION",
    "ORDER",
    "INSTANCE",
    "AGGREGATE",
    "SEQ",
    "EVENT TYPE",
    "CREATED AT",
    "CREATOR",
    "OWNER",
    "PAYLOAD",
];

/// What `--after` took: a cursor (resume after that event) or a bare position (after every event
/// of that position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Cursor(Cursor),
    Position(Position),
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

/// One JSON line of `strata query`: the event, and its cursor for `--after`.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    #[serde(flatten)]
    event: &'a Event,
    /// `position:in_tx_order`: pass it to `--after` to read on after this event.
    cursor: Cursor,
}

fn write_event_line(out: &mut impl Write, event: &Event) -> anyhow::Result<()> {
    write_json_line(
        out,
        &EventLine {
            event,
            cursor: event.cursor(),
        },
    )
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<()> {
    // Validate the flags before connecting: bad usage is reported as such, with or without a server.
    build(builder(&args))?;
    let format = OutputFormat::resolve(args.output.output);
    let store = connect(&args.database.database_url).await?;
    if args.follow {
        return follow(&store, &args, format).await;
    }
    let query = build(builder(&args))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.include_archive {
        // The archive is read by an administrative call, all at once: the store's streaming read
        // sees the hot table only.
        let events = strata_postgres::admin::query_including_archive(store.pools().query(), &query)
            .await
            .context("reading events and the archive")?;
        match format {
            OutputFormat::Json => {
                for event in &events {
                    write_event_line(&mut out, event)?;
                }
            }
            OutputFormat::Table => {
                let rows: Vec<Vec<String>> = events.iter().map(table_row).collect();
                write_table(&mut out, &TABLE_HEADERS, &rows).context("writing to stdout")?;
            }
        }
        out.flush().context("writing to stdout")?;
        return Ok(());
    }
    match format {
        OutputFormat::Json => {
            // Streamed: memory stays flat however many events match.
            let mut events = store.stream(&query);
            while let Some(event) = events.try_next().await.context("reading events")? {
                write_event_line(&mut out, &event)?;
            }
        }
        OutputFormat::Table => {
            let events: Vec<Event> = store.query(&query).await.context("reading events")?;
            let rows: Vec<Vec<String>> = events.iter().map(table_row).collect();
            write_table(&mut out, &TABLE_HEADERS, &rows).context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// Streams every matching event, then new ones as they commit, in `(position, in_tx_order)` order.
///
/// Each read stops below the commit horizon: an event positioned there can no longer appear, so
/// the cursor never moves past an event whose transaction has yet to commit. Reading up to the
/// newest visible position instead would skip such late commits for good.
async fn follow(store: &PgStore, args: &QueryArgs, format: OutputFormat) -> anyhow::Result<()> {
    let mut cursor: Option<Cursor> = None;
    let mut printed_header = false;
    loop {
        let horizon = store
            .commit_horizon()
            .await
            .context("reading the commit horizon")?;
        loop {
            let mut page = builder(args).position_before(horizon).limit(FOLLOW_PAGE);
            if let Some(cursor) = cursor {
                page = page.resume_after(cursor);
            }
            let events = store.query(&build(page)?).await.context("reading events")?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match format {
                OutputFormat::Json => {
                    for event in &events {
                        write_event_line(&mut out, event)?;
                    }
                }
                OutputFormat::Table => {
                    // Widths cannot be known ahead of a stream, so each page is aligned on its
                    // own; the header is printed once.
                    let rows: Vec<Vec<String>> = events.iter().map(table_row).collect();
                    let mut text = Vec::new();
                    write_table(&mut text, &TABLE_HEADERS, &rows).context("formatting a table")?;
                    let text = String::from_utf8_lossy(&text);
                    let mut lines = text.lines();
                    let header = lines.next().unwrap_or_default();
                    if !printed_header {
                        writeln!(out, "{header}").context("writing to stdout")?;
                        printed_header = true;
                    }
                    for line in lines {
                        writeln!(out, "{line}").context("writing to stdout")?;
                    }
                }
            }
            out.flush().context("writing to stdout")?;
            if let Some(last) = events.last() {
                cursor = Some(last.cursor());
            }
            if (events.len() as u64) < FOLLOW_PAGE {
                break;
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// The query the flags describe (without `--follow`'s own bounds).
fn builder(args: &QueryArgs) -> QueryBuilder {
    let mut builder = if args.all_instances {
        Query::builder().all_instances()
    } else {
        Query::builder().instances(args.instances.iter().map(String::as_str))
    };
    builder = builder
        .exclude_instances(args.exclude_instances.iter().map(String::as_str))
        .aggregate_types(args.aggregate_types.iter().map(String::as_str))
        .aggregate_ids(args.aggregate_ids.iter().map(String::as_str))
        .event_types(args.event_types.iter().map(String::as_str));
    for owner in &args.owners {
        builder = builder.owner(owner.as_str());
    }
    for creator in &args.creators {
        builder = builder.creator(creator.as_str());
    }
    if let Some(id) = &args.correlation_id {
        builder = builder.correlation_id(id.as_str());
    }
    match args.after {
        Some(After::Cursor(cursor)) => builder = builder.resume_after(cursor),
        Some(After::Position(position)) => builder = builder.position_after(position),
        None => {}
    }
    if let Some(position) = args.at_or_before {
        builder = builder.position_at_or_before(position);
    }
    if let Some(sequence) = args.sequence_greater_than {
        builder = builder.sequence_greater_than(sequence);
    }
    if let Some(instant) = args.created_after {
        builder = builder.created_after(instant);
    }
    if let Some(instant) = args.created_before {
        builder = builder.created_before(instant);
    }
    if let Some(filter) = &args.payload_contains {
        builder = builder.payload_contains(filter.clone());
    }
    if !args.exclude_event_types.is_empty() {
        builder = builder.exclude_aggregates_with(
            args.exclude_aggregate_types.iter().map(String::as_str),
            args.exclude_event_types.iter().map(String::as_str),
        );
    }
    if args.descending {
        builder = builder.descending();
    }
    if let Some(limit) = args.limit {
        builder = builder.limit(limit);
    }
    if let Some(offset) = args.offset {
        builder = builder.offset(offset);
    }
    builder
}

fn build(builder: QueryBuilder) -> anyhow::Result<Query> {
    builder.build().map_err(|err| match err {
        QueryError::NoInstance => usage(
            "name the instance(s) to read with --instance, or read every instance with \
             --all-instances",
        ),
        err => usage(format!("invalid query: {err}")),
    })
}

fn table_row(event: &Event) -> Vec<String> {
    vec![
        event.position.to_string(),
        event.in_tx_order.to_string(),
        event.aggregate.instance_id.to_string(),
        format!(
            "{}/{}",
            event.aggregate.aggregate_type, event.aggregate.aggregate_id
        ),
        event.sequence.to_string(),
        event.event_type.to_string(),
        event
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        event.creator.to_string(),
        event.owner.to_string(),
        shorten(event.raw_payload.json().unwrap_or(""), 60),
    ]
}
