//! Per-instance write gates: a push holds its instances' gates while it routes and runs, and a
//! move closes one instance's gate for its final catch-up, so pushes to that instance wait while
//! pushes to every other instance go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use strata_event::InstanceId;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The gates of the instances this process has pushed to or frozen.
///
/// NOTE: entries are never removed. Removing one while a push holds a clone would let a freeze
/// create a fresh gate and not wait for that push; an entry costs a few dozen bytes per instance.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    gates: Mutex<HashMap<InstanceId, Arc<RwLock<()>>>>,
}

/// Held by a push for its instances: while it lives, no freeze of those instances completes.
pub(crate) type Entered = Vec<OwnedRwLockReadGuard<()>>;

/// Held by a move: pushes to the instance wait until it is dropped.
pub(crate) type Frozen = OwnedRwLockWriteGuard<()>;

impl Gates {
    fn gate(&self, instance: &InstanceId) -> Arc<RwLock<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(gates.entry(instance.clone()).or_default())
    }

    /// Enters the gates of `instances`, waiting while any is frozen. `instances` must be sorted
    /// and free of duplicates: every caller then takes gates in one order. (A freeze holds one
    /// gate only, so it cannot deadlock with a push either way.)
    pub(crate) async fn enter(&self, instances: &[InstanceId]) -> Entered {
        let mut entered = Vec::with_capacity(instances.len());
        for instance in instances {
            entered.push(self.gate(instance).read_owned().await);
        }
        entered
    }

    /// Closes `instance`'s gate once the pushes inside it have finished. New pushes to it wait
    /// until the returned guard is dropped; pushes to other instances never wait for it.
    pub(crate) async fn freeze(&self, instance: &InstanceId) -> Frozen {
        self.gate(instance).write_owned().await
    }
}
