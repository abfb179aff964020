//! Typed projections: a projection whose reducer sees decoded, upcast events.

use std::sync::Arc;

use futures::future::BoxFuture;
use strata_event::{AggregateRef, Event, InstanceId};
use strata_projection::{Projection, ProjectionConfig, Reads, ReduceError, Statement, Table};

use crate::envelope::{Envelope, UnknownEvents};
use crate::event::DomainEvent;
use crate::personal::{ERASURE_AGGREGATE_TYPE, ERASURE_EVENT_TYPE, ErasureRecord};

/// A [`Projection`] over typed events: the runtime hands it each event decoded (and upcast)
/// through the same table and upcasters as every other reader. Register it wrapped in [`Typed`]:
/// `runtime.register(Typed(MyProjection))`.
///
/// It reads every event type of its event's table unless [`reads`](TypedProjection::reads) says
/// otherwise. An event that does not decode fails like a failing statement: retried, then recorded
/// as a failed event with the decode error as its message.
///
/// When its events hold personal data (fields declared [`personal`](crate::EventSpec::personal)),
/// give it the vault ([`vault`](TypedProjection::vault)): it then reduces them opened, and also
/// receives every erasure of a subject in its instances, in order with the events, through
/// [`erased`](TypedProjection::erased), where it removes or masks the read-model rows holding
/// the subject's data. Events read after an erasure hold
/// [`Personal::Erased`](crate::Personal::Erased), so a rebuild writes the erased mark.
pub trait TypedProjection: Send + Sync + 'static {
    /// The events it reads.
    type Event: DomainEvent;

    /// A unique, stable name (see [`Projection::name`]).
    fn name(&self) -> &str;

    /// Turns one decoded event into read-model statements.
    fn reduce(&self, event: &Envelope<Self::Event>) -> Result<Vec<Statement>, ReduceError>;

    /// Statements that remove this projection's rows of `instance` (see [`Projection::reset`]).
    fn reset(&self, instance: &InstanceId) -> Vec<Statement>;

    /// The events it reads. Default: every (aggregate type, event type) of the event's table.
    fn reads(&self) -> Reads {
        reads_of::<Self::Event>()
    }

    /// Settings (see [`Projection::config`]).
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig::default()
    }

    /// The read model's version (see [`Projection::version`]): raise it with a change to what
    /// `reduce` writes, and the new version is built beside the live one. Default: 1.
    fn version(&self) -> u32 {
        1
    }

    /// The read model's tables, to version them (see [`Projection::tables`]). Default: none.
    fn tables(&self) -> Vec<Table> {
        Vec::new()
    }

    /// Whether applying it causes effects outside its read model (see
    /// [`Projection::has_side_effects`]).
    fn has_side_effects(&self) -> bool {
        false
    }

    /// Runs after a batch committed (see [`Projection::after_commit`]).
    fn after_commit<'a>(&'a self, touched: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        let _ = touched;
        Box::pin(std::future::ready(()))
    }

    /// The vault that opens its events' personal fields (feature `personal-data`). Default: none,
    /// and a sealed event fails to decode.
    #[cfg(feature = "personal-data")]
    fn vault(&self) -> Option<&crate::personal::Vault> {
        None
    }

    /// Statements that remove or mask what the read model holds of an erased subject's personal
    /// data (`UPDATE users SET email = NULL WHERE id = $1`). Called, exactly once and in order
    /// with the events, for every erasure in the projection's instances when its events declare
    /// personal fields. Default: nothing.
    fn erased(&self, erasure: &ErasureRecord) -> Result<Vec<Statement>, ReduceError> {
        let _ = erasure;
        Ok(Vec::new())
    }
}

/// Whether some event of `E`'s table declares personal fields.
pub(crate) fn holds_personal_data<E: DomainEvent>() -> bool {
    E::EVENTS.iter().any(|spec| !spec.personal.is_empty())
}

/// Every (aggregate type, event type) of `E`'s table, grouped by aggregate type.
pub fn reads_of<E: DomainEvent>() -> Reads {
    let mut by_type: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for spec in E::EVENTS {
        let aggregate_type = spec.aggregate_type_or(E::AGGREGATE_TYPE);
        match by_type
            .iter_mut()
            .find(|(known, _)| *known == aggregate_type)
        {
            Some((_, event_types)) => event_types.push(spec.event_type),
            None => by_type.push((aggregate_type, vec![spec.event_type])),
        }
    }
    by_type
        .into_iter()
        .fold(Reads::new(), |reads, (aggregate_type, event_types)| {
            reads.events(aggregate_type, event_types)
        })
}

/// Runs a [`TypedProjection`] as a [`Projection`].
#[derive(Debug, Clone)]
pub struct Typed<P>(pub P);

impl<P: TypedProjection> Projection for Typed<P> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn reads(&self) -> Reads {
        let reads = self.0.reads();
        let reads_erasures = reads
            .entries()
            .iter()
            .any(|(aggregate_type, _)| aggregate_type == ERASURE_AGGREGATE_TYPE);
        if holds_personal_data::<P::Event>() && !reads_erasures {
            return reads.events(ERASURE_AGGREGATE_TYPE, [ERASURE_EVENT_TYPE]);
        }
        reads
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if let Some(erasure) = ErasureRecord::from_event(event) {
            return self.0.erased(&erasure);
        }
        #[cfg(feature = "personal-data")]
        if let Some(vault) = self.0.vault() {
            let opened = vault
                .open_payload_cached(event, &mut Vec::new())
                .map_err(|failure| {
                    ReduceError::new(
                        crate::DecodeError::new::<P::Event>(event, failure).to_string(),
                    )
                })?;
            if let Some(opened) = opened {
                return match Envelope::<P::Event>::decode_ref_opened(
                    event,
                    &opened,
                    UnknownEvents::Skip,
                ) {
                    Ok(Some(envelope)) => self.0.reduce(&envelope),
                    Ok(None) => Ok(Vec::new()),
                    Err(err) => Err(ReduceError::new(err.to_string())),
                };
            }
        }
        // Events the table does not list can only reach it through a wider `reads`: skipped.
        match Envelope::<P::Event>::decode_ref(event, UnknownEvents::Skip) {
            Ok(Some(envelope)) => self.0.reduce(&envelope),
            Ok(None) => Ok(Vec::new()),
            Err(err) => Err(ReduceError::new(err.to_string())),
        }
    }

    fn prepare<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        #[cfg(feature = "personal-data")]
        if let Some(vault) = self.0.vault() {
            return Box::pin(vault.warm(events));
        }
        let _ = events;
        Box::pin(std::future::ready(()))
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        self.0.reset(instance)
    }

    fn has_side_effects(&self) -> bool {
        self.0.has_side_effects()
    }

    fn config(&self) -> ProjectionConfig {
        self.0.config()
    }

    fn version(&self) -> u32 {
        self.0.version()
    }

    fn tables(&self) -> Vec<Table> {
        self.0.tables()
    }

    fn after_commit<'a>(&'a self, touched: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        self.0.after_commit(touched)
    }
}
