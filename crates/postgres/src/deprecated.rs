//! The old names of items that moved (to [`crate::admin`] and [`crate::mirror`]) or became
//! configuration, kept for one release so code written against them compiles, with a warning
//! naming the new one. Hidden from the docs.

#![allow(missing_docs)]

use sqlx::PgPool;
use strata_event::Event;
use strata_store::{Error, Result};

use crate::{PgProjections, PgStore, admin, mirror};

#[deprecated(since = "0.1.0", note = "moved to `strata_postgres::admin::RoleNames`")]
pub type RoleNames = admin::RoleNames;

#[deprecated(
    since = "0.1.0",
    note = "moved to `strata_postgres::admin::MigrationStatus`"
)]
pub type MigrationStatus = admin::MigrationStatus;

#[deprecated(
    since = "0.1.0",
    note = "moved to `strata_postgres::admin::set_up_roles`"
)]
pub async fn set_up_roles(
    pool: &PgPool,
    names: &admin::RoleNames,
) -> Result<Vec<admin::RoleSetUp>, Error> {
    admin::set_up_roles(pool, names).await
}

#[deprecated(
    since = "0.1.0",
    note = "moved to `strata_postgres::admin::migration_status`"
)]
pub async fn migration_status(pool: &PgPool) -> Result<admin::MigrationStatus, Error> {
    admin::migration_status(pool).await
}

#[deprecated(
    since = "0.1.0",
    note = "moved to `strata_postgres::admin::unregister_projection`"
)]
pub async fn unregister_projection(pool: &PgPool, projection: &str) -> Result<admin::Unregistered> {
    admin::unregister_projection(pool, projection).await
}

#[deprecated(
    since = "0.1.0",
    note = "moved to `strata_postgres::mirror::copy_batch`"
)]
pub async fn copy_mirror_batch(
    destination: &PgStore,
    key: &mirror::MirrorKey,
    events: &[Event],
    side_effect_projections: &[String],
) -> Result<u64> {
    mirror::copy_batch(destination, key, events, side_effect_projections).await
}

#[deprecated(since = "0.1.0", note = "moved to `strata_postgres::mirror::progress`")]
pub async fn mirror_progress(
    destination: &PgStore,
    key: &mirror::MirrorKey,
) -> Result<Option<mirror::MirrorProgress>> {
    mirror::progress(destination, key).await
}

impl PgProjections {
    /// Does nothing: the store listens for other processes' pushes, not the projections; turn it
    /// off with `PgConfig::listen_for_pushes`.
    #[deprecated(
        since = "0.1.0",
        note = "listening moved to the store: set `PgConfig::listen_for_pushes` to false"
    )]
    #[doc(hidden)]
    pub fn without_listening(self) -> Self {
        self
    }
}
