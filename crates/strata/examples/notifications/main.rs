//! ZITADEL's notification handler (seed 002) on a durable consumer: every `user.signed_up` gets a
//! welcome message, and the outcome is recorded on the user as `notify.success` or
//! `notify.failed`. After a restart, the exclusion query ("users who signed up and have no
//! outcome yet") names exactly the users still to handle, and the consumer resumes from its
//! checkpoint.
//!
//! Runs on the in-memory store by default:
//!
//! ```text
//! cargo run --example notifications
//! ```
//!
//! With `DATABASE_URL` set it migrates that PostgreSQL database and runs the same story there (an
//! instance of its own each run, removed at the end with the consumer's registration).
//!
//! What makes it safe to kill at any moment (`integration-tests/tests/notifications.rs` does):
//! the consumer is at least once, so a sign-up handled just before a crash is handed over again;
//! the handler then finds its outcome with the exclusion query and sends nothing, and the outcome
//! is pushed with an idempotency key, so a redelivery never records a second one. The one window
//! left, a crash between sending and recording, is closed by the message id the provider
//! deduplicates on.

mod notifier;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::future::BoxFuture;
use strata::{
    Command, EventStore, InstanceId, MemoryProjections, MemoryStore, ProjectionBackend,
    ProjectionRuntime, Query,
};

use crate::notifier::{Channel, Notifier, SendError, pending};

/// A simulated e-mail provider: delivers each message id once (like a provider's idempotency
/// key), bounces `*@bounce.invalid`, and is down for `flaky@…` the first two times.
#[derive(Default)]
struct Outbox {
    delivered: Mutex<HashMap<String, String>>,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Channel for Outbox {
    fn send<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
        _text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let attempt = {
                let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                let count = attempts.entry(address.to_owned()).or_default();
                *count += 1;
                *count
            };
            if address.ends_with("@bounce.invalid") {
                return Err(SendError::Permanent(format!("{address} does not exist")));
            }
            if address.starts_with("flaky@") && attempt <= 2 {
                return Err(SendError::Transient("the provider is down".into()));
            }
            self.delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(message_id.to_owned())
                .or_insert_with(|| address.to_owned());
            Ok(())
        })
    }
}

fn instance_for_this_run() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    format!("notify-{started}")
}

async fn sign_up<S: EventStore>(store: &S, instance: &str, user: &str, email: &str) -> Result<()> {
    let command = Command::builder(instance, "user", user, "user.signed_up")
        .payload(&serde_json::json!({ "username": user, "email": email }))
        .creator("signup-service")
        .owner("org-1")
        .build()?;
    store.push(vec![command]).await?;
    Ok(())
}

/// Waits until every user of `instance` has an outcome.
async fn until_handled<S: EventStore>(store: &S, instance: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending(store, instance, None).await?.is_empty() {
        if Instant::now() > deadline {
            bail!("users still pending after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The outcome events of `instance`, as `user: event type`.
async fn outcomes<S: EventStore>(store: &S, instance: &str) -> Result<Vec<String>> {
    let query = Query::builder()
        .instance(instance)
        .event_types(notifier::OUTCOMES)
        .build()?;
    Ok(store
        .query(&query)
        .await?
        .iter()
        .map(|event| format!("{}: {}", event.aggregate.aggregate_id, event.event_type))
        .collect())
}

async fn story<S, B>(store: S, backend: B, instance: &str) -> Result<()>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    let outbox = Arc::new(Outbox::default());
    for (user, email) in [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
        ("carol", "carol@bounce.invalid"),
        ("dave", "flaky@example.com"),
    ] {
        sign_up(&store, instance, user, email).await?;
    }
    println!(
        "signed up, no outcome yet: {:?}",
        pending(&store, instance, None).await?
    );

    let start = || {
        ProjectionRuntime::builder(store.clone(), backend.clone())
            .consumer(Notifier {
                store: store.clone(),
                channel: Arc::clone(&outbox),
            })
            .map(|builder| builder.start())
    };
    let runtime = start()?.await?;
    until_handled(&store, instance).await?;
    println!("outcomes: {:#?}", outcomes(&store, instance).await?);

    // A restart: the process stops, more users sign up meanwhile.
    runtime.shutdown(Duration::from_secs(10)).await?;
    sign_up(&store, instance, "erin", "erin@example.com").await?;
    sign_up(&store, instance, "frank", "frank@example.com").await?;
    let waiting = pending(&store, instance, None).await?;
    println!("while it was down: {waiting:?}");
    if waiting != ["erin", "frank"] {
        bail!("the exclusion query should name exactly erin and frank, not {waiting:?}");
    }
    let runtime = start()?.await?;
    until_handled(&store, instance).await?;
    runtime.shutdown(Duration::from_secs(10)).await?;

    let outcomes = outcomes(&store, instance).await?;
    println!("after the restart: {outcomes:#?}");
    let delivered = outbox
        .delivered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    println!("messages delivered: {delivered} (carol's bounced; dave's after two retries)");
    if outcomes.len() != 6 || delivered != 5 {
        bail!("every user has one outcome and every deliverable one got one message");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let instance = instance_for_this_run();
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let store = strata::postgres::PgStore::connect(&url, Default::default())
                .await
                .context("connecting to DATABASE_URL")?;
            strata::postgres::migrate(store.pools().push()).await?;
            println!("storage: PostgreSQL (DATABASE_URL)\n");
            let backend = strata::postgres::PgProjections::new(store.pools().projection().clone());
            story(store.clone(), backend.clone(), &instance).await?;
            backend.unregister("notifier").await?;
            let removed = store
                .remove_instance(&InstanceId::new(instance.as_str())?)
                .await?;
            println!("\ncleaned up: the consumer was unregistered and {removed} events removed");
        }
        Err(_) => {
            println!("storage: in memory (set DATABASE_URL to use PostgreSQL)\n");
            story(MemoryStore::new(), MemoryProjections::new(), &instance).await?;
        }
    }
    Ok(())
}
