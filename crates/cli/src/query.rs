//! `strata query`: every query-builder filter as a flag (`filters.rs`), JSON lines or a table out.
//!
//! It reads what is stored now and ends; `strata subscribe` (`subscribe.rs`) takes the same
//! filters and keeps streaming.

use std::io::Write;

use anyhow::Context;
use futures::TryStreamExt;
use serde::Serialize;
use strata_event::{Cursor, Event};
use strata_postgres::PgStore;
use strata_query::{Query, QueryBuilder};
use strata_store::EventStore;

use crate::connect::connect;
use crate::filters::{After, build};
use crate::output::{OutputFormat, ends_at_closed_pipe, shorten, write_json_line, write_table};
use crate::{QueryArgs, usage};

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

/// One JSON line of `strata query` and `strata subscribe`: the event, and its cursor for `--after`.
#[derive(Debug, Serialize)]
struct EventLine<'a> {
    #[serde(flatten)]
    event: &'a Event,
    /// `position:in_tx_order`: pass it to `--after` to read on after this event.
    cursor: Cursor,
}

/// Writes `event` as one JSON line (the same line for `query` and `subscribe`).
pub(crate) fn write_event_line(out: &mut impl Write, event: &Event) -> anyhow::Result<()> {
    write_json_line(
        out,
        &EventLine {
            event,
            cursor: event.cursor(),
        },
    )
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<()> {
    if args.follow {
        return Err(usage(
            "--follow is gone: `strata subscribe` takes the same filters and streams the events \
             as they commit (e.g. `strata subscribe --instance tenant-1`)",
        ));
    }
    // Validate the flags before connecting: bad usage is reported as such, with or without a
    // server.
    let query = build(builder(&args))?;
    let format = OutputFormat::resolve(args.output.output);
    let store = connect(&args.database.database_url).await?;
    // A reader that stopped early (`| head`) got what it wanted: the rest is not printed.
    ends_at_closed_pipe(print(&store, &args, &query, format).await)
}

/// Reads the events and prints them.
async fn print(
    store: &PgStore,
    args: &QueryArgs,
    query: &Query,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.include_archive {
        // The archive is read by an administrative call, all at once: the store's streaming read
        // sees the hot table only.
        let events = strata_postgres::admin::query_including_archive(store.pools().query(), query)
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
            let mut events = store.stream(query);
            while let Some(event) = events.try_next().await.context("reading events")? {
                write_event_line(&mut out, &event)?;
            }
        }
        OutputFormat::Table => {
            let events: Vec<Event> = store.query(query).await.context("reading events")?;
            let rows: Vec<Vec<String>> = events.iter().map(table_row).collect();
            write_table(&mut out, &TABLE_HEADERS, &rows).context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// The query the flags describe.
fn builder(args: &QueryArgs) -> QueryBuilder {
    let mut builder = args.filters.builder();
    match args.filters.after {
        Some(After::Cursor(cursor)) => builder = builder.resume_after(cursor),
        Some(After::Position(position)) => builder = builder.position_after(position),
        None => {}
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
