//! Group commit: pushes that arrive while earlier ones are in flight travel together in the next
//! call, and each still gets its own outcome.

use std::sync::Arc;

use sqlx::PgPool;
use strata_event::{Command, Event};
use strata_store::{Error, Result, telemetry};
use tokio::sync::{mpsc, oneshot};

use crate::config::GroupCommitConfig;

use super::{CallSettings, Push, wire};

/// The queues pushes wait in, each drained by one task with at most one call in flight.
#[derive(Debug, Clone)]
pub(crate) struct Lanes {
    queues: Arc<[mpsc::UnboundedSender<PushRequest>]>,
}

impl Lanes {
    /// Starts [`GroupCommitConfig::lanes`] lanes (or [`default_lanes`]) on the current Tokio
    /// runtime. They stop when the last clone of the returned value is dropped.
    pub(crate) fn start(
        pool: &PgPool,
        config: &GroupCommitConfig,
        pool_size: u32,
        settings: CallSettings,
    ) -> Lanes {
        let count = config
            .lanes
            .unwrap_or_else(|| default_lanes(pool_size))
            .max(1);
        let limits = GroupLimits {
            pushes: config.max_pushes.max(1),
            commands: config.max_commands.max(1),
        };
        let queues: Vec<_> = (0..count)
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(pool.clone(), receiver, limits, settings));
                sender
            })
            .collect();
        Lanes {
            queues: queues.into(),
        }
    }

    /// Queues `push` in the lane of its first aggregate and waits for its outcome.
    pub(crate) async fn push(&self, push: Push) -> Result<Vec<Event>> {
        let (reply, answer) = oneshot::channel();
        let lane = self
            .queues
            .get(lane_of(&push.commands, self.queues.len()))
            .ok_or_else(lanes_gone)?;
        // The caller's span (the push's), told the size of the group its push went in.
        let span = tracing::Span::current();
        lane.send(PushRequest { push, reply, span })
            .map_err(|_| lanes_gone())?;
        answer.await.map_err(|_| lanes_gone())?
    }
}

/// One push waiting in a lane, with the channel its outcome goes back on.
#[derive(Debug)]
struct PushRequest {
    push: Push,
    reply: oneshot::Sender<Result<Vec<Event>>>,
    span: tracing::Span,
}

/// How much one call of a lane may carry.
#[derive(Debug, Clone, Copy)]
struct GroupLimits {
    pushes: usize,
    commands: usize,
}

fn lanes_gone() -> Error {
    Error::Unavailable {
        message: "the push lanes have stopped (is the Tokio runtime shutting down?)".into(),
        source: None,
    }
}

/// Lanes when [`GroupCommitConfig::lanes`] is unset: one per CPU core of this machine, at least
/// two, but never more than the push pool has connections. Each lane has at most one call in
/// flight, so this is also how many push transactions run at once; more would only add lock and
/// CPU contention, fewer would leave the database idle between a call's commit and the next.
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

/// One lane: takes the next push, plus whatever queued behind it, and sends them as one call, then
/// waits for that call before the next. While a call is in flight pushes accumulate, so the busier
/// the store the fewer commits per event; an idle store sends each push at once.
async fn run_lane(
    pool: PgPool,
    mut queue: mpsc::UnboundedReceiver<PushRequest>,
    limits: GroupLimits,
    settings: CallSettings,
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
        // only when it was already on its way, as with a push sent in its own call.
        if first.reply.is_closed() {
            continue;
        }
        // Let the tasks that are ready to run push first: the callers the previous call answered
        // wake together, and Tokio runs this lane as soon as the first of them pushes, so without
        // this pause that push would go alone and the others wait a whole call for the next
        // (docs/schema.md, "Group commit").
        tokio::task::yield_now().await;
        let mut commands = first.push.commands.len();
        let mut group = vec![first];
        while group.len() < limits.pushes && commands < limits.commands {
            match queue.try_recv() {
                Ok(next) if next.reply.is_closed() => {}
                Ok(next) if commands + next.push.commands.len() > limits.commands => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    commands += next.push.commands.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        send_group(&pool, group, settings).await;
    }
}

/// Sends `group` as one call and answers each push with its own outcome.
async fn send_group(pool: &PgPool, group: Vec<PushRequest>, settings: CallSettings) {
    let size = group.len();
    let mut spans = Vec::with_capacity(size);
    let (pushes, replies): (Vec<Push>, Vec<_>) = group
        .into_iter()
        .map(|request| {
            spans.push(request.span);
            (request.push, request.reply)
        })
        .unzip();
    match wire::call(pool, &pushes, settings).await {
        Ok(outcomes) => {
            telemetry::record_group(spans, size);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have given up waiting; its push is stored all the same.
                let _ = reply.send(outcome);
            }
        }
        Err(err) if pushes.len() == 1 || err.is_retryable() => {
            telemetry::record_group(spans, size);
            // After a connection failure the outcome is unknown, so nothing is re-sent: each
            // caller learns its push is either wholly stored or wholly absent.
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            // One push broke the shared call in a way the function does not report per push. The
            // call rolled back entirely, so each push is sent in its own call to find its outcome.
            tracing::warn!(error = %err, pushes = pushes.len(), "group push failed, splitting it");
            for ((reply, push), span) in replies.into_iter().zip(pushes).zip(spans) {
                telemetry::record_group([span], 1);
                let _ = reply.send(wire::push_in_own_call(pool, push, settings).await);
            }
        }
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
