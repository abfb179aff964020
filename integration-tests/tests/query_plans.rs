//! The queries projections issue, and the aggregate exclusion, are answered from indexes: with
//! 100 000 events over several instances, `EXPLAIN` shows index scans and no sequential scan of the
//! events table.

use serde_json::Value;
use strata_event::{Command, Position};
use strata_integration_tests::TestDatabase;
use strata_postgres::{BindValue, render_query};
use strata_query::Query;
use strata_store::EventStore;

const INSTANCES: usize = 5;
const EVENTS: usize = 100_000;
const PUSH_SIZE: usize = 5_000;

async fn seeded() -> (TestDatabase, Vec<Position>) {
    let database = TestDatabase::create().await;
    let store = database.store();
    let event_types = [
        "oidc_session.added",
        "oidc_session.access_token.added",
        "oidc_session.access_token.revoked",
        "user.added",
        "user.changed",
    ];
    let mut positions = Vec::new();
    for push in 0..EVENTS / PUSH_SIZE {
        let commands = (0..PUSH_SIZE)
            .map(|n| {
                let i = push * PUSH_SIZE + n;
                let event_type = event_types[i % event_types.len()];
                let aggregate_type = if event_type.starts_with("user") {
                    "user"
                } else {
                    "oidc_session"
                };
                Command::builder(
                    format!("instance-{}", i % INSTANCES),
                    aggregate_type,
                    format!("agg-{}", (i / 7) % 20_000),
                    event_type,
                )
                .creator("seed")
                .owner("org")
                .payload(&serde_json::json!({ "n": i }))
                .build()
                .expect("valid command")
            })
            .collect();
        let stored = store.push(commands).await.expect("seed push");
        positions.push(stored[0].position);
    }
    sqlx::query("ANALYZE eventstore.events")
        .execute(&database.pool(1))
        .await
        .expect("analyze");
    (database, positions)
}

async fn plan(database: &TestDatabase, query: &Query) -> Value {
    let rendered = render_query(query);
    let sql = format!("EXPLAIN (FORMAT JSON) {}", rendered.sql);
    let mut statement = sqlx::query_scalar::<_, Value>(&sql);
    for bind in rendered.binds {
        statement = match bind {
            BindValue::Text(value) => statement.bind(value),
            BindValue::TextArray(values) => statement.bind(values),
            BindValue::Numeric(value) => statement.bind(value),
            BindValue::Integer(value) => statement.bind(value),
            BindValue::BigInt(value) => statement.bind(value),
            BindValue::Timestamp(value) => statement.bind(value),
            BindValue::Json(value) => statement.bind(value),
            other => panic!("bind a new kind of value here: {other:?}"),
        };
    }
    statement
        .fetch_one(&database.pool(1))
        .await
        .expect("explain")
}

/// Every plan node, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![&plan[0]["Plan"]];
    while let Some(node) = stack.pop() {
        out.push(node);
        if let Some(children) = node["Plans"].as_array() {
            stack.extend(children);
        }
    }
    out
}

fn assert_uses_indexes(plan: &Value, scans_expected: usize) {
    let nodes = nodes(plan);
    let seq_scans: Vec<&&Value> = nodes
        .iter()
        .filter(|node| node["Node Type"] == "Seq Scan" && node["Relation Name"] == "events")
        .collect();
    assert!(
        seq_scans.is_empty(),
        "sequential scan of events in {plan:#}"
    );
    let index_scans = nodes
        .iter()
        .filter(|node| {
            matches!(
                node["Node Type"].as_str(),
                Some("Index Scan" | "Index Only Scan" | "Bitmap Index Scan")
            )
        })
        .count();
    assert!(
        index_scans >= scans_expected,
        "expected {scans_expected} index scans in {plan:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_and_exclusion_queries_use_indexes() {
    let (database, positions) = seeded().await;
    let recent = positions[positions.len() - 3];

    let projection_read = Query::builder()
        .instance("instance-2")
        .aggregate_types(["oidc_session", "user"])
        .event_types(["oidc_session.added", "user.added"])
        .position_after(recent)
        .limit(1000)
        .build()
        .expect("query");
    assert_uses_indexes(&plan(&database, &projection_read).await, 1);

    let catch_up_from_zero = Query::builder()
        .instance("instance-2")
        .aggregate_types(["user"])
        .event_types(["user.added"])
        .limit(1000)
        .build()
        .expect("query");
    assert_uses_indexes(&plan(&database, &catch_up_from_zero).await, 1);

    // Seed 002: sessions added, minus those whose token was revoked, newest first.
    let exclusion = Query::builder()
        .instance("instance-2")
        .aggregate_types(["oidc_session"])
        .event_types(["oidc_session.added"])
        .position_after(recent)
        .exclude_aggregates_with(["oidc_session"], ["oidc_session.access_token.revoked"])
        .descending()
        .limit(100)
        .build()
        .expect("query");
    let exclusion_plan = plan(&database, &exclusion).await;
    // Both the outer read and the sub-query are index scans.
    assert_uses_indexes(&exclusion_plan, 2);

    let whole_instance_page = Query::builder()
        .instance("instance-4")
        .resume_after(recent, 10)
        .limit(1000)
        .build()
        .expect("query");
    assert_uses_indexes(&plan(&database, &whole_instance_page).await, 1);
}

/// A query for one instance never returns another's events, whatever else it asks for.
#[tokio::test]
async fn a_tenant_never_sees_another_tenants_events() {
    let database = TestDatabase::create().await;
    let store = database.store();
    for instance in ["tenant-a", "tenant-b"] {
        let commands = (0..10)
            .map(|n| {
                Command::builder(
                    instance,
                    "user",
                    format!("shared-id-{}", n % 3),
                    "user.added",
                )
                .creator("seed")
                .owner("shared-owner")
                .payload(&serde_json::json!({ "same": "payload" }))
                .build()
                .expect("valid command")
            })
            .collect();
        store.push(commands).await.expect("push");
    }
    let queries = [
        Query::builder().instance("tenant-a").build(),
        Query::builder()
            .instance("tenant-a")
            .aggregate_ids(["shared-id-1"])
            .build(),
        Query::builder()
            .instance("tenant-a")
            .owner("shared-owner")
            .payload_contains(serde_json::json!({ "same": "payload" }))
            .descending()
            .build(),
        Query::builder()
            .instance("tenant-a")
            .exclude_aggregates_with(["user"], ["user.removed"])
            .build(),
    ];
    for query in queries {
        let query = query.expect("query");
        let events = store.query(&query).await.expect("read");
        assert!(!events.is_empty());
        assert!(
            events
                .iter()
                .all(|event| event.aggregate.instance_id.as_str() == "tenant-a"),
            "{query:?} leaked another tenant's events"
        );
        let instances = store.instance_ids(&query).await.expect("instances");
        assert_eq!(instances.len(), 1);
    }
}
