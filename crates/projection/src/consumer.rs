//! Durable consumers: handlers of side effects (an e-mail, a call to another service, a message to
//! a broker) run by the projection runtime, with a checkpoint in the projection backend.
//!
//! A consumer is scheduled, leased, checkpointed, retried and reported exactly like a projection;
//! the one difference is what happens to a batch. A projection *reduces* events to statements
//! applied with its checkpoint in one transaction (exactly once). A consumer *handles* them while
//! the lease is held, and the checkpoint moves past what it acknowledged when the lease commits:
//! a crash between the handling and the commit delivers those events again. So delivery is **at
//! least once**, and **in order per aggregate**: a pair (consumer, instance) is worked on by one
//! process at a time, from its last checkpoint, and a failing aggregate is parked rather than
//! passed (see [`OnFailure::Park`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use strata_event::{AggregateRef, Event, InstanceId};

use crate::error::ProjectionError;
use crate::projection::{OnFailure, Projection, ProjectionConfig, Reads, ReduceError};
use crate::statement::Statement;

/// A handler of side effects, run by a [`ProjectionRuntime`](crate::ProjectionRuntime) next to
/// projections (register it with [`RuntimeBuilder::consumer`](crate::RuntimeBuilder::consumer)).
///
/// The runtime hands it the events it [`reads`](Consumer::reads), per instance, in
/// `(position, in_tx_order)` order, batch by batch. Returning `Ok` from
/// [`handle`](Consumer::handle) acknowledges the event; the checkpoint moves past acknowledged
/// events when the batch ends. An event is delivered again when the process dies before that
/// (at least once), so make effects idempotent: key them by the event's identity (instance,
/// aggregate, sequence), or push the outcome with an idempotency key as
/// `examples/notifications.rs` does.
pub trait Consumer: Send + Sync + 'static {
    /// A unique, stable name (`[a-z_][a-z0-9_.]*`, shared with projections): it keys the
    /// checkpoint, so renaming a consumer starts it from the first event again.
    fn name(&self) -> &str;

    /// The events this consumer handles.
    fn reads(&self) -> Reads;

    /// Handles one event. `Ok` acknowledges it; an error is retried after
    /// [`ConsumerConfig::retry_failed_after`], and after [`ConsumerConfig::max_failure_count`]
    /// attempts the event's aggregate is parked (or the event skipped, see
    /// [`ConsumerConfig::on_failure`]). A panic counts as an error.
    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>>;

    /// Handles a batch, in order: a consumer that can do better than one event at a time
    /// (publishing to a broker and awaiting its acknowledgements together) overrides this. It
    /// returns how many events, from the first, it acknowledged, and the error of the next one
    /// if it failed; events after that are delivered again in a later batch. The default calls
    /// [`handle`](Consumer::handle) for each event and stops at the first error.
    fn handle_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Handled> {
        Box::pin(async move {
            for (index, event) in events.iter().enumerate() {
                if let Err(err) = self.handle(event).await {
                    return Handled::failed_at(index, err);
                }
            }
            Handled::all(events.len())
        })
    }

    /// Settings; see [`ConsumerConfig`] for the defaults.
    fn config(&self) -> ConsumerConfig {
        ConsumerConfig::default()
    }
}

/// A consumer could not handle an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandleError(pub String);

impl HandleError {
    /// A handle error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        HandleError(message.into())
    }
}

impl From<strata_event::PayloadError> for HandleError {
    fn from(err: strata_event::PayloadError) -> Self {
        HandleError(err.to_string())
    }
}

/// What [`Consumer::handle_batch`] did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Events acknowledged, from the first of the batch.
    pub acknowledged: usize,
    /// Why the event after them failed; `None` when the consumer simply stopped there (it is
    /// delivered again in the next batch without counting as a failure).
    pub failure: Option<HandleError>,
}

impl Handled {
    /// The first `count` events were acknowledged and nothing failed.
    pub fn all(count: usize) -> Self {
        Handled {
            acknowledged: count,
            failure: None,
        }
    }

    /// The events before `index` were acknowledged and the one at `index` failed with `error`.
    pub fn failed_at(index: usize, error: HandleError) -> Self {
        Handled {
            acknowledged: index,
            failure: Some(error),
        }
    }
}

/// How a consumer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Events per batch: one lease, one checkpoint move. Default: 100.
    pub bulk_limit: u32,
    /// Safety-net tick: the consumer looks for events at least this often without any trigger.
    /// Default: 10 s.
    pub requeue_every: Duration,
    /// After an event failed, wait this long before trying it again. Default: 1 s.
    pub retry_failed_after: Duration,
    /// Attempts before an event's aggregate is parked (or the event skipped). Default: 5.
    pub max_failure_count: u32,
    /// What happens after the last attempt. Default: [`OnFailure::Park`]: the aggregate's later
    /// events wait for an operator, every other aggregate keeps flowing.
    pub on_failure: OnFailure,
    /// Longest a batch may take, handling included; beyond it the batch is abandoned (nothing
    /// after the checkpoint is acknowledged) and retried with half as many events. Default: 60 s.
    pub transaction_duration: Duration,
    /// How many parts each instance's events are split into, by a hash of the aggregate: each
    /// part is a pair of its own, with its own lease and checkpoint, so several processes (and
    /// several batches in one process) work on one instance at once while each aggregate's
    /// events stay in order in one part. Each part reads the consumer's events and handles its
    /// share, so more parts cost more reading. Part of the consumer's identity: the runtime
    /// refuses to start with a count other than the one its checkpoints were made with. Default:
    /// 1 (from 1 to 64).
    pub partitions: u16,
    /// A part whose checkpoint has not moved for this long while an event has waited this long
    /// is reported as [stalled](crate::Health::Stalled). Default: 60 s.
    pub stall_after: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            bulk_limit: 100,
            requeue_every: Duration::from_secs(10),
            retry_failed_after: Duration::from_secs(1),
            max_failure_count: 5,
            on_failure: OnFailure::Park,
            transaction_duration: Duration::from_secs(60),
            partitions: 1,
            stall_after: Duration::from_secs(60),
        }
    }
}

/// Most parts a consumer may split each instance into.
pub const MAX_CONSUMER_PARTITIONS: u16 = 64;

impl ConsumerConfig {
    pub(crate) fn projection_config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: self.bulk_limit,
            requeue_every: self.requeue_every,
            retry_failed_after: self.retry_failed_after,
            max_failure_count: self.max_failure_count,
            transaction_duration: self.transaction_duration,
            on_failure: self.on_failure,
            stall_after: self.stall_after,
            ..ProjectionConfig::default()
        }
    }
}

/// The name of part `index` of `partitions` of consumer `name`: the consumer's own name when it
/// has one part, otherwise `name#index/partitions`, which no projection can be called (`#` and
/// `/` are not allowed in names).
pub fn partition_name(name: &str, index: u16, partitions: u16) -> String {
    if partitions <= 1 {
        name.to_owned()
    } else {
        format!("{name}#{index}/{partitions}")
    }
}

/// The consumer a pair name belongs to, and its part: `("mailer", Some((2, 4)))` for
/// `mailer#2/4`, `("mailer", None)` for `mailer`.
pub fn split_partition_name(pair_name: &str) -> (&str, Option<(u16, u16)>) {
    let Some((name, part)) = pair_name.split_once('#') else {
        return (pair_name, None);
    };
    let parsed = part
        .split_once('/')
        .and_then(|(index, count)| Some((index.parse().ok()?, count.parse().ok()?)));
    match parsed {
        Some(part) => (name, Some(part)),
        None => (pair_name, None),
    }
}

/// Which of `partitions` parts the aggregate's events belong to: FNV-1a of its type and id, the
/// same in every process and every release.
pub fn aggregate_partition(aggregate: &AggregateRef, partitions: u16) -> u16 {
    if partitions <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = aggregate
        .aggregate_type
        .as_str()
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(aggregate.aggregate_id.as_str().bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions)) as u16
}

/// One part of a consumer, as the runtime registers it: a [`Projection`] whose events are
/// handled instead of reduced, so leases, checkpoints, retries, failed events and operator
/// requests are the projections' own.
pub(crate) struct ConsumerPart {
    pub(crate) consumer: Arc<dyn Consumer>,
    pub(crate) name: String,
    pub(crate) part: u16,
    pub(crate) partitions: u16,
    pub(crate) config: ConsumerConfig,
}

impl ConsumerPart {
    /// The parts of `consumer`, validated.
    pub(crate) fn split(consumer: impl Consumer) -> Result<Vec<ConsumerPart>, ProjectionError> {
        let config = consumer.config();
        let name = consumer.name().to_owned();
        if !(1..=MAX_CONSUMER_PARTITIONS).contains(&config.partitions) {
            return Err(ProjectionError::InvalidProjection {
                name,
                reason: format!(
                    "partitions must be from 1 to {MAX_CONSUMER_PARTITIONS}, not {}",
                    config.partitions
                ),
            });
        }
        let consumer: Arc<dyn Consumer> = Arc::new(consumer);
        Ok((0..config.partitions)
            .map(|part| ConsumerPart {
                consumer: Arc::clone(&consumer),
                name: partition_name(&name, part, config.partitions),
                part,
                partitions: config.partitions,
                config: config.clone(),
            })
            .collect())
    }

    /// Whether the event is this part's to handle.
    pub(crate) fn owns(&self, event: &Event) -> bool {
        aggregate_partition(&event.aggregate, self.partitions) == self.part
    }
}

impl Projection for ConsumerPart {
    fn name(&self) -> &str {
        &self.name
    }

    fn reads(&self) -> Reads {
        self.consumer.reads()
    }

    fn reduce(&self, _event: &Event) -> Result<Vec<Statement>, ReduceError> {
        // The runtime handles a consumer's events instead of reducing them.
        Ok(Vec::new())
    }

    fn reset(&self, _instance: &InstanceId) -> Vec<Statement> {
        // A consumer keeps no read model: a rebuild only delivers every event again.
        Vec::new()
    }

    fn has_side_effects(&self) -> bool {
        true
    }

    fn config(&self) -> ProjectionConfig {
        self.config.projection_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_never_collide_with_projection_names() {
        assert_eq!(partition_name("mailer", 0, 1), "mailer");
        assert_eq!(partition_name("mailer", 2, 4), "mailer#2/4");
        assert_eq!(split_partition_name("mailer#2/4"), ("mailer", Some((2, 4))));
        assert_eq!(split_partition_name("mailer"), ("mailer", None));
        assert!(!crate::projection::is_projection_name("mailer#2/4"));
    }

    #[test]
    fn aggregates_spread_over_every_part_and_stay_in_theirs() {
        let mut counts = [0u32; 4];
        for n in 0..4000 {
            let aggregate = AggregateRef::new("i", "user", format!("u{n}")).unwrap_or_else(|_| {
                unreachable!("valid ids");
            });
            let part = aggregate_partition(&aggregate, 4);
            assert_eq!(part, aggregate_partition(&aggregate, 4));
            counts[part as usize] += 1;
        }
        assert!(counts.iter().all(|&count| count > 800), "{counts:?}");
        // Fixed values: the hash must not change between releases, or parts would swap
        // aggregates (and their order) across an upgrade.
        let fixed = AggregateRef::new("i", "user", "u-1").unwrap_or_else(|_| unreachable!());
        assert_eq!(aggregate_partition(&fixed, 64), 32);
        assert_eq!(aggregate_partition(&fixed, 4), 0);
    }
}
