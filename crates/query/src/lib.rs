//! What to read from an event store, as a value every backend understands.
//!
//! A [`Query`] says which events to return (instance, aggregate types and ids, event types, a
//! position lower bound or a resume cursor), in which order, and how many. It knows no database: the
//! in-memory backend evaluates it directly ([`Query::matches`] is the reference semantics) and the
//! PostgreSQL backend renders it to SQL with bind parameters.
//!
//! Build one with [`Query::builder`]; `build()` validates every value and returns a typed
//! [`QueryError`] for bad input (an empty id in a list, a zero limit…).
//!
//! ```
//! use strata_query::{Order, Query};
//!
//! let query = Query::builder()
//!     .instance("instance-1")
//!     .aggregate_types(["user"])
//!     .event_types(["user.added", "user.email.changed"])
//!     .limit(100)
//!     .build()?;
//! assert_eq!(query.order(), Order::Ascending);
//!
//! assert!(Query::builder().limit(0).build().is_err());
//! # Ok::<(), strata_query::QueryError>(())
//! ```
//!
//! This crate is the skeleton of the full builder (spec §4); every filter added later keeps the same
//! shape: a private field, a builder method, a getter, and a clause in [`Query::matches`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod query;

pub use crate::query::{MAX_LIMIT, Order, Query, QueryBuilder, QueryError};
