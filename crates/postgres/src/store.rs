//! [`PgStore`]: the storage trait on PostgreSQL.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::str::FromStr;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::QueryAs;
use sqlx::{Connection, Postgres};
use strata_event::{AggregateRef, Command, Event, IdempotencyKey, InstanceId, Position, Sequence};
use strata_query::Query;
use strata_store::telemetry::{self, SYSTEM_POSTGRESQL};

use strata_store::{
    Error, EventStore, PUSH_NOTICE_CAPACITY, Pushed, Result, push_fingerprint, validate_push,
};
use tokio::sync::{broadcast, mpsc};

use crate::announce::{Listener, Notifier};
use crate::config::{PgConfig, PoolConfig};
use crate::error::{from_sqlx, unexpected_answer};
use crate::pooling::Pooler;
use crate::push::{CallSettings, Keyed, Push, Pusher};
use crate::read::{
    fetch_all, fetch_all_with_archive, fetch_recorded, render_count, render_instance_heads,
    render_instance_ids, render_latest_position, render_query, render_query_with_archive,
    send_rows,
};
use crate::replica::{Pin, ReadServer, Replica};

/// Runs a stream's fetching task may get ahead of its reader: with [`STREAM_RUN`], at most 256
/// decoded events wait in memory.
const STREAM_RUNS: usize = 4;

/// The three pools a [`PgStore`] uses, kept apart so one kind of work cannot starve another.
#[derive(Debug, Clone)]
pub struct PgPools {
    push: PgPool,
    query: PgPool,
    projection: PgPool,
    /// Whether the pools reach the database through transaction pooling (`crate::pooling`).
    transaction_pooling: bool,
}

impl PgPools {
    /// Uses existing pools. They may be the same pool, which gives up the isolation. They are
    /// taken to reach the database directly (or through session pooling): [`Pooler::Direct`].
    pub fn new(push: PgPool, query: PgPool, projection: PgPool) -> Self {
        PgPools {
            push,
            query,
            projection,
            transaction_pooling: false,
        }
    }

    /// Uses one pool for everything.
    pub fn single(pool: PgPool) -> Self {
        Self::new(pool.clone(), pool.clone(), pool)
    }

    /// Opens the three pools described by `config` against `url`. Connections are opened lazily, so
    /// this succeeds even while the database is down; the first operation then reports
    /// [`Error::Unavailable`].
    pub fn connect_lazy(url: &str, config: &PgConfig) -> Result<Self> {
        Ok(Self::connect_lazy_with(parse_url(url)?, config))
    }

    /// Opens the three pools described by `config` with connection `options` (for settings a URL
    /// cannot carry). Lazily, like [`PgPools::connect_lazy`].
    ///
    /// Each pool's connections carry an `application_name` naming it (`strata push`,
    /// `strata query`, `strata projection`), so `pg_stat_activity` shows which pool a session
    /// belongs to, unless `options` (or the URL) names an application already.
    ///
    /// With [`PgConfig::pooler`] set to [`Pooler::TransactionPooling`], connections keep no
    /// prepared statements (`docs/pooling.md`); [`Pooler::Detect`] counts as [`Pooler::Direct`]
    /// here, since nothing connects yet.
    pub fn connect_lazy_with(options: PgConnectOptions, config: &PgConfig) -> Self {
        let transaction_pooling = config.pooler == Pooler::TransactionPooling;
        // A named statement lives on one server connection; the next transaction may run on
        // another.
        let options = if transaction_pooling {
            options.statement_cache_capacity(0)
        } else {
            options
        };
        let open = |pool: &PoolConfig, role: &str| open_pool(&options, pool, role);
        PgPools {
            push: open(&config.push_pool, "push"),
            query: open(&config.query_pool, "query"),
            projection: open(&config.projection_pool, "projection"),
            transaction_pooling,
        }
    }

    /// Whether these pools reach the database through transaction pooling
    /// ([`Pooler::TransactionPooling`], configured or detected).
    pub fn transaction_pooling(&self) -> bool {
        self.transaction_pooling
    }

    /// The pool pushes use.
    pub fn push(&self) -> &PgPool {
        &self.push
    }
    /// The pool queries use.
    pub fn query(&self) -> &PgPool {
        &self.query
    }
    /// The pool projection workers use.
    pub fn projection(&self) -> &PgPool {
        &self.projection
    }
}

/// Reads a PostgreSQL URL into connection options, refusing what is not one.
fn parse_url(url: &str) -> Result<PgConnectOptions> {
    // sqlx reads any scheme as PostgreSQL; a `mysql://` URL would otherwise surface later as an
    // unreachable host instead of the mistake it is.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::invalid_input(
            "invalid database URL: it must start with postgres:// or postgresql://",
        ));
    }
    PgConnectOptions::from_str(url).map_err(|err| match err {
        sqlx::Error::Configuration(_) => {
            Error::invalid_input(format!("invalid database URL: {err}"))
        }
        other => from_sqlx("reading the database URL", other),
    })
}

/// Opens a pool lazily, its connections named `strata <role>` unless `options` name an
/// application already.
fn open_pool(options: &PgConnectOptions, pool: &PoolConfig, role: &str) -> PgPool {
    let options = if options.get_application_name().is_some() {
        options.clone()
    } else {
        options.clone().application_name(&format!("strata {role}"))
    };
    let check_idle_after = pool.check_idle_after;
    PgPoolOptions::new()
        .max_connections(pool.max_connections)
        .min_connections(pool.min_connections)
        .acquire_timeout(pool.acquire_timeout)
        // Only connections that sat idle are pinged first (PoolConfig::check_idle_after).
        .test_before_acquire(false)
        .before_acquire(move |connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= check_idle_after {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// An event store on PostgreSQL. Cheap to clone; clones share pools and push lanes.
///
/// Build it inside a Tokio runtime: group commit runs on background tasks.
#[derive(Debug, Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
    /// Where this value's reads go: routed, or pinned by [`PgStore::on_primary`] or
    /// [`PgStore::reading_after`].
    pin: Pin,
}

#[derive(Debug)]
struct Inner {
    pools: PgPools,
    pusher: Pusher,
    /// How long idempotency keys count as live (`PgConfig::idempotency_key_retention`).
    key_retention: std::time::Duration,
    /// Whether event reads include the archive (`PgConfig::read_archive`).
    read_archive: bool,
    /// This process's pushes, and other processes' the listener hears.
    pushes: broadcast::Sender<Pushed>,
    notifier: Option<Notifier>,
    listener: Option<Listener>,
    /// Erasures heard for the vaults on this store.
    erasures: crate::erasure_notices::ErasureNotices,
    /// The standby that serves reads, when one is configured.
    replica: Option<Replica>,
}

impl PgStore {
    /// Connects to `url` with `config` and checks that the database answers.
    ///
    /// The check opens one connection of its own rather than borrowing from a pool: a pool retries
    /// a failing connect until its acquire timeout and then reports only that it timed out, while a
    /// direct connection fails at once with the cause (connection refused, unknown database,
    /// authentication failed).
    ///
    /// With [`PgConfig::pooler`] left at [`Pooler::Detect`], it then finds out whether the URL
    /// leads through transaction pooling, and logs how it will work once (`docs/pooling.md`).
    pub async fn connect(url: &str, mut config: PgConfig) -> Result<Self> {
        let pools = PgPools::connect_lazy(url, &config)?;
        let options = pools.query().connect_options();
        let check = async {
            let mut connection = sqlx::ConnectOptions::connect(options.as_ref()).await?;
            // A simple query: a prepared one would stay on the server connection behind
            // transaction pooling, and clash with the next client's statement of its name.
            sqlx::raw_sql("SELECT 1").execute(&mut connection).await?;
            sqlx::Connection::close(connection).await
        };
        match tokio::time::timeout(config.query_pool.acquire_timeout, check).await {
            Ok(checked) => checked.map_err(|err| from_sqlx("connecting", err))?,
            Err(_) => {
                return Err(Error::Unavailable {
                    message: format!(
                        "connecting: no answer within {:?} (the query pool's acquire timeout)",
                        config.query_pool.acquire_timeout
                    ),
                    source: None,
                });
            }
        }
        if config.pooler == Pooler::Detect {
            config.pooler = crate::pooling::detect(options.as_ref()).await?;
        }
        // Lazy, so opening them again with what was found costs nothing.
        let pools = PgPools::connect_lazy(url, &config)?;
        Self::from_pools(pools, &config)
    }

    /// Builds a store on existing pools; `config` supplies the group-commit settings (its pool
    /// settings are not used).
    pub fn from_pools(pools: PgPools, config: &PgConfig) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid_input(
                "PgStore must be built inside a Tokio runtime (it runs its push lanes there)",
            ));
        }
        let pool_size = pools.push.options().get_max_connections();
        let transaction_pooling = pools.transaction_pooling;
        crate::pooling::log_mode(transaction_pooling);
        let settings = CallSettings {
            key_retention: config.idempotency_key_retention,
            transaction_pooling,
        };
        let pusher = Pusher::start(
            pools.push.clone(),
            &config.group_commit,
            pool_size,
            settings,
        );
        let notifier = config.notify_pushes.then(|| {
            Notifier::start(
                pools.push.connect_options().as_ref().clone(),
                transaction_pooling,
            )
        });
        // `LISTEN` holds on a server connection that transaction pooling gives to others.
        let listener = (config.listen_for_pushes && !transaction_pooling)
            .then(|| Listener::new(pools.projection.clone(), notifier.as_ref()));
        // A vault's listener holds one query connection while the vault lives.
        let erasures =
            crate::erasure_notices::ErasureNotices::new(pools.query.clone(), !transaction_pooling);
        let replica = match &config.replica {
            Some(replica) => {
                let options = parse_url(&replica.url)?;
                // The standby is taken to be reached the way the primary is.
                let options = if transaction_pooling {
                    options.statement_cache_capacity(0)
                } else {
                    options
                };
                let pool = open_pool(&options, &replica.pool, "replica");
                Some(Replica::start(pool, pools.query.clone(), replica))
            }
            None => None,
        };
        Ok(PgStore {
            inner: Arc::new(Inner {
                pools,
                pusher,
                key_retention: config.idempotency_key_retention,
                read_archive: config.read_archive,
                pushes: broadcast::channel(PUSH_NOTICE_CAPACITY).0,
                notifier,
                listener,
                erasures,
                replica,
            }),
            pin: Pin::Routed,
        })
    }

    /// The erasure notices of this store (for its `SubjectKeyStore` implementation).
    pub(crate) fn erasure_notices(&self) -> &crate::erasure_notices::ErasureNotices {
        &self.inner.erasures
    }

    /// The pools, for projections, migrations and diagnostics.
    pub fn pools(&self) -> &PgPools {
        &self.inner.pools
    }

    /// Removes an instance: all its events, unique constraints and idempotency keys. The only way
    /// events are ever deleted; returns how many were.
    pub async fn remove_instance(&self, instance_id: &strata_event::InstanceId) -> Result<u64> {
        let removed: i64 = sqlx::query_scalar("SELECT eventstore.remove_instance($1)")
            .bind(instance_id.as_str())
            .fetch_one(self.writes())
            .await
            .map_err(|err| from_sqlx("removing an instance", err))?;
        Ok(removed as u64)
    }
}

impl PgStore {
    /// The standby serving this store's reads, if one is configured.
    pub(crate) fn replica(&self) -> Option<&Replica> {
        self.inner.replica.as_ref()
    }

    /// How this value routes its reads.
    pub(crate) fn pin(&self) -> &Pin {
        &self.pin
    }

    /// This store, its reads routed as `pin` says.
    pub(crate) fn pinned(&self, pin: Pin) -> PgStore {
        PgStore {
            inner: Arc::clone(&self.inner),
            pin,
        }
    }
}

impl PgStore {
    /// Tells this process's subscribers, and other processes when configured, about a push.
    pub(crate) fn announce(&self, stored: &[Event]) {
        if let Some(pushed) = Pushed::of(stored) {
            if let Some(notifier) = &self.inner.notifier {
                notifier.announce(&pushed);
            }
            let _ = self.inner.pushes.send(pushed);
        }
    }
}

impl EventStore for PgStore {
    async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        let span = telemetry::push_span(SYSTEM_POSTGRESQL, &commands);
        telemetry::observe_push(SYSTEM_POSTGRESQL, span, async move {
            validate_push(&commands)?;
            if commands.is_empty() {
                return Ok(Vec::new());
            }
            let stored = self
                .inner
                .pusher
                .push(Push {
                    commands,
                    key: None,
                })
                .await?;
            self.announce(&stored);
            Ok(stored)
        })
        .await
    }

    async fn recorded_push(&self, key: &IdempotencyKey) -> Result<Option<Vec<Event>>> {
        let place: Option<(Decimal, i32, i32)> = sqlx::query_as(
            "SELECT r_position, r_first_in_tx_order, r_event_count \
             FROM eventstore.recorded_push($1, $2, $3)",
        )
        .bind(key.instance_id().as_str())
        .bind(key.key())
        .bind(self.inner.key_retention)
        .fetch_optional(self.reads())
        .await
        .map_err(|err| from_sqlx("looking up an idempotency key", err))?;
        let Some((position, first, count)) = place else {
            return Ok(None);
        };
        let events = fetch_recorded(self.reads(), position, first, count).await?;
        if events.len() != count as usize {
            return Err(unexpected_answer(
                "eventstore.recorded_push",
                "a recorded push whose events are not all there",
            ));
        }
        Ok(Some(events))
    }

    async fn push_idempotent(
        &self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
    ) -> Result<Vec<Event>> {
        let span = telemetry::push_span(SYSTEM_POSTGRESQL, &commands);
        telemetry::observe_push(SYSTEM_POSTGRESQL, span, async move {
            validate_push(&commands)?;
            if commands.is_empty() {
                return Ok(Vec::new());
            }
            let keyed = Keyed {
                key: key.clone(),
                fingerprint: push_fingerprint(&commands),
            };
            let stored = self
                .inner
                .pusher
                .push(Push {
                    commands,
                    key: Some(keyed),
                })
                .await?;
            // A replay is announced again: harmless (subscribers re-check and find nothing new),
            // and it may be the first announcement, when the first attempt's answer was lost.
            self.announce(&stored);
            Ok(stored)
        })
        .await
    }

    fn subscribe_pushes(&self) -> Option<broadcast::Receiver<Pushed>> {
        let subscribed = self.inner.pushes.subscribe();
        if let Some(listener) = &self.inner.listener {
            listener.ensure_running(&self.inner.pushes);
        }
        Some(subscribed)
    }

    async fn count(&self, query: &Query) -> Result<u64> {
        telemetry::observe_read(SYSTEM_POSTGRESQL, "count", query, async {
            let rendered = &render_count(query);
            let (count,): (i64,) = self
                .read(|pool| async move {
                    rendered
                        .to_query_as()
                        .fetch_one(self.pooled(&pool))
                        .await
                        .map_err(|err| from_sqlx("counting events", err))
                })
                .await?;
            Ok(count as u64)
        })
        .await
    }

    fn stream<'a>(&'a self, query: &'a Query) -> BoxStream<'a, Result<Event>> {
        // The rows are fetched and decoded by a task that owns the SQL text and hands events over
        // a small bounded channel: memory stays flat however many rows match, and dropping the
        // stream stops the fetch and returns the connection. Events travel in runs of what the
        // connection had already received (up to `STREAM_RUN`), so a reader keeping up is woken
        // once per run rather than once per event: a wake-up across threads cost more than
        // decoding the event.
        let (sender, receiver) = mpsc::channel::<Vec<Result<Event>>>(STREAM_RUNS);
        let rendered = if self.inner.read_archive {
            render_query_with_archive(query)
        } else {
            render_query(query)
        };
        let store = self.clone();
        tokio::spawn(async move {
            let via = store.read_via().await;
            let transaction_pooling = store.pools().transaction_pooling();
            let Err(err) = send_rows(&via.pool, transaction_pooling, &rendered, &sender).await
            else {
                return;
            };
            let retry = via.server == ReadServer::Replica && err.is_retryable();
            drop(via);
            if retry {
                // The standby failed before a row was sent: the reader never knows.
                store.replica_failed(&err);
                let via = store.read_via().await;
                if let Err(err) =
                    send_rows(&via.pool, transaction_pooling, &rendered, &sender).await
                {
                    let _ = sender.send(vec![Err(err)]).await;
                }
            } else {
                let _ = sender.send(vec![Err(err)]).await;
            }
        });
        futures::stream::unfold(receiver, |mut receiver| async move {
            let events = receiver.recv().await?;
            Some((futures::stream::iter(events), receiver))
        })
        .flatten()
        .boxed()
    }

    async fn query(&self, query: &Query) -> Result<Vec<Event>> {
        telemetry::observe_read(SYSTEM_POSTGRESQL, "query", query, async {
            self.read(|pool| async move {
                if self.inner.read_archive {
                    return fetch_all_with_archive(self.pooled(&pool), query).await;
                }
                fetch_all(self.pooled(&pool), query).await
            })
            .await
        })
        .await
    }

    async fn latest_position(&self, query: &Query) -> Result<Option<Position>> {
        let rendered = &render_latest_position(query);
        let (max,): (Option<Decimal>,) = self
            .read(|pool| async move {
                rendered
                    .to_query_as()
                    .fetch_one(self.pooled(&pool))
                    .await
                    .map_err(|err| from_sqlx("reading the latest position", err))
            })
            .await?;
        max.map(stored_position).transpose()
    }

    async fn instance_ids(&self, query: &Query) -> Result<Vec<InstanceId>> {
        let rendered = &render_instance_ids(query);
        let rows: Vec<(String,)> = self
            .read(|pool| async move {
                fetch_by_probes(
                    self.pooled(&pool),
                    rendered.to_query_as(),
                    "reading instance ids",
                )
                .await
            })
            .await?;
        let mut ids = rows
            .into_iter()
            .map(|(id,)| stored_instance_id(id))
            .collect::<Result<Vec<_>>>()?;
        // Sorted here, by bytes, so the order does not depend on the database's collation.
        ids.sort();
        Ok(ids)
    }

    async fn instance_heads(&self) -> Result<Vec<(InstanceId, Position)>> {
        let sql = &render_instance_heads();
        let rows: Vec<(String, Option<Decimal>)> = self
            .read(|pool| async move {
                let what = "reading the instances' latest positions";
                fetch_by_probes(self.pooled(&pool), sqlx::query_as(sql), what).await
            })
            .await?;
        let mut heads = Vec::with_capacity(rows.len());
        for (id, head) in rows {
            if let Some(head) = head {
                heads.push((stored_instance_id(id)?, stored_position(head)?));
            }
        }
        // Sorted here, by bytes, so the order does not depend on the database's collation.
        heads.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(heads)
    }

    async fn current_sequence(&self, aggregate: &AggregateRef) -> Result<Sequence> {
        let sequence: i64 = sqlx::query_scalar(
            // The push's own lookup, so an archived aggregate's sequence is the one its next push
            // continues from.
            "SELECT eventstore.current_sequence($1, $2, $3)",
        )
        .bind(aggregate.instance_id.as_str())
        .bind(aggregate.aggregate_type.as_str())
        .bind(aggregate.aggregate_id.as_str())
        .fetch_one(self.reads())
        .await
        .map_err(|err| from_sqlx("reading an aggregate's sequence", err))?;
        Ok(sequence as u64)
    }

    async fn commit_horizon(&self) -> Result<Position> {
        let horizon: Decimal = self
            .read(|pool| async move {
                sqlx::query_scalar("SELECT eventstore.commit_horizon()")
                    .fetch_one(self.pooled(&pool))
                    .await
                    .map_err(|err| from_sqlx("reading the commit horizon", err))
            })
            .await?;
        Position::new(horizon)
            .map_err(|err| unexpected_answer("eventstore.commit_horizon", format_args!("{err}")))
    }
}

/// Runs `query` in a transaction that plans an index scan wherever one applies. The instance walks
/// are one probe per instance, cheap only through an index: seeing few instances, the planner may
/// expect a match within the first rows of a sequential scan, and for an instance without one that
/// scan reads the whole table.
async fn fetch_by_probes<'q, O>(
    pool: crate::pooling::Pooled<'_>,
    query: QueryAs<'q, Postgres, O, PgArguments>,
    what: &'static str,
) -> Result<Vec<O>>
where
    O: Send + Unpin + for<'r> sqlx::FromRow<'r, PgRow>,
{
    let failed = |err| from_sqlx(what, err);
    let mut tx = pool.begin().await.map_err(failed)?;
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let rows = query.fetch_all(&mut *tx).await.map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(rows)
}

/// A position read back from the events table.
fn stored_position(value: Decimal) -> Result<Position> {
    Position::new(value)
        .map_err(|err| unexpected_answer("eventstore.events", format_args!("a position: {err}")))
}

/// An instance id read back from the events table.
fn stored_instance_id(id: String) -> Result<InstanceId> {
    InstanceId::new(id).map_err(|err| {
        unexpected_answer("eventstore.events", format_args!("an instance id: {err}"))
    })
}
