//! What to read from an event store, as a value every backend understands.
//!
//! A [`Query`] says which events to return, in which order, and how many. It knows no database:
//! the in-memory backend evaluates it directly ([`Query::matches`] and [`Query::excluded_aggregates`]
//! are the reference semantics) and the PostgreSQL backend renders it to SQL with bind parameters.
//! A property test holds both to the same answers, row for row.
//!
//! # Filters
//!
//! All combine with AND; list filters mean "any of"; empty means no restriction.
//!
//! | builder method | keeps events… |
//! | --- | --- |
//! | [`instance`](QueryBuilder::instance), [`instances`](QueryBuilder::instances) | of these instances (tenants) |
//! | [`all_instances`](QueryBuilder::all_instances) | of every instance (say so explicitly) |
//! | [`exclude_instances`](QueryBuilder::exclude_instances) | not of these instances |
//! | [`owner`](QueryBuilder::owner), [`creator`](QueryBuilder::creator) | of these resource owners / creators |
//! | [`aggregate_types`](QueryBuilder::aggregate_types), [`aggregate_ids`](QueryBuilder::aggregate_ids), [`event_types`](QueryBuilder::event_types) | of these aggregates / event types |
//! | [`or`](QueryBuilder::or) | matching any of several [`SubQuery`]s (each with its own aggregate and event filters) |
//! | [`position_after`](QueryBuilder::position_after), [`position_at_or_before`](QueryBuilder::position_at_or_before), [`position_before`](QueryBuilder::position_before) | in a position range |
//! | [`sequence_greater_than`](QueryBuilder::sequence_greater_than) | past a sequence (loading from a snapshot) |
//! | [`created_after`](QueryBuilder::created_after), [`created_before`](QueryBuilder::created_before) | in a time range |
//! | [`payload_contains`](QueryBuilder::payload_contains) | whose payload contains a JSON object |
//! | [`exclude_aggregates_with`](QueryBuilder::exclude_aggregates_with) | of aggregates that have none of some events ([`Exclusion`]) |
//!
//! Then [`order`](QueryBuilder::order) by `(position, in_tx_order)`, [`resume_after`](QueryBuilder::resume_after)
//! a cursor (keyset pagination), [`offset`](QueryBuilder::offset) and [`limit`](QueryBuilder::limit).
//!
//! Every query is scoped by tenant: it names its instance(s), or says with
//! [`all_instances`](QueryBuilder::all_instances) that it reads them all. A query that forgot its
//! tenant is refused ([`QueryError::NoInstance`]) rather than read across every tenant.
//!
//! `build()` validates every value and returns a typed [`QueryError`] for bad input: no instance, an
//! empty id in a list, a zero or negative limit, an exclusion without event types, a payload filter
//! that is not an object.
//!
//! ```
//! use strata_query::{Order, Query, SubQuery};
//!
//! // Sessions added since a position, minus sessions whose token was revoked, newest first.
//! let query = Query::builder()
//!     .instance("instance-1")
//!     .aggregate_types(["oidc_session"])
//!     .event_types(["oidc_session.added"])
//!     .exclude_aggregates_with(["oidc_session"], ["oidc_session.access_token.revoked"])
//!     .descending()
//!     .limit(100)
//!     .build()?;
//! assert_eq!(query.order(), Order::Descending);
//!
//! // Users added, or any event of one organisation.
//! let query = Query::builder()
//!     .instance("instance-1")
//!     .or(SubQuery::builder().aggregate_types(["user"]).event_types(["user.added"]))
//!     .or(SubQuery::builder().aggregate_types(["org"]).aggregate_ids(["org-1"]))
//!     .build()?;
//! assert_eq!(query.any_of().len(), 2);
//!
//! assert!(Query::builder().instance("instance-1").limit(0).build().is_err());
//! // Forgetting the tenant is an error, not a read of every tenant.
//! assert!(Query::builder().event_types(["user.added"]).build().is_err());
//! let everywhere = Query::builder().all_instances().event_types(["user.added"]).build()?;
//! assert!(everywhere.spans_all_instances());
//! # Ok::<(), strata_query::QueryError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod containment;
mod error;
mod query;

pub use crate::builder::{Count, QueryBuilder, SubQueryBuilder};
pub use crate::error::QueryError;
pub use crate::query::{Exclusion, MAX_LIMIT, Order, Query, SubQuery};
