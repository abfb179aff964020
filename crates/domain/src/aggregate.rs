//! Aggregates: the common case of a write model, one aggregate's events folded into a state that
//! decides commands.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, UnknownEvents};
use crate::event::DomainEvent;

/// A consistency boundary: the state of one aggregate, folded from its events, that turns
/// commands into new events.
///
/// [`Repository::execute`](crate::Repository::execute) loads it by id, calls
/// [`handle`](Aggregate::handle), and pushes the events it returns with the aggregate's sequence
/// as the expected sequence: a concurrent change makes the push fail with a conflict instead of
/// being overwritten.
///
/// `handle` is synchronous and reads only `self` on purpose: a decision that is a function of the
/// loaded state can be made again on a newer state, which is what makes
/// [`Repository::execute_retrying`](crate::Repository::execute_retrying) safe. Call services
/// (a password hasher, a clock) before, and pass what they return in the command.
///
/// The state is `Serialize` and `Deserialize` so it can be snapshotted (feature `snapshots`,
/// `Repository::with_snapshots`); bump [`SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) when
/// `apply` changes meaning or a state field is one serde fills in by itself, so snapshots of the
/// old meaning are ignored.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate's events; their `AGGREGATE_TYPE` is the aggregate type.
    type Event: DomainEvent;
    /// What callers ask of it.
    type Command: Send;
    /// Why it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether an event type its table does not list fails loading (the default) or is skipped.
    const UNKNOWN_EVENTS: UnknownEvents = UnknownEvents::Fail;

    /// Snapshots written under another version are ignored. Default 1.
    const SNAPSHOT_VERSION: u32 = 1;

    /// Decides what happens: the events to store, none for a command that changes nothing, or an
    /// error that stores nothing.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one stored event into the state.
    fn apply(&mut self, event: Envelope<Self::Event>);
}
