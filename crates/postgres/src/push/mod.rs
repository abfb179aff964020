//! Pushing: how a push reaches the database.
//!
//! - `lanes.rs`: group commit. Pushes queue in lanes (by aggregate); each lane sends whatever
//!   queued while its previous call ran as its next call.
//! - `wire.rs`: one call. Pushes encoded as the parallel arrays `eventstore.push` takes (or the
//!   plain parameters of `eventstore.push_one` for a single command), and the rows it returns
//!   decoded into events or typed errors.

mod lanes;
mod wire;

use std::time::Duration;

use sqlx::PgPool;
use strata_event::{Command, Event, IdempotencyKey};
use strata_store::Result;

use crate::config::GroupCommitConfig;

use self::lanes::Lanes;
pub(crate) use self::wire::{metadata_json, stored};

/// One push on its way: its commands, and its idempotency key when it has one.
#[derive(Debug)]
pub(crate) struct Push {
    pub(crate) commands: Vec<Command>,
    pub(crate) key: Option<Keyed>,
}

/// A push's idempotency key with the fingerprint of its commands, computed once by the caller
/// (not in the lane, which serves many callers one after another).
#[derive(Debug)]
pub(crate) struct Keyed {
    pub(crate) key: IdempotencyKey,
    pub(crate) fingerprint: String,
}

/// What every call needs besides its pushes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSettings {
    /// How long idempotency keys count (older ones are treated as absent).
    pub(crate) key_retention: Duration,
    /// Whether the pool reaches the database through transaction pooling, where each call runs
    /// unprepared in an explicit transaction (`crate::pooling`).
    pub(crate) transaction_pooling: bool,
}

/// Sends pushes to the database, each in its own call or grouped through lanes.
#[derive(Debug, Clone)]
pub(crate) enum Pusher {
    /// Group commit is off: every push is its own call.
    Direct(PgPool, CallSettings),
    /// Group commit is on.
    Grouped {
        lanes: Lanes,
        /// For pushes of at least `own_call_from` commands, which skip the lanes.
        pool: PgPool,
        settings: CallSettings,
        own_call_from: usize,
    },
}

impl Pusher {
    /// Starts the group-commit lanes on the current Tokio runtime when grouping is enabled.
    pub(crate) fn start(
        pool: PgPool,
        config: &GroupCommitConfig,
        pool_size: u32,
        settings: CallSettings,
    ) -> Pusher {
        if !config.enabled {
            return Pusher::Direct(pool, settings);
        }
        Pusher::Grouped {
            lanes: Lanes::start(&pool, config, pool_size, settings),
            pool,
            settings,
            own_call_from: config.own_call_from.max(1),
        }
    }

    /// Sends `push` (keyed or not) the way its size and the configuration ask for.
    pub(crate) async fn push(&self, push: Push) -> Result<Vec<Event>> {
        match self {
            Pusher::Direct(pool, settings) => wire::push_in_own_call(pool, push, *settings).await,
            Pusher::Grouped {
                pool,
                settings,
                own_call_from,
                ..
            } if push.commands.len() >= *own_call_from => {
                wire::push_in_own_call(pool, push, *settings).await
            }
            Pusher::Grouped { lanes, .. } => lanes.push(push).await,
        }
    }
}
