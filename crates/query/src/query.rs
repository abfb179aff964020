//! The query value and its reference semantics.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_event::{
    AggregateId, AggregateRef, AggregateType, Creator, Cursor, Event, EventType, InstanceId, Owner,
    Position, Sequence,
};

use crate::QueryError;
use crate::builder::QueryBuilder;
use crate::containment::contains;

/// Largest limit a query may ask for. Larger reads page with a cursor instead.
pub const MAX_LIMIT: u64 = 1_000_000;

/// The order of results, by `(position, in_tx_order)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// Which events to read. Empty filters match everything; each list filter means "any of"; all
/// filters combine with AND, except [`SubQuery`]s, which combine with each other by OR.
///
/// Every query is scoped by tenant: it names its instances, or says it spans all of them
/// ([`QueryBuilder::all_instances`]), so no read crosses instances by omission.
///
/// Build one with [`Query::builder`]. The value is backend-neutral: [`Query::matches`] and
/// [`Query::excluded_aggregates`] define what it selects, and every backend agrees with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    pub(crate) instance_ids: Vec<InstanceId>,
    pub(crate) all_instances: bool,
    pub(crate) excluded_instance_ids: Vec<InstanceId>,
    pub(crate) owners: Vec<Owner>,
    pub(crate) creators: Vec<Creator>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) filter: SubQuery,
    pub(crate) any_of: Vec<SubQuery>,
    pub(crate) position_after: Option<Position>,
    pub(crate) position_at_or_before: Option<Position>,
    pub(crate) position_before: Option<Position>,
    pub(crate) sequence_greater_than: Option<Sequence>,
    pub(crate) created_after: Option<DateTime<Utc>>,
    pub(crate) created_before: Option<DateTime<Utc>>,
    pub(crate) payload_contains: Option<serde_json::Value>,
    pub(crate) exclusion: Option<Exclusion>,
    pub(crate) resume_after: Option<Cursor>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: u64,
    pub(crate) order: Order,
}

/// Aggregate and event filters. The query's own are ANDed with the rest; the query's OR list
/// ([`Query::any_of`]) holds several, of which an event must match one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SubQuery {
    pub(crate) aggregate_types: Vec<AggregateType>,
    pub(crate) aggregate_ids: Vec<AggregateId>,
    pub(crate) event_types: Vec<EventType>,
}

impl SubQuery {
    /// Aggregate types to read; empty means all.
    pub fn aggregate_types(&self) -> &[AggregateType] {
        &self.aggregate_types
    }
    /// Aggregate ids to read; empty means all.
    pub fn aggregate_ids(&self) -> &[AggregateId] {
        &self.aggregate_ids
    }
    /// Event types to read; empty means all.
    pub fn event_types(&self) -> &[EventType] {
        &self.event_types
    }
    /// Whether it filters nothing.
    pub fn is_empty(&self) -> bool {
        self.aggregate_types.is_empty()
            && self.aggregate_ids.is_empty()
            && self.event_types.is_empty()
    }

    fn matches(&self, event: &Event) -> bool {
        any_of(&self.aggregate_types, &event.aggregate.aggregate_type)
            && any_of(&self.aggregate_ids, &event.aggregate.aggregate_id)
            && any_of(&self.event_types, &event.event_type)
    }
}

/// "Drop every event of an aggregate that has one of these events" (seed `002`: a notification
/// handler skips aggregates already marked done).
///
/// An event is excluded when another event exists with the same instance and aggregate id, an
/// aggregate type among [`Exclusion::aggregate_types`] (any, when empty) and an event type among
/// [`Exclusion::event_types`], that also passes the parent query's instance filters and position
/// lower bound ([`Query::position_after`]). Those two are inherited so the database answers both
/// sides from the same index; the resume cursor is not, so paging never changes what is excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exclusion {
    pub(crate) aggregate_types: Vec<AggregateType>,
    pub(crate) event_types: Vec<EventType>,
}

impl Exclusion {
    /// The aggregate types whose events mark an aggregate; empty means any.
    pub fn aggregate_types(&self) -> &[AggregateType] {
        &self.aggregate_types
    }
    /// The event types that mark an aggregate; never empty.
    pub fn event_types(&self) -> &[EventType] {
        &self.event_types
    }
}

fn any_of<T: PartialEq>(list: &[T], value: &T) -> bool {
    list.is_empty() || list.contains(value)
}

impl Query {
    /// Starts an empty query: every event, ascending, no limit.
    pub fn builder() -> QueryBuilder {
        QueryBuilder::default()
    }

    /// Every event of one aggregate, in sequence order.
    pub fn aggregate(aggregate: &AggregateRef) -> Query {
        Query {
            filter: SubQuery {
                aggregate_types: vec![aggregate.aggregate_type.clone()],
                aggregate_ids: vec![aggregate.aggregate_id.clone()],
                event_types: Vec::new(),
            },
            ..Query::of_instances(vec![aggregate.instance_id.clone()])
        }
    }

    /// Every event of every instance, oldest first: what a whole-store reader (a mirror, an
    /// export) starts from.
    pub fn all() -> Query {
        Query {
            all_instances: true,
            ..Query::of_instances(Vec::new())
        }
    }

    /// Every event of `instance_ids`, with no other filter (the caller sets `all_instances` when
    /// the list is empty).
    pub(crate) fn of_instances(instance_ids: Vec<InstanceId>) -> Query {
        Query {
            instance_ids,
            all_instances: false,
            excluded_instance_ids: Vec::new(),
            owners: Vec::new(),
            creators: Vec::new(),
            correlation_id: None,
            filter: SubQuery::default(),
            any_of: Vec::new(),
            position_after: None,
            position_at_or_before: None,
            position_before: None,
            sequence_greater_than: None,
            created_after: None,
            created_before: None,
            payload_contains: None,
            exclusion: None,
            resume_after: None,
            limit: None,
            offset: 0,
            order: Order::Ascending,
        }
    }

    /// The instances to read from; empty when the query [spans all
    /// instances](Query::spans_all_instances).
    pub fn instance_ids(&self) -> &[InstanceId] {
        &self.instance_ids
    }
    /// Whether the query reads every instance (except [excluded
    /// ones](Query::excluded_instance_ids)), as [`QueryBuilder::all_instances`] asked.
    pub fn spans_all_instances(&self) -> bool {
        self.all_instances
    }
    /// Instances never to read from.
    pub fn excluded_instance_ids(&self) -> &[InstanceId] {
        &self.excluded_instance_ids
    }
    /// Resource owners to read; empty means all.
    pub fn owners(&self) -> &[Owner] {
        &self.owners
    }
    /// Creators to read; empty means all.
    pub fn creators(&self) -> &[Creator] {
        &self.creators
    }
    /// The correlation id events must carry in their metadata, if the query filters by one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    /// Aggregate types to read (ANDed with everything else); empty means all.
    pub fn aggregate_types(&self) -> &[AggregateType] {
        &self.filter.aggregate_types
    }
    /// Aggregate ids to read (ANDed with everything else); empty means all.
    pub fn aggregate_ids(&self) -> &[AggregateId] {
        &self.filter.aggregate_ids
    }
    /// Event types to read (ANDed with everything else); empty means all.
    pub fn event_types(&self) -> &[EventType] {
        &self.filter.event_types
    }
    /// Sub-queries joined by OR: an event must match at least one. Empty means no such condition.
    pub fn any_of(&self) -> &[SubQuery] {
        &self.any_of
    }
    /// Only events with a position strictly greater than this.
    pub fn position_after(&self) -> Option<Position> {
        self.position_after
    }
    /// Only events with a position less than or equal to this.
    pub fn position_at_or_before(&self) -> Option<Position> {
        self.position_at_or_before
    }
    /// Only events with a position strictly less than this.
    pub fn position_before(&self) -> Option<Position> {
        self.position_before
    }
    /// Only events with a sequence strictly greater than this.
    pub fn sequence_greater_than(&self) -> Option<Sequence> {
        self.sequence_greater_than
    }
    /// Only events created strictly after this instant.
    pub fn created_after(&self) -> Option<DateTime<Utc>> {
        self.created_after
    }
    /// Only events created strictly before this instant.
    pub fn created_before(&self) -> Option<DateTime<Utc>> {
        self.created_before
    }
    /// Only events whose payload contains this JSON object (PostgreSQL `@>` semantics).
    pub fn payload_contains(&self) -> Option<&serde_json::Value> {
        self.payload_contains.as_ref()
    }
    /// The aggregate exclusion, if any.
    pub fn exclusion(&self) -> Option<&Exclusion> {
        self.exclusion.as_ref()
    }
    /// Only events strictly after this cursor in the query's order: keyset pagination.
    pub fn resume_after(&self) -> Option<Cursor> {
        self.resume_after
    }
    /// At most this many events.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
    /// Skip this many events first (prefer [`Query::resume_after`] on large reads: an offset still
    /// reads the rows it skips).
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// The order of results.
    pub fn order(&self) -> Order {
        self.order
    }

    /// A copy of this query that resumes after `cursor` (an event's [`Event::cursor`], or a
    /// `(position, in_tx_order)` pair): the next page.
    pub fn resumed_after(&self, cursor: impl Into<Cursor>) -> Query {
        Query {
            resume_after: Some(cursor.into()),
            ..self.clone()
        }
    }

    /// A copy of this query that reads only events positioned strictly below `bound` (and below
    /// its own bound, when it has a lower one): a page below the commit horizon, which no late
    /// commit can change.
    pub fn below(&self, bound: Position) -> Query {
        Query {
            position_before: Some(self.position_before.map_or(bound, |own| own.min(bound))),
            ..self.clone()
        }
    }

    /// A copy of this query confined to `instance_ids` (replacing its instance list, or its
    /// all-instances scope), its other filters, order and paging kept. A router that splits one
    /// query over several stores (`strata-shard`) asks each store for its own instances with it.
    /// Refuses an empty list ([`QueryError::NoInstance`]): a query always names what it reads.
    pub fn for_instances(&self, instance_ids: Vec<InstanceId>) -> Result<Query, QueryError> {
        if instance_ids.is_empty() {
            return Err(QueryError::NoInstance);
        }
        Ok(Query {
            instance_ids,
            all_instances: false,
            ..self.clone()
        })
    }

    /// A copy of this query with another `limit` (`None`: unlimited) and `offset`, validated as
    /// [`QueryBuilder::limit`] and [`QueryBuilder::offset`] are: a reader that merges several
    /// reads applies the caller's paging itself and reads each part page by page.
    pub fn with_paging(&self, limit: Option<u64>, offset: u64) -> Result<Query, QueryError> {
        if let Some(limit) = limit
            && !(1..=MAX_LIMIT).contains(&limit)
        {
            return Err(QueryError::Limit(i128::from(limit)));
        }
        if i64::try_from(offset).is_err() {
            return Err(QueryError::Offset(i128::from(offset)));
        }
        Ok(Query {
            limit,
            offset,
            ..self.clone()
        })
    }

    /// A copy of this query without its resume cursor and position bounds: what it selects
    /// wherever positions are. A router over several stores, whose positions cannot be compared,
    /// asks with it which stores hold what the query reads.
    pub fn without_positions(&self) -> Query {
        Query {
            resume_after: None,
            position_after: None,
            position_at_or_before: None,
            position_before: None,
            ..self.clone()
        }
    }

    /// The aggregate this query is confined to, when its own filters name exactly one (the OR list
    /// can only narrow that further). Backends read such queries from their per-aggregate index.
    pub fn single_aggregate(&self) -> Option<AggregateRef> {
        let ([instance_id], [aggregate_type], [aggregate_id]) = (
            self.instance_ids(),
            self.aggregate_types(),
            self.aggregate_ids(),
        ) else {
            return None;
        };
        Some(AggregateRef {
            instance_id: instance_id.clone(),
            aggregate_type: aggregate_type.clone(),
            aggregate_id: aggregate_id.clone(),
        })
    }

    /// Whether `event` passes every filter and the resume cursor. The aggregate exclusion needs the
    /// other events and is applied with [`Query::excluded_aggregates`]; ordering, offset and limit
    /// are not filters. Together with those, this is the reference semantics every backend must
    /// agree with.
    pub fn matches(&self, event: &Event) -> bool {
        let after_cursor = match (self.resume_after, self.order) {
            (None, _) => true,
            (Some(cursor), Order::Ascending) => event.cursor() > cursor,
            (Some(cursor), Order::Descending) => event.cursor() < cursor,
        };
        self.matches_instance(&event.aggregate.instance_id)
            && any_of(&self.owners, &event.owner)
            && any_of(&self.creators, &event.creator)
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|id| event.metadata.correlation_id.as_ref() == Some(id))
            && self.filter.matches(event)
            && (self.any_of.is_empty() || self.any_of.iter().any(|sub| sub.matches(event)))
            && self
                .position_after
                .is_none_or(|after| event.position > after)
            && self
                .position_at_or_before
                .is_none_or(|bound| event.position <= bound)
            && self
                .position_before
                .is_none_or(|bound| event.position < bound)
            && self
                .sequence_greater_than
                .is_none_or(|sequence| event.sequence > sequence)
            && self
                .created_after
                .is_none_or(|after| event.created_at > after)
            && self
                .created_before
                .is_none_or(|before| event.created_at < before)
            && self.payload_contains.as_ref().is_none_or(|filter| {
                event
                    .raw_payload
                    .decode::<serde_json::Value>()
                    .is_ok_and(|payload| contains(&payload, filter))
            })
            && after_cursor
    }

    fn matches_instance(&self, instance_id: &InstanceId) -> bool {
        any_of(&self.instance_ids, instance_id) && !self.excluded_instance_ids.contains(instance_id)
    }

    /// The `(instance, aggregate id)` pairs the exclusion drops, given every event of the store
    /// (`None` when the query has no exclusion). An event is dropped when its pair is in the set.
    pub fn excluded_aggregates<'a>(
        &self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Option<HashSet<(InstanceId, AggregateId)>> {
        let exclusion = self.exclusion.as_ref()?;
        Some(
            events
                .into_iter()
                .filter(|event| {
                    self.matches_instance(&event.aggregate.instance_id)
                        && self
                            .position_after
                            .is_none_or(|after| event.position > after)
                        && any_of(&exclusion.aggregate_types, &event.aggregate.aggregate_type)
                        && exclusion.event_types.contains(&event.event_type)
                })
                .map(|event| {
                    (
                        event.aggregate.instance_id.clone(),
                        event.aggregate.aggregate_id.clone(),
                    )
                })
                .collect(),
        )
    }
}
