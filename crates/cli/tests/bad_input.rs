//! Bad input at the command line, table-driven: every bad push line is named by number, exits 1
//! and writes nothing; every bad flag exits 2 with a message naming it; nothing panics.

mod support;

use strata_integration_tests::TestDatabase;
use strata_query::Query;
use strata_store::EventStore;
use support::{command_line, stderr, strata, strata_bytes, url};

/// A command line with `aggregate_id` and `event_type` substituted as raw JSON fragments.
fn line_with(instance: &str, aggregate_id: &str, event_type: &str, payload: &str) -> String {
    format!(
        r#"{{"aggregate": {{"instance_id": {instance}, "aggregate_type": "user", "aggregate_id": {aggregate_id}}}, "event_type": {event_type}, "payload": {payload}, "creator": "c", "owner": "o"}}"#
    )
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn every_bad_push_line_exits_1_names_its_line_and_writes_nothing() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let store = database.store();
    let good = command_line("tenant-1", "u-1", "user.added", 1);
    let oversized = format!("{{\"blob\": \"{}\"}}", "x".repeat((1 << 20) + 1));
    let table: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{not json".into(), "line 2"),
        ("an array", "[1, 2]".into(), "line 2"),
        (
            "empty instance",
            line_with(r#""""#, r#""u""#, r#""user.added""#, "{}"),
            "instance",
        ),
        (
            "empty aggregate id",
            line_with(r#""t""#, r#""""#, r#""user.added""#, "{}"),
            "aggregate id",
        ),
        (
            "control character in id",
            line_with(r#""t""#, r#""u\u0007""#, r#""user.added""#, "{}"),
            "aggregate id",
        ),
        (
            "oversized id",
            line_with(
                r#""t""#,
                &format!("\"{}\"", "u".repeat(300)),
                r#""user.added""#,
                "{}",
            ),
            "aggregate id",
        ),
        (
            "event type with spaces",
            line_with(r#""t""#, r#""u""#, r#""user added""#, "{}"),
            "event type",
        ),
        (
            "event type with SQL",
            line_with(
                r#""t""#,
                r#""u""#,
                r#""x'; DROP TABLE eventstore.events; --""#,
                "{}",
            ),
            "event type",
        ),
        (
            "payload too deep",
            line_with(r#""t""#, r#""u""#, r#""user.added""#, &nested(100)),
            "deep",
        ),
        (
            "payload too large",
            line_with(r#""t""#, r#""u""#, r#""user.added""#, &oversized),
            "bytes",
        ),
        (
            "id of the wrong type",
            line_with("42", r#""u""#, r#""user.added""#, "{}"),
            "line 2",
        ),
    ];
    for (what, bad_line, expected) in &table {
        let input = format!("{good}\n{bad_line}\n{good}\n");
        let output = strata(&url, &["push", "--batch", "3"], Some(&input));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {message}");
        assert!(message.contains("line 2"), "{what}: {message}");
        assert!(
            message.to_lowercase().contains(&expected.to_lowercase()),
            "{what}: expected {expected:?} in {message}"
        );
        assert!(!message.contains("panicked"), "{what}: {message}");
    }
    // Not UTF-8 at all.
    let mut input = format!("{good}\n").into_bytes();
    input.extend_from_slice(b"{\"aggregate\": \"\xff\xfe\"}\n");
    let output = strata_bytes(&url, &["push", "--batch", "2"], &input, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("line 2"), "{}", stderr(&output));

    let all = Query::all();
    assert_eq!(
        store.count(&all).await.expect("count"),
        0,
        "no bad batch wrote anything"
    );
}

#[tokio::test]
async fn every_bad_query_flag_exits_2_and_names_the_flag() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let table: &[(&[&str], &str)] = &[
        (&["query", "--all-instances", "--limit", "0"], "limit"),
        (&["query", "--all-instances", "--limit", "-1"], "limit"),
        (
            &[
                "query",
                "--all-instances",
                "--limit",
                "99999999999999999999",
            ],
            "limit",
        ),
        (&["query", "--all-instances", "--offset", "-5"], "offset"),
        (&["query", "--all-instances", "--after", "NaN"], "after"),
        (&["query", "--all-instances", "--after", "-1"], "after"),
        (&["query", "--all-instances", "--after", "1e400"], "after"),
        (
            &[
                "query",
                "--all-instances",
                "--at-or-before",
                "99999999999999999999999999999999",
            ],
            "at-or-before",
        ),
        (&["query", "--instance", ""], "instance"),
        (
            &["query", "--all-instances", "--aggregate-type", "has space"],
            "aggregate",
        ),
        (
            &[
                "query",
                "--all-instances",
                "--event-type",
                "x'; DROP TABLE eventstore.events; --",
            ],
            "event",
        ),
        (
            &["query", "--all-instances", "--created-after", "yesterday"],
            "created-after",
        ),
        (
            &["query", "--all-instances", "--sequence-greater-than", "-3"],
            "sequence",
        ),
        (
            &[
                "query",
                "--all-instances",
                "--payload-contains",
                "{not json",
            ],
            "payload",
        ),
        (
            &["query", "--all-instances", "--payload-contains", "[1]"],
            "payload",
        ),
        (
            &[
                "query",
                "--all-instances",
                "--exclude-aggregates-with-type",
                "user",
            ],
            "exclude",
        ),
        (&["query", "--all-instances", "--output", "xml"], "output"),
        (&["query", "--event-type", "user.added"], "--instance"),
        (
            &["query", "--all-instances", "--instance", "t1"],
            "instance",
        ),
        (&["query", "--all-instances", "--after", "12:x"], "after"),
        (&["query", "--all-instances", "--after", "12:-1"], "after"),
        (
            &["query", "--all-instances", "--created-after", "2026-01-31"],
            "rfc 3339",
        ),
        (
            &["projections", "rebuild", "Bad Name", "--yes"],
            "projection",
        ),
        (&["cache", "truncate", "Bad-Name", "--yes"], "cache"),
    ];
    for (args, expected) in table {
        let output = strata(&url, args, None);
        let message = stderr(&output);
        assert!(
            matches!(output.status.code(), Some(1) | Some(2)),
            "{args:?}: {:?} {message}",
            output.status.code()
        );
        assert!(!message.contains("panicked"), "{args:?}: {message}");
        assert!(
            message.to_lowercase().contains(expected),
            "{args:?}: expected {expected:?} in {message}"
        );
    }
}
