//! `strata subscribe` end to end: stored and live events as the JSON lines `query` prints,
//! resuming after a cursor, starting from now, ending (--stop-after, --at-or-before, a closed
//! pipe), and the query flags a stream refuses.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use strata_integration_tests::TestDatabase;
use support::{assert_success, command_line, stderr, stdout, strata, url};

/// How long a live event may take to appear, generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// `strata subscribe args…` running, with its stdout lines arriving on the receiver.
fn spawn_subscribe(url: &str, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("subscribe")
        .args(args)
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

fn next_line(lines: &Receiver<String>) -> serde_json::Value {
    let line = lines
        .recv_timeout(PATIENCE)
        .expect("subscribe prints the next event within seconds");
    serde_json::from_str(&line).unwrap()
}

/// Waits for the process to exit on its own and returns its exit code and stderr.
fn wait_for_exit(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("subscribe did not exit on its own");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn push(url: &str, aggregate_id: &str, numbers: std::ops::RangeInclusive<u32>) {
    let lines: Vec<String> = numbers
        .map(|n| command_line("tenant-1", aggregate_id, "user.changed", n))
        .collect();
    assert_success(&strata(url, &["push"], Some(&lines.join("\n"))));
}

#[tokio::test]
async fn stored_and_live_events_arrive_as_the_json_lines_query_prints() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    push(&url, "u-1", 1..=2);
    // Another instance's events are filtered out.
    assert_success(&strata(
        &url,
        &["push"],
        Some(&command_line("tenant-2", "u-9", "user.added", 1)),
    ));

    let (child, lines) = spawn_subscribe(&url, &["--instance", "tenant-1", "--stop-after", "5"]);
    let stored: Vec<serde_json::Value> = (0..2).map(|_| next_line(&lines)).collect();
    // Pushed while it runs: delivered live, in order.
    push(&url, "u-1", 3..=5);
    let live: Vec<serde_json::Value> = (0..3).map(|_| next_line(&lines)).collect();
    let (code, err) = wait_for_exit(child);
    assert_eq!(
        code,
        Some(0),
        "--stop-after 5 exits 0 after five events: {err}"
    );

    let sequences: Vec<u64> = stored
        .iter()
        .chain(&live)
        .map(|event| event["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    // Exactly the lines `query --output json` prints, cursor included.
    let queried = strata(
        &url,
        &["query", "--instance", "tenant-1", "--output", "json"],
        None,
    );
    assert_success(&queried);
    let queried: Vec<serde_json::Value> = stdout(&queried)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let streamed: Vec<serde_json::Value> = stored.into_iter().chain(live).collect();
    assert_eq!(streamed, queried);
    assert!(streamed[0]["cursor"].is_string());
}

#[tokio::test]
async fn after_resumes_from_now_passes_over_the_stored_and_a_bound_ends_the_stream() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    push(&url, "u-1", 1..=3);
    let queried = strata(
        &url,
        &["query", "--instance", "tenant-1", "--output", "json"],
        None,
    );
    let events: Vec<serde_json::Value> = stdout(&queried)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let first_cursor = events[0]["cursor"].as_str().unwrap();

    // --after a cursor resumes right after that event (the next ones share its position).
    let resumed = strata(
        &url,
        &[
            "subscribe",
            "--instance",
            "tenant-1",
            "--after",
            first_cursor,
            "--stop-after",
            "2",
        ],
        None,
    );
    assert_success(&resumed);
    let sequences: Vec<u64> = stdout(&resumed)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sequences, [2, 3]);

    // --at-or-before: the stream ends by itself once it passed the bound.
    let position = events[2]["position"].as_str().unwrap();
    let bounded = strata(
        &url,
        &[
            "subscribe",
            "--instance",
            "tenant-1",
            "--at-or-before",
            position,
        ],
        None,
    );
    assert_success(&bounded);
    assert_eq!(stdout(&bounded).lines().count(), 3, "{}", stdout(&bounded));

    // --from-now: nothing stored is printed. When the subscription fixes its start is not
    // visible from outside, so events are pushed until one arrives; it must be a new one.
    let (child, lines) = spawn_subscribe(
        &url,
        &["--instance", "tenant-1", "--from-now", "--stop-after", "1"],
    );
    let deadline = Instant::now() + PATIENCE;
    let mut next = 4;
    let first = loop {
        assert!(Instant::now() < deadline, "--from-now printed nothing");
        push(&url, "u-1", next..=next);
        next += 1;
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            break serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
    };
    assert!(
        first["sequence"].as_u64().unwrap() >= 4,
        "a stored event was printed: {first}"
    );
    let (code, err) = wait_for_exit(child);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_ends_it_quietly() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    push(&url, "u-1", 1..=1);
    let (mut child, lines) = spawn_subscribe(&url, &["--instance", "tenant-1"]);
    next_line(&lines);
    // The reader goes (`| head -n 1`); the next event's line cannot be written.
    drop(lines);
    let deadline = Instant::now() + PATIENCE;
    let mut next = 2;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "subscribe kept running");
        push(&url, "u-1", next..=next);
        next += 1;
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "no error for a closed pipe: {err}");
}

#[tokio::test]
async fn flags_a_stream_cannot_honour_are_refused_with_a_reason() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    for (flags, reason) in [
        (&["--limit", "5"][..], "--stop-after"),
        (&["--offset", "5"][..], "--offset"),
        (&["--descending"][..], "oldest first"),
        (&["--include-archive"][..], "--include-archive"),
        (
            &["--exclude-aggregates-with-event", "user.removed"][..],
            "exclusion",
        ),
        (&["--from-now", "--after", "1:0"][..], "--after"),
        (&["--stop-after", "0"][..], "--stop-after"),
    ] {
        let mut args = vec!["subscribe", "--instance", "tenant-1"];
        args.extend(flags);
        let refused = strata(&url, &args, None);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{flags:?}: {}",
            stderr(&refused)
        );
        assert!(
            stderr(&refused).contains(reason),
            "{flags:?}: {}",
            stderr(&refused)
        );
        assert!(stdout(&refused).is_empty());
    }
    let no_instance = strata(&url, &["subscribe"], None);
    assert_eq!(no_instance.status.code(), Some(2));
    assert!(stderr(&no_instance).contains("--all-instances"));
}
