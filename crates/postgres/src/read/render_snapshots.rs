//! The SQL the backend generates for representative queries. These snapshots are documentation:
//! they show that every value is a bind parameter and which index each query is shaped for.
//! Update them with `UPDATE_EXPECT=1 cargo test -p strata-postgres --lib render_snapshots`.

use super::render_query;
use expect_test::{Expect, expect};
use strata_event::{AggregateRef, Position};
use strata_query::{Query, SubQuery};

fn check(query: &Query, expected: Expect) {
    let rendered = render_query(query);
    expected.assert_eq(&format!("{}\n{:?}", rendered.sql, rendered.binds));
}

#[test]
fn one_aggregate_reads_in_sequence_order() {
    let aggregate = AggregateRef::new("instance-1", "user", "u-1").unwrap();
    check(
        &Query::aggregate(&aggregate),
        expect![[r#"
            SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, created_at, creator, owner, payload::text, position, in_tx_order, metadata::text FROM eventstore.events WHERE instance_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 ORDER BY sequence
            [Text("instance-1"), Text("user"), Text("u-1")]"#]],
    );
}

#[test]
fn projection_read_pages_by_cursor() {
    let query = Query::builder()
        .instance("instance-1")
        .aggregate_types(["user", "org"])
        .event_types(["user.added"])
        .position_after(Position::from(100u64))
        .resume_after((Position::from(120u64), 2))
        .limit(1000)
        .build()
        .unwrap();
    check(
        &query,
        expect![[r#"
            SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, created_at, creator, owner, payload::text, position, in_tx_order, metadata::text FROM eventstore.events WHERE instance_id = $1 AND aggregate_type = ANY($2) AND event_type = $3 AND position > $4 AND (position, in_tx_order) > ($5, $6) ORDER BY position, in_tx_order LIMIT $7
            [Text("instance-1"), TextArray(["user", "org"]), Text("user.added"), Numeric(100), Numeric(120), BigInt(2), BigInt(1000)]"#]],
    );
}

#[test]
fn exclusion_inherits_instance_and_position_bound() {
    // Seed 002's shape: sessions added, minus those whose token was revoked, newest first.
    let query = Query::builder()
        .instance("instance-1")
        .aggregate_types(["oidc_session"])
        .event_types(["oidc_session.added"])
        .position_after("1731582100.784168".parse().unwrap())
        .exclude_aggregates_with(["oidc_session"], ["oidc_session.access_token.revoked"])
        .descending()
        .limit(10)
        .build()
        .unwrap();
    check(
        &query,
        expect![[r#"
            SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, created_at, creator, owner, payload::text, position, in_tx_order, metadata::text FROM eventstore.events WHERE instance_id = $1 AND aggregate_type = $2 AND event_type = $3 AND position > $4 AND NOT EXISTS (SELECT 1 FROM eventstore.events AS excluded WHERE instance_id = $1 AND aggregate_type = $5 AND event_type = $6 AND position > $4 AND instance_id = events.instance_id AND aggregate_id = events.aggregate_id OFFSET 0) ORDER BY position DESC, in_tx_order DESC LIMIT $7
            [Text("instance-1"), Text("oidc_session"), Text("oidc_session.added"), Numeric(1731582100.784168), Text("oidc_session"), Text("oidc_session.access_token.revoked"), BigInt(10)]"#]],
    );
}

#[test]
fn every_other_filter() {
    let instant = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .to_utc();
    let query = Query::builder()
        .instances(["a", "b"])
        .exclude_instances(["c"])
        .owner("org-1")
        .creator("admin")
        .or(SubQuery::builder()
            .aggregate_types(["user"])
            .event_types(["user.added", "user.removed"]))
        .or(SubQuery::builder()
            .aggregate_types(["org"])
            .aggregate_ids(["org-1"]))
        .position_at_or_before(Position::from(500u64))
        .sequence_greater_than(3)
        .created_after(instant)
        .created_before(instant)
        .payload_contains(serde_json::json!({"plan": "pro"}))
        .offset(20)
        .build()
        .unwrap();
    check(
        &query,
        expect![[r#"
            SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, created_at, creator, owner, payload::text, position, in_tx_order, metadata::text FROM eventstore.events WHERE instance_id = ANY($1) AND instance_id <> ALL($2) AND owner = $3 AND creator = $4 AND ((aggregate_type = $5 AND event_type = ANY($6)) OR (aggregate_type = $7 AND aggregate_id = $8)) AND position <= $9 AND sequence > $10 AND created_at > $11 AND created_at < $12 AND payload @> $13::jsonb ORDER BY position, in_tx_order OFFSET $14
            [TextArray(["a", "b"]), TextArray(["c"]), Text("org-1"), Text("admin"), Text("user"), TextArray(["user.added", "user.removed"]), Text("org"), Text("org-1"), Numeric(500), BigInt(3), Timestamp(2026-11-22T10:00:00Z), Timestamp(2026-11-22T10:00:00Z), Json("{\"plan\":\"pro\"}"), BigInt(20)]"#]],
    );
}

#[test]
fn correlation_id_filters_on_the_partial_index() {
    let query = Query::builder()
        .instance("instance-1")
        .correlation_id("request-7")
        .build()
        .unwrap();
    check(
        &query,
        expect![[r#"
        SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, revision, created_at, creator, owner, payload::text, position, in_tx_order, metadata::text FROM eventstore.events WHERE instance_id = $1 AND metadata IS NOT NULL AND metadata->>'correlation_id' = $2 ORDER BY position, in_tx_order
        [Text("instance-1"), Text("request-7")]"#]],
    );
}

#[test]
fn a_read_through_the_archive_reads_both_tables_everywhere() {
    // The exclusion's sub-query too: an aggregate excluded by an archived event stays excluded.
    let query = Query::builder()
        .instance("instance-1")
        .aggregate_types(["oidc_session"])
        .exclude_aggregates_with(["oidc_session"], ["oidc_session.access_token.revoked"])
        .build()
        .unwrap();
    let sql = super::render::render_query_with_archive(&query).sql;
    let union =
        "(SELECT * FROM eventstore.events UNION ALL SELECT * FROM eventstore.archived_events) AS";
    assert_eq!(sql.matches(&format!("{union} events")).count(), 1, "{sql}");
    assert_eq!(
        sql.matches(&format!("{union} excluded")).count(),
        1,
        "{sql}"
    );
    assert!(
        !sql.replace(union, "").contains("eventstore.events"),
        "a table reference left on the hot table alone: {sql}"
    );
}
