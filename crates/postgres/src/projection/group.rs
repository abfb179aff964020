//! A group lease: one transaction holding the leases of several pairs of one instance, so a
//! round of projections reading the same events costs one lease statement, one checkpoint read,
//! one checkpoint write and one commit, instead of one of each per projection.
//!
//! Its fast path runs no savepoints: a statement that fails aborts the whole group, which then
//! rolls back, and the runtime applies its batches one pair at a time (`PgProjections::apply`
//! finds and records the failing event). Failures are rare; round trips are not.

use sqlx::{Postgres, Transaction};
use strata_event::InstanceId;
use strata_projection::{
    Checkpoint, ProjectionError, ReducedEvent, Statement, split_versioned_name,
};

use crate::projection::checkpoints::{CheckpointMoves, read_checkpoints};
use crate::projection::render::execute_merged;
use crate::projection::{PgProjections, corrupt, store_error};

/// The leases of a group of pairs of one instance, in one open transaction; committing or
/// rolling it back ends them all, and so does a crash, with the session.
#[derive(Debug)]
pub struct PgGroupLease {
    tx: Transaction<'static, Postgres>,
    instance: InstanceId,
    /// Per projection asked for: its name when the transaction holds its lease.
    held: Vec<Option<String>>,
}

/// The statement leasing a group's members, with `$commit_mode` after each member's lock: the
/// switch locks shared first (the aggregate in FROM completes before any row's lease is tried),
/// then each pair's lease, one flag per member in their order.
macro_rules! lease_members_sql {
    ($commit_mode:literal) => {
        concat!(
            "SELECT pg_try_advisory_xact_lock(projections.lease_key(member.name, $2)) ",
            $commit_mode,
            " FROM (SELECT count(pg_advisory_xact_lock_shared(projections.switch_key(name))) \
                   FROM unnest($3::text[]) AS name) AS switch, \
                  unnest($1::text[]) WITH ORDINALITY AS member(name, ord) \
             ORDER BY member.ord"
        )
    };
}

impl PgProjections {
    pub(super) async fn lease_group(
        &self,
        projections: &[&str],
        instance: &InstanceId,
    ) -> Result<(PgGroupLease, Vec<bool>), ProjectionError> {
        let mut tx = self
            .db()
            .await
            .begin()
            .await
            .map_err(|err| store_error("starting a projection group batch", err))?;
        crate::telemetry::record_usage(&self.pool, "projection");
        // As `try_lease`, for every member in one statement. The group commits durably when any
        // member must.
        let durable = projections
            .iter()
            .any(|projection| self.commits_durably(projection));
        let mut switches: Vec<&str> = projections
            .iter()
            .map(|projection| split_versioned_name(projection).0)
            .collect();
        switches.sort_unstable();
        switches.dedup();
        let locked: Vec<bool> = sqlx::query_scalar(if durable {
            lease_members_sql!("")
        } else {
            lease_members_sql!("AND set_config('synchronous_commit', 'off', true) IS NOT NULL")
        })
        .bind(projections)
        .bind(instance.as_str())
        .bind(&switches)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| store_error("taking projection leases", err))?;
        if locked.len() != projections.len() {
            return Err(corrupt(
                "answer to a group lease",
                format_args!(
                    "{} flags for {} projections",
                    locked.len(),
                    projections.len()
                ),
            ));
        }
        let held = projections
            .iter()
            .zip(&locked)
            .map(|(projection, &locked)| locked.then(|| (*projection).to_owned()))
            .collect();
        let lease = PgGroupLease {
            tx,
            instance: instance.clone(),
            held,
        };
        Ok((lease, locked))
    }

    pub(super) async fn read_group_checkpoints(
        &self,
        lease: &mut PgGroupLease,
    ) -> Result<Vec<Option<Checkpoint>>, ProjectionError> {
        let names: Vec<&str> = lease.held.iter().flatten().map(String::as_str).collect();
        let rows = read_checkpoints(&mut lease.tx, &lease.instance, &names).await?;
        if rows.len() != names.len() {
            return Err(corrupt(
                "answer to a group's checkpoints",
                format_args!("{} rows for {} pairs", rows.len(), names.len()),
            ));
        }
        let mut rows = rows.into_iter();
        let mut checkpoints = Vec::with_capacity(lease.held.len());
        for held in &lease.held {
            // A row per held pair only: a pair held elsewhere takes none.
            let row = match held {
                Some(_) => rows.next(),
                None => None,
            };
            checkpoints.push(row.map(|row| row.decode(&lease.instance)).transpose()?);
        }
        Ok(checkpoints)
    }

    pub(super) async fn apply_group_batches(
        &self,
        mut lease: PgGroupLease,
        batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> Result<bool, ProjectionError> {
        let mut moves = CheckpointMoves::default();
        for (member, batch) in &batches {
            let Some(Some(projection)) = lease.held.get(*member) else {
                let _ = lease.tx.rollback().await;
                return Ok(false);
            };
            let mut statements: Vec<&Statement> = Vec::new();
            for reduced in batch {
                match &reduced.statements {
                    Ok(more) => statements.extend(more),
                    Err(_) => {
                        let _ = lease.tx.rollback().await;
                        return Ok(false);
                    }
                }
            }
            if execute_merged(&mut lease.tx, &statements).await.is_err() {
                // The transaction is aborted; the runtime applies the batches pair by pair.
                let _ = lease.tx.rollback().await;
                return Ok(false);
            }
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                moves.push(projection, &last.event, Some(&first.event));
            }
        }
        moves.run(&mut lease.tx, &lease.instance).await?;
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a projection group batch", err))?;
        Ok(true)
    }

    pub(super) async fn release_group_lease(&self, lease: PgGroupLease) {
        let _ = lease.tx.rollback().await;
    }
}
