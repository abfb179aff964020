//! `strata push` and `strata query` end to end: round trip, bad input, filters, a closed pipe.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use strata_integration_tests::TestDatabase;
use strata_query::Query;
use strata_store::EventStore;
use support::{assert_success, command_line, stderr, stdout, strata, url};

#[tokio::test]
async fn pushed_lines_come_back_from_query_as_json_lines() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let input = [
        command_line("tenant-1", "u-1", "user.added", 1),
        command_line("tenant-1", "u-1", "user.renamed", 2),
        String::new(), // blank lines are skipped
        command_line("tenant-2", "u-9", "user.added", 3),
    ]
    .join("\n");

    let pushed = strata(&url, &["push", "--batch", "2"], Some(&input));
    assert_success(&pushed);
    let stored: Vec<serde_json::Value> = stdout(&pushed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0]["line"], 1);
    assert_eq!(stored[1]["sequence"], 2);
    assert_eq!(stored[2]["line"], 4);
    assert!(
        stored[0]["position"].is_string(),
        "positions are strings: {}",
        stored[0]
    );
    // Lines 1 and 2 were one push: one transaction, one position.
    assert_eq!(stored[0]["position"], stored[1]["position"]);

    let queried = strata(&url, &["query", "--instance", "tenant-1"], None);
    assert_success(&queried);
    let events: Vec<serde_json::Value> = stdout(&queried)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", stdout(&queried));
    assert_eq!(events[0]["event_type"], "user.added");
    assert_eq!(events[1]["event_type"], "user.renamed");
    assert_eq!(events[1]["payload"], serde_json::json!({"n": 2}));
    assert_eq!(events[1]["position"], stored[1]["position"]);

    // A few filters, each checked against what the store itself answers.
    let filtered = strata(
        &url,
        &[
            "query",
            "--all-instances",
            "--payload-contains",
            r#"{"n": 3}"#,
            "--event-type",
            "user.added",
            "--output",
            "json",
        ],
        None,
    );
    assert_success(&filtered);
    assert_eq!(stdout(&filtered).lines().count(), 1);
    assert!(stdout(&filtered).contains("tenant-2"));
    let after = strata(
        &url,
        &[
            "query",
            "--all-instances",
            "--after",
            stored[1]["position"].as_str().unwrap(),
            "--exclude-instance",
            "tenant-3",
        ],
        None,
    );
    assert_success(&after);
    assert_eq!(stdout(&after).lines().count(), 1, "{}", stdout(&after));

    let table = strata(
        &url,
        &[
            "query",
            "--all-instances",
            "--output",
            "table",
            "--descending",
            "--limit",
            "2",
        ],
        None,
    );
    assert_success(&table);
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("POSITION"), "{text}");
    assert_eq!(lines.len(), 3);
    assert!(lines[1].contains("tenant-2"), "newest first: {text}");
}

#[tokio::test]
async fn a_bad_line_names_its_number_exits_1_and_writes_nothing_of_its_batch() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let store = database.store();
    let input = [
        command_line("tenant-1", "u-1", "user.added", 1),
        r#"{"aggregate": {"instance_id": "tenant-1", "aggregate_type": "user", "aggregate_id": ""}, "event_type": "user.added", "creator": "c", "owner": "o"}"#.to_owned(),
        command_line("tenant-1", "u-2", "user.added", 3),
    ]
    .join("\n");

    let output = strata(&url, &["push", "--batch", "10"], Some(&input));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("aggregate id"), "{message}");
    assert!(
        message.contains("nothing from lines 1-2 was pushed"),
        "{message}"
    );
    let all = Query::all();
    assert_eq!(
        store.count(&all).await.unwrap(),
        0,
        "the store is unchanged"
    );

    // Not JSON at all: the same, and --check validates without pushing.
    let output = strata(&url, &["push", "--check"], Some("{not json\n"));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 1"), "{}", stderr(&output));
    let valid = command_line("tenant-1", "u-1", "user.added", 1);
    let output = strata(&url, &["push", "--check"], Some(&valid));
    assert_success(&output);
    assert_eq!(
        store.count(&all).await.unwrap(),
        0,
        "--check pushes nothing"
    );

    // A store refusal (an expected sequence that does not match) names the lines, exit 1.
    let stale = r#"{"aggregate": {"instance_id": "tenant-1", "aggregate_type": "user", "aggregate_id": "u-1"}, "event_type": "user.added", "creator": "c", "owner": "o", "expected_sequence": 5}"#;
    let output = strata(&url, &["push"], Some(stale));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("line 1"), "{}", stderr(&output));
    assert!(stderr(&output).contains("conflict"), "{}", stderr(&output));
    assert_eq!(store.count(&all).await.unwrap(), 0);
}

#[tokio::test]
async fn bad_usage_exits_2() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let zero = strata(&url, &["query", "--all-instances", "--limit", "0"], None);
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(stderr(&zero).contains("limit"), "{}", stderr(&zero));
    let not_object = strata(
        &url,
        &["query", "--all-instances", "--payload-contains", "[1]"],
        None,
    );
    assert_eq!(not_object.status.code(), Some(2));
    let exclusion = strata(
        &url,
        &[
            "query",
            "--all-instances",
            "--exclude-aggregates-with-type",
            "user",
        ],
        None,
    );
    assert_eq!(exclusion.status.code(), Some(2), "{}", stderr(&exclusion));
    let unknown = strata(&url, &["frobnicate"], None);
    assert_eq!(unknown.status.code(), Some(2));
    let unreachable = strata(
        "postgres://postgres@127.0.0.1:1/nowhere",
        &["query", "--all-instances"],
        None,
    );
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).contains("cannot connect to postgres://postgres@127.0.0.1:1/nowhere"),
        "{}",
        stderr(&unreachable)
    );
    // The server's own message, once: each layer of the error repeats its cause's text.
    let missing = url.replace(&database.name, "strata_no_such_database");
    let missing = strata(&missing, &["query", "--all-instances"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing).matches("does not exist").count(),
        1,
        "{}",
        stderr(&missing)
    );
}

/// Events of one push share a position: paging by position alone lost them, paging by the
/// `cursor` of each JSON line reaches every one, in order.
#[tokio::test]
async fn paging_with_the_cursor_reaches_events_that_share_a_position() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let input: Vec<String> = (1..=4)
        .map(|n| command_line("tenant-1", "u-1", "user.changed", n))
        .collect();
    let pushed = strata(&url, &["push", "--batch", "4"], Some(&input.join("\n")));
    assert_success(&pushed);
    let stored: Vec<serde_json::Value> = stdout(&pushed)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(
        stored
            .iter()
            .all(|event| event["position"] == stored[0]["position"]),
        "one push, one position"
    );

    let page = |after: Option<&str>| -> Vec<serde_json::Value> {
        let mut args = vec!["query", "--instance", "tenant-1", "--limit", "2"];
        if let Some(after) = after {
            args.extend(["--after", after]);
        }
        let output = strata(&url, &args, None);
        assert_success(&output);
        stdout(&output)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let events = page(after.as_deref());
        let Some(last) = events.last() else {
            break;
        };
        after = Some(last["cursor"].as_str().unwrap().to_owned());
        seen.extend(
            events
                .iter()
                .map(|event| event["sequence"].as_u64().unwrap()),
        );
    }
    assert_eq!(seen, vec![1, 2, 3, 4]);
    assert_eq!(
        stored[3]["cursor"],
        stored[0]["position"]
            .as_str()
            .map(|p| format!("{p}:3"))
            .unwrap(),
        "push prints each event's cursor too"
    );
    // A bare position still means "after every event of that position".
    let after_position = strata(
        &url,
        &[
            "query",
            "--instance",
            "tenant-1",
            "--after",
            stored[0]["position"].as_str().unwrap(),
        ],
        None,
    );
    assert_success(&after_position);
    assert_eq!(stdout(&after_position).lines().count(), 0);
}

/// `query --follow` polled; `strata subscribe` replaced it, and the flag now says so.
#[tokio::test]
async fn follow_is_refused_with_a_pointer_to_subscribe() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let refused = strata(&url, &["query", "--instance", "tenant-1", "--follow"], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("strata subscribe"),
        "{}",
        stderr(&refused)
    );
}

/// `strata query … | head -n 1`: the reader leaves early, and the query ends with exit code 0
/// and no error rather than "broken pipe".
#[tokio::test]
async fn a_reader_that_closes_the_pipe_ends_a_query_quietly() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    // More than a pipe's buffer holds, so the query is still writing when the reader leaves.
    // Pushed through the library: `strata push` would print as much, and the test helper reads
    // its output only after writing all its input.
    let store = database.store();
    for batch in 0..2 {
        let commands: Vec<strata_event::Command> = (0..1000)
            .map(|n| {
                strata_event::Command::builder("tenant-1", "user", "u-1", "user.changed")
                    .creator("cli-test")
                    .owner("org-1")
                    .payload(
                        &serde_json::json!({ "n": batch * 1000 + n, "padding": "x".repeat(100) }),
                    )
                    .build()
                    .unwrap()
            })
            .collect();
        store.push(commands).await.unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["query", "--instance", "tenant-1", "--output", "json"])
        .env("DATABASE_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"sequence\":1"), "{first}");
    drop(reader);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

/// `--idempotency-key`: the same input pushed twice with the same key and `--batch` is stored
/// once, and the second run prints the events the first stored. Metadata in the JSON lines is
/// stored, and `query --correlation-id` selects by it.
#[tokio::test]
async fn keyed_pushes_are_stored_once_and_metadata_is_queryable() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let with_correlation = |line: String, id: &str| {
        let mut command: serde_json::Value = serde_json::from_str(&line).unwrap();
        command["metadata"] = serde_json::json!({ "correlation_id": id, "headers": {"h": "v"} });
        command.to_string()
    };
    let input = [
        with_correlation(command_line("tenant-1", "u-1", "user.added", 1), "req-1"),
        command_line("tenant-1", "u-1", "user.renamed", 2),
        with_correlation(command_line("tenant-1", "u-2", "user.added", 3), "req-1"),
    ]
    .join("\n");
    let args = ["push", "--batch", "2", "--idempotency-key", "import-7"];
    let first = strata(&url, &args, Some(&input));
    assert_success(&first);
    let again = strata(&url, &args, Some(&input));
    assert_success(&again);
    assert_eq!(
        stdout(&again),
        stdout(&first),
        "the retry prints the stored events"
    );
    assert_eq!(stdout(&first).lines().count(), 3);
    let store = database.store();
    let all = Query::builder().instance("tenant-1").build().unwrap();
    assert_eq!(store.count(&all).await.unwrap(), 3, "stored once");

    // The key with other input is refused, and nothing of it is stored.
    let other = command_line("tenant-1", "u-3", "user.added", 4);
    let reused = strata(&url, &args, Some(&other));
    assert!(!reused.status.success());
    assert!(
        stderr(&reused).contains("idempotency key"),
        "{}",
        stderr(&reused)
    );
    assert_eq!(store.count(&all).await.unwrap(), 3);

    let queried = strata(
        &url,
        &[
            "query",
            "--instance",
            "tenant-1",
            "--correlation-id",
            "req-1",
        ],
        None,
    );
    assert_success(&queried);
    let events: Vec<serde_json::Value> = stdout(&queried)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{}", stdout(&queried));
    assert_eq!(events[0]["metadata"]["correlation_id"], "req-1");
    assert_eq!(events[1]["metadata"]["headers"]["h"], "v");
}
