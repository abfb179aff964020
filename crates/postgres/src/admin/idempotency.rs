//! Deleting idempotency keys past their retention, for an operator's schedule or the CLI.

use std::time::Duration;

use sqlx::PgPool;
use strata_store::Result;

use crate::error::from_sqlx;

/// Deletes the idempotency keys recorded more than `older_than` ago and returns how many it
/// deleted. Pushes already treat such keys as absent (see
/// [`PgConfig::idempotency_key_retention`](crate::PgConfig::idempotency_key_retention)), so this
/// only keeps `eventstore.idempotency_keys` small; pass that retention or more. Run it as the
/// migrator (the writer role may not delete keys), as often as suits the push rate: daily is
/// plenty for most stores.
pub async fn prune_idempotency_keys(pool: &PgPool, older_than: Duration) -> Result<u64> {
    let deleted = sqlx::query(
        "DELETE FROM eventstore.idempotency_keys WHERE created_at < now() - $1::interval",
    )
    .bind(older_than)
    .execute(pool)
    .await
    .map_err(|err| from_sqlx("pruning idempotency keys", err))?
    .rows_affected();
    Ok(deleted)
}
