//! The query value, its builder and its reference semantics.

use serde::{Deserialize, Serialize};
use strata_event::{
    AggregateId, AggregateRef, AggregateType, Event, EventType, InstanceId, Position,
    ValidationError,
};
use thiserror::Error;

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

/// A query could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A value in the query is not a valid id or type.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The limit is zero or larger than [`MAX_LIMIT`].
    #[error("invalid limit {0}: must be between 1 and {MAX_LIMIT}")]
    Limit(i128),
}

/// Which events to read. Empty filters match everything; each list filter means "any of".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Query {
    instance_ids: Vec<InstanceId>,
    aggregate_types: Vec<AggregateType>,
    aggregate_ids: Vec<AggregateId>,
    event_types: Vec<EventType>,
    position_after: Option<Position>,
    resume_after: Option<(Position, u32)>,
    limit: Option<u64>,
    order: Order,
}

impl Query {
    /// Starts an empty query: every event, ascending, no limit.
    pub fn builder() -> QueryBuilder {
        QueryBuilder::default()
    }

    /// Every event of one aggregate, in sequence order.
    pub fn aggregate(aggregate: &AggregateRef) -> Query {
        Query {
            instance_ids: vec![aggregate.instance_id.clone()],
            aggregate_types: vec![aggregate.aggregate_type.clone()],
            aggregate_ids: vec![aggregate.aggregate_id.clone()],
            ..Query::default()
        }
    }

    /// Instances to read from; empty means all.
    pub fn instance_ids(&self) -> &[InstanceId] {
        &self.instance_ids
    }
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
    /// Only events with a position strictly greater than this.
    pub fn position_after(&self) -> Option<Position> {
        self.position_after
    }
    /// Only events strictly after this `(position, in_tx_order)` in the query's order: the cursor
    /// for keyset pagination.
    pub fn resume_after(&self) -> Option<(Position, u32)> {
        self.resume_after
    }
    /// At most this many events.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }
    /// The order of results.
    pub fn order(&self) -> Order {
        self.order
    }

    /// A copy of this query that resumes after `cursor`: the next page.
    pub fn resumed_after(&self, cursor: (Position, u32)) -> Query {
        Query {
            resume_after: Some(cursor),
            ..self.clone()
        }
    }

    /// Whether `event` passes every filter. Ordering and limit are not filters; a backend sorts by
    /// `(position, in_tx_order)` in [`Query::order`] and stops at [`Query::limit`]. This function is the
    /// reference semantics every backend must agree with.
    pub fn matches(&self, event: &Event) -> bool {
        fn any_of<T: PartialEq>(list: &[T], value: &T) -> bool {
            list.is_empty() || list.contains(value)
        }
        let after_cursor = match (self.resume_after, self.order) {
            (None, _) => true,
            (Some(cursor), Order::Ascending) => event.cursor() > cursor,
            (Some(cursor), Order::Descending) => event.cursor() < cursor,
        };
        any_of(&self.instance_ids, &event.aggregate.instance_id)
            && any_of(&self.aggregate_types, &event.aggregate.aggregate_type)
            && any_of(&self.aggregate_ids, &event.aggregate.aggregate_id)
            && any_of(&self.event_types, &event.event_type)
            && self
                .position_after
                .is_none_or(|after| event.position > after)
            && after_cursor
    }
}

/// Collects the parts of a [`Query`]; `build` validates them. Defaults: all events, ascending,
/// no limit.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueryBuilder {
    instance_ids: Vec<String>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    event_types: Vec<String>,
    position_after: Option<Position>,
    resume_after: Option<(Position, u32)>,
    limit: Option<i128>,
    order: Order,
}

impl QueryBuilder {
    /// Only events of this instance (adds to the instance list).
    pub fn instance(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_ids.push(instance_id.into());
        self
    }
    /// Only events of any of these instances.
    pub fn instances<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.instance_ids.extend(ids.into_iter().map(Into::into));
        self
    }
    /// Only events of aggregates of any of these types.
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.aggregate_types
            .extend(types.into_iter().map(Into::into));
        self
    }
    /// Only events of aggregates with any of these ids.
    pub fn aggregate_ids<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.aggregate_ids.extend(ids.into_iter().map(Into::into));
        self
    }
    /// Only events of any of these types.
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }
    /// Only events positioned strictly after `position`.
    pub fn position_after(mut self, position: Position) -> Self {
        self.position_after = Some(position);
        self
    }
    /// Resume strictly after `(position, in_tx_order)` in the query's order (keyset pagination).
    pub fn resume_after(mut self, position: Position, in_tx_order: u32) -> Self {
        self.resume_after = Some((position, in_tx_order));
        self
    }
    /// Return at most `limit` events; `build` refuses zero, negative and values above
    /// [`MAX_LIMIT`].
    pub fn limit(mut self, limit: impl Into<i128>) -> Self {
        self.limit = Some(limit.into());
        self
    }
    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.order = Order::Descending;
        self
    }
    /// Sets the order explicitly.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Validates every value and returns the query.
    pub fn build(self) -> Result<Query, QueryError> {
        fn all<T, F>(values: Vec<String>, make: F) -> Result<Vec<T>, ValidationError>
        where
            F: Fn(String) -> Result<T, ValidationError>,
        {
            values.into_iter().map(make).collect()
        }
        let limit = match self.limit {
            None => None,
            Some(limit) if (1..=i128::from(MAX_LIMIT)).contains(&limit) => Some(limit as u64),
            Some(limit) => return Err(QueryError::Limit(limit)),
        };
        Ok(Query {
            instance_ids: all(self.instance_ids, InstanceId::new)?,
            aggregate_types: all(self.aggregate_types, AggregateType::new)?,
            aggregate_ids: all(self.aggregate_ids, AggregateId::new)?,
            event_types: all(self.event_types, EventType::new)?,
            position_after: self.position_after,
            resume_after: self.resume_after,
            limit,
            order: self.order,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_limits_and_ids() {
        for limit in [0i128, -1, i128::from(MAX_LIMIT) + 1] {
            assert_eq!(
                Query::builder().limit(limit).build(),
                Err(QueryError::Limit(limit))
            );
        }
        assert!(Query::builder().limit(MAX_LIMIT).build().is_ok());
        assert!(matches!(
            Query::builder().aggregate_ids(["a", ""]).build(),
            Err(QueryError::Invalid(ValidationError::Empty { .. }))
        ));
        assert!(matches!(
            Query::builder().event_types(["Bad Type"]).build(),
            Err(QueryError::Invalid(ValidationError::Grammar { .. }))
        ));
    }
}
