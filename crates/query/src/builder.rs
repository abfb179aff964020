//! Building a [`Query`]: collect raw values, validate them all in `build`.

use chrono::{DateTime, Utc};
use strata_event::{
    AggregateId, AggregateType, Creator, Cursor, EventType, InstanceId, Metadata, Owner, Position,
    Sequence, ValidationError,
};

use crate::error::QueryError;
use crate::query::{Exclusion, MAX_LIMIT, Order, Query, SubQuery};

/// Collects the parts of a [`Query`]; [`QueryBuilder::build`] validates them. Defaults: every
/// event, ascending, no limit, no offset.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueryBuilder {
    instance_ids: Vec<String>,
    all_instances: bool,
    excluded_instance_ids: Vec<String>,
    owners: Vec<String>,
    creators: Vec<String>,
    correlation_id: Option<String>,
    filter: SubQueryBuilder,
    any_of: Vec<SubQueryBuilder>,
    position_after: Option<Position>,
    position_at_or_before: Option<Position>,
    position_before: Option<Position>,
    sequence_greater_than: Option<Sequence>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    payload_contains: Option<serde_json::Value>,
    exclusion: Option<(Vec<String>, Vec<String>)>,
    resume_after: Option<Cursor>,
    limit: Option<i128>,
    offset: Option<i128>,
    order: Order,
}

/// The aggregate and event filters of one OR branch, for [`QueryBuilder::or`].
#[derive(Debug, Default, Clone)]
#[must_use = "a sub-query does nothing until passed to `QueryBuilder::or`"]
pub struct SubQueryBuilder {
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    event_types: Vec<String>,
}

/// The earliest instant PostgreSQL's `timestamptz` holds, 4714-11-24 00:00 UTC BC, in seconds since
/// the Unix epoch. chrono reaches further back; a bound before this would pass the memory store and
/// fail on PostgreSQL, so both refuse it.
const EARLIEST_STORABLE_SECONDS: i64 = -210_866_803_200;

/// Whether a key or string anywhere in `value` holds the NUL character, which no stored payload
/// can (payloads refuse it), so a filter with one would match nothing on one backend and be an
/// error on the other.
fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(entries) => entries
            .iter()
            .any(|(key, item)| key.contains('\0') || holds_nul(item)),
        _ => false,
    }
}

/// A limit or offset: any primitive integer, `usize` included, so a page size needs no cast.
/// Negative and oversized values are accepted here and refused by `build` with a typed error.
pub trait Count: sealed::Sealed {
    /// The value, widened (`u128` beyond `i128::MAX` saturates, which `build` refuses as too large).
    fn to_i128(self) -> i128;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! counts {
    ($($int:ty),*) => {$(
        impl sealed::Sealed for $int {}
        impl Count for $int {
            fn to_i128(self) -> i128 {
                i128::try_from(self).unwrap_or(i128::MAX)
            }
        }
    )*};
}

counts!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> impl Iterator<Item = String> {
    values.into_iter().map(Into::into)
}

impl SubQueryBuilder {
    /// Only events of aggregates of any of these types.
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.aggregate_types.extend(strings(types));
        self
    }
    /// Only events of aggregates with any of these ids.
    pub fn aggregate_ids<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.aggregate_ids.extend(strings(ids));
        self
    }
    /// Only events of any of these types.
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types.extend(strings(types));
        self
    }

    fn build(self) -> Result<SubQuery, ValidationError> {
        Ok(SubQuery {
            aggregate_types: all(self.aggregate_types, AggregateType::new)?,
            aggregate_ids: all(self.aggregate_ids, AggregateId::new)?,
            event_types: all(self.event_types, EventType::new)?,
        })
    }
}

impl SubQuery {
    /// Starts an OR branch for [`QueryBuilder::or`].
    pub fn builder() -> SubQueryBuilder {
        SubQueryBuilder::default()
    }
}

fn all<T>(
    values: Vec<String>,
    make: impl Fn(String) -> Result<T, ValidationError>,
) -> Result<Vec<T>, ValidationError> {
    values.into_iter().map(make).collect()
}

impl QueryBuilder {
    /// Only events of this instance (adds to the instance list).
    pub fn instance(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_ids.push(instance_id.into());
        self
    }
    /// Only events of any of these instances (adds to the instance list). `build` refuses a query
    /// whose list stays empty, unless it [spans all instances](QueryBuilder::all_instances).
    pub fn instances<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.instance_ids.extend(strings(ids));
        self
    }
    /// Reads every instance (except [excluded ones](QueryBuilder::exclude_instances)). Every
    /// query names its instances or says this: a query that forgot its tenant is refused by
    /// `build` ([`QueryError::NoInstance`]) instead of reading every tenant's events.
    pub fn all_instances(mut self) -> Self {
        self.all_instances = true;
        self
    }
    /// Never events of these instances.
    pub fn exclude_instances<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.excluded_instance_ids.extend(strings(ids));
        self
    }
    /// Only events of this resource owner (adds to the owner list).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owners.push(owner.into());
        self
    }
    /// Only events caused by this creator (adds to the creator list).
    pub fn creator(mut self, creator: impl Into<String>) -> Self {
        self.creators.push(creator.into());
        self
    }
    /// Only events whose metadata carries this correlation id (a later call replaces an earlier
    /// one). Default: any metadata, or none.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
    /// Only events of aggregates of any of these types.
    pub fn aggregate_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.filter = self.filter.aggregate_types(types);
        self
    }
    /// Only events of aggregates with any of these ids.
    pub fn aggregate_ids<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.filter = self.filter.aggregate_ids(ids);
        self
    }
    /// Only events of any of these types.
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.filter = self.filter.event_types(types);
        self
    }
    /// Adds an OR branch: the query then returns events matching any branch (and every other
    /// filter of the query).
    pub fn or(mut self, sub_query: SubQueryBuilder) -> Self {
        self.any_of.push(sub_query);
        self
    }
    /// Only events positioned strictly after `position`. Also bounds the aggregate exclusion.
    pub fn position_after(mut self, position: Position) -> Self {
        self.position_after = Some(position);
        self
    }
    /// Only events positioned at or before `position`.
    pub fn position_at_or_before(mut self, position: Position) -> Self {
        self.position_at_or_before = Some(position);
        self
    }
    /// Only events positioned strictly before `position`: how a projection reads up to the commit
    /// horizon and no further.
    pub fn position_before(mut self, position: Position) -> Self {
        self.position_before = Some(position);
        self
    }
    /// Only events with a sequence strictly greater than `sequence` (load an aggregate from a
    /// snapshot).
    pub fn sequence_greater_than(mut self, sequence: Sequence) -> Self {
        self.sequence_greater_than = Some(sequence);
        self
    }
    /// Only events created strictly after `instant`.
    pub fn created_after(mut self, instant: DateTime<Utc>) -> Self {
        self.created_after = Some(instant);
        self
    }
    /// Only events created strictly before `instant`.
    pub fn created_before(mut self, instant: DateTime<Utc>) -> Self {
        self.created_before = Some(instant);
        self
    }
    /// Only events whose payload contains `filter`, a JSON object (PostgreSQL `@>` semantics: keys
    /// present with contained values, array elements contained in any order).
    pub fn payload_contains(mut self, filter: serde_json::Value) -> Self {
        self.payload_contains = Some(filter);
        self
    }
    /// Drops every event of an aggregate id that has an event of one of `event_types` on an
    /// aggregate of one of `aggregate_types` (any type, when empty). See [`Exclusion`].
    pub fn exclude_aggregates_with<I, S, J, T>(mut self, aggregate_types: I, event_types: J) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        J: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.exclusion = Some((
            strings(aggregate_types).collect(),
            strings(event_types).collect(),
        ));
        self
    }
    /// Resume strictly after `cursor` in the query's order (keyset pagination): the
    /// [`Cursor`] of the last event read (`event.cursor()`), or a `(position, in_tx_order)` pair.
    pub fn resume_after(mut self, cursor: impl Into<Cursor>) -> Self {
        self.resume_after = Some(cursor.into());
        self
    }
    /// Return at most `limit` events; `build` refuses zero, negative and values above
    /// [`MAX_LIMIT`].
    pub fn limit(mut self, limit: impl Count) -> Self {
        self.limit = Some(limit.to_i128());
        self
    }
    /// Skip the first `offset` events; `build` refuses negative values. Prefer
    /// [`QueryBuilder::resume_after`] for paging: an offset still reads what it skips.
    pub fn offset(mut self, offset: impl Count) -> Self {
        self.offset = Some(offset.to_i128());
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
        match (self.instance_ids.is_empty(), self.all_instances) {
            (true, false) => return Err(QueryError::NoInstance),
            (false, true) => return Err(QueryError::InstancesAndAllInstances),
            _ => {}
        }
        let limit = match self.limit {
            None => None,
            Some(limit) if (1..=i128::from(MAX_LIMIT)).contains(&limit) => Some(limit as u64),
            Some(limit) => return Err(QueryError::Limit(limit)),
        };
        let offset = match self.offset {
            None => 0,
            Some(offset) if (0..=i128::from(i64::MAX)).contains(&offset) => offset as u64,
            Some(offset) => return Err(QueryError::Offset(offset)),
        };
        if let Some(filter) = &self.payload_contains {
            if !filter.is_object() {
                return Err(QueryError::PayloadFilter(format!(
                    "must be a JSON object, got {filter}"
                )));
            }
            if holds_nul(filter) {
                return Err(QueryError::PayloadFilter(
                    "the NUL character (\\u0000) cannot occur in a stored payload".into(),
                ));
            }
        }
        for (field, instant) in [
            ("created_after", self.created_after),
            ("created_before", self.created_before),
        ] {
            if let Some(instant) = instant
                && instant.timestamp() < EARLIEST_STORABLE_SECONDS
            {
                return Err(QueryError::Timestamp { field, instant });
            }
        }
        let exclusion = match self.exclusion {
            None => None,
            Some((_, event_types)) if event_types.is_empty() => {
                return Err(QueryError::ExclusionWithoutEventTypes);
            }
            Some((aggregate_types, event_types)) => Some(Exclusion {
                aggregate_types: all(aggregate_types, AggregateType::new)?,
                event_types: all(event_types, EventType::new)?,
            }),
        };
        // The rules of a stored correlation id: one no event could carry would match nothing.
        let correlation_id = match self.correlation_id {
            None => None,
            Some(id) => {
                let metadata = Metadata {
                    correlation_id: Some(id),
                    ..Metadata::default()
                };
                metadata.validate()?;
                metadata.correlation_id
            }
        };
        Ok(Query {
            instance_ids: all(self.instance_ids, InstanceId::new)?,
            correlation_id,
            all_instances: self.all_instances,
            excluded_instance_ids: all(self.excluded_instance_ids, InstanceId::new)?,
            owners: all(self.owners, Owner::new)?,
            creators: all(self.creators, Creator::new)?,
            filter: self.filter.build()?,
            any_of: self
                .any_of
                .into_iter()
                .map(SubQueryBuilder::build)
                .collect::<Result<_, _>>()?,
            position_after: self.position_after,
            position_at_or_before: self.position_at_or_before,
            position_before: self.position_before,
            sequence_greater_than: self.sequence_greater_than,
            created_after: self.created_after,
            created_before: self.created_before,
            payload_contains: self.payload_contains,
            exclusion,
            resume_after: self.resume_after,
            limit,
            offset,
            order: self.order,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn limits_and_offsets_take_any_integer() {
        let page: usize = 50;
        let query = Query::builder()
            .all_instances()
            .limit(page)
            .offset(page * 2)
            .build()
            .expect("usize");
        assert_eq!((query.limit, query.offset), (Some(50), 100));
        assert!(
            Query::builder()
                .all_instances()
                .limit(-1i8)
                .build()
                .is_err()
        );
        assert!(
            Query::builder()
                .all_instances()
                .limit(u128::MAX)
                .build()
                .is_err()
        );
        assert!(
            Query::builder()
                .all_instances()
                .offset(isize::MIN)
                .build()
                .is_err()
        );
    }

    #[test]
    fn refuses_bad_limits_offsets_and_ids() {
        for limit in [0i128, -1, i128::from(MAX_LIMIT) + 1] {
            assert_eq!(
                Query::builder().all_instances().limit(limit).build(),
                Err(QueryError::Limit(limit))
            );
        }
        assert!(
            Query::builder()
                .all_instances()
                .limit(MAX_LIMIT)
                .build()
                .is_ok()
        );
        assert_eq!(
            Query::builder().all_instances().offset(-1).build(),
            Err(QueryError::Offset(-1))
        );
        assert!(matches!(
            Query::builder()
                .all_instances()
                .aggregate_ids(["a", ""])
                .build(),
            Err(QueryError::Invalid(ValidationError::Empty { .. }))
        ));
        assert!(matches!(
            Query::builder()
                .all_instances()
                .event_types(["Bad Type"])
                .build(),
            Err(QueryError::Invalid(ValidationError::Grammar { .. }))
        ));
        assert!(matches!(
            Query::builder()
                .all_instances()
                .or(SubQuery::builder().aggregate_types(["no spaces allowed"]))
                .build(),
            Err(QueryError::Invalid(ValidationError::Grammar { .. }))
        ));
        assert!(matches!(
            Query::builder()
                .all_instances()
                .exclude_instances([""])
                .build(),
            Err(QueryError::Invalid(ValidationError::Empty { .. }))
        ));
    }

    #[test]
    fn a_query_names_its_instances_or_says_it_spans_all() {
        assert_eq!(
            Query::builder().event_types(["user.added"]).build(),
            Err(QueryError::NoInstance)
        );
        let none: [&str; 0] = [];
        assert_eq!(
            Query::builder().instances(none).build(),
            Err(QueryError::NoInstance)
        );
        assert_eq!(
            Query::builder().all_instances().instance("t1").build(),
            Err(QueryError::InstancesAndAllInstances)
        );
        let all = Query::builder()
            .all_instances()
            .exclude_instances(["t2"])
            .build()
            .expect("all but one");
        assert!(all.spans_all_instances() && all.instance_ids().is_empty());
        let one = Query::builder().instance("t1").build().expect("one");
        assert!(!one.spans_all_instances());
        assert_eq!(
            Query::all(),
            Query::builder().all_instances().build().expect("all")
        );
    }

    #[test]
    fn refuses_an_exclusion_without_event_types() {
        let no_types: [&str; 0] = [];
        assert_eq!(
            Query::builder()
                .all_instances()
                .exclude_aggregates_with(["user"], no_types)
                .build(),
            Err(QueryError::ExclusionWithoutEventTypes)
        );
    }

    #[test]
    fn refuses_a_payload_filter_that_is_not_an_object() {
        for filter in [json!([1]), json!("x"), json!(null), json!(1)] {
            assert!(matches!(
                Query::builder()
                    .all_instances()
                    .payload_contains(filter)
                    .build(),
                Err(QueryError::PayloadFilter(_))
            ));
        }
    }
}
