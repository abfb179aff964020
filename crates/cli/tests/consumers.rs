//! `strata consumers` against a real runtime: a consumer whose handler fails for one aggregate
//! parks it; status and parked report it; retry and skip queue requests that a running runtime
//! carries out, handing the held events over in order; unregister forgets every part.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use strata_event::{Command, Event};
use strata_integration_tests::{TestDatabase, test_config};
use strata_postgres::admin::pending_projection_requests;
use strata_postgres::{PgConfig, PgProjections, PgStore, PoolConfig};
use strata_projection::{
    Consumer, ConsumerConfig, HandleError, ProjectionRuntime, Reads, RuntimeConfig,
};
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata};

/// How long the runtime may take to reach a state, generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the handler was given: (aggregate id, sequence), in order.
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

/// Sends "e-mails" for users; fails for aggregate `u-bad` while `failing` is set.
struct Mailer {
    seen: Seen,
    failing: Arc<AtomicBool>,
    partitions: u16,
}

impl Consumer for Mailer {
    fn name(&self) -> &str {
        "mailer"
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            let id = event.aggregate.aggregate_id.to_string();
            if id == "u-bad" && self.failing.load(Ordering::SeqCst) {
                return Err(HandleError::new("smtp: connection refused"));
            }
            self.seen.lock().unwrap().push((id, event.sequence));
            Ok(())
        })
    }

    fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            max_failure_count: 1,
            retry_failed_after: Duration::from_millis(50),
            partitions: self.partitions,
            ..ConsumerConfig::default()
        }
    }
}

/// A test database, a store on it with room for a runtime, and its URL for the CLI.
async fn setup() -> (TestDatabase, PgStore, String) {
    let database = TestDatabase::create().await;
    let store = database.store_with(PgConfig {
        projection_pool: PoolConfig::with_max(4),
        ..test_config()
    });
    let url = support::url(&database);
    (database, store, url)
}

async fn push(store: &PgStore, instance: &str, aggregate_id: &str, count: u32) {
    let commands: Vec<Command> = (0..count)
        .map(|n| {
            Command::builder(instance, "user", aggregate_id, "user.changed")
                .creator("test")
                .owner("org-1")
                .payload(&serde_json::json!({ "n": n }))
                .build()
                .unwrap()
        })
        .collect();
    store.push(commands).await.unwrap();
}

async fn start(store: &PgStore, mailer: Mailer) -> ProjectionRuntime<PgStore, PgProjections> {
    ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .config(RuntimeConfig {
        max_parallel_batches: 2,
        ..RuntimeConfig::default()
    })
    .consumer(mailer)
    .unwrap()
    .start()
    .await
    .unwrap()
}

/// The JSON lines of `strata args…`, which must succeed. Run off the async workers, so the
/// runtime in this process keeps working meanwhile.
async fn json(url: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let output = cli(url, args).await;
    assert_success(&output);
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn cli(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        strata(&url, &args, None)
    })
    .await
    .unwrap()
}

/// Polls `strata args…` until `done` holds for its JSON lines, and returns them.
async fn wait_for(
    url: &str,
    args: &[&str],
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = json(url, args).await;
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "`strata {}` never got there: {lines:?}",
            args.join(" ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sequences of `aggregate_id` the handler saw, in order.
fn seen_of(seen: &Seen, aggregate_id: &str) -> Vec<u64> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| id == aggregate_id)
        .map(|(_, sequence)| *sequence)
        .collect()
}

const U_BAD: [&str; 6] = [
    "--instance",
    "tenant-a",
    "--aggregate-type",
    "user",
    "--aggregate-id",
    "u-bad",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_aggregate_is_reported_and_a_retry_releases_its_events_in_order() {
    let (_database, store, url) = setup().await;
    push(&store, "tenant-a", "u-bad", 2).await;
    push(&store, "tenant-a", "u-ok", 2).await;
    push(&store, "tenant-b", "u-ok2", 1).await;
    let seen = Seen::default();
    let failing = Arc::new(AtomicBool::new(true));
    let runtime = start(
        &store,
        Mailer {
            seen: Arc::clone(&seen),
            failing: Arc::clone(&failing),
            partitions: 2,
        },
    )
    .await;

    // Caught up everywhere, with u-bad parked at its first event and its second held.
    let status = wait_for(
        &url,
        &["consumers", "status", "--output", "json"],
        |lines| {
            lines.len() == 2
                && lines.iter().all(|line| line["events_behind"] == 0)
                && lines[0]["parked"] == 1
        },
    )
    .await;
    assert_eq!(status[0]["consumer"], "mailer");
    assert_eq!(status[0]["instance_id"], "tenant-a");
    assert_eq!(status[0]["parts"], 2);
    assert_eq!(status[0]["failed_events"], 0);
    assert_eq!(status[0]["runtimes_alive"], 1);
    assert_eq!(status[1]["instance_id"], "tenant-b");
    assert_eq!(status[1]["parked"], 0);
    assert!(seen_of(&seen, "u-bad").is_empty());
    assert_eq!(seen_of(&seen, "u-ok"), [1, 2]);
    let one = json(
        &url,
        &[
            "consumers",
            "status",
            "--consumer",
            "mailer",
            "--instance",
            "tenant-b",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(one.len(), 1, "{one:?}");
    let table = cli(&url, &["consumers", "status", "--output", "table"]).await;
    assert!(stdout(&table).starts_with("CONSUMER"), "{}", stdout(&table));

    let parked = json(&url, &["consumers", "parked", "--output", "json"]).await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["consumer"], "mailer");
    assert!(
        parked[0]["part"].as_str().unwrap().starts_with("mailer#"),
        "{parked:?}"
    );
    assert_eq!(parked[0]["instance_id"], "tenant-a");
    assert_eq!(parked[0]["aggregate_id"], "u-bad");
    assert_eq!(parked[0]["sequence"], 1);
    assert_eq!(parked[0]["failure_count"], 1);
    assert_eq!(parked[0]["error"], "smtp: connection refused");
    let table = cli(&url, &["consumers", "parked", "--output", "table"]).await;
    assert!(
        stdout(&table).contains("user/u-bad") && stdout(&table).contains("smtp"),
        "{}",
        stdout(&table)
    );
    let elsewhere = json(
        &url,
        &[
            "consumers",
            "parked",
            "--instance",
            "tenant-b",
            "--output",
            "json",
        ],
    )
    .await;
    assert!(elsewhere.is_empty());

    // Consumer parts are not projections: `projections` leaves them out and refuses their names.
    assert!(
        json(&url, &["projections", "status", "--output", "json"])
            .await
            .is_empty()
    );
    assert!(
        json(&url, &["projections", "failed", "list", "--output", "json"])
            .await
            .is_empty()
    );
    let refused = cli(&url, &["projections", "unregister", "mailer", "--yes"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("strata consumers"),
        "{}",
        stderr(&refused)
    );

    // Refused: an unknown consumer, an aggregate that is not parked, no confirmation.
    let mut args = vec!["consumers", "retry", "nope", "--yes"];
    args.extend(U_BAD);
    let unknown = cli(&url, &args).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no consumer named \"nope\"")
            && stderr(&unknown).contains("mailer"),
        "{}",
        stderr(&unknown)
    );
    let not_parked = cli(
        &url,
        &[
            "consumers",
            "retry",
            "mailer",
            "--instance",
            "tenant-a",
            "--aggregate-type",
            "user",
            "--aggregate-id",
            "u-ok",
            "--yes",
        ],
    )
    .await;
    assert_eq!(not_parked.status.code(), Some(1));
    assert!(
        stderr(&not_parked).contains("is not parked"),
        "{}",
        stderr(&not_parked)
    );
    let mut args = vec!["consumers", "retry", "mailer"];
    args.extend(U_BAD);
    let unconfirmed = cli(&url, &args).await;
    assert_eq!(
        unconfirmed.status.code(),
        Some(2),
        "{}",
        stderr(&unconfirmed)
    );
    assert!(
        pending_projection_requests(&store)
            .await
            .unwrap()
            .is_empty()
    );

    // The cause is fixed; the retry hands the parked event and the held one over, in order.
    failing.store(false, Ordering::SeqCst);
    let mut args = vec!["consumers", "retry", "mailer", "--yes"];
    args.extend(U_BAD);
    let retried = cli(&url, &args).await;
    assert_success(&retried);
    assert!(
        stdout(&retried).contains("queued: retry") && stdout(&retried).contains("1 live runtime"),
        "{}",
        stdout(&retried)
    );
    wait_for(
        &url,
        &["consumers", "parked", "--output", "json"],
        <[_]>::is_empty,
    )
    .await;
    assert_eq!(seen_of(&seen, "u-bad"), [1, 2]);
    let status = json(&url, &["consumers", "status", "--output", "json"]).await;
    assert!(status.iter().all(|line| line["parked"] == 0), "{status:?}");

    // New events of the released aggregate flow again.
    push(&store, "tenant-a", "u-bad", 1).await;
    let deadline = Instant::now() + PATIENCE;
    while seen_of(&seen, "u-bad") != [1, 2, 3] {
        assert!(Instant::now() < deadline, "{:?}", seen_of(&seen, "u-bad"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Unregistering forgets both parts, refused while the runtime runs.
    let refused = cli(&url, &["consumers", "unregister", "mailer", "--yes"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    runtime.shutdown(PATIENCE).await.unwrap();

    // With the runtime stopped, new events are behind, each counted once though both parts
    // read it.
    push(&store, "tenant-b", "u-ok2", 3).await;
    push(&store, "tenant-b", "u-new", 2).await;
    let status = json(
        &url,
        &[
            "consumers",
            "status",
            "--instance",
            "tenant-b",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(status[0]["events_behind"], 5, "{status:?}");
    assert_eq!(status[0]["runtimes_alive"], 0, "{status:?}");

    let unconfirmed = cli(&url, &["consumers", "unregister", "mailer"]).await;
    assert_eq!(unconfirmed.status.code(), Some(2));
    let removed = json(
        &url,
        &[
            "consumers",
            "unregister",
            "mailer",
            "--yes",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(
        removed[0]["parts"],
        serde_json::json!(["mailer#0/2", "mailer#1/2"])
    );
    assert_eq!(removed[0]["registered_parts"], 2);
    assert!(
        removed[0]["checkpoints"].as_u64().unwrap() >= 2,
        "{removed:?}"
    );
    assert!(
        json(&url, &["consumers", "status", "--output", "json"])
            .await
            .is_empty()
    );
    let again = cli(&url, &["consumers", "unregister", "mailer", "--yes"]).await;
    assert_eq!(again.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_queued_without_a_runtime_waits_for_one_and_then_releases_the_held_events() {
    let (_database, store, url) = setup().await;
    push(&store, "tenant-a", "u-bad", 3).await;
    let seen = Seen::default();
    let failing = Arc::new(AtomicBool::new(true));
    let mailer = || Mailer {
        seen: Arc::clone(&seen),
        failing: Arc::clone(&failing),
        partitions: 1,
    };
    let runtime = start(&store, mailer()).await;
    wait_for(
        &url,
        &["consumers", "parked", "--output", "json"],
        |lines| lines.len() == 1,
    )
    .await;
    runtime.shutdown(PATIENCE).await.unwrap();

    // No runtime runs it: the request is queued anyway, with a warning.
    let mut args = vec!["consumers", "skip", "mailer", "--yes", "--output", "json"];
    args.extend(U_BAD);
    let skipped = cli(&url, &args).await;
    assert_success(&skipped);
    let line: serde_json::Value = serde_json::from_str(stdout(&skipped).trim()).unwrap();
    assert_eq!(line["kind"], "skip");
    assert_eq!(line["part"], "mailer");
    assert_eq!(line["sequence"], 1);
    assert_eq!(line["runtimes_alive"], 0);
    assert!(
        stderr(&skipped).contains("no live runtime runs \"mailer\""),
        "{}",
        stderr(&skipped)
    );
    let requests = pending_projection_requests(&store).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (
            requests[0].projection.as_str(),
            requests[0].kind.as_str(),
            requests[0].sequence
        ),
        ("mailer", "skip", Some(1))
    );

    // A runtime starts (the cause fixed meanwhile), takes the request, passes the parked event
    // and hands over the rest.
    failing.store(false, Ordering::SeqCst);
    let runtime = start(&store, mailer()).await;
    wait_for(
        &url,
        &["consumers", "parked", "--output", "json"],
        <[_]>::is_empty,
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    while seen_of(&seen, "u-bad") != [2, 3] {
        assert!(Instant::now() < deadline, "{:?}", seen_of(&seen, "u-bad"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = json(&url, &["consumers", "status", "--output", "json"]).await;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["parts"], 1);
    assert_eq!(status[0]["parked"], 0);
    assert_eq!(
        status[0]["failed_events"], 1,
        "the skipped event stays on record"
    );

    // Nothing parked any more: a second skip is refused.
    let mut args = vec!["consumers", "skip", "mailer", "--yes"];
    args.extend(U_BAD);
    let nothing = cli(&url, &args).await;
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        stderr(&nothing).contains("is not parked"),
        "{}",
        stderr(&nothing)
    );

    let unknown = cli(&url, &["consumers", "status", "--consumer", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(1));

    runtime.shutdown(PATIENCE).await.unwrap();
    let removed = json(
        &url,
        &[
            "consumers",
            "unregister",
            "mailer",
            "--yes",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(removed[0]["parts"], serde_json::json!(["mailer"]));
    assert_eq!(removed[0]["checkpoints"], 1);
    assert_eq!(removed[0]["failed_events"], 1);
}
