//! `strata projections`: status from the registry, failed events, and the request rows that
//! rebuild, retry and skip queue for running runtimes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_event::{Command, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::PgProjections;
use strata_postgres::admin::pending_projection_requests;
use strata_projection::{
    FailurePolicy, OnFailure, ProjectionBackend, Reads, ReducedEvent, Registration,
    RuntimeHeartbeat,
};
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata};

/// A database with events in two instances, a registered `users` projection, and one failed event
/// (tenant-a, user/u-1, sequence 2).
async fn setup() -> (TestDatabase, String) {
    let database = TestDatabase::create().await;
    let store = database.store();
    let mut events = Vec::new();
    for (instance, id) in [
        ("tenant-a", "u-1"),
        ("tenant-a", "u-1"),
        ("tenant-b", "u-2"),
    ] {
        let command = Command::builder(instance, "user", id, "user.added")
            .creator("test")
            .owner("org-1")
            .build()
            .unwrap();
        events.extend(store.push(vec![command]).await.unwrap());
    }
    let backend = PgProjections::new(database.pool(2));
    backend
        .register(&Registration {
            name: "users",
            reads: &Reads::new().events("user", ["user.added"]),
            has_side_effects: false,
            consumer: None,
            stall_after: std::time::Duration::from_secs(60),
        })
        .await
        .unwrap();
    // What a runtime does with an event that keeps failing: with a limit of one attempt it is
    // recorded as failed and the checkpoint moves past it.
    let instance = InstanceId::new("tenant-a").unwrap();
    let lease = backend
        .try_lease("users", &instance)
        .await
        .unwrap()
        .unwrap();
    let batch = vec![
        ReducedEvent {
            event: events[0].clone().into(),
            statements: Ok(Vec::new()),
        },
        ReducedEvent {
            event: events[1].clone().into(),
            statements: Err("boom: no such column".into()),
        },
    ];
    let policy = FailurePolicy {
        max_failure_count: 1,
        on_failure: OnFailure::Skip,
    };
    backend.apply(lease, batch, policy).await.unwrap();
    let url = support::url(&database);
    (database, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_failed_list_report_what_the_runtime_recorded() {
    let (_database, url) = setup().await;
    let status = strata(&url, &["projections", "status", "--output", "json"], None);
    assert_success(&status);
    let lines: Vec<serde_json::Value> = stdout(&status)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&status));
    assert_eq!(lines[0]["instance_id"], "tenant-a");
    assert_eq!(lines[0]["events_behind"], 0);
    assert_eq!(lines[0]["failed_events"], 1);
    assert!(lines[0]["position"].is_string());
    assert_eq!(lines[1]["instance_id"], "tenant-b");
    assert_eq!(lines[1]["events_behind"], 1);
    assert!(lines[1]["position"].is_null());

    let table = strata(&url, &["projections", "status", "--output", "table"], None);
    assert_success(&table);
    assert!(
        stdout(&table).starts_with("PROJECTION"),
        "{}",
        stdout(&table)
    );

    let failed = strata(
        &url,
        &["projections", "failed", "list", "--output", "json"],
        None,
    );
    assert_success(&failed);
    let failed: serde_json::Value = serde_json::from_str(stdout(&failed).trim()).unwrap();
    assert_eq!(failed["aggregate_id"], "u-1");
    assert_eq!(failed["sequence"], 2);
    assert_eq!(failed["error"], "boom: no such column");
    assert_eq!(failed["parked"], false, "skipped, not parked");
    let table = strata(
        &url,
        &["projections", "failed", "list", "--output", "table"],
        None,
    );
    assert_success(&table);
    let table = stdout(&table);
    assert!(table.contains("STATE"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_retry_and_skip_queue_request_rows() {
    let (database, url) = setup().await;
    let store = database.store();
    let failed_event = [
        "--projection",
        "users",
        "--instance",
        "tenant-a",
        "--aggregate-type",
        "user",
        "--aggregate-id",
        "u-1",
        "--sequence",
        "2",
    ];

    // Without --yes and without a terminal to ask on: refused, exit 2, nothing queued.
    let mut args = vec!["projections", "failed", "retry"];
    args.extend(failed_event);
    let refused = strata(&url, &args, None);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(
        pending_projection_requests(&store)
            .await
            .unwrap()
            .is_empty()
    );

    args.push("--yes");
    let retried = strata(&url, &args, None);
    assert_success(&retried);
    assert!(
        stdout(&retried).contains("no live runtime runs \"users\""),
        "{}",
        stdout(&retried)
    );
    let mut args = vec!["projections", "failed", "skip", "--yes"];
    args.extend(failed_event);
    assert_success(&strata(&url, &args, None));

    // An event that did not fail is not queued.
    let mut args = vec!["projections", "failed", "skip", "--yes"];
    args.extend(failed_event);
    args.pop();
    args.push("7");
    let unknown = strata(&url, &args, None);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("failed list"),
        "{}",
        stderr(&unknown)
    );

    // Rebuild without --instance: every instance the projection has events or a checkpoint in.
    let rebuilt = strata(&url, &["projections", "rebuild", "users", "--yes"], None);
    assert_success(&rebuilt);
    let one = strata(
        &url,
        &[
            "projections",
            "rebuild",
            "users",
            "--instance",
            "tenant-b",
            "--yes",
        ],
        None,
    );
    assert_success(&one);
    let missing = strata(&url, &["projections", "rebuild", "nope", "--yes"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("registered: users"),
        "{}",
        stderr(&missing)
    );

    let requests: Vec<(String, String, Option<i64>)> = pending_projection_requests(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.instance_id, r.sequence))
        .collect();
    let expected = [
        ("retry", "tenant-a", Some(2)),
        ("skip", "tenant-a", Some(2)),
        ("rebuild", "tenant-a", None),
        ("rebuild", "tenant-b", None),
        ("rebuild", "tenant-b", None),
    ]
    .map(|(kind, instance, sequence)| (kind.to_owned(), instance.to_owned(), sequence));
    assert_eq!(requests, expected);

    let listed = strata(&url, &["projections", "requests", "--output", "json"], None);
    assert_success(&listed);
    assert_eq!(stdout(&listed).lines().count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_filters_shows_live_runtimes_and_unregister_forgets() {
    let (database, url) = setup().await;
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let output = strata(&url, args, None);
        assert_success(&output);
        stdout(&output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let one = json(&[
        "projections",
        "status",
        "--projection",
        "users",
        "--instance",
        "tenant-b",
        "--output",
        "json",
    ]);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["instance_id"], "tenant-b");
    assert_eq!(one[0]["runtimes_alive"], 0);
    let unknown = strata(
        &url,
        &["projections", "status", "--projection", "nope"],
        None,
    );
    assert_eq!(unknown.status.code(), Some(1));
    let table = strata(&url, &["projections", "status", "--output", "table"], None);
    assert!(
        stdout(&table).contains("no runtime is alive"),
        "{}",
        stdout(&table)
    );

    // A runtime's heartbeat: it runs `users`.
    let backend = PgProjections::new(database.pool(1));
    backend
        .heartbeat(&RuntimeHeartbeat {
            runtime_id: "host-1/42/0/0".into(),
            host: "host-1".into(),
            pid: 42,
            projections: vec!["users".into()],
            started_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let lines = json(&["projections", "status", "--output", "json"]);
    assert!(
        lines.iter().all(|line| line["runtimes_alive"] == 1),
        "{lines:?}"
    );
    let table = strata(&url, &["projections", "status", "--output", "table"], None);
    assert!(
        stdout(&table).contains("runtime alive: host-1 pid 42"),
        "{}",
        stdout(&table)
    );

    // Unregistering is refused while a live runtime runs the projection, unless forced.
    let refused = strata(&url, &["projections", "unregister", "users", "--yes"], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let forgotten = json(&[
        "projections",
        "unregister",
        "users",
        "--yes",
        "--force",
        "--output",
        "json",
    ]);
    assert_eq!(forgotten[0]["registered"], true);
    assert_eq!(forgotten[0]["checkpoints"], 1);
    assert_eq!(forgotten[0]["failed_events"], 1);
    assert!(json(&["projections", "status", "--output", "json"]).is_empty());
    assert!(
        json(&["projections", "failed", "list", "--output", "json"]).is_empty(),
        "its failed events are gone"
    );
}
