//! The record of an erasure: an event on the system aggregate `strata.subject` (id: the subject),
//! pushed in the erasure's transaction. Projections reading personal data receive it in order with
//! everything else ([`TypedProjection::erased`](crate::TypedProjection::erased)), and replaying
//! these records erases again what a restore from an older backup brought back
//! ([`Vault::reapply_erasures`](crate::Vault::reapply_erasures)).

use chrono::{DateTime, Utc};
use strata_event::{Creator, Event, InstanceId, Position, SubjectId};

/// The aggregate type erasures are recorded on.
pub const ERASURE_AGGREGATE_TYPE: &str = "strata.subject";
/// The event type of an erasure's record.
pub const ERASURE_EVENT_TYPE: &str = "strata.subject.erased";

/// An erasure, as its recorded event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    /// The instance the subject lived in.
    pub instance_id: InstanceId,
    /// The erased subject.
    pub subject_id: SubjectId,
    /// Who erased it (the context's creator).
    pub erased_by: Creator,
    /// When.
    pub erased_at: DateTime<Utc>,
    /// The record's position.
    pub position: Position,
}

impl ErasureRecord {
    /// The erasure `event` records, or `None` when it is not an erasure's record.
    pub fn from_event(event: &Event) -> Option<ErasureRecord> {
        if event.aggregate.aggregate_type != ERASURE_AGGREGATE_TYPE
            || event.event_type != ERASURE_EVENT_TYPE
        {
            return None;
        }
        Some(ErasureRecord {
            instance_id: event.aggregate.instance_id.clone(),
            subject_id: SubjectId::new(event.aggregate.aggregate_id.as_str()).ok()?,
            erased_by: event.creator.clone(),
            erased_at: event.created_at,
            position: event.position,
        })
    }
}
