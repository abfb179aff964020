//! Typed subscriptions: a store subscription whose events arrive decoded (and opened, with a
//! vault) into a [`DomainEvent`] type.

use std::marker::PhantomData;

use futures::StreamExt;
use strata_event::SubjectId;
use strata_query::Query;
use strata_store::{EventStore, StartFrom, SubscribeOptions, Subscription};

use crate::envelope::{Envelope, UnknownEvents};
use crate::event::DomainEvent;
use crate::personal::ReadKeys;
use crate::repository::{DomainError, Repository};

/// The events of a [`Subscription`] decoded into `E`, through the same upcasters and, with a
/// vault, the same opening of personal data as every other typed read. Built with
/// [`Repository::subscribe`]; read with [`TypedSubscription::next`].
///
/// Event types `E` does not list are passed over (a query may select more than one aggregate's
/// events); [`TypedSubscription::unknown_events`] makes them an error instead.
pub struct TypedSubscription<E> {
    events: Subscription,
    #[cfg(feature = "personal-data")]
    vault: Option<crate::personal::Vault>,
    unknown: UnknownEvents,
    _event: PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for TypedSubscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedSubscription")
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl<E: DomainEvent> TypedSubscription<E> {
    /// What to do with event types `E` does not list (default: [`UnknownEvents::Skip`]).
    #[must_use]
    pub fn unknown_events(mut self, unknown: UnknownEvents) -> Self {
        self.unknown = unknown;
        self
    }

    /// The next event, decoded; `None` only when the subscription ended (a query with an upper
    /// position bound). A store error (the subscription goes on) or an event that cannot be
    /// decoded is an `Err` item: the caller decides whether to stop.
    pub async fn next(&mut self) -> Option<Result<Envelope<E>, DomainError>> {
        loop {
            let event = match self.events.next().await? {
                Ok(event) => event,
                Err(err) => return Some(Err(err.into())),
            };
            let keys = ReadKeys {
                #[cfg(feature = "personal-data")]
                vault: self.vault.as_ref(),
                #[cfg(not(feature = "personal-data"))]
                _none: PhantomData,
            };
            let mut subjects: Vec<SubjectId> = Vec::new();
            match keys.decode::<E>(event, self.unknown, &mut subjects).await {
                Ok(Some(envelope)) => return Some(Ok(envelope)),
                Ok(None) => continue,
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

impl<S> Repository<S>
where
    S: EventStore + Clone + 'static,
{
    /// Subscribes to the events `query` selects, from `from` on, decoded into `E` (see
    /// [`EventStore::subscribe`] for the stream's guarantees: every event below the commit
    /// horizon, in order, each once, live).
    pub async fn subscribe<E: DomainEvent>(
        &self,
        query: &Query,
        from: StartFrom,
    ) -> Result<TypedSubscription<E>, DomainError> {
        self.subscribe_with(query, from, SubscribeOptions::default())
            .await
    }

    /// [`Repository::subscribe`] with the subscription's `options`.
    pub async fn subscribe_with<E: DomainEvent>(
        &self,
        query: &Query,
        from: StartFrom,
        options: SubscribeOptions,
    ) -> Result<TypedSubscription<E>, DomainError> {
        let events = self.store().subscribe_with(query, from, options).await?;
        Ok(TypedSubscription {
            events,
            #[cfg(feature = "personal-data")]
            vault: self.vault().cloned(),
            unknown: UnknownEvents::Skip,
            _event: PhantomData,
        })
    }
}
