//! How a [`PgStore`] value routes its reads: the views [`PgStore::on_primary`] and
//! [`PgStore::reading_after`], and the read that falls back to the primary when the standby fails.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use strata_store::{Error, Result};

use super::{Pin, ReadServer, ReadToken, Via, shown_within};
use crate::store::PgStore;
use crate::telemetry::READ_TOKEN_READS;

/// Reads served by a standby ([`PgConfig::replica`](crate::PgConfig::replica)).
impl PgStore {
    /// The server this value's next read goes to: always the primary without a standby.
    pub fn reads_from(&self) -> ReadServer {
        match (&self.replica(), self.pin()) {
            (None, _) | (_, Pin::Primary) => ReadServer::Primary,
            (Some(_), Pin::Replica { left }) if left.load(Ordering::Acquire) => ReadServer::Primary,
            (Some(_), Pin::Replica { .. }) => ReadServer::Replica,
            (Some(replica), Pin::Routed) => replica.serving(),
        }
    }

    /// A view of this store whose reads all go to the primary (pushes and the rest are shared).
    /// For reads that decide a write, such as loading an aggregate to push to it: on a lagging
    /// standby they would decide on old state and fail their expected sequence.
    pub fn on_primary(&self) -> PgStore {
        self.pinned(Pin::Primary)
    }

    /// A view of this store whose reads show the push `token` names: the standby's, once it shows
    /// that push (waiting up to `wait` for it), otherwise the primary's. Use one view for the
    /// reads of one request; it stays on the server it chose (and moves to the primary for good if
    /// the standby fails). Without a standby, the store's reads already show every push.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use strata_postgres::{PgStore, ReadToken};
    /// # use strata_store::EventStore;
    /// # #[allow(dead_code)]
    /// # async fn example(store: PgStore, commands: Vec<strata_event::Command>, query: strata_query::Query)
    /// # -> Result<(), strata_store::Error> {
    /// let stored = store.push(commands).await?;
    /// let token = ReadToken::of(&stored);
    /// // … later, maybe in another request or process that was handed the token:
    /// let view = match token {
    ///     Some(token) => store.reading_after(&token, Duration::from_millis(200)).await,
    ///     None => store.clone(),
    /// };
    /// let events = view.query(&query).await?;
    /// assert!(events.iter().any(|event| stored.contains(event)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reading_after(&self, token: &ReadToken, wait: Duration) -> PgStore {
        let Some(replica) = &self.replica() else {
            return self.clone();
        };
        let served_by = match shown_within(replica.pool(), token, wait).await {
            Ok(true) => ReadServer::Replica,
            Ok(false) => ReadServer::Primary,
            Err(err) => {
                if err.is_retryable() {
                    replica.read_failed(self.pin(), &err);
                }
                ReadServer::Primary
            }
        };
        match served_by {
            ReadServer::Replica => {
                metrics::counter!(READ_TOKEN_READS, "served_by" => "replica").increment(1);
                self.pinned(Pin::Replica {
                    left: Arc::new(AtomicBool::new(false)),
                })
            }
            ReadServer::Primary => {
                metrics::counter!(READ_TOKEN_READS, "served_by" => "primary").increment(1);
                self.on_primary()
            }
        }
    }

    /// Where this value's next read runs.
    pub(crate) async fn read_via(&self) -> Via {
        match &self.replica() {
            Some(replica) => replica.via(self.pin(), self.pools().query()).await,
            None => Via::primary(self.pools().query()),
        }
    }

    /// Runs the read `run` on the server this value reads from. When the standby fails it with a
    /// retryable error, reads leave the standby and this one runs again on the primary: a
    /// standby going down costs each caller a slower read, not an error.
    pub(crate) async fn read<T, F, Fut>(&self, run: F) -> Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let via = self.read_via().await;
        let server = via.server;
        let result = run(via.pool.clone()).await;
        drop(via);
        match result {
            Err(err) if server == ReadServer::Replica && err.is_retryable() => {
                self.replica_failed(&err);
                let via = self.read_via().await;
                run(via.pool.clone()).await
            }
            done => done,
        }
    }

    /// A read on the standby failed with the retryable `err`.
    pub(crate) fn replica_failed(&self, err: &Error) {
        if let Some(replica) = &self.replica() {
            replica.read_failed(self.pin(), err);
        }
    }
}
