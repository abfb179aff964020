//! Pushing: how a push reaches the database.
//!
//! - `lanes.rs`: group commit. Pushes queue in lanes (by aggregate); each lane sends whatever
//!   queued while its previous call ran as its next call.
//! - `wire.rs`: one call. Pushes encoded as the parallel arrays `eventstore.push` takes (or the
//!   plain parameters of `eventstore.push_one` for a single command), and the rows it returns
//!   decoded into events or typed errors.

mod lanes;
mod wire;

use sqlx::PgPool;
use strata_event::{Command, Event};
use strata_store::Result;

use crate::config::GroupCommitConfig;

use self::lanes::Lanes;

/// Sends pushes to the database, each in its own call or grouped through lanes.
#[derive(Debug, Clone)]
pub(crate) enum Pusher {
    /// Group commit is off: every push is its own call.
    Direct(PgPool),
    /// Group commit is on.
    Grouped {
        lanes: Lanes,
        /// For pushes of at least `own_call_from` commands, which skip the lanes.
        pool: PgPool,
        own_call_from: usize,
    },
}

impl Pusher {
    /// Starts the group-commit lanes on the current Tokio runtime when grouping is enabled.
    pub(crate) fn start(pool: PgPool, config: &GroupCommitConfig, pool_size: u32) -> Pusher {
        if !config.enabled {
            return Pusher::Direct(pool);
        }
        Pusher::Grouped {
            lanes: Lanes::start(&pool, config, pool_size),
            pool,
            own_call_from: config.own_call_from.max(1),
        }
    }

    pub(crate) async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        match self {
            Pusher::Direct(pool) => wire::push_in_own_call(pool, commands).await,
            Pusher::Grouped {
                pool,
                own_call_from,
                ..
            } if commands.len() >= *own_call_from => wire::push_in_own_call(pool, commands).await,
            Pusher::Grouped { lanes, .. } => lanes.push(commands).await,
        }
    }
}
