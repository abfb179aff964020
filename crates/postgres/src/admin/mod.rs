//! What operators' tools need beyond a service's API: the projection registry and operator
//! requests, live runtimes, durable consumers, least-privilege roles, the state of the
//! migrations, hard deletes and the archive.
//!
//! This module serves the `strata` CLI and tools like it; a service does not need it. Its items
//! follow the CLI and may change between minor versions.
//!
//! - `registry.rs`: projections registered by runtimes, work requested of them, unregistering
//!   a projection, the runtimes alive now.
//! - `consumers.rs`: durable consumers in that registry, grouped with their parts; their failed
//!   and parked events; unregistering every part of one.
//! - `roles.rs`: creating the writer and migrator roles, which is never a side effect of
//!   migrating.
//! - `idempotency.rs`: deleting idempotency keys past their retention.
//! - `hard_delete.rs`: removing an aggregate's or an instance's events for good, audited.
//! - `archive.rs`: moving closed aggregates to the archive and back, verifying it, reading
//!   through it.
//! - `keys.rs`: counting personal-data keys by master key, and erased subjects.
//! - `overview.rs`: every pair's lag and failed events in a few statements, and the events
//!   stored between two commit horizons: what `strata serve` samples.

mod archive;
mod consumers;
mod hard_delete;
mod idempotency;
mod keys;
mod overview;
mod registry;
mod roles;

pub use self::archive::{
    ArchiveError, ArchivePlan, ArchiveRun, ArchiveSelection, ArchiveVerification, BatchOutcome,
    RestoreSelection, archive_batch, plan_archive, query_including_archive, restore_batch,
    start_archive_run, start_restore_run, verify_archive,
};
pub use self::consumers::{
    ConsumerFailure, RegisteredConsumer, UnregisteredConsumer, consumer_failures, parked_event,
    registered_consumers, unregister_consumer,
};
pub use self::hard_delete::{DeleteTarget, HardDelete, HardDeleteError, Removal, hard_delete};
pub use self::idempotency::prune_idempotency_keys;
pub use self::keys::{SubjectKeyStatus, subject_key_status};
pub use self::overview::{
    FailureCount, PairLag, StoredSince, events_stored_since, failure_counts, pair_lags,
};
pub use self::registry::{
    LiveRuntime, PendingRequest, RUNTIME_ALIVE_WITHIN, RegisteredProjection, Unregistered,
    live_runtimes, pending_projection_requests, registered_projections, request_projection_work,
    unregister_projection,
};
pub use self::roles::{RoleKind, RoleNames, RoleSetUp, set_up_roles};
pub use crate::migrate::{FunctionState, MigrationState, MigrationStatus, migration_status};
