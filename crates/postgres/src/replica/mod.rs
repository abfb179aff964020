//! Reads served by a hot standby: which server a read goes to, and when that changes.
//!
//! A [`PgStore`](crate::PgStore) with a [`ReplicaConfig`] reads from the standby while the check in
//! `health.rs` finds it answering and close behind the primary, and from the primary otherwise.
//! Leaving the standby is always safe: the primary has everything the standby has. Returning to
//! it is not: a read on the primary may have shown events the standby has not replayed yet, and a
//! reader that saw them (a projection that took the primary's commit horizon, say) would then miss
//! them. So reads return only through [`Replica::try_return`], which first holds back new primary
//! reads and lets the running ones finish, then waits until the standby has replayed the
//! primary's whole WAL as of that moment. That makes a store's reads monotonic: none sees less than
//! one that returned before it started. (Across stores and processes nothing is promised; a
//! [`ReadToken`](crate::ReadToken) carries one process's write to another.)
//!
//! `token.rs` is the read-your-writes wait; `health.rs` the background check; `views.rs` the
//! read that falls back, and the views that pin a store's reads.

mod health;
mod token;
mod views;

pub use self::token::ReadToken;
pub(crate) use self::token::shown_within;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use strata_store::Error;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio::task::JoinHandle;

use crate::config::ReplicaConfig;
use crate::error::from_sqlx;
use crate::telemetry::{REPLICA_FALLBACKS, REPLICA_SERVING};

/// How long a return to the standby may hold back primary reads while it waits for the last WAL
/// to be replayed. The wait before that, with reads still flowing, is unbounded by this.
const RETURN_HOLD: Duration = Duration::from_millis(250);

/// How long a return waits for the primary reads running when it starts (a long stream, say).
/// New primary reads queue behind the waiting return (the lock is fair), so this bounds their
/// stall; a return that gives up tries again at the next check.
const RETURN_DRAIN: Duration = Duration::from_millis(50);

/// Which server a read went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadServer {
    /// The primary: every push's server.
    Primary,
    /// The hot standby of [`PgConfig::replica`](crate::PgConfig::replica).
    Replica,
}

impl ReadServer {
    /// `"primary"` or `"replica"`, as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadServer::Primary => "primary",
            ReadServer::Replica => "replica",
        }
    }
}

/// Why reads left the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// It did not answer, refused, or cancelled a read (a conflict with recovery).
    Unavailable,
    /// It is further behind than `max_lag`.
    Lagging,
    /// It is no longer in recovery: promoted, or a primary configured by mistake. Its data may
    /// differ from the primary's from then on.
    NotAStandby,
}

impl Fallback {
    fn as_str(self) -> &'static str {
        match self {
            Fallback::Unavailable => "unavailable",
            Fallback::Lagging => "lagging",
            Fallback::NotAStandby => "not_a_standby",
        }
    }
}

/// How one [`PgStore`](crate::PgStore) value routes its reads.
#[derive(Debug, Clone, Default)]
pub(crate) enum Pin {
    /// As the health check decides: the store as built.
    #[default]
    Routed,
    /// Always the primary ([`PgStore::on_primary`](crate::PgStore::on_primary)).
    Primary,
    /// The standby, which showed a token, until a read on it fails; from then on the primary
    /// ([`PgStore::reading_after`](crate::PgStore::reading_after)).
    Replica { left: Arc<AtomicBool> },
}

/// The pool one read runs on, and what the read holds while it runs.
#[derive(Debug)]
pub(crate) struct Via {
    pub(crate) pool: PgPool,
    pub(crate) server: ReadServer,
    _held: Option<OwnedRwLockReadGuard<()>>,
}

impl Via {
    /// The primary's `pool`, for a store without a standby.
    pub(crate) fn primary(pool: &PgPool) -> Via {
        Via {
            pool: pool.clone(),
            server: ReadServer::Primary,
            _held: None,
        }
    }
}

/// The standby of one store (shared by its clones), and the routing state.
#[derive(Debug)]
pub(crate) struct Replica {
    shared: Arc<Shared>,
    check: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    pool: PgPool,
    /// The primary's query pool: the health check reads the primary's WAL position with it.
    primary: PgPool,
    /// Whether routed reads go to the standby now.
    serving: AtomicBool,
    /// Primary reads hold it shared; a return to the standby holds it exclusively.
    returning: Arc<RwLock<()>>,
    /// `host:port` of the standby, for log lines.
    address: String,
    max_lag: Duration,
    check_every: Duration,
}

/// Where one routed read runs: on the standby, or on the primary while holding the guard that
/// keeps reads from returning to the standby until it is done.
enum Routed {
    Replica,
    Primary(OwnedRwLockReadGuard<()>),
}

impl Replica {
    /// Opens the standby's pool (lazily) and starts its health check. Reads start on the primary
    /// and move to the standby once the first check finds it caught up.
    pub(crate) fn start(pool: PgPool, primary: PgPool, config: &ReplicaConfig) -> Replica {
        let options = pool.connect_options();
        let address = format!("{}:{}", options.get_host(), options.get_port());
        let shared = Arc::new(Shared {
            pool,
            primary,
            serving: AtomicBool::new(false),
            returning: Arc::new(RwLock::new(())),
            address,
            max_lag: config.max_lag,
            check_every: config.check_every,
        });
        metrics::gauge!(REPLICA_SERVING).set(0.0);
        let check = tokio::spawn(health::check_until_dropped(Arc::downgrade(&shared)));
        Replica { shared, check }
    }

    /// The standby's pool.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Which server routed reads go to now.
    pub(crate) fn serving(&self) -> ReadServer {
        if self.shared.serving.load(Ordering::Acquire) {
            ReadServer::Replica
        } else {
            ReadServer::Primary
        }
    }

    /// Where the next routed read runs.
    async fn route(&self) -> Routed {
        if self.shared.serving.load(Ordering::Acquire) {
            return Routed::Replica;
        }
        let held = Arc::clone(&self.shared.returning).read_owned().await;
        // A return may have completed while this read waited for it.
        if self.shared.serving.load(Ordering::Acquire) {
            return Routed::Replica;
        }
        Routed::Primary(held)
    }

    /// Where the next read of a store value pinned as `pin` runs; `primary` is the primary's
    /// query pool.
    pub(crate) async fn via(&self, pin: &Pin, primary: &PgPool) -> Via {
        let on_replica = |pool: &PgPool| Via {
            pool: pool.clone(),
            server: ReadServer::Replica,
            _held: None,
        };
        match pin {
            Pin::Primary => Via::primary(primary),
            Pin::Replica { left } if left.load(Ordering::Acquire) => Via::primary(primary),
            Pin::Replica { .. } => on_replica(&self.shared.pool),
            Pin::Routed => match self.route().await {
                Routed::Replica => on_replica(&self.shared.pool),
                Routed::Primary(held) => Via {
                    pool: primary.clone(),
                    server: ReadServer::Primary,
                    _held: Some(held),
                },
            },
        }
    }

    /// Sends the reads of `pin` to the primary after a read on the standby failed with `err`: a
    /// pinned view for good, routed reads until the health check returns them.
    pub(crate) fn read_failed(&self, pin: &Pin, err: &Error) {
        if let Pin::Replica { left } = pin {
            left.store(true, Ordering::Release);
        }
        self.shared.fall_back(Fallback::Unavailable, err);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.check.abort();
    }
}

impl Shared {
    fn fall_back(&self, reason: Fallback, cause: &dyn std::fmt::Display) {
        if self.serving.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                replica = %self.address,
                reason = reason.as_str(),
                "reads fall back to the primary: the standby {}: {cause}",
                match reason {
                    Fallback::Unavailable => "failed",
                    Fallback::Lagging => "is too far behind",
                    Fallback::NotAStandby => "is not in recovery",
                }
            );
            metrics::gauge!(REPLICA_SERVING).set(0.0);
            match reason {
                Fallback::Unavailable => {
                    metrics::counter!(REPLICA_FALLBACKS, "reason" => "unavailable").increment(1);
                }
                Fallback::Lagging => {
                    metrics::counter!(REPLICA_FALLBACKS, "reason" => "lagging").increment(1);
                }
                Fallback::NotAStandby => {
                    metrics::counter!(REPLICA_FALLBACKS, "reason" => "not_a_standby").increment(1);
                }
            }
        }
    }

    /// Holds back new primary reads, waits for the running ones, and returns reads to the standby
    /// once it has replayed everything the primary had written by then; gives up (reads stay on
    /// the primary) if the running reads take longer than [`RETURN_DRAIN`] to finish or the replay
    /// longer than [`RETURN_HOLD`].
    async fn try_return(&self) -> Result<bool, Error> {
        if self.serving.load(Ordering::Acquire) {
            return Ok(true);
        }
        // Most of the catching up happens here, while primary reads still flow.
        let target = health::primary_wal_inserted(&self.primary).await?;
        if !self
            .replayed_by(target, Instant::now() + self.max_lag)
            .await?
        {
            return Ok(false);
        }
        let Ok(held) = tokio::time::timeout(RETURN_DRAIN, self.returning.write()).await else {
            return Ok(false);
        };
        // No primary read runs now, and none starts until `held` is dropped: whatever a finished
        // one saw was inserted before this position.
        let deadline = Instant::now() + RETURN_HOLD;
        let target = health::primary_wal_inserted(&self.primary).await?;
        if !self.replayed_by(target, deadline).await? {
            return Ok(false);
        }
        self.serving.store(true, Ordering::Release);
        drop(held);
        metrics::gauge!(REPLICA_SERVING).set(1.0);
        tracing::info!(replica = %self.address, "reads go to the standby");
        Ok(true)
    }

    /// Waits until the standby has replayed the primary's WAL up to `target`; `false` when
    /// `deadline` passes first.
    async fn replayed_by(&self, target: u64, deadline: Instant) -> Result<bool, Error> {
        let mut pause = Duration::from_millis(1);
        loop {
            let replayed = health::standby_replayed(&self.pool)
                .await
                .map_err(|err| from_sqlx("reading the standby's replay position", err))?;
            match replayed {
                Some(replayed) if health::reached(replayed, target) => return Ok(true),
                Some(_) => {}
                None => return Ok(false),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
