//! Projections for Strata: read models kept up to date from events, with every event applied
//! exactly once and none skipped, by a bounded pool of workers that any number of processes can
//! share.
//!
//! This crate is the backend-neutral runtime. It knows the [`EventStore`](strata_store::EventStore)
//! trait and a [`ProjectionBackend`] (where read models, checkpoints and failed events live); it
//! speaks no SQL. [`MemoryProjections`] is the in-memory backend; the PostgreSQL one lives in
//! `strata-postgres` (`PgProjections`).
//!
//! # Tour
//!
//! - A [`Projection`] has a name, declares what it [`Reads`], and [`reduces`](Projection::reduce)
//!   each event into [`Statement`]s: upserts, updates and deletes by columns, or raw SQL.
//! - A [`ProjectionRuntime`] runs them. Per (projection, instance) it reads the next batch of events
//!   **below the commit horizon** (so an event whose transaction commits late is never skipped),
//!   reduces them, and applies the statements and the new checkpoint in **one transaction** (so
//!   every effect happens exactly once). A lease (an advisory lock on PostgreSQL) keeps two workers
//!   — in this process or another — off the same pair; a busy pair is simply skipped.
//! - At most [`RuntimeConfig::max_parallel_batches`] batches run at once per process.
//! - Triggers: a push to the local store, pushes announced by other processes, a periodic tick
//!   ([`ProjectionConfig::requeue_every`]), and [`ProjectionRuntime::catch_up`] for
//!   read-your-writes.
//! - A failing event is retried; after [`ProjectionConfig::max_failure_count`] attempts it is
//!   recorded as a [`FailedEvent`] and skipped. [`ProjectionRuntime::retry_failed`] and
//!   [`ProjectionRuntime::skip_failed`] handle them; [`ProjectionRuntime::rebuild`] replays a
//!   projection from the start; [`ProjectionRuntime::status`] reports lag and [`Health`] (a pair
//!   whose checkpoint stopped moving while events wait is stalled, whatever its lag).
//! - A projection that declares its [`tables`](Projection::tables) is **versioned**: raising its
//!   [`version`](Projection::version) builds the new version beside the live one, in tables of
//!   its own, and switches readers over (a view on PostgreSQL) only once it has caught up
//!   ([`switch_version`], [`ProjectionRuntime::rollback`]); `docs/projections.md`, "Versions".
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use strata_event::{Command, Event, InstanceId};
//! use strata_projection::{
//!     MemoryProjections, Projection, ProjectionRuntime, Reads, ReduceError, SqlValue, Statement,
//! };
//! use strata_store::{EventStore, MemoryStore};
//!
//! struct Usernames;
//!
//! impl Projection for Usernames {
//!     fn name(&self) -> &str {
//!         "usernames"
//!     }
//!     fn reads(&self) -> Reads {
//!         Reads::new().events("user", ["user.added"])
//!     }
//!     fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
//!         let payload: serde_json::Value = event.payload()?;
//!         Ok(vec![Statement::upsert(
//!             "usernames",
//!             vec![
//!                 ("instance_id", event.aggregate.instance_id.as_str().into()),
//!                 ("id", event.aggregate.aggregate_id.as_str().into()),
//!             ],
//!             vec![("name", payload["name"].as_str().unwrap_or_default().into())],
//!         )])
//!     }
//!     fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
//!         // A rebuild starts the instance's rows afresh.
//!         vec![Statement::delete("usernames", vec![("instance_id", instance.as_str().into())])]
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let read_models = MemoryProjections::new();
//! let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
//!     .register(Usernames)?
//!     .start()
//!     .await?;
//!
//! let added = Command::builder("acme", "user", "u-1", "user.added")
//!     .payload(&serde_json::json!({ "name": "alice" }))
//!     .creator("admin")
//!     .owner("acme")
//!     .build()?;
//! let stored = store.push(vec![added]).await?;
//!
//! // Read your own write: wait until the projection has applied it.
//! let instance = &stored[0].aggregate.instance_id;
//! runtime.catch_up("usernames", instance, stored[0].position, Duration::from_secs(5)).await?;
//! let rows = read_models.rows("usernames");
//! assert_eq!(rows[0]["name"], SqlValue::from("alice"));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod consumer;
mod error;
mod memory;
mod projection;
mod runtime;
mod statement;
mod switch;
pub mod telemetry;
mod version;

pub use crate::backend::{
    BatchOutcome, Checkpoint, CurrentState, FailedEvent, FailedEventKey, FailurePolicy,
    NextFailure, OperatorRequest, ProjectionBackend, ReducedEvent, Registration, RuntimeHeartbeat,
    Unparked,
};
pub use crate::consumer::{
    Consumer, ConsumerConfig, HandleError, Handled, MAX_CONSUMER_PARTITIONS, aggregate_partition,
    partition_name, split_partition_name,
};
pub use crate::error::ProjectionError;
pub use crate::memory::{MemoryGroupLease, MemoryLease, MemoryProjections, MemorySwitch, Row};
pub use crate::projection::{
    OnFailure, Projection, ProjectionConfig, Reads, ReduceError, SwitchWhen,
};
pub use crate::runtime::{
    Health, MAX_FAILURE_COUNT, ProjectionRuntime, ProjectionStatus, RuntimeBuilder, RuntimeConfig,
};
pub use crate::statement::{Column, SqlValue, Statement, is_identifier};
pub use crate::switch::{VersionLag, switch_version, version_lag};
pub use crate::version::{
    ProjectionVersion, Table, VersionOperation, VersionSetup, VersionState, VersionTable,
    physical_table, split_versioned_name, versioned_name,
};
