//! One call of `eventstore.push`: pushes encoded as parallel arrays (or, for a push of a single
//! plain command, the parameters of `eventstore.push_one`), and the rows that come back decoded
//! into each push's events or typed error; a keyed push whose key was already recorded reads the
//! recorded events back.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use strata_event::{Command, Event, Metadata, Position, UniqueConstraintOp};
use strata_store::{Error, Result};

use crate::error::{from_sqlx, unexpected_answer};
use crate::pooling::{Pooled, fetch_all_on};
use crate::read::fetch_recorded;
use crate::telemetry::acquire;

use super::{CallSettings, Push};

/// Sends `push` as a call of its own and returns its outcome.
pub(crate) async fn push_in_own_call(
    pool: &PgPool,
    push: Push,
    settings: CallSettings,
) -> Result<Vec<Event>> {
    let mut outcomes = call(pool, std::slice::from_ref(&push), settings).await?;
    outcomes.pop().unwrap_or_else(|| Err(missing_outcome()))
}

/// An event's metadata as the JSON text the database stores, `None` (SQL `NULL`) when it is
/// empty, as most is: no column value to write, none to read back.
pub(crate) fn metadata_json(metadata: &Metadata) -> Result<Option<String>> {
    if metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(metadata)
        .map(Some)
        .map_err(|err| Error::invalid_input(format!("metadata does not encode as JSON: {err}")))
}

/// Calls `eventstore.push` once for all `pushes` (or `eventstore.push_one` for a
/// [`single_plain_command`]) and returns each push's outcome in order. The outer error means the
/// call itself failed and nothing of it was stored (or, for [`Error::Unavailable`], that the
/// outcome is unknown).
pub(crate) async fn call(
    pool: &PgPool,
    pushes: &[Push],
    settings: CallSettings,
) -> Result<Vec<Result<Vec<Event>>>> {
    if let Some(command) = single_plain_command(pushes) {
        return Ok(vec![Ok(vec![
            call_push_one(pool, command, settings.transaction_pooling).await?,
        ])]);
    }
    let commands: Vec<&Command> = pushes.iter().flat_map(|push| &push.commands).collect();
    let mut push_of_command = Vec::with_capacity(commands.len());
    for (index, push) in pushes.iter().enumerate() {
        push_of_command.extend(std::iter::repeat_n(index as i32, push.commands.len()));
    }
    let unique_ops = UniqueOp::of(pushes);
    let unique = UniqueColumns::encode(&unique_ops);
    let metadata = commands
        .iter()
        .map(|c| metadata_json(c.metadata()))
        .collect::<Result<Vec<Option<String>>>>()?;
    let mut keys = KeyColumns::default();
    for (index, push) in pushes.iter().enumerate() {
        if let Some(keyed) = &push.key {
            keys.push.push(index as i32);
            keys.instance_id.push(keyed.key.instance_id().as_str());
            keys.key.push(keyed.key.key());
            keys.fingerprint.push(keyed.fingerprint.as_str());
        }
    }

    let column = |f: fn(&Command) -> &str| commands.iter().map(|c| f(c)).collect::<Vec<&str>>();
    // Held for this statement only: reading a replayed push's events below takes another.
    let mut connection = acquire(pool, "push")
        .await
        .map_err(|err| from_sqlx("pushing events", err))?;
    let call = sqlx::query_as(PUSH_SQL)
        .bind(&push_of_command)
        .bind(column(|c| c.aggregate().instance_id.as_str()))
        .bind(column(|c| c.aggregate().aggregate_type.as_str()))
        .bind(column(|c| c.aggregate().aggregate_id.as_str()))
        .bind(column(|c| c.event_type().as_str()))
        .bind(
            commands
                .iter()
                .map(|c| i32::from(c.revision()))
                .collect::<Vec<i32>>(),
        )
        .bind(column(|c| c.creator().as_str()))
        .bind(column(|c| c.owner().as_str()))
        .bind(
            commands
                .iter()
                .map(|c| c.payload().json())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            commands
                .iter()
                .map(|c| c.expected_sequence().map(|s| s as i64))
                .collect::<Vec<Option<i64>>>(),
        )
        .bind(&metadata)
        .bind(unique.push)
        .bind(unique.op)
        .bind(unique.instance_id)
        .bind(unique.unique_type)
        .bind(unique.value)
        .bind(keys.push)
        .bind(keys.instance_id)
        .bind(keys.key)
        .bind(keys.fingerprint)
        .bind(settings.key_retention);
    let rows: Vec<PushRow> = fetch_all_on(&mut connection, call, settings.transaction_pooling)
        .await
        .map_err(|err| from_sqlx("pushing events", err))?;
    drop(connection);

    let mut outcomes: Vec<Result<Vec<Event>>> = pushes
        .iter()
        .map(|push| Ok(Vec::with_capacity(push.commands.len())))
        .collect();
    // Pushes whose key was recorded: (push index, position, first in_tx_order, event count).
    let mut replays: Vec<(usize, Decimal, i32, i32)> = Vec::new();
    for row in rows {
        let Some(outcome) = outcomes.get_mut(row.push as usize) else {
            return Err(corrupt("push index out of range"));
        };
        if row.error.as_deref() == Some("replay") {
            let (Some(position), Some([first, count])) = (row.position, row.error_args.as_deref())
            else {
                return Err(corrupt("a replay without its recorded place"));
            };
            let (Ok(first), Ok(count)) = (i32::try_from(*first), i32::try_from(*count)) else {
                return Err(corrupt("a replay's recorded place out of range"));
            };
            replays.push((row.push as usize, position, first, count));
            continue;
        }
        if row.error.as_deref() == Some("key_reused") {
            let Some(keyed) = pushes
                .get(row.push as usize)
                .and_then(|push| push.key.as_ref())
            else {
                return Err(corrupt("a reused key on a push without one"));
            };
            *outcome = Err(Error::IdempotencyKeyReused {
                instance_id: keyed.key.instance_id().clone(),
                key: keyed.key.key().to_owned(),
            });
            continue;
        }
        if let Some(code) = row.error {
            *outcome = Err(decode_push_error(
                &code,
                row.error_args.as_deref(),
                &commands,
                &unique_ops,
            )?);
            continue;
        }
        let (Some(sequence), Some(in_tx_order), Some(position), Some(created_at)) =
            (row.sequence, row.in_tx_order, row.position, row.created_at)
        else {
            return Err(corrupt("a stored event without sequence or position"));
        };
        let command = commands
            .get(in_tx_order as usize)
            .ok_or_else(|| corrupt("in_tx_order out of range"))?;
        let position = Position::new(position).map_err(|_| corrupt("a negative position"))?;
        if let Ok(events) = outcome {
            events.push(stored(
                command,
                sequence,
                in_tx_order as u32,
                position,
                created_at,
            ));
        }
    }
    // Read after the call, which has committed: a replay of a push of this very call (two pushes
    // with one key) finds its events too. Only retries take this extra round trip. A failed read
    // is that push's outcome alone: the call committed, so the others' outcomes stand, and an
    // error for the whole call would have the lane re-send pushes that are already stored.
    for (index, position, first, count) in replays {
        let events = fetch_recorded(
            Pooled::new(pool, settings.transaction_pooling),
            position,
            first,
            count,
        )
        .await
        .and_then(|events| match events.len() == count as usize {
            true => Ok(events),
            false => Err(corrupt("a recorded push whose events are not all there")),
        });
        if let Some(outcome) = outcomes.get_mut(index) {
            *outcome = events;
        }
    }
    for (outcome, push) in outcomes.iter().zip(pushes) {
        if let Ok(events) = outcome
            && events.len() != push.commands.len()
        {
            return Err(corrupt(
                "a push came back with a different number of events",
            ));
        }
    }
    Ok(outcomes)
}

const PUSH_SQL: &str = "SELECT r_push, r_sequence, r_in_tx_order, r_position, r_created_at, r_error, r_error_args \
     FROM eventstore.push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
     $17, $18, $19, $20, $21)";

const PUSH_ONE_SQL: &str = "SELECT r_sequence, r_position, r_created_at \
     FROM eventstore.push_one($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A row of [`PUSH_SQL`]: a stored event, or a push's error.
#[derive(Debug)]
struct PushRow {
    /// Index of the push (in the call) the row is about.
    push: i32,
    sequence: Option<i64>,
    /// Index of the command (over the whole call) the event was made from.
    in_tx_order: Option<i32>,
    position: Option<Decimal>,
    created_at: Option<DateTime<Utc>>,
    /// `conflict` or `unique` when the push failed, `key_reused` when its key names other
    /// commands (nothing of it was stored), `replay` when its key was recorded by an earlier push.
    error: Option<String>,
    /// The error's details: see [`decode_push_error`].
    error_args: Option<Vec<i64>>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for PushRow {
    /// By index, in [`PUSH_SQL`]'s column order: every push decodes its rows here.
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(PushRow {
            push: row.try_get(0)?,
            sequence: row.try_get(1)?,
            in_tx_order: row.try_get(2)?,
            position: row.try_get(3)?,
            created_at: row.try_get(4)?,
            error: row.try_get(5)?,
            error_args: row.try_get(6)?,
        })
    }
}

/// The command of a call that is one unkeyed push of one command with no expected sequence and no
/// unique constraint: what `eventstore.push_one` stores, with plain parameters instead of twenty
/// arrays.
fn single_plain_command(pushes: &[Push]) -> Option<&Command> {
    let [
        Push {
            commands,
            key: None,
        },
    ] = pushes
    else {
        return None;
    };
    let [command] = commands.as_slice() else {
        return None;
    };
    (command.expected_sequence().is_none() && command.unique_constraints().is_empty())
        .then_some(command)
}

/// `eventstore.push_one` for a [`single_plain_command`].
async fn call_push_one(
    pool: &PgPool,
    command: &Command,
    transaction_pooling: bool,
) -> Result<Event> {
    let mut connection = acquire(pool, "push")
        .await
        .map_err(|err| from_sqlx("pushing events", err))?;
    let call = sqlx::query_as(PUSH_ONE_SQL)
        .bind(command.aggregate().instance_id.as_str())
        .bind(command.aggregate().aggregate_type.as_str())
        .bind(command.aggregate().aggregate_id.as_str())
        .bind(command.event_type().as_str())
        .bind(i32::from(command.revision()))
        .bind(command.creator().as_str())
        .bind(command.owner().as_str())
        .bind(command.payload().json())
        .bind(metadata_json(command.metadata())?);
    let rows: Vec<(i64, Decimal, DateTime<Utc>)> =
        fetch_all_on(&mut connection, call, transaction_pooling)
            .await
            .map_err(|err| from_sqlx("pushing events", err))?;
    let Some(&(sequence, position, created_at)) = rows.first() else {
        return Err(corrupt("no row from eventstore.push_one"));
    };
    let position = Position::new(position).map_err(|_| corrupt("a negative position"))?;
    Ok(stored(command, sequence, 0, position, created_at))
}

/// The event `command` became, from what the database assigned it.
pub(crate) fn stored(
    command: &Command,
    sequence: i64,
    in_tx_order: u32,
    position: Position,
    created_at: DateTime<Utc>,
) -> Event {
    Event {
        aggregate: command.aggregate().clone(),
        event_type: command.event_type().clone(),
        sequence: sequence as u64,
        revision: command.revision(),
        created_at,
        creator: command.creator().clone(),
        owner: command.owner().clone(),
        position,
        in_tx_order,
        raw_payload: command.payload().clone(),
        metadata: command.metadata().clone(),
    }
}

/// The keyed pushes of a call as the four parallel arrays `eventstore.push` takes.
#[derive(Default)]
struct KeyColumns<'a> {
    push: Vec<i32>,
    instance_id: Vec<&'a str>,
    key: Vec<&'a str>,
    fingerprint: Vec<&'a str>,
}

/// One unique-constraint operation of a call, with the push and the command it belongs to. Their
/// order is the order `eventstore.push` applies them in, and its `unique` errors name one by index.
struct UniqueOp<'a> {
    push: i32,
    command: &'a Command,
    op: &'a UniqueConstraintOp,
}

impl<'a> UniqueOp<'a> {
    fn of(pushes: &'a [Push]) -> Vec<UniqueOp<'a>> {
        pushes
            .iter()
            .enumerate()
            .flat_map(|(index, push)| {
                push.commands.iter().flat_map(move |command| {
                    command.unique_constraints().iter().map(move |op| UniqueOp {
                        push: index as i32,
                        command,
                        op,
                    })
                })
            })
            .collect()
    }
}

/// [`UniqueOp`]s as the five parallel arrays `eventstore.push` takes.
#[derive(Default)]
struct UniqueColumns<'a> {
    push: Vec<i32>,
    /// `add`, `remove` or `clear` (every constraint of the instance).
    op: Vec<&'static str>,
    instance_id: Vec<&'a str>,
    unique_type: Vec<&'a str>,
    value: Vec<&'a str>,
}

impl<'a> UniqueColumns<'a> {
    fn encode(ops: &[UniqueOp<'a>]) -> UniqueColumns<'a> {
        let mut columns = UniqueColumns::default();
        for unique in ops {
            let (op, unique_type, value) = match unique.op {
                UniqueConstraintOp::Add {
                    unique_type, value, ..
                } => ("add", unique_type.as_str(), value.as_str()),
                UniqueConstraintOp::Remove { unique_type, value } => {
                    ("remove", unique_type.as_str(), value.as_str())
                }
                UniqueConstraintOp::RemoveAllOfInstance => ("clear", "", ""),
            };
            columns.push.push(unique.push);
            columns.op.push(op);
            columns
                .instance_id
                .push(unique.command.aggregate().instance_id.as_str());
            columns.unique_type.push(unique_type);
            columns.value.push(value);
        }
        columns
    }
}

/// The typed error of a push that `eventstore.push` refused with `code`:
/// `conflict` with `[command index, expected sequence, actual sequence]`, or `unique` with
/// `[unique operation index]`.
fn decode_push_error(
    code: &str,
    args: Option<&[i64]>,
    commands: &[&Command],
    unique_ops: &[UniqueOp<'_>],
) -> Result<Error> {
    let index = |i: usize| -> Result<usize> {
        args.and_then(|args| args.get(i))
            .and_then(|&value| usize::try_from(value).ok())
            .ok_or_else(|| corrupt("an error row without its arguments"))
    };
    match code {
        "conflict" => {
            let command = commands
                .get(index(0)?)
                .ok_or_else(|| corrupt("conflict on an unknown command"))?;
            Ok(Error::Conflict {
                aggregate: command.aggregate().clone(),
                expected: index(1)? as u64,
                actual: index(2)? as u64,
            })
        }
        "unique" => {
            let Some(UniqueOp {
                command,
                op:
                    UniqueConstraintOp::Add {
                        unique_type,
                        value,
                        error_message_id,
                    },
                ..
            }) = unique_ops.get(index(0)?)
            else {
                return Err(corrupt("unique violation on an unknown operation"));
            };
            Ok(Error::UniqueConstraintViolation {
                instance_id: command.aggregate().instance_id.clone(),
                unique_type: unique_type.clone(),
                value: value.clone(),
                error_message_id: error_message_id.clone(),
            })
        }
        other => Err(corrupt(&format!("unknown push error code {other:?}"))),
    }
}

fn missing_outcome() -> Error {
    corrupt("no outcome for a push")
}

fn corrupt(what: &str) -> Error {
    unexpected_answer("eventstore.push", what)
}
