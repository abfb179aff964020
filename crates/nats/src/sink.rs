//! The sink: a [`Consumer`] that publishes each event to JetStream and acknowledges it to the
//! runtime once the broker acknowledged it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_nats::jetstream::Context;
use async_nats::jetstream::context::traits::TimeoutProvider;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use futures::future::{BoxFuture, join_all};
use strata_event::{AggregateRef, Event};
use strata_projection::{Consumer, ConsumerConfig, HandleError, Handled, Reads};

use crate::error::{Error, Result};
use crate::message;
use crate::subject::Subjects;

/// Publishes the events a consumer [`Reads`] to NATS JetStream, one message per event, and
/// acknowledges an event to the runtime only when JetStream acknowledged storing it (its
/// PubAck). Register it like any consumer:
/// `ProjectionRuntime::builder(store, backend).consumer(sink)?`.
///
/// Cheap to clone: clones share the connection and the [`counters`](JetStreamSink::counters),
/// so keep one to read them after registering another.
#[derive(Clone)]
pub struct JetStreamSink {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    reads: Reads,
    context: Context,
    subjects: Subjects,
    config: ConsumerConfig,
    counters: Counters,
}

/// The `max_failure_count` of [`JetStreamSink::default_config`]: 68 years of attempts a second
/// apart, the runtime's largest ([`MAX_FAILURE_COUNT`](strata_projection::MAX_FAILURE_COUNT)).
pub const RETRY_FOR_EVER: u32 = strata_projection::MAX_FAILURE_COUNT;

/// Sets up a [`JetStreamSink`]; see [`JetStreamSink::builder`].
#[derive(Debug)]
pub struct JetStreamSinkBuilder {
    name: String,
    reads: Reads,
    context: Context,
    subjects: Subjects,
    config: ConsumerConfig,
}

/// What a sink did since it was built (all its clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Events JetStream acknowledged as stored.
    pub stored: u64,
    /// Events JetStream acknowledged as duplicates: a message with their id was stored within
    /// the stream's duplicate window (a re-publish after a failure or a crash), so it was not
    /// stored again.
    pub duplicates: u64,
    /// Publish attempts that failed (no acknowledgement, no stream, a rejection); each event is
    /// counted once per attempt.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    stored: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
}

impl JetStreamSink {
    /// Starts setting up a sink named `name` (a consumer name: `[a-z_][a-z0-9_.]*`, checked when
    /// it is registered; it keys the checkpoint, so renaming the sink publishes every event
    /// again) that publishes the events of `reads` through `context`.
    ///
    /// Defaults: [`Subjects::standard`] and [`JetStreamSink::default_config`]. Publishing waits
    /// for each acknowledgement as long as the context's timeout (async-nats: 5 s unless set
    /// with `ContextBuilder::timeout`).
    pub fn builder(
        name: impl Into<String>,
        reads: Reads,
        context: Context,
    ) -> JetStreamSinkBuilder {
        JetStreamSinkBuilder {
            name: name.into(),
            reads,
            context,
            subjects: Subjects::standard(),
            config: JetStreamSink::default_config(),
        }
    }

    /// The consumer defaults, except that a failing event is retried for ever
    /// ([`RETRY_FOR_EVER`] attempts) instead of parking its aggregate after 5.
    ///
    /// A broker that is down, restarting or unreachable fails every event, and none of that is
    /// the event's fault: with the consumer default, every aggregate met during an outage of more
    /// than a few seconds would be parked, waiting for an operator. Retried for ever, an outage
    /// only delays delivery, and the sink resumes by itself when the broker is back.
    ///
    /// The price: an event that can never be published (larger than the server's
    /// `max_payload`, or mapped to a subject no stream captures) stalls the sink's pair until
    /// the broker is fixed or an operator skips the event (`strata projections failed skip`,
    /// [`ProjectionRuntime::skip_failed`](strata_projection::ProjectionRuntime::skip_failed)).
    /// Status and the failed events show the stall and the failure's message. To park the
    /// aggregate instead, pass a config with a smaller `max_failure_count` to
    /// [`JetStreamSinkBuilder::config`].
    pub fn default_config() -> ConsumerConfig {
        ConsumerConfig {
            max_failure_count: RETRY_FOR_EVER,
            ..ConsumerConfig::default()
        }
    }

    /// What the sink did so far.
    pub fn counters(&self) -> SinkCounters {
        let counters = &self.inner.counters;
        SinkCounters {
            stored: counters.stored.load(Ordering::Relaxed),
            duplicates: counters.duplicates.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
        }
    }
}

impl JetStreamSinkBuilder {
    /// Where events are published. Default: [`Subjects::standard`].
    pub fn subjects(mut self, subjects: Subjects) -> Self {
        self.subjects = subjects;
        self
    }

    /// How the runtime runs the sink (batch size, retries, partitions). Default:
    /// [`JetStreamSink::default_config`]; start from it when changing one field.
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    /// The sink. Refuses a context whose acknowledgement timeout is not below the config's
    /// `transaction_duration`: the runtime would abandon each batch before the sink could say
    /// which event failed. Nothing is sent to the broker.
    pub fn build(self) -> Result<JetStreamSink> {
        let ack_timeout = self.context.timeout();
        if self.config.transaction_duration <= ack_timeout {
            return Err(Error::AckTimeoutTooLong {
                ack_timeout,
                transaction_duration: self.config.transaction_duration,
            });
        }
        Ok(JetStreamSink {
            inner: Arc::new(Inner {
                name: self.name,
                reads: self.reads,
                context: self.context,
                subjects: self.subjects,
                config: self.config,
                counters: Counters::default(),
            }),
        })
    }
}

impl Consumer for JetStreamSink {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn reads(&self) -> Reads {
        self.inner.reads.clone()
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(self.inner.publish(event))
    }

    /// Publishes the batch with one event of each aggregate in flight at a time: the
    /// aggregates' chains run side by side, and within a chain an event is sent only after the
    /// broker acknowledged the one before it.
    ///
    /// Pipelining an aggregate's events too would break its order in the stream: when the
    /// connection drops, async-nats loses what it had buffered for the dead connection but sends
    /// what was still queued behind it once it reconnects, so an aggregate's event 6 could be
    /// stored while its event 5 was lost (and 5 stored after it by the retry).
    ///
    /// Once an event failed, no chain sends an event after it in the batch: those would not be
    /// acknowledged anyway, and sending them on every retry of a long failure would store them
    /// again each time the duplicate window passed.
    fn handle_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Handled> {
        Box::pin(async move {
            let chains = chains(events);
            let first_failure = AtomicUsize::new(usize::MAX);
            let ends = join_all(
                chains
                    .iter()
                    .map(|chain| self.inner.publish_chain(events, chain, &first_failure)),
            )
            .await;
            let mut acknowledged = vec![false; events.len()];
            let mut failures: HashMap<usize, HandleError> = HashMap::new();
            for (chain, end) in chains.iter().zip(ends) {
                for &index in &chain[..end.published] {
                    acknowledged[index] = true;
                }
                if let Some(error) = end.failure {
                    failures.insert(chain[end.published], error);
                }
            }
            // The runtime takes a prefix: the first event not acknowledged ends it, and it is
            // always the earliest that failed (every event before it was sent, since none
            // before it failed, and so acknowledged).
            let prefix = acknowledged.iter().take_while(|&&acked| acked).count();
            match failures.remove(&prefix) {
                Some(error) => {
                    // One line per failed batch: during an outage, one per retry of each pair.
                    tracing::warn!(
                        consumer = %self.inner.name,
                        acknowledged = prefix,
                        %error,
                        "JetStream did not store an event; the batch stops there and is retried"
                    );
                    Handled::failed_at(prefix, error)
                }
                None => Handled {
                    acknowledged: prefix,
                    failure: None,
                },
            }
        })
    }

    fn config(&self) -> ConsumerConfig {
        self.inner.config.clone()
    }
}

/// How far a chain got: its first `published` events were acknowledged, and the next one
/// failed with `failure` (or was not sent because an earlier event of the batch failed, or the
/// chain was done).
struct ChainEnd {
    published: usize,
    failure: Option<HandleError>,
}

impl Inner {
    /// Publishes the events at `chain` (one aggregate's, in order), each after the previous one
    /// was acknowledged, until one fails or comes after `first_failure`, the index of the
    /// earliest event of the batch known to have failed.
    async fn publish_chain(
        &self,
        events: &[Arc<Event>],
        chain: &[usize],
        first_failure: &AtomicUsize,
    ) -> ChainEnd {
        for (published, &index) in chain.iter().enumerate() {
            if first_failure.load(Ordering::SeqCst) < index {
                return ChainEnd {
                    published,
                    failure: None,
                };
            }
            if let Err(error) = self.publish(&events[index]).await {
                first_failure.fetch_min(index, Ordering::SeqCst);
                return ChainEnd {
                    published,
                    failure: Some(error),
                };
            }
        }
        ChainEnd {
            published: chain.len(),
            failure: None,
        }
    }

    /// Publishes one event and waits for JetStream's acknowledgement.
    async fn publish(&self, event: &Event) -> Result<(), HandleError> {
        let result = self.try_publish(event).await;
        let counter = match &result {
            Ok(Stored::New) => &self.counters.stored,
            Ok(Stored::Duplicate) => &self.counters.duplicates,
            Err(_) => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result.map(drop)
    }

    async fn try_publish(&self, event: &Event) -> Result<Stored, HandleError> {
        let subject = self
            .subjects
            .subject(event)
            .map_err(|reason| failure(event, None, &reason))?;
        let message = message::message(event).map_err(|err| {
            failure(
                event,
                Some(&subject),
                &format!("could not serialise it: {err}"),
            )
        })?;
        let pending = self
            .context
            .send_publish(subject.clone(), message)
            .await
            .map_err(|err| failure(event, Some(&subject), &self.explain(&err)))?;
        let ack = pending
            .await
            .map_err(|err| failure(event, Some(&subject), &self.explain(&err)))?;
        if ack.duplicate {
            tracing::debug!(
                consumer = %self.name,
                aggregate = %event.aggregate,
                sequence = event.sequence,
                stream = %ack.stream,
                "JetStream already had this event (duplicate window)"
            );
            return Ok(Stored::Duplicate);
        }
        Ok(Stored::New)
    }

    /// A publish error in words an operator can act on.
    fn explain(&self, err: &PublishError) -> String {
        match err.kind() {
            PublishErrorKind::StreamNotFound => "no stream captures the subject (the server \
                 answered `no responders`): create one, e.g. with strata_nats::ensure_stream, or \
                 add the subject to a stream"
                .to_owned(),
            PublishErrorKind::TimedOut => format!(
                "no acknowledgement within {:?}: the broker is down, unreachable or overloaded",
                self.context.timeout()
            ),
            PublishErrorKind::BrokenPipe => {
                "the connection closed before the acknowledgement arrived".to_owned()
            }
            PublishErrorKind::MaxPayloadExceeded => format!(
                "the message is larger than the server's max_payload ({err}): raise max_payload \
                 or skip the event"
            ),
            _ => format!("JetStream refused it: {err}"),
        }
    }
}

/// What JetStream's acknowledgement said.
enum Stored {
    New,
    Duplicate,
}

/// The failure of `event` (published to `subject`, when it got that far) because of `reason`.
fn failure(event: &Event, subject: Option<&str>, reason: &str) -> HandleError {
    let target = subject.map_or_else(String::new, |subject| format!(" to {subject}"));
    HandleError::new(format!(
        "publishing event {} sequence {}{target} failed: {reason}",
        event.aggregate, event.sequence
    ))
}

/// The batch's event indices grouped by aggregate, each group in batch order, the groups in the
/// order of their first event.
fn chains(events: &[Arc<Event>]) -> Vec<Vec<usize>> {
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: HashMap<&AggregateRef, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let chain = *chain_of.entry(&event.aggregate).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[chain].push(index);
    }
    chains
}

impl fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("name", &self.inner.name)
            .field("reads", &self.inner.reads)
            .field("subjects", &self.inner.subjects)
            .field("config", &self.inner.config)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}
