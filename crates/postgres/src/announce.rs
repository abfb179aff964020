//! Announcing pushes across processes: both sides of `NOTIFY strata_pushed`.
//!
//! A process that pushes announces the instances it wrote to after the push commits ([`Notifier`]);
//! a process that listens ([`Listener`]) turns the notices into [`Pushed`] values on the store's
//! push channel, beside its own pushes, so a projection runtime (or anything subscribed with
//! [`EventStore::subscribe_pushes`](strata_store::EventStore::subscribe_pushes)) wakes for pushes
//! of every process alike.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{PgPool, Postgres, Transaction};
use strata_event::InstanceId;
use strata_store::Pushed;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// The `LISTEN`/`NOTIFY` channel pushes are announced on. The payload lists the instances written
/// to, one per line (ids cannot contain control characters).
pub const PUSH_CHANNEL: &str = "strata_pushed";

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// Shortest pause between two announcements: notices arriving meanwhile travel together, so a
/// store under heavy write load sends at most a hundred `NOTIFY`s a second, not one per push, at
/// the price of up to that much latency across processes (`docs/benchmarks.md`, NOTIFY).
const NOTIFY_INTERVAL: Duration = Duration::from_millis(10);

/// How often an idle listener checks whether anyone still subscribes.
const SUBSCRIBERS_CHECK: Duration = Duration::from_secs(1);

/// The payloads announcing `instances`: one line each, split where a payload would grow too large.
fn notice_payloads<'a>(instances: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for instance in instances {
        match payloads.last_mut() {
            Some(payload) if payload.len() + instance.len() + 1 < MAX_NOTIFY_PAYLOAD => {
                payload.push('\n');
                payload.push_str(instance);
            }
            _ => payloads.push(instance.to_owned()),
        }
    }
    payloads
}

/// Sends the instances of committed pushes as `NOTIFY`s, coalescing whatever queued up meanwhile,
/// on a connection of its own outside the push pool, so announcing never waits behind (or holds up)
/// a push. Never inside the push's transaction: a `NOTIFY` there takes the notification queue's
/// lock at commit and serialises every writer.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    queue: mpsc::UnboundedSender<Vec<InstanceId>>,
    /// The server process of the notifier's connection (0 before it connects), so this store's
    /// [`Listener`] can tell its own notices, whose pushes it already delivered, from others'.
    backend_pid: Arc<AtomicI32>,
}

impl Notifier {
    /// Starts the notifier's task; it connects with `options` when it first has something to say.
    /// Behind transaction pooling its connection keeps no session state (`crate::pooling`).
    pub(crate) fn start(options: PgConnectOptions, transaction_pooling: bool) -> Notifier {
        let (queue, receiver) = mpsc::unbounded_channel();
        let backend_pid = Arc::new(AtomicI32::new(0));
        tokio::spawn(run_notifier(
            options,
            receiver,
            Arc::clone(&backend_pid),
            transaction_pooling,
        ));
        Notifier { queue, backend_pid }
    }

    /// Queues an announcement of a push that committed.
    pub(crate) fn announce(&self, pushed: &Pushed) {
        let _ = self.queue.send(pushed.instance_ids.clone());
    }
}

async fn run_notifier(
    options: PgConnectOptions,
    mut queue: mpsc::UnboundedReceiver<Vec<InstanceId>>,
    backend_pid: Arc<AtomicI32>,
    transaction_pooling: bool,
) {
    let mut connection: Option<sqlx::PgConnection> = None;
    while let Some(first) = queue.recv().await {
        let mut instances: BTreeSet<InstanceId> = first.into_iter().collect();
        while let Ok(more) = queue.try_recv() {
            instances.extend(more);
        }
        if connection.is_none() {
            match open_notifier_connection(&options, transaction_pooling).await {
                Ok((opened, pid)) => {
                    backend_pid.store(pid, Ordering::Relaxed);
                    connection = Some(opened);
                }
                Err(err) => {
                    // Other processes still catch up at their next tick; nothing is lost.
                    tracing::warn!(error = %err, "cannot connect to announce pushes");
                    continue;
                }
            }
        }
        if let Some(conn) = connection.as_mut() {
            for payload in notice_payloads(instances.iter().map(InstanceId::as_str)) {
                if let Err(err) = notify(conn, &payload, transaction_pooling).await {
                    tracing::warn!(error = %err, "could not announce pushes to other processes");
                    connection = None;
                    break;
                }
            }
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
}

/// Sends one notice. Behind transaction pooling the session setting of
/// [`open_notifier_connection`] would land on whichever server connection ran it, and stay there
/// for other clients' transactions, so the notice runs in a transaction of its own that commits
/// without waiting for its flush.
async fn notify(
    connection: &mut sqlx::PgConnection,
    payload: &str,
    transaction_pooling: bool,
) -> Result<(), sqlx::Error> {
    if !transaction_pooling {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PUSH_CHANNEL)
            .bind(payload)
            .execute(connection)
            .await?;
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(connection).await?;
    sqlx::query("SELECT pg_notify($1, $2) FROM set_config('synchronous_commit', 'off', true)")
        .bind(PUSH_CHANNEL)
        .bind(payload)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The notifier's own connection. `NOTIFY` gives its transaction an id, so each one commits with a
/// WAL flush of its own, competing with the pushes' commits for the disk; a notice needs no
/// durability (it is delivered at commit, and a lost one is made up by the next tick), so this
/// connection commits without waiting for the flush.
async fn open_notifier_connection(
    options: &PgConnectOptions,
    transaction_pooling: bool,
) -> Result<(sqlx::PgConnection, i32), sqlx::Error> {
    let mut connection = sqlx::ConnectOptions::connect(options).await?;
    if transaction_pooling {
        // The server process is not this connection's own; nothing listens here to need it.
        return Ok((connection, 0));
    }
    let (pid,): (i32,) = sqlx::query_as(
        "SELECT pg_backend_pid() FROM set_config('synchronous_commit', 'off', false)",
    )
    .fetch_one(&mut connection)
    .await?;
    Ok((connection, pid))
}

/// Announces `instances` from inside `tx`, delivered when it commits: for a single writer such as
/// the mirror, whose batches are few and large, so the notification queue's lock costs nothing.
/// Pushes use a [`Notifier`] instead.
pub(crate) async fn announce_in_transaction(
    tx: &mut Transaction<'_, Postgres>,
    instances: &[&str],
) -> Result<(), sqlx::Error> {
    for payload in notice_payloads(instances.iter().copied()) {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(PUSH_CHANNEL)
            .bind(payload)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Listens for other processes' pushes on one connection of `pool` while anyone subscribes to the
/// store's pushes, and forwards them to the store's push channel.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pool: PgPool,
    /// The listening task while one runs. The task clears it itself, under the lock, when it
    /// stops for want of subscribers, so a subscriber that arrives meanwhile starts a new one.
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// The server process of this store's [`Notifier`], whose notices are skipped.
    own_notifier: Option<Arc<AtomicI32>>,
}

impl Listener {
    pub(crate) fn new(pool: PgPool, notifier: Option<&Notifier>) -> Listener {
        Listener {
            pool,
            task: Arc::default(),
            own_notifier: notifier.map(|notifier| Arc::clone(&notifier.backend_pid)),
        }
    }

    /// Makes sure a listening task runs for `pushes` (it stops, giving its connection back, once
    /// nobody subscribes any more). Call it after subscribing.
    pub(crate) fn ensure_running(&self, pushes: &broadcast::Sender<Pushed>) {
        let mut task = lock(&self.task);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let run = Listening {
            pushes: pushes.clone(),
            task: Arc::clone(&self.task),
            own_notifier: self.own_notifier.clone(),
        };
        *task = Some(tokio::spawn(listen(self.pool.clone(), run)));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a listening task works with.
struct Listening {
    pushes: broadcast::Sender<Pushed>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    own_notifier: Option<Arc<AtomicI32>>,
}

impl Listening {
    /// Whether nobody subscribes; if so the task is forgotten, under the same lock
    /// [`Listener::ensure_running`] takes, so a subscriber that arrives after this check starts a
    /// new task instead of relying on this one.
    fn nobody_listens(&self) -> bool {
        let mut task = lock(&self.task);
        if self.pushes.receiver_count() > 0 {
            return false;
        }
        *task = None;
        true
    }

    /// Whether a notice came from this store's own notifier, whose pushes were delivered locally.
    fn is_own(&self, notice_pid: u32) -> bool {
        self.own_notifier.as_ref().is_some_and(|pid| {
            let pid = pid.load(Ordering::Relaxed);
            pid != 0 && i64::from(pid) == i64::from(notice_pid)
        })
    }
}

async fn listen(pool: PgPool, run: Listening) {
    let mut listener = loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(PUSH_CHANNEL).await {
                Ok(()) => break listener,
                Err(err) => tracing::warn!(error = %err, "cannot LISTEN for pushes; retrying"),
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot connect to LISTEN for pushes; retrying")
            }
        }
        if run.nobody_listens() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        // Stops, and gives its connection back to the pool, soon after the last subscriber is
        // gone, not at the next notice: on a quiet store that could be never.
        let received = tokio::select! {
            received = listener.try_recv() => received,
            () = tokio::time::sleep(SUBSCRIBERS_CHECK) => {
                if run.nobody_listens() {
                    return;
                }
                continue;
            }
        };
        let instance_ids = match received {
            Ok(Some(notification)) if run.is_own(notification.process_id()) => continue,
            Ok(Some(notification)) => notification
                .payload()
                .lines()
                .filter_map(|line| InstanceId::new(line).ok())
                .collect(),
            // The connection dropped and notices may have been missed: no instances asks every
            // subscriber to check everything. The listener reconnects on the next call.
            Ok(None) => Vec::new(),
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN connection failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Vec::new()
            }
        };
        let pushed = Pushed {
            instance_ids,
            position: None,
        };
        if run.pushes.send(pushed).is_err() && run.nobody_listens() {
            return;
        }
    }
}
