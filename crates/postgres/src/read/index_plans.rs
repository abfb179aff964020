//! The queries projections issue, and the aggregate exclusion, are answered from indexes: with
//! 100 000 events over several instances, `EXPLAIN` of the rendered SQL shows index scans and no
//! sequential scan of the events table. Runs against the PostgreSQL the integration tests use.

use serde_json::Value;
use strata_event::{Command, Position};
use strata_integration_tests::TestDatabase;
use strata_query::Query;
use strata_store::EventStore;

use super::{RenderedQuery, render_instance_heads, render_instance_ids, render_query};

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
                // Every tenth event carries a correlation id shared by ten of them (one request).
                .metadata(if i.is_multiple_of(10) {
                    strata_event::Metadata {
                        correlation_id: Some(format!("request-{}", i / 100)),
                        ..strata_event::Metadata::default()
                    }
                } else {
                    strata_event::Metadata::default()
                })
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
    explain(database, render_query(query), "", false).await
}

/// `EXPLAIN` (with `ANALYZE`: run it, and report what each node read) of `rendered` after `setup`
/// (run first in the same transaction).
async fn explain(
    database: &TestDatabase,
    rendered: RenderedQuery,
    setup: &str,
    analyze: bool,
) -> Value {
    let pool = database.pool(1);
    let mut tx = pool.begin().await.expect("begin");
    if !setup.is_empty() {
        sqlx::query(setup).execute(&mut *tx).await.expect("setup");
    }
    let options = if analyze { "ANALYZE, " } else { "" };
    let explained = RenderedQuery {
        sql: format!("EXPLAIN ({options}FORMAT JSON) {}", rendered.sql),
        binds: rendered.binds,
    };
    let (plan,): (Value,) = explained
        .to_query_as()
        .fetch_one(&mut *tx)
        .await
        .expect("explain");
    tx.rollback().await.expect("rollback");
    plan
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

/// How many rows the scans of the events table read, over all their loops (from `EXPLAIN ANALYZE`),
/// counting those their filters then dropped.
fn rows_read(plan: &Value) -> f64 {
    nodes(plan)
        .iter()
        .filter(|node| node["Relation Name"] == "events")
        .map(|node| {
            node["Actual Loops"].as_f64().unwrap_or(1.0)
                * (node["Actual Rows"].as_f64().unwrap_or(0.0)
                    + node["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
                    + node["Rows Removed by Index Recheck"]
                        .as_f64()
                        .unwrap_or(0.0))
        })
        .sum()
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
    // Both the outer read and the sub-query are index scans, the sub-query a probe of
    // `events_exclusion` per candidate row (its cost then does not grow with the history).
    assert_uses_indexes(&exclusion_plan, 2);
    assert!(
        nodes(&exclusion_plan)
            .iter()
            .any(|node| node["Index Name"] == "events_exclusion"
                && node["Index Cond"]
                    .as_str()
                    .is_some_and(|cond| cond.contains("aggregate_id = events.aggregate_id"))),
        "no per-candidate probe of events_exclusion in {exclusion_plan:#}"
    );

    let whole_instance_page = Query::builder()
        .instance("instance-4")
        .resume_after((recent, 10))
        .limit(1000)
        .build()
        .expect("query");
    assert_uses_indexes(&plan(&database, &whole_instance_page).await, 1);

    // A request's events, by correlation id: the partial index `events_correlation`.
    let by_correlation = Query::builder()
        .instance("instance-0")
        .correlation_id("request-42")
        .build()
        .expect("query");
    let correlation_plan = plan(&database, &by_correlation).await;
    assert_uses_indexes(&correlation_plan, 1);
    assert!(
        correlation_plan.to_string().contains("events_correlation"),
        "{correlation_plan:#}"
    );
}

/// The projection runtime's tick lists the instances with events a projection reads. That walks
/// the instances one index probe each instead of reading every matching event, and finds exactly
/// the instances a `DISTINCT` over the events would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_instances_probes_indexes_and_finds_exactly_the_matching_ones() {
    let (database, _) = seeded().await;
    let store = database.store();
    // One more instance, with only one kind of event: most filters must leave it out.
    store
        .push(vec![
            Command::builder("instance-z", "org", "org-1", "org.added")
                .creator("seed")
                .owner("org")
                .build()
                .expect("valid command"),
        ])
        .await
        .expect("push");
    let queries = [
        Query::builder().all_instances().build(),
        Query::builder()
            .all_instances()
            .aggregate_types(["oidc_session", "user"])
            .event_types(["oidc_session.added", "user.added"])
            .build(),
        Query::builder()
            .all_instances()
            .aggregate_types(["org"])
            .build(),
        Query::builder()
            .all_instances()
            .aggregate_types(["nothing"])
            .build(),
        Query::builder().instance("instance-3").build(),
        Query::builder()
            .all_instances()
            .exclude_instances(["instance-0", "instance-z"])
            .aggregate_types(["user"])
            .build(),
        Query::builder()
            .all_instances()
            .aggregate_types(["user"])
            .aggregate_ids(["agg-3"])
            .build(),
    ];
    for query in queries {
        let query = query.expect("query");
        let listed: Vec<String> = store
            .instance_ids(&query)
            .await
            .expect("instance ids")
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect();
        let mut expected: Vec<String> = store
            .query(&query)
            .await
            .expect("query")
            .iter()
            .map(|event| event.aggregate.instance_id.as_str().to_owned())
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(listed, expected, "{query:?}");
        // Run as the store runs it: no sequential scan of the events, and a few index entries
        // per instance read, not the 100 000 events.
        let plan = explain(
            &database,
            render_instance_ids(&query),
            "SET LOCAL enable_seqscan = off",
            true,
        )
        .await;
        assert_uses_indexes(&plan, 2);
        let read = rows_read(&plan);
        assert!(read < 200.0, "{read} rows read for {query:?}: {plan:#}");
    }
    // The ticks' question, every instance with its latest position, is answered the same way.
    let heads = RenderedQuery {
        sql: render_instance_heads(),
        binds: Vec::new(),
    };
    let plan = explain(&database, heads, "SET LOCAL enable_seqscan = off", true).await;
    assert_uses_indexes(&plan, 2);
    let read = rows_read(&plan);
    assert!(
        read < 200.0,
        "{read} rows read for the instance heads: {plan:#}"
    );
    let heads = store.instance_heads().await.expect("heads");
    assert_eq!(heads.len(), 6, "five seeded instances and instance-z");
}
