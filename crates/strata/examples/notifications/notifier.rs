//! The notification handler of `examples/notifications`: on `user.signed_up`, send a message
//! through a [`Channel`] and record the outcome on the user as `notify.success` or
//! `notify.failed` (ZITADEL's notification handlers, seed 002).
//!
//! Shared with the integration test that kills it halfway (`notifier_worker`), so what the test
//! proves is what the example runs.

use std::sync::Arc;

use futures::future::BoxFuture;
use strata::{
    Command, Consumer, ConsumerConfig, Event, EventStore, HandleError, IdempotencyKey, Query, Reads,
};

/// The outcome events a handled sign-up ends with; a user with neither is not handled yet.
pub(crate) const OUTCOMES: [&str; 2] = ["notify.success", "notify.failed"];

/// Where notifications go: an e-mail provider, an SMS gateway. `message_id` names the message
/// for the provider's own deduplication (most take an idempotency key), which is what makes a
/// send repeated after a crash harmless.
pub(crate) trait Channel: Send + Sync + 'static {
    /// Sends `text` to `address`.
    fn send<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Why a send failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The address will never accept it (it bounced): recorded as `notify.failed`.
    Permanent(String),
    /// Try again later (the provider is down): the consumer retries, then parks the user.
    Transient(String),
}

/// The consumer: sign-ups in, notifications out, outcomes recorded on the user.
pub(crate) struct Notifier<S, C> {
    pub(crate) store: S,
    pub(crate) channel: Arc<C>,
}

impl<S, C> Notifier<S, C>
where
    S: EventStore + Clone + 'static,
    C: Channel,
{
    async fn notify(&self, signed_up: &Event) -> Result<(), HandleError> {
        let user = &signed_up.aggregate;
        // Handled already (the outcome was pushed, then the process died before its
        // checkpoint moved): the exclusion query says so, and nothing is sent again.
        if pending(
            &self.store,
            user.instance_id.as_str(),
            Some(user.aggregate_id.as_str()),
        )
        .await
        .map_err(|err| HandleError::new(err.to_string()))?
        .is_empty()
        {
            return Ok(());
        }
        let payload: serde_json::Value = signed_up.payload()?;
        let address = payload["email"].as_str().unwrap_or_default();
        let message_id = format!("{user}/{}", signed_up.sequence);
        let outcome = match self
            .channel
            .send(&message_id, address, "Welcome! Please verify your e-mail.")
            .await
        {
            Ok(()) => Command::builder(
                user.instance_id.as_str(),
                user.aggregate_type.as_str(),
                user.aggregate_id.as_str(),
                "notify.success",
            )
            .payload(&serde_json::json!({ "message_id": message_id })),
            Err(SendError::Permanent(reason)) => Command::builder(
                user.instance_id.as_str(),
                user.aggregate_type.as_str(),
                user.aggregate_id.as_str(),
                "notify.failed",
            )
            .payload(&serde_json::json!({ "message_id": message_id, "reason": reason })),
            Err(SendError::Transient(reason)) => return Err(HandleError::new(reason)),
        };
        let outcome = outcome
            .creator("notifier")
            .owner(signed_up.owner.as_str())
            .causation_id(format!(
                "{}/{}/{}",
                user.aggregate_type, user.aggregate_id, signed_up.sequence
            ))
            .build()
            .map_err(|err| HandleError::new(err.to_string()))?;
        // Keyed by the sign-up it answers: a redelivery pushes nothing a second time.
        let key = IdempotencyKey::new(user.instance_id.as_str(), format!("notify:{message_id}"))
            .map_err(|err| HandleError::new(err.to_string()))?;
        self.store
            .push_idempotent(&key, vec![outcome])
            .await
            .map_err(|err| HandleError::new(err.to_string()))?;
        Ok(())
    }
}

impl<S, C> Consumer for Notifier<S, C>
where
    S: EventStore + Clone + 'static,
    C: Channel,
{
    fn name(&self) -> &str {
        "notifier"
    }

    fn reads(&self) -> Reads {
        Reads::new().events("user", ["user.signed_up"])
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(self.notify(event))
    }

    fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bulk_limit: 20,
            ..ConsumerConfig::default()
        }
    }
}

/// The users of `instance` (or just `only`) who signed up and have no outcome yet: the seed's
/// exclusion query.
pub(crate) async fn pending<S: EventStore>(
    store: &S,
    instance: &str,
    only: Option<&str>,
) -> strata::Result<Vec<String>> {
    let mut query = Query::builder()
        .instance(instance)
        .aggregate_types(["user"])
        .event_types(["user.signed_up"])
        .exclude_aggregates_with(["user"], OUTCOMES);
    if let Some(user) = only {
        query = query.aggregate_ids([user]);
    }
    let events = store.query(&query.build()?).await?;
    Ok(events
        .into_iter()
        .map(|event| event.aggregate.aggregate_id.as_str().to_owned())
        .collect())
}
