//! Several pairs of one instance leased and applied together in memory: the in-memory side of
//! [`ProjectionBackend::apply_group`](crate::ProjectionBackend::apply_group), all or nothing like
//! the PostgreSQL transaction it stands for.

use super::{MemoryLease, State};
use crate::backend::ReducedEvent;
use crate::statement::Statement;

/// The leases of a group of pairs, one per projection asked for (`None`: another worker held
/// it); dropping it releases them.
#[derive(Debug)]
pub struct MemoryGroupLease {
    pub(super) leases: Vec<Option<MemoryLease>>,
}

impl State {
    /// Applies every batch and moves each pair's checkpoint past it, or, when a statement fails
    /// (or a batch holds a failed reduction, or a pair is not held), changes nothing and returns
    /// `false`.
    pub(super) fn apply_group(
        &mut self,
        lease: &MemoryGroupLease,
        mut batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> bool {
        let mut held = Vec::with_capacity(batches.len());
        let mut statements: Vec<Statement> = Vec::new();
        for (member, batch) in &mut batches {
            let Some(Some(member_lease)) = lease.leases.get(*member) else {
                return false;
            };
            held.push(member_lease);
            for reduced in batch {
                // Moved, not cloned: the batch is spent whatever happens, only its events
                // are needed below.
                match &mut reduced.statements {
                    Ok(more) => statements.append(more),
                    Err(_) => return false,
                }
            }
        }
        // One call: every statement is checked before any applies, and a failing increment
        // undoes the others, so the group applies whole or not at all.
        if self.execute(&statements).is_err() {
            return false;
        }
        for (member_lease, (_, batch)) in held.into_iter().zip(&batches) {
            let key = &member_lease.key;
            for reduced in batch {
                let event = &reduced.event;
                self.failed.remove(&(
                    key.projection.clone(),
                    event.aggregate.clone(),
                    event.sequence,
                ));
            }
            if let Some(last) = batch.last() {
                self.move_checkpoint(key, &last.event);
            }
        }
        true
    }
}
