//! Hearing erasures across processes: `eventstore.erase_subject` sends `NOTIFY strata_erased`
//! (instance and subject, one per line) at commit, and [`ErasureNotices`] turns the notices into
//! [`ErasedSubject`] values for every vault on the store, so a vault in another process forgets
//! the subject's keys at once instead of after its `fresh_for`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use strata_event::{InstanceId, SubjectId};
use strata_store::{ERASURE_NOTICE_CAPACITY, ErasedSubject};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// The `LISTEN`/`NOTIFY` channel erasures are announced on.
pub const ERASURE_CHANNEL: &str = "strata_erased";

/// How often an idle listener checks whether any vault still listens.
const SUBSCRIBERS_CHECK: Duration = Duration::from_secs(1);

/// The erasure listener of one store: started by the first subscriber, stopped (its connection
/// back in the pool) soon after the last one is gone.
#[derive(Debug)]
pub(crate) struct ErasureNotices {
    pool: PgPool,
    sender: broadcast::Sender<ErasedSubject>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Whether to `LISTEN` at all: not behind transaction pooling, where the listening session
    /// would not stay on one server connection (`crate::pooling`).
    listen: bool,
}

impl ErasureNotices {
    pub(crate) fn new(pool: PgPool, listen: bool) -> ErasureNotices {
        ErasureNotices {
            pool,
            sender: broadcast::channel(ERASURE_NOTICE_CAPACITY).0,
            task: Arc::default(),
            listen,
        }
    }

    /// Erasures this process and others commit from now on (outside a Tokio runtime, or behind
    /// transaction pooling, only this process's: no listener starts).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ErasedSubject> {
        let receiver = self.sender.subscribe();
        if !self.listen {
            return receiver;
        }
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        let running = task.as_ref().is_some_and(|task| !task.is_finished());
        if !running && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            *task = Some(runtime.spawn(listen(self.pool.clone(), self.sender.clone())));
        }
        receiver
    }

    /// Tells this process's vaults at once (the notice from the database follows).
    pub(crate) fn announce(&self, instance_id: &InstanceId, subject_id: &SubjectId) {
        let _ = self.sender.send(ErasedSubject {
            instance_id: instance_id.clone(),
            subject_id: subject_id.clone(),
        });
    }
}

async fn listen(pool: PgPool, sender: broadcast::Sender<ErasedSubject>) {
    let mut listener = loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(ERASURE_CHANNEL).await {
                Ok(()) => break listener,
                Err(err) => tracing::warn!(error = %err, "cannot LISTEN for erasures; retrying"),
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot connect to LISTEN for erasures; retrying")
            }
        }
        if sender.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        let received = tokio::select! {
            received = listener.try_recv() => received,
            () = tokio::time::sleep(SUBSCRIBERS_CHECK) => {
                if sender.receiver_count() == 0 {
                    return;
                }
                continue;
            }
        };
        match received {
            Ok(Some(notification)) => {
                let mut lines = notification.payload().lines();
                if let (Some(instance), Some(subject)) = (lines.next(), lines.next())
                    && let (Ok(instance_id), Ok(subject_id)) =
                        (InstanceId::new(instance), SubjectId::new(subject))
                {
                    let _ = sender.send(ErasedSubject {
                        instance_id,
                        subject_id,
                    });
                }
            }
            // Reconnected: notices may have been missed meanwhile; vaults fall back on their
            // `fresh_for` for those.
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN connection for erasures failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if sender.receiver_count() == 0 {
            return;
        }
    }
}
