//! Write models: the state a command decides on, folded from the events of any query, with the
//! sequence of every aggregate it saw.

use std::collections::BTreeMap;

use strata_event::{AggregateRef, Cursor, Sequence, SubjectId};
use strata_query::{Query, QueryError};

use crate::envelope::{Envelope, UnknownEvents};
use crate::event::DomainEvent;

/// The state a command decides on, built from the events of a query: one aggregate, several, or
/// every aggregate of a type that matches a filter (ZITADEL's write models).
///
/// [`Repository::load_model`](crate::Repository::load_model) runs the query, folds the events and
/// records the sequence of every aggregate it saw. A push made from the loaded model with
/// [`Repository::push`](crate::Repository::push) expects each aggregate it writes to at that
/// sequence, so a concurrent change fails it with a conflict.
///
/// The expected sequence is that of the last event the query returned for the aggregate, so a
/// model that writes to an aggregate should read all of that aggregate's events (no event-type
/// filter on it); otherwise an event of a type it did not read makes every push conflict.
pub trait WriteModel: Send {
    /// The events it folds.
    type Event: DomainEvent;

    /// Whether an event type the table does not list is skipped (the default: a write model
    /// often reads only part of what a query returns) or fails loading.
    const UNKNOWN_EVENTS: UnknownEvents = UnknownEvents::Skip;

    /// The events to fold, in the order to fold them (usually position order, the default).
    fn query(&self) -> Result<Query, QueryError>;

    /// Folds one event.
    fn apply(&mut self, event: Envelope<Self::Event>);
}

/// A loaded aggregate or write model: its state and the sequences of the aggregates it saw, which
/// a push made from it expects.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The folded state.
    pub state: T,
    pub(crate) versions: BTreeMap<AggregateRef, Sequence>,
    /// Aggregates the load expects to still have no events when it saw none (an aggregate loaded
    /// by id, or named by id in the query).
    pub(crate) expected_new: Vec<AggregateRef>,
    pub(crate) last: Option<Cursor>,
    pub(crate) events_read: u64,
    /// Events read but not folded (their type is not in the table and was skipped).
    pub(crate) skipped: u64,
    /// Subjects whose personal data the state may hold in the clear (a snapshot of it is sealed
    /// with their keys).
    pub(crate) subjects: Vec<SubjectId>,
}

impl<T> Loaded<T> {
    pub(crate) fn new(state: T) -> Self {
        Loaded {
            state,
            versions: BTreeMap::new(),
            expected_new: Vec::new(),
            last: None,
            events_read: 0,
            skipped: 0,
            subjects: Vec::new(),
        }
    }

    /// The sequence of `aggregate` as loaded: `Some(0)` for an aggregate the load expects to be
    /// new, `None` for one it knows nothing about.
    pub fn version(&self, aggregate: &AggregateRef) -> Option<Sequence> {
        self.versions
            .get(aggregate)
            .copied()
            .or_else(|| self.expected_new.contains(aggregate).then_some(0))
    }

    /// Every aggregate the load saw, with its sequence.
    pub fn versions(&self) -> impl Iterator<Item = (&AggregateRef, Sequence)> {
        self.versions
            .iter()
            .map(|(aggregate, sequence)| (aggregate, *sequence))
    }

    /// The cursor of the last event folded in, if any.
    pub fn last_cursor(&self) -> Option<Cursor> {
        self.last
    }

    /// How many events this load read from the store (after a snapshot, only those past it).
    pub fn events_read(&self) -> u64 {
        self.events_read
    }

    pub(crate) fn saw(&mut self, aggregate: &AggregateRef, sequence: Sequence, cursor: Cursor) {
        self.events_read += 1;
        self.last = Some(cursor);
        match self.versions.get_mut(aggregate) {
            Some(seen) => *seen = (*seen).max(sequence),
            None => {
                self.versions.insert(aggregate.clone(), sequence);
            }
        }
    }
}

impl<W: WriteModel> Loaded<W> {
    pub(crate) fn fold(&mut self, event: Envelope<W::Event>) {
        self.state.apply(event);
    }
}
