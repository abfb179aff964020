//! `strata push`: commands as JSON lines in, one JSON line per stored event out.

use std::io::{BufRead, BufReader, Write};

use anyhow::Context;
use serde::Serialize;
use strata_event::{Command, Cursor, Event, IdempotencyKey};
use strata_store::{Error, EventStore};

use crate::PushArgs;
use crate::connect::connect;
use crate::output::{OutputFormat, write_json_line};
use crate::progress::Progress;

/// What is printed for each stored event.
#[derive(Debug, Serialize)]
struct Stored<'a> {
    line: usize,
    instance_id: &'a str,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    sequence: u64,
    /// A string: positions are exact decimals that a float would round.
    position: String,
    in_tx_order: u32,
    /// `position:in_tx_order`, for `strata query --after`.
    cursor: Cursor,
}

pub(crate) async fn run(args: PushArgs) -> anyhow::Result<()> {
    let url = &args.database.database_url;
    let format = OutputFormat::resolve(args.output.output);
    let input: Box<dyn BufRead> = match &args.file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(path) if path.as_os_str() == "-" => Box::new(BufReader::new(std::io::stdin())),
        Some(path) => Box::new(BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
    };
    // Connect first, so a wrong URL is reported before any input is read.
    let store = match args.check {
        true => None,
        false => Some(connect(url).await?),
    };
    let batch_size = args.batch as usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut batch: Vec<(usize, Command)> = Vec::with_capacity(batch_size);
    let mut stored_events = 0usize;
    let mut stored_lines = 0usize;
    let mut checked = 0usize;
    let mut batches = 0usize;
    let mut progress = Progress::start("lines", None);
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let command: Command = serde_json::from_str(&line).map_err(|err| {
            let first = batch.first().map_or(number, |(first, _)| *first);
            let consequence = match store {
                None => "nothing was pushed (--check)".to_owned(),
                Some(_) => not_pushed(first, number, stored_lines, stored_events),
            };
            anyhow::anyhow!("line {number}: {err}\n{consequence}")
        })?;
        checked += 1;
        batch.push((number, command));
        if batch.len() == batch_size {
            let lines = batch.len() as u64;
            batches += 1;
            if let Some(store) = &store {
                let key = batch_key(args.idempotency_key.as_deref(), batches, &batch)?;
                push_batch(store, &mut batch, key, &mut out, format, &mut stored_events).await?;
            }
            stored_lines += batch.len();
            batch.clear();
            progress.add(lines);
        }
    }
    if !batch.is_empty()
        && let Some(store) = &store
    {
        let lines = batch.len() as u64;
        let key = batch_key(args.idempotency_key.as_deref(), batches + 1, &batch)?;
        push_batch(store, &mut batch, key, &mut out, format, &mut stored_events).await?;
        progress.add(lines);
    }
    progress.finish();
    out.flush().context("writing to stdout")?;
    if store.is_none() {
        eprintln!("{checked} commands are valid; nothing was pushed (--check)");
    }
    Ok(())
}

/// The idempotency key of batch `number` (from 1) under `--idempotency-key`: `KEY/number`, in the
/// instance of the batch's first command. The same input pushed again with the same key and
/// `--batch` makes the same keys, so batches already stored are answered, not stored again.
fn batch_key(
    key: Option<&str>,
    number: usize,
    batch: &[(usize, Command)],
) -> anyhow::Result<Option<IdempotencyKey>> {
    let (Some(key), Some((_, first))) = (key, batch.first()) else {
        return Ok(None);
    };
    let instance = first.aggregate().instance_id.as_str();
    IdempotencyKey::new(instance, format!("{key}/{number}"))
        .map(Some)
        .context("invalid --idempotency-key")
}

/// Pushes one batch (one transaction), with its idempotency key if it has one, and prints its
/// events.
async fn push_batch(
    store: &impl EventStore,
    batch: &mut Vec<(usize, Command)>,
    key: Option<IdempotencyKey>,
    out: &mut impl Write,
    format: OutputFormat,
    stored_events: &mut usize,
) -> anyhow::Result<()> {
    let lines: Vec<usize> = batch.iter().map(|(line, _)| *line).collect();
    let commands: Vec<Command> = batch.drain(..).map(|(_, command)| command).collect();
    let (Some(&first), Some(&last)) = (lines.first(), lines.last()) else {
        return Ok(());
    };
    let range = match first == last {
        true => format!("line {first}"),
        false => format!("lines {first}-{last}"),
    };
    let pushed = match &key {
        Some(key) => store.push_idempotent(key, commands).await,
        None => store.push(commands).await,
    };
    let events: Vec<Event> = match pushed {
        Ok(events) => events,
        Err(err @ Error::Unavailable { .. }) if key.is_some() => {
            return Err(anyhow::Error::new(err).context(format!(
                "pushing {range}: the connection failed mid-push; {stored_events} events from \
                 earlier lines were stored; run the same input again with the same \
                 --idempotency-key and --batch: batches already stored are not stored twice"
            )));
        }
        Err(err @ Error::Unavailable { .. }) => {
            return Err(anyhow::Error::new(err).context(format!(
                "pushing {range}: the connection failed mid-push, so it is unknown whether \
                 {range} was stored (entirely or not at all); {stored_events} events from earlier \
                 lines were stored; check with `strata query` before pushing {range} again"
            )));
        }
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!(
                "pushing {range} failed and nothing of it was stored ({stored_events} events from \
                 earlier lines were); fix the input and push again from line {first}"
            )));
        }
    };
    // Events come back in command order, one per command.
    for (event, line) in events.iter().zip(lines) {
        match format {
            OutputFormat::Json => write_json_line(
                out,
                &Stored {
                    line,
                    instance_id: event.aggregate.instance_id.as_str(),
                    aggregate_type: event.aggregate.aggregate_type.as_str(),
                    aggregate_id: event.aggregate.aggregate_id.as_str(),
                    event_type: event.event_type.as_str(),
                    sequence: event.sequence,
                    position: event.position.to_string(),
                    in_tx_order: event.in_tx_order,
                    cursor: event.cursor(),
                },
            )?,
            OutputFormat::Table => writeln!(
                out,
                "line {line}: {} {}/{} sequence {} {} at {}",
                event.aggregate.instance_id,
                event.aggregate.aggregate_type,
                event.aggregate.aggregate_id,
                event.sequence,
                event.event_type,
                event.cursor()
            )
            .context("writing to stdout")?,
        }
    }
    *stored_events += events.len();
    Ok(())
}

/// Says what a bad line means for the store: nothing of its batch, everything before it.
fn not_pushed(first: usize, bad: usize, stored_lines: usize, stored_events: usize) -> String {
    let batch = match first == bad {
        true => format!("line {bad}"),
        false => format!("lines {first}-{bad}"),
    };
    format!(
        "nothing from {batch} was pushed; {stored_lines} earlier lines ({stored_events} events) \
         were stored; fix line {bad} and push again from line {first}"
    )
}
