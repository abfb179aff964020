//! Configuration of the PostgreSQL backend, passed as values.

use std::time::Duration;

use crate::pooling::Pooler;

/// How one connection pool is sized.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// How long a caller waits for a free connection before it gets
    /// [`strata_store::Error::Unavailable`].
    pub acquire_timeout: Duration,
    /// A connection that sat idle in the pool at least this long is checked with a round trip
    /// before it is handed out, and replaced if the server or the network dropped it. Connections
    /// in steady use go straight to work: checking every one (sqlx's default) costs each push and
    /// each query a second round trip, which on a network is most of a small call's latency. The
    /// price: when the server restarts or kills connections, each call that picks up a broken
    /// connection used within this window fails with [`strata_store::Error::Unavailable`] (which
    /// is retryable), and the pool replaces it. HikariCP makes the same trade with half a second.
    pub check_idle_after: Duration,
}

impl PoolConfig {
    /// A pool of at most `max_connections`, no idle minimum, a 10-second acquire timeout, and
    /// connections idle for a second or more checked before use.
    pub fn with_max(max_connections: u32) -> Self {
        PoolConfig {
            max_connections,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            check_idle_after: Duration::from_secs(1),
        }
    }
}

/// How pushes are grouped into shared calls (see the crate docs).
#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Whether pushes share calls at all. With `false`, every push is its own call. Default `true`.
    pub enabled: bool,
    /// How many calls may be in flight at once. Each push queues in the lane of its first
    /// command's aggregate (so pushes to one aggregate always share a lane, and share calls instead
    /// of waiting for each other's lock); a lane sends whatever queued in it while its previous
    /// call ran as its next call. Default: the number of CPU cores, at least 2, at most the push
    /// pool's `max_connections`. That counts the cores of the machine this process runs on; when
    /// PostgreSQL runs on a larger machine, set it to about that machine's cores (more lanes than
    /// the database has cores only adds lock and CPU contention).
    pub lanes: Option<usize>,
    /// Most pushes in one call. Pushes with unique constraints each open a subtransaction, and
    /// PostgreSQL handles up to 64 of those per transaction cheaply. Default `32`.
    pub max_pushes: usize,
    /// Most commands in one call (a single larger push still gets a call of its own). Default
    /// `2000`.
    pub max_commands: usize,
    /// Pushes of at least this many commands skip the lanes and are sent in calls of their own,
    /// up to the push pool's size at once: they already spread one commit over many events, and in
    /// a lane they would hold up the small pushes queued behind them. Default `64`.
    pub own_call_from: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            enabled: true,
            lanes: None,
            max_pushes: 32,
            max_commands: 2000,
            own_call_from: 64,
        }
    }
}

/// Configuration of a [`crate::PgStore`] built from a URL.
///
/// Defaults: push pool of 8 connections, query pool of 8, projection pool of 4, group commit on,
/// idempotency keys kept for 24 hours.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The pool pushes use.
    pub push_pool: PoolConfig,
    /// The pool queries use.
    pub query_pool: PoolConfig,
    /// The pool projection workers use; kept apart so they can never starve writers or readers.
    pub projection_pool: PoolConfig,
    /// Group commit settings.
    pub group_commit: GroupCommitConfig,
    /// Announce pushes to other processes with `NOTIFY` on [`crate::PUSH_CHANNEL`], so their
    /// projections run at once instead of at their next tick. The notice is sent after the push
    /// commits, outside its transaction (a `NOTIFY` inside would serialise every commit on the
    /// notification queue lock), and notices that pile up while one is sent travel together.
    /// Default: on.
    pub notify_pushes: bool,
    /// Hear other processes' pushes (`LISTEN` on [`crate::PUSH_CHANNEL`]) while anything subscribes
    /// to this store's pushes, as a projection runtime does; they arrive beside this process's own.
    /// The listening connection comes from the projection pool and goes back to it once nobody
    /// subscribes. Default: on.
    pub listen_for_pushes: bool,
    /// How long an idempotency key counts after the push that recorded it
    /// ([`EventStore::push_idempotent`](strata_store::EventStore::push_idempotent)); an older key
    /// is treated as absent, and the next push with it is stored as a first push. Expired keys
    /// stay in `eventstore.idempotency_keys` until
    /// [`admin::prune_idempotency_keys`](crate::admin::prune_idempotency_keys) deletes them.
    /// Processes sharing a database should agree on it. Default: 24 hours
    /// ([`strata_store::DEFAULT_IDEMPOTENCY_RETENTION`]).
    pub idempotency_key_retention: Duration,
    /// Read events from the hot table and the archive (`eventstore.archived_events`) together:
    /// [`EventStore::query`](strata_store::EventStore::query) and
    /// [`stream`](strata_store::EventStore::stream) return archived events in their place, so a
    /// projection runtime on such a store rebuilds from every event, archived ones included.
    /// Counts, heads and positions still read the hot table. Default: off (reads see the hot table
    /// only, as `strata archive` documents).
    pub read_archive: bool,
    /// A hot standby that serves this store's reads (see [`ReplicaConfig`] and
    /// `docs/scaling.md`). Default: none, every read goes to the primary.
    pub replica: Option<ReplicaConfig>,
    /// How the store reaches PostgreSQL: directly (or through session pooling), or through a
    /// proxy that pools connections per transaction, such as PgBouncer's `pool_mode =
    /// transaction` (`docs/pooling.md`). Default: [`Pooler::Detect`], found out by
    /// [`PgStore::connect`](crate::PgStore::connect).
    pub pooler: Pooler,
}

/// A hot standby (PostgreSQL streaming replication) that serves a [`crate::PgStore`]'s reads.
///
/// With one configured, the store's reads (queries, streams, counts, the commit horizon, and so
/// the subscriptions and projection runtimes that read through the store) go to the standby while
/// it is healthy; pushes, idempotency lookups, current sequences, checkpoints and every other write
/// stay on the primary. A background check compares the two servers every
/// [`check_every`](ReplicaConfig::check_every): when the standby stops answering or falls more
/// than [`max_lag`](ReplicaConfig::max_lag) behind, reads go to the primary (one warning, and
/// the `strata_replica_fallbacks_total` counter), and they return once it has caught up.
///
/// A store never reads older data after newer: reads return to the standby only once it has
/// replayed everything the primary had when they left it. A caller that must see its own push
/// reads through [`crate::PgStore::reading_after`] with the push's [`crate::ReadToken`].
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The standby's URL (the same database as the primary's).
    pub url: String,
    /// The pool reads on the standby use.
    pub pool: PoolConfig,
    /// How far the standby may fall behind the primary before reads leave it. Default: 5 s.
    pub max_lag: Duration,
    /// How often the standby's health and lag are checked. Default: 1 s.
    pub check_every: Duration,
}

impl ReplicaConfig {
    /// A standby at `url` with a query pool of 8 connections, 5 s of allowed lag, checked every
    /// second.
    pub fn new(url: impl Into<String>) -> Self {
        ReplicaConfig {
            url: url.into(),
            pool: PoolConfig::with_max(8),
            max_lag: Duration::from_secs(5),
            check_every: Duration::from_secs(1),
        }
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            push_pool: PoolConfig::with_max(8),
            query_pool: PoolConfig::with_max(8),
            projection_pool: PoolConfig::with_max(4),
            group_commit: GroupCommitConfig::default(),
            notify_pushes: true,
            listen_for_pushes: true,
            idempotency_key_retention: strata_store::DEFAULT_IDEMPOTENCY_RETENTION,
            read_archive: false,
            replica: None,
            pooler: Pooler::Detect,
        }
    }
}
