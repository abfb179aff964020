//! The domain layer and tracing: a load runs in a `strata.load` span, and with a trace id source
//! installed, the events a context stores carry the current trace id as their correlation id.
//! Its own test binary: the source is set once per process.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use strata_domain::{
    Aggregate, Context, DomainEvent, Envelope, EventSpec, Repository, TRACE_ID_HEADER,
    set_trace_id_source,
};
use strata_query::Query;
use strata_store::{EventStore, MemoryStore};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    #[serde(rename = "counter.incremented")]
    Incremented { to: u64 },
}

impl DomainEvent for CounterEvent {
    const AGGREGATE_TYPE: &'static str = "counter";
    const EVENTS: &'static [EventSpec] = &[EventSpec::new("counter.incremented")];
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Counter {
    type Event = CounterEvent;
    type Command = ();
    type Error = Never;

    fn handle(&self, (): ()) -> Result<Vec<CounterEvent>, Never> {
        Ok(vec![CounterEvent::Incremented { to: self.value + 1 }])
    }

    fn apply(&mut self, event: Envelope<CounterEvent>) {
        let CounterEvent::Incremented { to } = event.payload;
        self.value = to;
    }
}

/// The fields of every `strata.load` span opened.
#[derive(Clone, Default)]
struct Loads(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A subscriber that only notes `strata.load` spans (everything else is enabled and ignored).
struct Recorder(Loads);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut spans = self.0.0.lock().unwrap();
        if attrs.metadata().name() == "strata.load" {
            let mut fields = HashMap::new();
            attrs.record(&mut Fields(&mut fields));
            spans.push(fields);
            // Ids from 1: a load span's id is its place in the list.
            return Id::from_u64(spans.len() as u64);
        }
        // Any other span: an id no load span has.
        Id::from_u64(u64::MAX)
    }

    fn record(&self, id: &Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.0.lock().unwrap();
        if let Some(fields) = usize::try_from(id.into_u64() - 1)
            .ok()
            .and_then(|index| spans.get_mut(index))
        {
            values.record(&mut Fields(fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn loads_are_spanned_and_events_carry_the_current_trace_id() {
    let loads = Loads::default();
    tracing::subscriber::set_global_default(Recorder(loads.clone())).unwrap();
    // Before a source is installed, a context carries no correlation id of its own.
    assert!(
        Context::new("admin", "org")
            .metadata()
            .correlation_id
            .is_none()
    );
    assert!(set_trace_id_source(|| Some(
        "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
    )));
    assert!(!set_trace_id_source(|| None), "installed once per process");

    let store = MemoryStore::new();
    let counters = Repository::new(store.clone());
    counters
        .execute::<Counter>("t-1", "c-1", (), &Context::new("admin", "org"))
        .await
        .unwrap();
    let stored = store
        .query(&Query::builder().instance("t-1").build().unwrap())
        .await
        .unwrap();
    let metadata = &stored[0].metadata;
    assert_eq!(
        metadata.correlation_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        metadata.headers.get(TRACE_ID_HEADER).map(String::as_str),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    // A correlation id the service sets itself wins.
    let own = Context::new("admin", "org").correlation_id("request-7");
    assert_eq!(own.metadata().correlation_id.as_deref(), Some("request-7"));

    let loaded = counters.load::<Counter>("t-1", "c-1").await.unwrap();
    assert_eq!(loaded.state.value, 1);
    let spans = loads.0.lock().unwrap();
    let load = spans.last().expect("a strata.load span");
    assert_eq!(load["strata.instance_id"], "t-1");
    assert_eq!(load["strata.aggregate_type"], "counter");
    assert_eq!(load["strata.aggregate_id"], "c-1");
    assert_eq!(load["strata.events_read"], "1");
}
