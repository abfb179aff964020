//! `strata archive plan|run|verify|restore`, `strata query --include-archive` and `strata delete`
//! through the real binary: JSON reports, confirmations, a byte-identical round trip, typed
//! refusals with exit codes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_event::Command;
use strata_integration_tests::TestDatabase;
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata};

async fn setup() -> (TestDatabase, String) {
    let database = TestDatabase::create().await;
    let store = database.store();
    for (id, event_type) in [
        ("u-1", "user.added"),
        ("u-1", "user.removed"),
        ("u-2", "user.added"),
    ] {
        let command = Command::builder("tenant-a", "user", id, event_type)
            .creator("test")
            .owner("org-1")
            .payload(&serde_json::json!({ "name": id }))
            .build()
            .unwrap();
        store.push(vec![command]).await.unwrap();
    }
    let url = support::url(&database);
    (database, url)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("{err}: {text}"))
}

async fn dump(database: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT e::text FROM eventstore.events e ORDER BY instance_id, aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(&database.pool(1))
    .await
    .unwrap()
}

#[tokio::test]
async fn archive_plan_run_verify_restore_round_trip() {
    let (database, url) = setup().await;
    let before = dump(&database).await;
    let selection = [
        "--instance",
        "tenant-a",
        "--aggregate-type",
        "user",
        "--closed-by",
        "user.removed",
        "--before",
        "2999-01-01T00:00:00Z",
    ];
    let plan = strata(
        &url,
        &[&["archive", "plan"][..], &selection, &["--output", "json"]].concat(),
        None,
    );
    assert_success(&plan);
    let plan = json(&stdout(&plan));
    assert_eq!(
        (plan["aggregates"].as_u64(), plan["events"].as_u64()),
        (Some(1), Some(2))
    );

    // No terminal, no --yes: refused as bad usage, nothing moved.
    let unconfirmed = strata(
        &url,
        &[&["archive", "run"][..], &selection, &["--actor", "ops"]].concat(),
        None,
    );
    assert_eq!(
        unconfirmed.status.code(),
        Some(2),
        "{}",
        stderr(&unconfirmed)
    );
    assert_eq!(dump(&database).await, before);

    let run = strata(
        &url,
        &[
            &["archive", "run"][..],
            &selection,
            &[
                "--actor", "ops", "--yes", "--batch", "1", "--output", "json",
            ],
        ]
        .concat(),
        None,
    );
    assert_success(&run);
    let run = json(&stdout(&run));
    assert_eq!(
        (run["aggregates"].as_u64(), run["events"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(dump(&database).await.len(), 1);

    let hot = strata(
        &url,
        &["query", "--instance", "tenant-a", "--output", "json"],
        None,
    );
    assert_eq!(stdout(&hot).lines().count(), 1);
    let through = strata(
        &url,
        &[
            "query",
            "--instance",
            "tenant-a",
            "--include-archive",
            "--output",
            "json",
        ],
        None,
    );
    assert_success(&through);
    assert_eq!(stdout(&through).lines().count(), 3);

    let verify = strata(&url, &["archive", "verify", "--output", "json"], None);
    assert_success(&verify);
    let verify = json(&stdout(&verify));
    assert_eq!(verify["consistent"], true);
    assert_eq!(verify["archived_events"], 2);

    let restore = strata(
        &url,
        &[
            "archive",
            "restore",
            "--instance",
            "tenant-a",
            "--actor",
            "ops",
            "--yes",
            "--output",
            "json",
        ],
        None,
    );
    assert_success(&restore);
    assert_eq!(dump(&database).await, before);
}

#[tokio::test]
async fn delete_refuses_bad_input_and_unknown_targets_and_removes_with_a_report() {
    let (database, url) = setup().await;
    let before = dump(&database).await;
    let base = [
        "delete",
        "aggregate",
        "--instance",
        "tenant-a",
        "--type",
        "user",
    ];
    let empty_id = strata(
        &url,
        &[
            &base[..],
            &["--id", "", "--actor", "dpo", "--reason", "x", "--yes"],
        ]
        .concat(),
        None,
    );
    assert_eq!(empty_id.status.code(), Some(2), "{}", stderr(&empty_id));
    let unknown = strata(
        &url,
        &[
            &base[..],
            &["--id", "nobody", "--actor", "dpo", "--reason", "x", "--yes"],
        ]
        .concat(),
        None,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("nothing to remove"),
        "{}",
        stderr(&unknown)
    );
    assert_eq!(dump(&database).await, before);

    let removed = strata(
        &url,
        &[
            &base[..],
            &[
                "--id", "u-1", "--actor", "dpo", "--reason", "order 7", "--yes", "--output", "json",
            ],
        ]
        .concat(),
        None,
    );
    assert_success(&removed);
    let removed = json(&stdout(&removed));
    assert_eq!(removed["hot_events"], 2);
    assert_eq!(dump(&database).await.len(), 1);
}
