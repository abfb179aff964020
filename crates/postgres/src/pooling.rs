//! Running behind a pooling proxy such as PgBouncer (`docs/pooling.md`): finding out whether
//! connections are pooled per transaction, and running statements so that they stay correct when
//! they are.
//!
//! Behind transaction pooling, a client connection gets a server connection for one transaction
//! at a time; outside a transaction, for one statement, and sqlx sends every statement with bind
//! parameters as two exchanges (Parse and Describe, then Bind and Execute, each ending in a
//! Sync). Between them the proxy may hand the connection's server back to its pool, so the second
//! half reaches a server that never saw the first: an error ("prepared statement … does not
//! exist") or, worse, another client's statement of the same name run with these parameters.
//! Inside an explicit transaction the server stays the same, so [`Pooled`] runs each statement in
//! one, and as an unnamed statement, which is not kept from one transaction (one server) to the
//! next.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgQueryResult, PgRow, PgStatement};
use sqlx::query::QueryAs;
use sqlx::{
    Connection, Either, Execute, Executor, FromRow, PgConnection, PgPool, Postgres, Row,
    Transaction,
};
use strata_store::Error;

use crate::error::from_sqlx;
use crate::store::PgStore;

/// How a [`PgStore`](crate::PgStore) reaches PostgreSQL, which decides what it can rely on
/// (`docs/pooling.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pooler {
    /// Find out when connecting ([`PgStore::connect`](crate::PgStore::connect)): a client
    /// connection that sees another server process after another connection's transaction began
    /// is behind transaction pooling. Stores and pools built without connecting
    /// ([`PgPools::connect_lazy`](crate::PgPools::connect_lazy),
    /// [`PgStore::from_pools`](crate::PgStore::from_pools)) cannot find out, and take
    /// [`Pooler::Direct`]. The default.
    #[default]
    Detect,
    /// Each client connection keeps one server connection: connected directly, or through
    /// session pooling (PgBouncer `pool_mode = session`). Everything works: `LISTEN`, named
    /// prepared statements (cached per connection), session settings.
    Direct,
    /// Client connections share server connections transaction by transaction (PgBouncer
    /// `pool_mode = transaction`). Statements are not prepared ahead (no statement cache), each
    /// runs in an explicit transaction, and nothing listens with `LISTEN`: other processes'
    /// pushes reach projection runtimes at their next tick, erasures reach vaults after their
    /// `fresh_for`.
    TransactionPooling,
}

/// How long the detection waits for a statement on a connection while another connection holds
/// a transaction open. Directly connected, the statement's own server process answers at once;
/// behind transaction pooling with every server connection taken, it waits for one.
const DETECT_WAIT: Duration = Duration::from_secs(2);

/// Rounds of detection: a round that sees no sharing proves nothing when the proxy happened to
/// pick other server connections, so a few are tried.
const DETECT_ROUNDS: usize = 3;

/// What [`Pooler::Detect`] finds for connections made with `options`.
pub(crate) async fn detect(options: &PgConnectOptions) -> Result<Pooler, Error> {
    Ok(if transaction_pooled(options).await? {
        Pooler::TransactionPooling
    } else {
        Pooler::Direct
    })
}

/// Whether connections made with `options` are pooled per transaction (or per statement, which
/// Strata cannot work with: that is an error).
///
/// Connection A notes its server process; connection B begins a transaction and notes its own.
/// Directly (or through session pooling) they differ, and A's stays the same. Behind transaction
/// pooling, B's transaction usually takes the server connection A just gave back (PgBouncer hands
/// out the most recently used one), so it is A's; or else A's next statement finds its server
/// taken and gets another (or waits for one). Uses the simple query protocol only, which is safe
/// behind any pooler.
pub(crate) async fn transaction_pooled(options: &PgConnectOptions) -> Result<bool, Error> {
    let failed = |err| refuse_statement_pooling(from_sqlx("detecting a pooling proxy", err));
    let mut first = sqlx::ConnectOptions::connect(options)
        .await
        .map_err(failed)?;
    let mut second = sqlx::ConnectOptions::connect(options)
        .await
        .map_err(failed)?;
    let mut pooled = false;
    for _ in 0..DETECT_ROUNDS {
        let before = backend_pid(&mut first).await.map_err(failed)?;
        second.execute("BEGIN").await.map_err(failed)?;
        let held = backend_pid(&mut second).await.map_err(failed)?;
        pooled = held == before
            || match tokio::time::timeout(DETECT_WAIT, backend_pid(&mut first)).await {
                Ok(after) => after.map_err(failed)? != before,
                Err(_) => true,
            };
        second.execute("ROLLBACK").await.map_err(failed)?;
        if pooled {
            break;
        }
    }
    let _ = first.close().await;
    let _ = second.close().await;
    Ok(pooled)
}

async fn backend_pid(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
    // A `&str` with no parameters goes as a simple query: one exchange, safe behind any pooler.
    connection
        .fetch_one("SELECT pg_backend_pid()")
        .await?
        .try_get(0)
}

/// PgBouncer's statement mode refuses `BEGIN`, and Strata's pushes, projections and migrations
/// need transactions: say so instead of reporting the proxy's message alone.
fn refuse_statement_pooling(err: Error) -> Error {
    if err.to_string().contains("statement mode") {
        return Error::invalid_input(format!(
            "the database is behind statement pooling, which refuses transactions; connect \
             directly or through session or transaction pooling ({err})"
        ));
    }
    err
}

/// Logs how a store reaches the database, once per store: a warning when it falls back, since an
/// operator should know that other processes' pushes now wait for a tick.
pub(crate) fn log_mode(transaction_pooling: bool) {
    if transaction_pooling {
        tracing::warn!(
            "behind transaction pooling: statements run unprepared in explicit transactions, \
             LISTEN is off (other processes' pushes reach projections at their next tick, \
             erasures reach vaults after fresh_for), no session state is used"
        );
    } else {
        tracing::debug!("connected directly or through session pooling");
    }
}

/// A pool that runs each statement safely for how it reaches the database: as given when direct;
/// behind transaction pooling, unprepared, in an explicit transaction of its own, with the rows
/// read in full before it commits (so a `fetch` buffers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pooled<'p> {
    pool: &'p PgPool,
    transaction_pooling: bool,
}

impl<'p> Pooled<'p> {
    pub(crate) fn new(pool: &'p PgPool, transaction_pooling: bool) -> Self {
        Pooled {
            pool,
            transaction_pooling,
        }
    }

    /// The pool itself.
    pub(crate) fn pool(&self) -> &'p PgPool {
        self.pool
    }

    /// Begins a transaction. Behind transaction pooling its first statement drops the named
    /// statements its server connection holds: sqlx names each statement it prepares
    /// `sqlx_s_<n>`, counting per client connection, and without a statement cache (which
    /// transaction pooling needs: a cached statement lives on one server connection) it never
    /// closes them, so the next client on that server would find its names taken.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if self.transaction_pooling {
            tx.execute("DEALLOCATE ALL").await?;
        }
        Ok(tx)
    }
}

/// Statements run through the store's pools, safely for how they reach the database.
impl PgStore {
    /// The query pool.
    pub(crate) fn reads(&self) -> Pooled<'_> {
        Pooled::new(self.pools().query(), self.pools().transaction_pooling())
    }

    /// `pool` (one of the store's, or its standby's), run as the store's pools are.
    pub(crate) fn pooled<'p>(&self, pool: &'p PgPool) -> Pooled<'p> {
        Pooled::new(pool, self.pools().transaction_pooling())
    }

    /// The push pool.
    pub(crate) fn writes(&self) -> Pooled<'_> {
        Pooled::new(self.pools().push(), self.pools().transaction_pooling())
    }
}

/// Runs `query` on `connection` and returns its rows: as it is when direct; behind transaction
/// pooling unprepared, between `BEGIN` and `COMMIT`.
pub(crate) async fn fetch_all_on<'q, O>(
    connection: &mut PgConnection,
    query: QueryAs<'q, Postgres, O, PgArguments>,
    transaction_pooling: bool,
) -> Result<Vec<O>, sqlx::Error>
where
    O: Send + Unpin + for<'r> FromRow<'r, PgRow>,
{
    if !transaction_pooling {
        return query.fetch_all(connection).await;
    }
    let mut tx = connection.begin().await?;
    let rows = query.persistent(false).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// A statement sent unnamed, whatever the connection's statement cache says: a named statement
/// lives on one server connection, and the next transaction may run on another.
struct Unprepared<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unprepared<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

impl<'p> Executor<'p> for Pooled<'p> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return self.pool.fetch_many(query);
        }
        let pool = self.pool;
        futures::stream::once(async move {
            let mut tx = pool.begin().await?;
            let steps: Vec<Either<PgQueryResult, PgRow>> =
                tx.fetch_many(Unprepared(query)).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures::stream::iter(steps.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooling {
            return self.pool.fetch_optional(query);
        }
        let pool = self.pool;
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = tx.fetch_optional(Unprepared(query)).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [sqlx::postgres::PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'p: 'e,
    {
        self.pool.describe(sql)
    }
}
