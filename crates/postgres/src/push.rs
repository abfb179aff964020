//! Pushing: commands encoded as parallel arrays, one call of `eventstore.push` (or of
//! `eventstore.push_one` for a lone command), and group commit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{Command, Event, Position, UniqueConstraintOp};
use strata_store::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use crate::config::GroupCommitConfig;
use crate::error::from_sqlx;

const PUSH_SQL: &str = "SELECT r_push, r_sequence, r_in_tx_order, r_position, r_created_at, r_error, r_error_args \
     FROM eventstore.push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

const PUSH_ONE_SQL: &str = "SELECT r_sequence, r_position, r_created_at \
     FROM eventstore.push_one($1, $2, $3, $4, $5, $6, $7, $8)";

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
    Grouped {
        lanes: Arc<[mpsc::UnboundedSender<PushRequest>]>,
        /// For pushes of at least `alone_from` commands, which skip the lanes.
        pool: PgPool,
        alone_from: usize,
    },
}

#[derive(Debug)]
pub(crate) struct PushRequest {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Vec<Event>>>,
}

/// Lanes when [`GroupCommitConfig::lanes`] is unset: one per CPU core of this machine, at least
/// two, but never more than the push pool has connections. Each lane has at most one call in flight, so this is also
/// how many push transactions run at once; more would only add lock and CPU contention, fewer
/// would leave the database idle between a call's commit and the next.
fn default_lanes(pool_size: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.max(2).min((pool_size as usize).max(1))
}

/// The lane a push queues in: chosen by the aggregate of its first command, so every push to one
/// aggregate queues in the same lane. Pushes to a hot aggregate therefore share calls (and
/// commits) instead of holding connections while they wait for each other's advisory lock.
fn lane_of(commands: &[Command], lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let Some(first) = commands.first() else {
        return 0;
    };
    // `DefaultHasher::new()` has fixed keys: the same aggregate always maps to the same lane.
    let mut hasher = std::hash::DefaultHasher::new();
    let aggregate = first.aggregate();
    aggregate.instance_id.as_str().hash(&mut hasher);
    aggregate.aggregate_type.as_str().hash(&mut hasher);
    aggregate.aggregate_id.as_str().hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

impl Pusher {
    /// Starts the group-commit lanes on the current Tokio runtime when grouping is enabled.
    pub(crate) fn start(pool: PgPool, config: &GroupCommitConfig, pool_size: u32) -> Pusher {
        if !config.enabled {
            return Pusher::Direct(pool);
        }
        let lanes = config
            .lanes
            .unwrap_or_else(|| default_lanes(pool_size))
            .max(1);
        let senders: Vec<_> = (0..lanes)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(
                    pool.clone(),
                    receiver,
                    config.max_pushes.max(1),
                    config.max_commands.max(1),
                ));
                sender
            })
            .collect();
        Pusher::Grouped {
            lanes: senders.into(),
            pool,
            alone_from: config.alone_from.max(1),
        }
    }

    pub(crate) async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        match self {
            Pusher::Direct(pool) => push_alone(pool, commands).await,
            Pusher::Grouped {
                pool, alone_from, ..
            } if commands.len() >= *alone_from => push_alone(pool, commands).await,
            Pusher::Grouped { lanes, .. } => {
                let (reply, answer) = oneshot::channel();
                let lanes_gone = || Error::Unavailable {
                    message: "the push lanes have stopped (is the Tokio runtime shutting down?)"
                        .into(),
                    source: None,
                };
                let lane = lanes
                    .get(lane_of(&commands, lanes.len()))
                    .ok_or_else(lanes_gone)?;
                lane.send(PushRequest { commands, reply })
                    .map_err(|_| lanes_gone())?;
                answer.await.map_err(|_| lanes_gone())?
            }
        }
    }
}

/// One lane: takes the next push, plus whatever queued behind it, and sends them as one call, then
/// waits for that call before the next. While a call is in flight pushes accumulate, so the busier
/// the store the fewer commits per event; an idle store sends each push at once.
async fn run_lane(
    pool: PgPool,
    mut queue: mpsc::UnboundedReceiver<PushRequest>,
    max_pushes: usize,
    max_commands: usize,
) {
    // A push that did not fit the previous call: it opens the next one.
    let mut carried: Option<PushRequest> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // A caller that stopped waiting before its push was sent (its future was dropped: a
        // timeout, a cancelled request) has its push dropped too, so a cancelled push is stored
        // only when it was already on its way, as with a push sent alone.
        if first.reply.is_closed() {
            continue;
        }
        // Let the tasks that are ready to run push first. The callers the previous call just
        // answered are woken together; the first to push wakes this lane, and Tokio runs the woken
        // lane before the rest, so without this pause the lane sends that one push alone and the
        // others wait a whole call for the next. One pass of the scheduler costs an idle store
        // nothing it would notice: W1 at 8 writers rose from ~5 900 to ~7 200 events/s (p50 1.30
        // to 1.02 ms), at 32 from ~14 300 to ~16 600.
        tokio::task::yield_now().await;
        let mut commands = first.commands.len();
        let mut batch = vec![first];
        while batch.len() < max_pushes && commands < max_commands {
            match queue.try_recv() {
                Ok(next) if next.reply.is_closed() => {}
                Ok(next) if commands + next.commands.len() > max_commands => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    commands += next.commands.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
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

/// The event `command` became, from what the database assigned it.
fn stored(
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
    }
}

/// The command of a call that is one push of one command with no expected sequence and no unique
/// constraint: what `eventstore.push_one` stores, with plain parameters instead of fifteen arrays.
fn lone_command(pushes: &[Vec<Command>]) -> Option<&Command> {
    let [push] = pushes else {
        return None;
    };
    let [command] = push.as_slice() else {
        return None;
    };
    (command.expected_sequence().is_none() && command.unique_constraints().is_empty())
        .then_some(command)
}

/// `eventstore.push_one` for a [`lone_command`].
async fn execute_lone(pool: &PgPool, command: &Command) -> Result<Vec<Result<Vec<Event>>>> {
    let (sequence, position, created_at): (i64, Decimal, DateTime<Utc>) =
        sqlx::query_as(PUSH_ONE_SQL)
            .bind(command.aggregate().instance_id.as_str())
            .bind(command.aggregate().aggregate_type.as_str())
            .bind(command.aggregate().aggregate_id.as_str())
            .bind(command.event_type().as_str())
            .bind(i32::from(command.revision()))
            .bind(command.creator().as_str())
            .bind(command.owner().as_str())
            .bind(command.payload().json())
            .fetch_one(pool)
            .await
            .map_err(|err| from_sqlx("pushing events", err))?;
    let position = Position::new(position).map_err(|_| corrupt("a negative position"))?;
    Ok(vec![Ok(vec![stored(
        command, sequence, 0, position, created_at,
    )])])
}

/// Calls `eventstore.push` once for all `pushes` (or `eventstore.push_one` for a
/// [`lone_command`]) and returns each push's outcome in order. The outer error means the call
/// itself failed and nothing of it was stored (or, for [`Error::Unavailable`], that the outcome is
/// unknown).
async fn execute(pool: &PgPool, pushes: &[Vec<Command>]) -> Result<Vec<Result<Vec<Event>>>> {
    if let Some(command) = lone_command(pushes) {
        return execute_lone(pool, command).await;
    }
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
            events.push(stored(
                command,
                sequence,
                in_tx_order as u32,
                position,
                created_at,
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn command(aggregate_id: &str) -> Command {
        Command::builder("i", "user", aggregate_id, "user.added")
            .creator("tester")
            .owner("org")
            .build()
            .expect("valid command")
    }

    #[test]
    fn pushes_to_one_aggregate_share_a_lane_and_others_spread() {
        let hot = lane_of(&[command("hot")], 4);
        for _ in 0..10 {
            assert_eq!(lane_of(&[command("hot"), command("other")], 4), hot);
        }
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|n| lane_of(&[command(&format!("user-{n}"))], 4))
            .collect();
        assert_eq!(used.len(), 4, "64 aggregates use every lane");
        assert!(used.iter().all(|lane| *lane < 4));
        assert_eq!(lane_of(&[], 4), 0);
        assert_eq!(lane_of(&[command("hot")], 1), 0);
    }
}
