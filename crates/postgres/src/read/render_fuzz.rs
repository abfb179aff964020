//! Property-based fuzzing of query building and rendering: any input either builds a query or gets
//! a typed error, and a rendered query never carries an input value in its SQL text — every value
//! is a bind parameter, and the placeholders match the binds.
//!
//! `PROPTEST_CASES=100000 cargo test -p strata-postgres --lib render_fuzz` runs it longer.

use super::render_query;
use proptest::prelude::*;
use strata_query::{Query, SubQuery};

/// Input values carry a marker that must never show up in the SQL text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|s| format!("zqz{s}")),
        any::<String>().prop_map(|s| format!("ZQZ{s}")),
        "[ -~]{0,20}".prop_map(|s| format!("zqz.{s}")),
    ]
}

fn values() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(value(), 0..3)
}

proptest! {
    #[test]
    fn rendering_binds_every_value(
        instances in values(), excluded in values(), types in values(), ids in values(),
        events in values(), owner in proptest::option::of(value()),
        branch_types in values(), exclusion_events in values(),
        payload in proptest::option::of(value()),
        limit in proptest::option::of(-5i64..2_000_000), offset in proptest::option::of(-5i64..100),
        descending in any::<bool>(),
    ) {
        let mut builder = Query::builder()
            .instances(instances)
            .exclude_instances(excluded)
            .aggregate_types(types)
            .aggregate_ids(ids)
            .event_types(events)
            .or(SubQuery::builder().aggregate_types(branch_types))
            .exclude_aggregates_with(["user"], exclusion_events);
        if let Some(owner) = owner {
            builder = builder.owner(owner);
        }
        if let Some(payload) = payload {
            builder = builder.payload_contains(serde_json::json!({ payload.clone(): payload }));
        }
        if let Some(limit) = limit {
            builder = builder.limit(limit);
        }
        if let Some(offset) = offset {
            builder = builder.offset(offset);
        }
        if descending {
            builder = builder.descending();
        }
        let Ok(query) = builder.build() else {
            return Ok(());
        };
        let rendered = render_query(&query);
        prop_assert!(!rendered.sql.to_lowercase().contains("zqz"), "{}", rendered.sql);
        let highest = (1..=rendered.binds.len() + 1)
            .rev()
            .find(|n| rendered.sql.contains(&format!("${n}")))
            .unwrap_or(0);
        prop_assert_eq!(highest, rendered.binds.len(), "{}", rendered.sql);
    }
}
