//! Pushing: commands encoded as parallel arrays, one call of `eventstore.push`, and group commit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{Command, Event, Position, UniqueConstraintOp};
use strata_store::{Error, Result};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::GroupCommitConfig;
use crate::error::from_sqlx;

const PUSH_SQL: &str = "SELECT r_push, r_sequence, r_in_tx_order, r_position, r_created_at, r_error, r_error_args \
     FROM eventstore.push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

type PushRow = (
    i32,
    Option<i64>,
    Option<i32>,
    Option<Decimal>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<Vec<i64>>,
);

/// Sends pushes to the database, alone or grouped.
#[derive(Debug, Clone)]
pub(crate) enum Pusher {
    Direct(PgPool),
    Grouped(mpsc::UnboundedSender<PushRequest>),
}

#[derive(Debug)]
pub(crate) struct PushRequest {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Vec<Event>>>,
}

impl Pusher {
    /// Starts the group-commit lanes on the current Tokio runtime when grouping is enabled.
    pub(crate) fn start(pool: PgPool, config: &GroupCommitConfig, pool_size: u32) -> Pusher {
        if !config.enabled {
            return Pusher::Direct(pool);
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let lanes = config.lanes.unwrap_or(pool_size as usize).max(1);
        for _ in 0..lanes {
            tokio::spawn(run_lane(
                pool.clone(),
                Arc::clone(&receiver),
                config.max_pushes.max(1),
                config.max_commands.max(1),
            ));
        }
        Pusher::Grouped(sender)
    }

    pub(crate) async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        match self {
            Pusher::Direct(pool) => push_alone(pool, commands).await,
            Pusher::Grouped(queue) => {
                let (reply, answer) = oneshot::channel();
                let lanes_gone = || Error::Unavailable {
                    message: "the push lanes have stopped (is the Tokio runtime shutting down?)"
                        .into(),
                    source: None,
                };
                queue
                    .send(PushRequest { commands, reply })
                    .map_err(|_| lanes_gone())?;
                answer.await.map_err(|_| lanes_gone())?
            }
        }
    }
}

/// One lane: takes the next push, plus whatever queued behind it, and sends them as one call.
/// With every lane busy, pushes accumulate and the next free lane carries them all, so the busier
/// the store the fewer commits per event; an idle store sends each push at once.
async fn run_lane(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<PushRequest>>>,
    max_pushes: usize,
    max_commands: usize,
) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut commands = first.commands.len();
            let mut batch = vec![first];
            while batch.len() < max_pushes && commands < max_commands {
                match queue.try_recv() {
                    Ok(next) => {
                        commands += next.commands.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        run_batch(&pool, batch).await;
    }
}

async fn run_batch(pool: &PgPool, batch: Vec<PushRequest>) {
    let (pushes, replies): (Vec<Vec<Command>>, Vec<_>) = batch
        .into_iter()
        .map(|request| (request.commands, request.reply))
        .unzip();
    match execute(pool, &pushes).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have given up waiting; its push is stored all the same.
                let _ = reply.send(outcome);
            }
        }
        Err(err) if pushes.len() == 1 || err.is_retryable() => {
            // NOTE: after a connection failure the outcome is unknown, so nothing is re-sent: each
            // caller learns its push is either wholly stored or wholly absent.
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            // One push broke the shared call in a way the function does not report per push. The call
            // rolled back entirely, so each push is sent alone to find its own outcome.
            tracing::warn!(error = %err, pushes = pushes.len(), "group push failed, splitting it");
            for (reply, push) in replies.into_iter().zip(pushes) {
                let outcome = execute(pool, std::slice::from_ref(&push)).await;
                let _ = reply.send(outcome.and_then(|mut outcomes| {
                    outcomes.pop().unwrap_or_else(|| Err(missing_outcome()))
                }));
            }
        }
    }
}

async fn push_alone(pool: &PgPool, commands: Vec<Command>) -> Result<Vec<Event>> {
    let mut outcomes = execute(pool, std::slice::from_ref(&commands)).await?;
    outcomes.pop().unwrap_or_else(|| Err(missing_outcome()))
}

fn missing_outcome() -> Error {
    Error::Backend {
        message: "eventstore.push returned no outcome for a push".into(),
        source: None,
    }
}

/// Calls `eventstore.push` once for all `pushes` and returns each push's outcome in order. The outer
/// error means the call itself failed and nothing of it was stored (or, for
/// [`Error::Unavailable`], that the outcome is unknown).
async fn execute(pool: &PgPool, pushes: &[Vec<Command>]) -> Result<Vec<Result<Vec<Event>>>> {
    let commands: Vec<&Command> = pushes.iter().flatten().collect();
    let mut push_of_command = Vec::with_capacity(commands.len());
    for (index, push) in pushes.iter().enumerate() {
        push_of_command.extend(std::iter::repeat_n(index as i32, push.len()));
    }
    let unique_ops: Vec<(i32, &Command, &UniqueConstraintOp)> = pushes
        .iter()
        .enumerate()
        .flat_map(|(index, push)| {
            push.iter().flat_map(move |command| {
                command
                    .unique_constraints()
                    .iter()
                    .map(move |op| (index as i32, command, op))
            })
        })
        .collect();

    let column = |f: fn(&Command) -> &str| commands.iter().map(|c| f(c)).collect::<Vec<&str>>();
    let (u_push, u_op, u_instance, u_type, u_value) = encode_unique_ops(&unique_ops);
    let rows: Vec<PushRow> = sqlx::query_as(PUSH_SQL)
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
        .bind(u_push)
        .bind(u_op)
        .bind(u_instance)
        .bind(u_type)
        .bind(u_value)
        .fetch_all(pool)
        .await
        .map_err(|err| from_sqlx("pushing events", err))?;

    let mut outcomes: Vec<Result<Vec<Event>>> = pushes
        .iter()
        .map(|push| Ok(Vec::with_capacity(push.len())))
        .collect();
    for (push, sequence, in_tx_order, position, created_at, error, error_args) in rows {
        let Some(outcome) = outcomes.get_mut(push as usize) else {
            return Err(corrupt("push index out of range"));
        };
        if let Some(code) = error {
            *outcome = Err(decode_push_error(
                &code,
                error_args.as_deref(),
                &commands,
                &unique_ops,
            )?);
            continue;
        }
        let (Some(sequence), Some(in_tx_order), Some(position), Some(created_at)) =
            (sequence, in_tx_order, position, created_at)
        else {
            return Err(corrupt("a stored event without sequence or position"));
        };
        let command = commands
            .get(in_tx_order as usize)
            .ok_or_else(|| corrupt("in_tx_order out of range"))?;
        let position = Position::new(position).map_err(|_| corrupt("a negative position"))?;
        if let Ok(events) = outcome {
            events.push(Event {
                aggregate: command.aggregate().clone(),
                event_type: command.event_type().clone(),
                sequence: sequence as u64,
                revision: command.revision(),
                created_at,
                creator: command.creator().clone(),
                owner: command.owner().clone(),
                position,
                in_tx_order: in_tx_order as u32,
                raw_payload: command.payload().clone(),
            });
        }
    }
    for (outcome, push) in outcomes.iter().zip(pushes) {
        if let Ok(events) = outcome
            && events.len() != push.len()
        {
            return Err(corrupt(
                "a push came back with a different number of events",
            ));
        }
    }
    Ok(outcomes)
}

type UniqueColumns<'a> = (
    Vec<i32>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
);

fn encode_unique_ops<'a>(ops: &[(i32, &'a Command, &'a UniqueConstraintOp)]) -> UniqueColumns<'a> {
    let mut columns: UniqueColumns<'a> = Default::default();
    for (push, command, op) in ops {
        let (kind, unique_type, value) = match op {
            UniqueConstraintOp::Add {
                unique_type, value, ..
            } => ("add", unique_type.as_str(), value.as_str()),
            UniqueConstraintOp::Remove { unique_type, value } => {
                ("remove", unique_type.as_str(), value.as_str())
            }
            UniqueConstraintOp::RemoveAllOfInstance => ("clear", "", ""),
        };
        columns.0.push(*push);
        columns.1.push(kind);
        columns.2.push(command.aggregate().instance_id.as_str());
        columns.3.push(unique_type);
        columns.4.push(value);
    }
    columns
}

fn decode_push_error(
    code: &str,
    args: Option<&[i64]>,
    commands: &[&Command],
    unique_ops: &[(i32, &Command, &UniqueConstraintOp)],
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
            let Some((
                _,
                command,
                UniqueConstraintOp::Add {
                    unique_type,
                    value,
                    error_message_id,
                },
            )) = unique_ops.get(index(0)?)
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

fn corrupt(what: &str) -> Error {
    Error::Backend {
        message: format!(
            "unexpected answer from eventstore.push: {what} (are the migrations current?)"
        ),
        source: None,
    }
}
