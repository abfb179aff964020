//! The old root paths of the items a service may have called before they moved to [`crate::admin`],
//! kept for one release so code written against them compiles, with a warning naming the new
//! path. Hidden from the docs.

#![allow(missing_docs)]

use sqlx::PgPool;
use strata_store::{Error, Result};

use crate::admin;

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
