//! A sink from Strata to NATS JetStream: a [`Consumer`](strata_projection::Consumer) that
//! publishes each event it reads as one JetStream message, and acknowledges the event to the
//! projection runtime only when JetStream acknowledged storing it.
//!
//! It is for handing events to other services: ones written in other languages, ones that should
//! not read the event store, fan-out to many subscribers. It is **not** exactly-once (see below),
//! not a copy of the store to rebuild from (the stream keeps what its limits say, and a sink
//! started later publishes from the first event it reads), not a way into Strata (nothing is read
//! from NATS), and not for core NATS without JetStream: without the broker's acknowledgement the
//! checkpoint would move past events nobody stored.
//!
//! # Tour
//!
//! - [`JetStreamSink::builder`] takes a consumer name, the [`Reads`](strata_projection::Reads)
//!   and a JetStream [`Context`](async_nats::jetstream::Context); [`Subjects`] chooses subjects,
//!   [`JetStreamSink::default_config`] is how the runtime runs it.
//! - [`ensure_stream`] creates the stream if a service wants to own it. Building or registering
//!   a sink never creates anything on the broker.
//! - [`message_id`] and the `*_HEADER` constants are what a subscriber reads.
//! - [`Error`] is for setting up; a failed publish is the consumer's
//!   [`HandleError`](strata_projection::HandleError), recorded and retried by the runtime.
//!
//! # Delivery
//!
//! The runtime hands the sink batches, per instance (and per part, with
//! `ConsumerConfig::partitions`), in the store's order. The sink publishes a batch with one
//! event per aggregate in flight: the aggregates' events go out side by side, and an
//! aggregate's next event only after JetStream acknowledged the one before. The first event
//! whose publish or acknowledgement fails (timeout, broker down, no stream captures its subject,
//! rejected) fails the batch there: the events before it are acknowledged and the checkpoint
//! moves past them; it and everything after it are published again when the runtime retries,
//! `retry_failed_after` later.
//!
//! - **Nothing is lost.** An event is acknowledged only after JetStream said it stored it.
//! - **At least once.** A crash between JetStream's acknowledgement and the checkpoint's commit,
//!   or a batch that failed after later events of other aggregates were stored, publishes events
//!   again. Each message's `Nats-Msg-Id` is the event's identity ([`message_id`]), so JetStream
//!   itself drops a re-publish that comes within the stream's **duplicate window** (2 minutes
//!   unless the stream says otherwise). Later ones are stored twice; they carry the same
//!   identity and body, so a subscriber recognises them.
//! - **In order per aggregate.** In the stream, the first copies of an aggregate's events come
//!   in sequence order 1, 2, 3…; a duplicate may come later. Across aggregates (and instances)
//!   there is no order.
//! - **A broker outage only delays.** [`JetStreamSink::default_config`] retries a failing event
//!   for ever instead of parking its aggregate, since an outage is not the event's fault; the
//!   sink's pair waits (its status shows the failure) and resumes when the broker is back.
//!   async-nats reconnects by itself.
//!
//! A subscriber that must act once per event keeps, per aggregate, the last `Strata-Sequence`
//! it handled and ignores messages at or below it (or keys its effects by the identity).
//!
//! # Messages
//!
//! - **Subject**: `strata.<instance>.<aggregate type>.<event type>` by default, each part one
//!   token (`strata.acme.user.user:added`, see [`subject_token`]); a prefix of your own with
//!   [`Subjects::prefixed`], or any mapping with [`Subjects::custom`].
//! - **Headers**: `Nats-Msg-Id` ([`message_id`]: `instance/aggregate_type/aggregate_id/sequence`),
//!   `Strata-Instance`, `Strata-Aggregate-Type`, `Strata-Aggregate-Id`, `Strata-Sequence`,
//!   `Strata-Position` (the event's cursor, `position:in_tx_order`) and `Strata-Event-Type`.
//!   NATS trims whitespace around header values; the body has the exact ids.
//! - **Body**: the event's JSON form, the serde form of [`strata_event::Event`]: `aggregate`
//!   (`instance_id`, `aggregate_type`, `aggregate_id`), `event_type`, `sequence`, `revision`,
//!   `created_at`, `creator`, `owner`, `position` (a string), `in_tx_order`, `payload`, and
//!   `metadata` when there is any. A Rust subscriber reads it back with
//!   `serde_json::from_slice::<strata_event::Event>`. Payloads go out as stored: a sink of
//!   personal data publishes the sealed form.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use strata_nats::{JetStreamSink, ensure_stream};
//! use strata_postgres::{PgConfig, PgProjections, PgStore};
//! use strata_projection::{ProjectionRuntime, Reads};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://strata@db/strata", PgConfig::default()).await?;
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! // Acknowledgements wait 5 s unless the context says otherwise.
//! let jetstream = async_nats::jetstream::context::ContextBuilder::new()
//!     .timeout(Duration::from_secs(2))
//!     .build(client);
//!
//! // Once, at deployment (or let operators create the stream).
//! ensure_stream(&jetstream, "STRATA", &["strata.>"]).await?;
//!
//! let sink = JetStreamSink::builder(
//!     "orders_to_nats",
//!     Reads::new().aggregate("order"),
//!     jetstream,
//! )
//! .build()?;
//! let runtime = ProjectionRuntime::builder(
//!     store.clone(),
//!     PgProjections::new(store.pools().projection().clone()),
//! )
//! .consumer(sink)?
//! .start()
//! .await?;
//! # let _ = runtime;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! async-nats is built with `jetstream` and `ring` (for TLS) only. A service that authenticates
//! with nkeys or a creds file turns on async-nats's `nkeys` in its own manifest.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod message;
mod sink;
mod stream;
mod subject;

/// The NATS client this crate is built on, so a service uses the same version.
pub use async_nats;

pub use crate::error::{Error, Result};
pub use crate::message::{
    AGGREGATE_ID_HEADER, AGGREGATE_TYPE_HEADER, EVENT_TYPE_HEADER, INSTANCE_HEADER,
    MESSAGE_ID_HEADER, POSITION_HEADER, SEQUENCE_HEADER, message_id,
};
pub use crate::sink::{JetStreamSink, JetStreamSinkBuilder, RETRY_FOR_EVER, SinkCounters};
pub use crate::stream::{DEFAULT_DUPLICATE_WINDOW, ensure_stream};
pub use crate::subject::{DEFAULT_SUBJECT_PREFIX, Subjects, subject_token};
