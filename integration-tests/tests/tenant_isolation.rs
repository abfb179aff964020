//! A query for one instance never returns another's events, whatever else it asks for.

use strata_event::Command;
use strata_integration_tests::TestDatabase;
use strata_query::Query;
use strata_store::EventStore;

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
