//! Reads served by a hot standby: each test starts a primary and a standby made with
//! `pg_basebackup -R` (real streaming replication on loopback) and checks where reads go, that
//! they never skip a late commit, that a token shows a push, and that the standby falling behind
//! or going down costs readers nothing but speed.
//!
//! A recorder is installed for this binary alone, so the fallback counter can be checked.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use strata_event::{Command, Event};
use strata_integration_tests::{
    TestDatabase, ThrowawayServer, spawn_late_commit_writers, test_config,
};
use strata_postgres::{PgConfig, PgStore, ReadServer, ReadToken, ReplicaConfig};
use strata_query::Query;
use strata_store::{EventStore, StartFrom};

const INSTANCE: &str = "replicated";

/// A primary, its standby, and a migrated database on the primary (replicated to the standby).
struct Pair {
    /// Kept so the primary runs as long as the pair.
    _primary: ThrowawayServer,
    standby: ThrowawayServer,
    database: TestDatabase,
}

impl Pair {
    async fn start() -> Pair {
        let primary = ThrowawayServer::start();
        let standby = primary.start_standby();
        let database = TestDatabase::create_on(&primary.url()).await;
        Pair {
            _primary: primary,
            standby,
            database,
        }
    }

    /// A store on the primary reading from the standby, checked every 50 ms.
    fn store(&self, max_lag: Duration) -> PgStore {
        let mut replica = ReplicaConfig::new(format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.standby.port, self.database.name
        ));
        replica.pool = strata_postgres::PoolConfig::with_max(4);
        replica.max_lag = max_lag;
        replica.check_every = Duration::from_millis(50);
        self.database.store_with(PgConfig {
            replica: Some(replica),
            ..test_config()
        })
    }
}

/// The recorder of this test binary, installed by the first test that asks.
fn metrics() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// Fallbacks counted with `reason` so far (by every test of this binary: compare increases).
fn fallbacks(reason: &str) -> u64 {
    // A snapshot resets counters, so it is summed as it is read.
    static SEEN: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap();
    for (key, _, _, value) in metrics().snapshot().into_vec() {
        if key.key().name() != "strata_replica_fallbacks_total" {
            continue;
        }
        let DebugValue::Counter(count) = value else {
            continue;
        };
        for label in key.key().labels() {
            if label.key() == "reason" {
                seen.push((label.value().to_owned(), count));
            }
        }
    }
    seen.iter()
        .filter(|(seen_reason, _)| seen_reason == reason)
        .map(|(_, count)| count)
        .sum()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the store's routed reads go to the standby (its first health checks found it
/// caught up).
async fn reads_reach_the_standby(store: &PgStore) {
    wait_until("reads move to the standby", Duration::from_secs(20), || {
        store.reads_from() == ReadServer::Replica
    })
    .await;
}

fn added(id: &str) -> Command {
    Command::builder(INSTANCE, "user", id, "user.added")
        .creator("tester")
        .owner("org")
        .build()
        .expect("valid command")
}

fn all_events() -> Query {
    Query::builder()
        .instance(INSTANCE)
        .build()
        .expect("valid query")
}

fn ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| event.aggregate.aggregate_id.as_str().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_standby_and_a_token_shows_a_push_there_or_on_the_primary() {
    let pair = Pair::start().await;
    let store = pair.store(Duration::from_secs(60));
    reads_reach_the_standby(&store).await;

    let first = store.push(vec![added("u-1")]).await.expect("push");
    let token = ReadToken::of(&first).expect("a push stores events");
    let view = store.reading_after(&token, Duration::from_secs(10)).await;
    assert_eq!(view.reads_from(), ReadServer::Replica);
    assert_eq!(ids(&view.query(&all_events()).await.unwrap()), ["u-1"]);

    // With replay paused, the routed reads (on the standby) cannot show the next push: that is
    // how we know they are served there.
    pair.standby.pause_replay().await;
    let second = store.push(vec![added("u-2")]).await.expect("push");
    assert_eq!(ids(&store.query(&all_events()).await.unwrap()), ["u-1"]);
    assert_eq!(store.count(&all_events()).await.unwrap(), 1);

    let token = ReadToken::of(&second).expect("a push stores events");
    let started = Instant::now();
    let view = store
        .reading_after(&token, Duration::from_millis(200))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(view.reads_from(), ReadServer::Primary);
    assert_eq!(
        ids(&view.query(&all_events()).await.unwrap()),
        ["u-1", "u-2"]
    );
    assert_eq!(
        ids(&store.on_primary().query(&all_events()).await.unwrap()),
        ["u-1", "u-2"]
    );

    pair.standby.resume_replay().await;
    let view = store.reading_after(&token, Duration::from_secs(10)).await;
    assert_eq!(view.reads_from(), ReadServer::Replica);
    assert_eq!(
        ids(&view.query(&all_events()).await.unwrap()),
        ["u-1", "u-2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_a_lagging_standby_and_return_once_it_caught_up() {
    let pair = Pair::start().await;
    let store = pair.store(Duration::from_millis(300));
    let before = fallbacks("lagging");
    reads_reach_the_standby(&store).await;

    pair.standby.pause_replay().await;
    store.push(vec![added("u-1")]).await.expect("push");
    wait_until("reads leave the standby", Duration::from_secs(10), || {
        store.reads_from() == ReadServer::Primary
    })
    .await;
    assert!(fallbacks("lagging") > before, "the fallback was counted");
    // On the primary now: the push shows, though the standby has not replayed it.
    assert_eq!(ids(&store.query(&all_events()).await.unwrap()), ["u-1"]);

    pair.standby.resume_replay().await;
    wait_until(
        "reads return to the standby",
        Duration::from_secs(10),
        || store.reads_from() == ReadServer::Replica,
    )
    .await;
    // Back on the standby, which shows everything the primary showed before.
    assert_eq!(ids(&store.query(&all_events()).await.unwrap()), ["u-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_the_standby_going_down_and_return_when_it_is_back() {
    let pair = Pair::start().await;
    let store = pair.store(Duration::from_secs(60));
    store.push(vec![added("u-1")]).await.expect("push");
    reads_reach_the_standby(&store).await;
    assert_eq!(store.count(&all_events()).await.unwrap(), 1);

    assert!(pair.standby.stop(), "the standby stops");
    // Readers at once, before the health check has noticed: none of them sees an error.
    let readers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let counted = store.count(&all_events()).await;
            let streamed: Vec<_> = store.stream(&all_events()).collect().await;
            (counted, streamed)
        })
    });
    for reader in readers {
        let (counted, streamed) = reader.await.expect("reader");
        assert_eq!(counted.expect("a count despite the standby being down"), 1);
        assert_eq!(streamed.len(), 1);
        assert!(
            streamed[0].is_ok(),
            "a stream despite the standby: {streamed:?}"
        );
    }
    assert_eq!(store.reads_from(), ReadServer::Primary);
    let horizon = store
        .commit_horizon()
        .await
        .expect("a horizon from the primary");
    assert!(horizon > strata_event::Position::from(0));

    assert!(pair.standby.restart(), "the standby starts again");
    wait_until(
        "reads return to the standby",
        Duration::from_secs(30),
        || store.reads_from() == ReadServer::Replica,
    )
    .await;
    assert_eq!(store.count(&all_events()).await.unwrap(), 1);
}

/// `pg_positions.rs`'s late-commit test with the reader on the standby: the standby's horizon
/// (its snapshot's xmin) holds back for transactions the primary has not finished, so the reader
/// sees every event, in order, however late it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reading_up_to_the_standbys_horizon_never_skips_a_late_commit() {
    let pair = Pair::start().await;
    let store = pair.store(Duration::from_secs(60));
    let raw_pool = pair.database.pool(4);
    reads_reach_the_standby(&store).await;

    let (writers, total) = spawn_late_commit_writers(&raw_pool, &store, INSTANCE, 15, 150);

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Event> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.len() < total && Instant::now() < deadline {
                assert_eq!(store.reads_from(), ReadServer::Replica, "reads stayed put");
                let horizon = store.commit_horizon().await.expect("horizon");
                let mut query = Query::builder().instance(INSTANCE);
                if let Some(last) = seen.last() {
                    query = query.resume_after(last.cursor());
                }
                let batch = store.query(&query.build().unwrap()).await.expect("read");
                seen.extend(batch.into_iter().take_while(|e| e.position < horizon));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    let all = store.on_primary().query(&all_events()).await.unwrap();
    assert_eq!(all.len(), total);
    let keys = |events: &[Event]| -> Vec<_> {
        events
            .iter()
            .map(|event| (event.aggregate.clone(), event.sequence))
            .collect()
    };
    assert_eq!(
        keys(&seen),
        keys(&all),
        "the reader on the standby skipped or reordered events"
    );
}

/// `subscriptions.rs`'s late-commit test with the subscription reading from the standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_on_the_standby_never_skips_a_late_commit() {
    let pair = Pair::start().await;
    let store = pair.store(Duration::from_secs(60));
    let raw_pool = pair.database.pool(4);
    reads_reach_the_standby(&store).await;
    let mut subscription = store
        .subscribe(&all_events(), StartFrom::Beginning)
        .await
        .expect("subscribe");

    let (writers, total) = spawn_late_commit_writers(&raw_pool, &store, INSTANCE, 10, 100);
    let delivered = tokio::spawn(async move {
        let mut delivered = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered.len() < total && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), subscription.next()).await {
                Ok(Some(event)) => delivered.push(event.expect("a delivered event")),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        (delivered, subscription)
    });
    for writer in writers {
        writer.await.expect("writer");
    }
    let (delivered, mut subscription) = delivered.await.expect("reader");
    assert_eq!(store.reads_from(), ReadServer::Replica, "reads stayed put");
    let stored = store.on_primary().query(&all_events()).await.unwrap();
    assert_eq!(stored.len(), total);
    assert_eq!(
        delivered, stored,
        "the subscription on the standby skipped, repeated or reordered events"
    );
    let more = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(more.is_err(), "an event was delivered twice: {more:?}");
}
