//! The SQL of `strata-shard`'s moves on the source's side: marking an instance moved away from a
//! database, in `eventstore.moved_instances`, so the push functions there refuse it
//! (`Error::InstanceMoved`) whichever process pushes.
//!
//! [`freeze`] takes the instance's advisory lock exclusively, which every push to the instance
//! takes in shared mode before it checks the table (`eventstore.enter_instances`): once it
//! returns, every push that will ever commit to the instance here has committed, and every later
//! one is refused. The table is created by the migrations, as part of the push functions'
//! contract; a move needs the rights to write it (the migrator's, which a move's copy needs too).

use chrono::{DateTime, Utc};
use strata_event::InstanceId;
use strata_store::Result;

use crate::error::from_sqlx;
use crate::store::PgStore;

/// Whether a move of the instance is under way or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveState {
    /// Frozen: pushes are refused while the move catches up, verifies and switches. A failed
    /// move deletes the row ([`unfreeze`]).
    Moving,
    /// Moved: the directory names the new shard.
    Moved,
}

/// One instance's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedInstance {
    /// The instance.
    pub instance_id: InstanceId,
    /// The name of the shard it went (or is going) to.
    pub moved_to: String,
    /// Under way or done.
    pub state: MoveState,
    /// When the row was written.
    pub moved_at: DateTime<Utc>,
}

/// Marks `instance` as moving to the shard named `to`: from the moment this returns, pushes to it
/// on `source` are refused, and every push that was not refused has committed. Waits for the
/// pushes to the instance that hold its lock. Marking again (a move resumed after a crash)
/// replaces a `moving` row; an instance already `moved` away is refused
/// ([`Error::InvalidInput`](strata_store::Error::InvalidInput)): this database holds a stale
/// copy of it, and a move from here would carry old events over newer ones.
pub async fn freeze(source: &PgStore, instance: &InstanceId, to: &str) -> Result<()> {
    let context = "marking an instance as moving";
    let mut tx = source
        .writes()
        .begin()
        .await
        .map_err(|err| from_sqlx(context, err))?;
    // Exclusive, so it waits for every push holding the shared lock, and pushes arriving now wait
    // for this transaction and then read its row.
    sqlx::query("SELECT pg_advisory_xact_lock(eventstore.instance_lock_key($1))")
        .bind(instance.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|err| from_sqlx(context, err))?;
    let marked = sqlx::query(
        "INSERT INTO eventstore.moved_instances (instance_id, moved_to, state) \
         VALUES ($1, $2, 'moving') \
         ON CONFLICT (instance_id) DO UPDATE \
         SET moved_to = EXCLUDED.moved_to, state = 'moving', moved_at = now() \
         WHERE eventstore.moved_instances.state = 'moving'",
    )
    .bind(instance.as_str())
    .bind(to)
    .execute(&mut *tx)
    .await
    .map_err(|err| from_sqlx(context, err))?;
    if marked.rows_affected() == 0 {
        return Err(strata_store::Error::invalid_input(format!(
            "instance {instance} already moved away from this shard: what is left of it here is a \
             stale copy (reload the directory)"
        )));
    }
    tx.commit().await.map_err(|err| from_sqlx(context, err))
}

/// Whether `store`'s archive (`eventstore.archived_events`) holds events of `instance`. A move
/// copies the hot table only, so it refuses such an instance: restore its archive first.
pub async fn has_archived_events(store: &PgStore, instance: &InstanceId) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM eventstore.archived_events WHERE instance_id = $1)",
    )
    .bind(instance.as_str())
    .fetch_one(store.reads())
    .await
    .map_err(|err| from_sqlx("looking for an instance's archived events", err))
}

/// Records that the move of `instance` completed (the directory switched). Pushes stay refused.
pub async fn settle(source: &PgStore, instance: &InstanceId) -> Result<()> {
    sqlx::query("UPDATE eventstore.moved_instances SET state = 'moved' WHERE instance_id = $1")
        .bind(instance.as_str())
        .execute(source.writes())
        .await
        .map_err(|err| from_sqlx("marking an instance as moved", err))?;
    Ok(())
}

/// Takes back a [`freeze`] whose move failed before switching, so `source` takes the instance's
/// pushes again. Leaves a completed move's row alone.
pub async fn unfreeze(source: &PgStore, instance: &InstanceId) -> Result<()> {
    sqlx::query(
        "DELETE FROM eventstore.moved_instances WHERE instance_id = $1 AND state = 'moving'",
    )
    .bind(instance.as_str())
    .execute(source.writes())
    .await
    .map_err(|err| from_sqlx("unfreezing an instance", err))?;
    Ok(())
}

/// Forgets that `instance` once moved away from `destination`'s database, before it moves back
/// there: otherwise its pushes would be refused in its new home.
pub async fn welcome(destination: &PgStore, instance: &InstanceId) -> Result<()> {
    sqlx::query("DELETE FROM eventstore.moved_instances WHERE instance_id = $1")
        .bind(instance.as_str())
        .execute(destination.writes())
        .await
        .map_err(|err| from_sqlx("clearing an instance's move away", err))?;
    Ok(())
}

/// Every instance marked moved (or moving) away from `store`'s database, sorted by instance.
pub async fn list(store: &PgStore) -> Result<Vec<MovedInstance>> {
    let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT instance_id, moved_to, state, moved_at FROM eventstore.moved_instances \
         ORDER BY instance_id",
    )
    .fetch_all(store.reads())
    .await
    .map_err(|err| from_sqlx("reading the moved instances", err))?;
    Ok(rows
        .into_iter()
        .map(|(instance_id, moved_to, state, moved_at)| MovedInstance {
            instance_id: InstanceId::from_stored(instance_id),
            moved_to,
            state: match state.as_str() {
                "moving" => MoveState::Moving,
                // The table's check allows only the two.
                _ => MoveState::Moved,
            },
            moved_at,
        })
        .collect())
}
