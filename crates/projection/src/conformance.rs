//! The projection conformance suite: what every projection backend must do alike, with the
//! runtime on top, so a projection tested on [`MemoryProjections`](crate::MemoryProjections)
//! behaves the same in production.
//!
//! A backend provides a [`Harness`] (a fresh store, a backend, and a way to create and read
//! read-model tables) and runs every case with [`projection_conformance_tests!`](crate::projection_conformance_tests):
//!
//! ```text
//! strata_projection::projection_conformance_tests!(my_harness());
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation here is a failed test.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use strata_event::{AggregateRef, Command, Event, InstanceId, Position};
use strata_store::EventStore;
use tokio::sync::Notify;

use crate::{
    OnFailure, Projection, ProjectionBackend, ProjectionConfig, ProjectionError, ProjectionRuntime,
    Reads, ReduceError, SqlValue, Statement,
};

mod consumers;
mod groups;
mod versions;

pub use self::consumers::*;
pub use self::groups::*;
pub use self::versions::*;

/// A read-model row as the suite compares it: column to value, every value as text (`NULL` for
/// SQL `NULL`), so rows read from any backend compare alike.
pub type TextRow = BTreeMap<String, String>;

/// What a backend gives the suite. Each case gets a harness of its own.
pub trait Harness: Send + Sync + 'static {
    /// The event store.
    type Store: EventStore + Clone + 'static;
    /// The projection backend.
    type Backend: ProjectionBackend + Clone;

    /// The event store (every call returns the same store).
    fn store(&self) -> Self::Store;

    /// The projection backend (every call returns the same backend).
    fn backend(&self) -> Self::Backend;

    /// Creates a read-model table from PostgreSQL DDL; a backend without schemas does nothing.
    fn create_table(&self, ddl: &'static str) -> impl Future<Output = ()> + Send;

    /// Every row of `table`, as text, sorted.
    fn rows(&self, table: &'static str) -> impl Future<Output = Vec<TextRow>> + Send;

    /// How many projection leases are held right now.
    fn leases_held(&self) -> impl Future<Output = usize> + Send;
}

/// Writes one `#[tokio::test]` per case of the suite. `$make` is an expression evaluating to a
/// future that yields a fresh [`Harness`]; it is evaluated once per test.
///
/// The list below is every case of this module: a unit test fails when a `pub async fn` case is
/// missing from it.
#[macro_export]
macro_rules! projection_conformance_tests {
    ($make:expr) => {
        $crate::projection_conformance_tests!(@cases $make;
            catch_up_reports_an_event_skipped_after_its_last_attempt,
            catch_up_waits_out_a_transient_failure_on_schedule,
            catch_up_fails_at_once_when_the_next_retry_is_past_its_deadline,
            an_operator_skip_accepts_the_gap,
            counters_count_and_a_rebuild_never_doubles_them,
            increments_refuse_what_the_column_cannot_hold,
            reserved_words_name_tables_and_columns,
            shutdown_waits_for_running_batches_and_releases_leases,
            shutdown_reports_batches_still_running_at_its_deadline,
            unregister_forgets_checkpoints_and_failures,
            a_panicking_hook_is_reported_and_the_pair_runs_on,
            catch_up_waits_for_every_event_of_a_push_split_across_batches,
            a_consumer_gets_every_event_in_order_and_resumes_after_a_restart,
            unacknowledged_events_are_delivered_again,
            a_failing_aggregate_is_parked_while_others_flow,
            skipping_a_parked_event_delivers_the_rest_in_order,
            a_projection_can_park_instead_of_skipping,
            partitions_split_an_instance_and_keep_each_aggregate_in_order,
            changing_a_consumers_partitions_is_refused,
            a_skipped_consumer_event_is_retried_through_the_handler,
            a_first_version_is_live_and_read_through_its_stable_name,
            a_new_version_builds_beside_the_live_one_and_takes_over,
            a_version_behind_cannot_take_over,
            rollback_catches_the_old_version_up_and_switches_back,
            an_unversioned_projection_upgrades_to_a_version,
            a_frozen_runtime_is_reported_stalled,
            a_version_with_failed_events_does_not_take_over,
            a_group_lease_applies_its_pairs_together_or_not_at_all,
            a_failing_member_of_a_group_fails_alone,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let harness = $make.await;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

const INSTANCE: &str = "tenant-1";
const WAIT: Duration = Duration::from_secs(20);

fn instance() -> InstanceId {
    InstanceId::new(INSTANCE).unwrap()
}

fn command(aggregate_id: &str, event_type: &str) -> Command {
    Command::builder(INSTANCE, "doc", aggregate_id, event_type)
        .creator("tester")
        .owner("org")
        .build()
        .unwrap()
}

/// Pushes one event per `(aggregate id, event type)` and returns the position of the last.
async fn push_each<S: EventStore>(store: &S, events: &[(&str, &str)]) -> Position {
    let mut last = None;
    for (id, event_type) in events {
        last = Some(store.push(vec![command(id, event_type)]).await.unwrap()[0].position);
    }
    last.expect("at least one event")
}

fn text(pairs: &[(&str, &str)]) -> TextRow {
    pairs
        .iter()
        .map(|(column, value)| ((*column).to_owned(), (*value).to_owned()))
        .collect()
}

/// One row per document: `doc.poisoned` fails in its reducer while `failing` holds, and every
/// attempt is counted.
struct Docs {
    failing: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    retry_after: Duration,
    max_failures: u32,
    on_failure: OnFailure,
}

impl Docs {
    fn new(retry_after: Duration, max_failures: u32) -> Self {
        Docs {
            failing: Arc::new(AtomicBool::new(true)),
            attempts: Arc::new(AtomicU32::new(0)),
            retry_after,
            max_failures,
            on_failure: OnFailure::Skip,
        }
    }

    fn handle(&self) -> Docs {
        Docs {
            failing: Arc::clone(&self.failing),
            attempts: Arc::clone(&self.attempts),
            ..*self
        }
    }
}

const DOCS_TABLE: &str = "CREATE TABLE conformance_docs (instance_id TEXT NOT NULL, \
     id TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (instance_id, id))";

/// The `conformance_docs` row of an event's document: its latest event type.
fn doc_row(event: &Event) -> Statement {
    Statement::upsert(
        "conformance_docs",
        vec![
            ("instance_id", event.aggregate.instance_id.as_str().into()),
            ("id", event.aggregate.aggregate_id.as_str().into()),
        ],
        vec![("state", event.event_type.as_str().into())],
    )
}

fn docs_reset(instance: &InstanceId) -> Vec<Statement> {
    vec![Statement::delete(
        "conformance_docs",
        vec![("instance_id", instance.as_str().into())],
    )]
}

impl Projection for Docs {
    fn name(&self) -> &str {
        "docs"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if event.event_type.as_str() == "doc.poisoned" {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(ReduceError::new("poisoned document"));
            }
        }
        Ok(vec![doc_row(event)])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        docs_reset(instance)
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            retry_failed_after: self.retry_after,
            max_failure_count: self.max_failures,
            on_failure: self.on_failure,
            ..ProjectionConfig::default()
        }
    }
}

async fn start<H: Harness>(
    harness: &H,
    projection: impl Projection,
) -> ProjectionRuntime<H::Store, H::Backend> {
    ProjectionRuntime::builder(harness.store(), harness.backend())
        .register(projection)
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// An event whose reducer keeps failing is retried `max_failure_count` times,
/// `retry_failed_after` apart, then recorded and skipped; `catch_up` past it says so, naming the
/// event and its error, instead of answering `Ok` for a read model that lacks it.
pub async fn catch_up_reports_an_event_skipped_after_its_last_attempt<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let docs = Docs::new(Duration::from_millis(100), 3);
    let attempts = Arc::clone(&docs.attempts);
    let runtime = start(harness, docs).await;
    let started = Instant::now();
    let last = push_each(
        &harness.store(),
        &[
            ("d1", "doc.added"),
            ("d2", "doc.poisoned"),
            ("d3", "doc.added"),
        ],
    )
    .await;
    let caught_up = runtime.catch_up("docs", &instance(), last, WAIT).await;
    let elapsed = started.elapsed();
    let Err(ProjectionError::EventFailed { failed, skipped }) = caught_up else {
        panic!("the skipped event must be reported: {caught_up:?}");
    };
    assert!(skipped);
    assert_eq!(failed.aggregate.aggregate_id.as_str(), "d2");
    assert_eq!(failed.failure_count, 3);
    assert!(
        failed.error.contains("poisoned document"),
        "{}",
        failed.error
    );
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "exactly the attempts allowed"
    );
    // Three attempts, each after the previous one's retry_failed_after.
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    // The events around it were applied.
    let rows = harness.rows("conformance_docs").await;
    let ids: Vec<&str> = rows.iter().map(|row| row["id"].as_str()).collect();
    assert_eq!(ids, ["d1", "d3"]);
}

/// A failure that passes on its own (a deadlock, a timeout) costs one retry, after
/// `retry_failed_after`, not every attempt at once: `catch_up` then answers `Ok`.
pub async fn catch_up_waits_out_a_transient_failure_on_schedule<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let docs = Docs::new(Duration::from_millis(150), 5);
    let handle = docs.handle();
    let runtime = start(harness, docs).await;
    let last = push_each(&harness.store(), &[("d1", "doc.poisoned")]).await;
    // The first attempt fails; the fault clears right after it.
    let cleared = tokio::spawn({
        let failing = Arc::clone(&handle.failing);
        let attempts = Arc::clone(&handle.attempts);
        async move {
            while attempts.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failing.store(false, Ordering::SeqCst);
        }
    });
    runtime
        .catch_up("docs", &instance(), last, WAIT)
        .await
        .expect("the retry applies the event");
    cleared.await.unwrap();
    assert_eq!(
        handle.attempts.load(Ordering::SeqCst),
        2,
        "one failure, one retry on schedule"
    );
    let failed = runtime.failed_events(Some("docs")).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(harness.rows("conformance_docs").await.len(), 1);
}

/// When the next attempt of a failing event comes after the caller's deadline, `catch_up` says
/// which event stands in the way at once, rather than waiting out the timeout to say "timeout".
pub async fn catch_up_fails_at_once_when_the_next_retry_is_past_its_deadline<H: Harness>(
    harness: &H,
) {
    harness.create_table(DOCS_TABLE).await;
    let docs = Docs::new(Duration::from_secs(60), 5);
    let runtime = start(harness, docs).await;
    let last = push_each(&harness.store(), &[("d1", "doc.poisoned")]).await;
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let caught_up = runtime.catch_up("docs", &instance(), last, timeout).await;
    let Err(ProjectionError::EventFailed { failed, skipped }) = caught_up else {
        panic!("the failing event must be named: {caught_up:?}");
    };
    assert!(!skipped, "it still has attempts left");
    assert_eq!(failed.failure_count, 1);
    assert!(
        started.elapsed() < timeout,
        "it did not wait for a retry it cannot see"
    );
}

/// An operator who skips a failed event accepts the gap it leaves: catch-ups stop reporting it.
pub async fn an_operator_skip_accepts_the_gap<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let runtime = start(harness, Docs::new(Duration::from_millis(10), 1)).await;
    let last = push_each(
        &harness.store(),
        &[("d1", "doc.poisoned"), ("d2", "doc.added")],
    )
    .await;
    assert!(matches!(
        runtime.catch_up("docs", &instance(), last, WAIT).await,
        Err(ProjectionError::EventFailed { skipped: true, .. })
    ));
    let failed = runtime.failed_events(Some("docs")).await.unwrap();
    assert_eq!(failed.len(), 1);
    runtime.skip_failed(&failed[0]).await.unwrap();
    let failed = runtime.failed_events(Some("docs")).await.unwrap();
    assert!(failed[0].skipped_by_operator, "{failed:?}");
    runtime
        .catch_up("docs", &instance(), last, WAIT)
        .await
        .expect("a skipped event no longer fails catch-ups");
}

/// Signed-up and left users per organisation: a counter, the most common read model.
struct Members;

const MEMBERS_TABLE: &str = "CREATE TABLE conformance_members (instance_id TEXT NOT NULL, \
     org TEXT NOT NULL, members BIGINT, joined BIGINT NOT NULL, last_event TEXT, \
     PRIMARY KEY (instance_id, org))";

impl Projection for Members {
    fn name(&self) -> &str {
        "members"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let (members, joined) = match event.event_type.as_str() {
            "doc.joined" => (1i64, 1i64),
            "doc.left" => (-1, 0),
            _ => return Ok(Vec::new()),
        };
        Ok(vec![Statement::Increment {
            table: "conformance_members",
            key: vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("org", event.owner.as_str().into()),
            ],
            amounts: vec![("members", members.into()), ("joined", joined.into())],
            values: vec![("last_event", event.event_type.as_str().into())],
        }])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "conformance_members",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
}

/// Increments add to a row (inserting it first), decrements subtract, other columns are set, and
/// a rebuild starts from the reset read model, so counts never double.
pub async fn counters_count_and_a_rebuild_never_doubles_them<H: Harness>(harness: &H) {
    harness.create_table(MEMBERS_TABLE).await;
    let runtime = start(harness, Members).await;
    let last = push_each(
        &harness.store(),
        &[
            ("u1", "doc.joined"),
            ("u2", "doc.joined"),
            ("u3", "doc.joined"),
            ("u2", "doc.left"),
        ],
    )
    .await;
    runtime
        .catch_up("members", &instance(), last, WAIT)
        .await
        .unwrap();
    let expected = vec![text(&[
        ("instance_id", INSTANCE),
        ("org", "org"),
        ("members", "2"),
        ("joined", "3"),
        ("last_event", "doc.left"),
    ])];
    assert_eq!(harness.rows("conformance_members").await, expected);

    runtime.rebuild("members", Some(&instance())).await.unwrap();
    runtime
        .catch_up("members", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(harness.rows("conformance_members").await, expected);
}

/// Docs in batches of seven events.
struct SmallBatches;

impl Projection for SmallBatches {
    fn name(&self) -> &str {
        "small_batches"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![doc_row(event)])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        docs_reset(instance)
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: 7,
            ..ProjectionConfig::default()
        }
    }
}

/// The events of one push share its position, and batches end between them: `catch_up` to that
/// position returns only once every one of them is applied, whoever runs the batches.
pub async fn catch_up_waits_for_every_event_of_a_push_split_across_batches<H: Harness>(
    harness: &H,
) {
    harness.create_table(DOCS_TABLE).await;
    let runtime = start(harness, SmallBatches).await;
    let store = harness.store();
    for round in 0..5 {
        let commands = (0..200)
            .map(|n| command(&format!("d-{round}-{n}"), "doc.added"))
            .collect();
        let stored = store.push(commands).await.unwrap();
        let position = stored[0].position;
        runtime
            .catch_up("small_batches", &instance(), position, WAIT)
            .await
            .unwrap();
        assert_eq!(
            harness.rows("conformance_docs").await.len(),
            200 * (round + 1),
            "catch_up returned before the whole push was applied"
        );
    }
    runtime.shutdown(WAIT).await.unwrap();
}

/// A counter that would pass its column's range, or an amount that is not a number, fails the
/// event on every backend (recorded as a failed event), and leaves the row as it was.
pub async fn increments_refuse_what_the_column_cannot_hold<H: Harness>(harness: &H) {
    struct Overflowing;
    impl Projection for Overflowing {
        fn name(&self) -> &str {
            "overflowing"
        }
        fn reads(&self) -> Reads {
            Reads::new().aggregate("doc")
        }
        fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
            let amount: SqlValue = match event.event_type.as_str() {
                "doc.huge" => i64::MAX.into(),
                "doc.text" => "one".into(),
                _ => 1i64.into(),
            };
            Ok(vec![Statement::increment(
                "conformance_counts",
                vec![("id", "total".into())],
                vec![("count", amount)],
            )])
        }
        fn reset(&self, _: &InstanceId) -> Vec<Statement> {
            vec![Statement::delete("conformance_counts", Vec::new())]
        }
        fn config(&self) -> ProjectionConfig {
            ProjectionConfig {
                max_failure_count: 1,
                ..ProjectionConfig::default()
            }
        }
    }
    harness
        .create_table(
            "CREATE TABLE conformance_counts (id TEXT PRIMARY KEY, count BIGINT NOT NULL)",
        )
        .await;
    let runtime = start(harness, Overflowing).await;
    let last = push_each(
        &harness.store(),
        &[
            ("a", "doc.one"),
            ("a", "doc.huge"),
            ("a", "doc.text"),
            ("a", "doc.one"),
        ],
    )
    .await;
    let _ = runtime
        .catch_up("overflowing", &instance(), last, WAIT)
        .await;
    let failed = runtime.failed_events(Some("overflowing")).await.unwrap();
    let sequences: Vec<u64> = failed.iter().map(|failed| failed.sequence).collect();
    assert_eq!(sequences, [2, 3], "{failed:?}");
    assert_eq!(
        harness.rows("conformance_counts").await,
        vec![text(&[("id", "total"), ("count", "2")])]
    );
}

/// Keeps one row per document in a table named `order` with columns named `user` and `group`:
/// reserved words, quoted when rendered.
struct Reserved;

impl Projection for Reserved {
    fn name(&self) -> &str {
        "reserved"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let key = || vec![("user", event.aggregate.aggregate_id.as_str().into())];
        Ok(match event.event_type.as_str() {
            "doc.added" => vec![
                Statement::upsert("order", key(), vec![("group", "new".into())]),
                Statement::increment("order", key(), vec![("select", 1i64.into())]),
            ],
            "doc.moved" => vec![Statement::update(
                "order",
                vec![("group", "moved".into())],
                key(),
            )],
            "doc.removed" => vec![Statement::delete("order", key())],
            _ => Vec::new(),
        })
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete("order", Vec::new())]
    }
}

/// Reserved words (`order`, `user`, `group`, `select`) are valid read-model names on every backend.
pub async fn reserved_words_name_tables_and_columns<H: Harness>(harness: &H) {
    harness
        .create_table(
            r#"CREATE TABLE "order" ("user" TEXT PRIMARY KEY, "group" TEXT, "select" BIGINT)"#,
        )
        .await;
    let runtime = start(harness, Reserved).await;
    let last = push_each(
        &harness.store(),
        &[
            ("a", "doc.added"),
            ("b", "doc.added"),
            ("a", "doc.moved"),
            ("b", "doc.removed"),
        ],
    )
    .await;
    runtime
        .catch_up("reserved", &instance(), last, WAIT)
        .await
        .expect("reserved words are quoted");
    assert_eq!(
        harness.rows("order").await,
        vec![text(&[("user", "a"), ("group", "moved"), ("select", "1")])]
    );
}

/// The document projection with `hook` as its `after_commit`.
struct Hooked<F> {
    name: &'static str,
    hook: F,
}

impl<F> Projection for Hooked<F>
where
    F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![doc_row(event)])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        docs_reset(instance)
    }
    fn after_commit<'a>(&'a self, _: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        (self.hook)()
    }
}

/// Starts `slow`, whose hook takes `hold` and says when it starts and ends, and pushes one event;
/// returns once its batch is in its hook.
async fn slow_batch_running<H: Harness>(
    harness: &H,
    hold: Duration,
) -> (ProjectionRuntime<H::Store, H::Backend>, Arc<AtomicBool>) {
    harness.create_table(DOCS_TABLE).await;
    let started = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let hook = {
        let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
        move || -> BoxFuture<'static, ()> {
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            Box::pin(async move {
                started.notify_one();
                tokio::time::sleep(hold).await;
                finished.store(true, Ordering::SeqCst);
            })
        }
    };
    let runtime = start(harness, Hooked { name: "slow", hook }).await;
    push_each(&harness.store(), &[("d1", "doc.added")]).await;
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the batch runs");
    (runtime, finished)
}

/// `shutdown` stops the triggers and waits for the batch that is running: it ends whole (its hook
/// included), no lease stays held, and later calls say the runtime stopped.
pub async fn shutdown_waits_for_running_batches_and_releases_leases<H: Harness>(harness: &H) {
    let (runtime, finished) = slow_batch_running(harness, Duration::from_millis(300)).await;
    runtime.shutdown(WAIT).await.expect("stops in time");
    assert!(
        finished.load(Ordering::SeqCst),
        "the running batch was not cut"
    );
    assert_eq!(harness.rows("conformance_docs").await.len(), 1);
    let state = harness.backend().state("slow", &instance()).await.unwrap();
    assert!(state.is_some(), "the batch's checkpoint committed");
    assert_eq!(harness.leases_held().await, 0);
    let after = runtime
        .catch_up("slow", &instance(), Position::ZERO, WAIT)
        .await;
    assert!(matches!(after, Err(ProjectionError::Stopped)), "{after:?}");
}

/// At its deadline `shutdown` says how many batches still run; they end on their own.
pub async fn shutdown_reports_batches_still_running_at_its_deadline<H: Harness>(harness: &H) {
    let (runtime, finished) = slow_batch_running(harness, Duration::from_millis(800)).await;
    let stopped = runtime.shutdown(Duration::from_millis(50)).await;
    assert!(
        matches!(
            stopped,
            Err(ProjectionError::ShutdownTimeout { running: 1, .. })
        ),
        "{stopped:?}"
    );
    let deadline = Instant::now() + WAIT;
    while !finished.load(Ordering::SeqCst) || harness.leases_held().await > 0 {
        assert!(Instant::now() < deadline, "the batch never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A panic in the projection's own code ends that run like an error: `catch_up` reports it as
/// [`ProjectionError::Panicked`] when it ran the batch itself (or succeeds when a trigger ran it),
/// no lease stays held, and the pair keeps running later events.
pub async fn a_panicking_hook_is_reported_and_the_pair_runs_on<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let panicked = Arc::new(AtomicBool::new(false));
    let hook_panicked = Arc::clone(&panicked);
    let hook = move || -> BoxFuture<'static, ()> {
        let panicked = Arc::clone(&hook_panicked);
        Box::pin(async move {
            if !panicked.swap(true, Ordering::SeqCst) {
                panic!("the conformance suite's hook panics once");
            }
        })
    };
    let runtime = start(
        harness,
        Hooked {
            name: "panics_once",
            hook,
        },
    )
    .await;
    let first = push_each(&harness.store(), &[("d1", "doc.added")]).await;
    let caught_up = runtime
        .catch_up("panics_once", &instance(), first, WAIT)
        .await;
    let reported = match &caught_up {
        Ok(()) => true,
        Err(ProjectionError::Panicked { projection }) => projection == "panics_once",
        Err(_) => false,
    };
    assert!(reported, "{caught_up:?}");
    assert!(
        panicked.load(Ordering::SeqCst),
        "the hook ran, and panicked"
    );
    let second = push_each(&harness.store(), &[("d2", "doc.added")]).await;
    runtime
        .catch_up("panics_once", &instance(), second, WAIT)
        .await
        .expect("the pair runs on after the panic");
    assert_eq!(harness.rows("conformance_docs").await.len(), 2);
    assert_eq!(harness.leases_held().await, 0);
    runtime.shutdown(WAIT).await.expect("stops");
}

/// Unregistering a projection forgets its checkpoints and failed events.
pub async fn unregister_forgets_checkpoints_and_failures<H: Harness>(harness: &H) {
    harness.create_table(DOCS_TABLE).await;
    let runtime = start(harness, Docs::new(Duration::from_millis(10), 1)).await;
    let last = push_each(
        &harness.store(),
        &[("d1", "doc.added"), ("d2", "doc.poisoned")],
    )
    .await;
    let _ = runtime.catch_up("docs", &instance(), last, WAIT).await;
    runtime.shutdown(WAIT).await.unwrap();
    let backend = harness.backend();
    assert!(backend.state("docs", &instance()).await.unwrap().is_some());
    assert_eq!(backend.failed_events(Some("docs")).await.unwrap().len(), 1);
    backend.unregister("docs").await.unwrap();
    assert!(backend.state("docs", &instance()).await.unwrap().is_none());
    assert!(
        backend
            .failed_events(Some("docs"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_case_is_listed() {
        let source = concat!(
            include_str!("conformance.rs"),
            include_str!("conformance/consumers.rs"),
            include_str!("conformance/groups.rs"),
            include_str!("conformance/versions.rs")
        );
        strata_store::conformance::assert_every_case_listed(
            source,
            "projection_conformance_tests!",
        );
    }
}
