//! The spans and metrics Strata records, checked against what was done: a recorder and a
//! subscriber are installed for this test binary alone (one process, one global recorder), and
//! each step reads back exactly what it caused. The steps run in one test, one after another,
//! because reading a snapshot resets what the recorder holds.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use strata_cache::conformance::{Instance, InstanceIndex};
use strata_cache::{Cache, CacheConfig};
use strata_event::{Command, Event, InstanceId};
use strata_integration_tests::TestDatabase;
use strata_postgres::PgProjections;
use strata_projection::{
    OnFailure, Projection, ProjectionConfig, ProjectionRuntime, Reads, ReduceError, Statement,
};
use strata_query::Query;
use strata_store::{EventStore, MemoryStore, StartFrom};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// One span opened: its id, its name, its fields as recorded so far.
type Opened = (u64, &'static str, HashMap<String, String>);

/// Every span opened.
#[derive(Debug, Default, Clone)]
struct Spans(Arc<Mutex<Vec<Opened>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((id.into_u64(), attrs.metadata().name(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, _, fields)) = spans.iter_mut().rev().find(|(i, _, _)| *i == id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

impl Spans {
    /// The spans named `name` opened since the last call, forgetting every span seen so far.
    fn take(&self, name: &str) -> Vec<HashMap<String, String>> {
        let spans = std::mem::take(&mut *self.0.lock().unwrap());
        spans
            .into_iter()
            .filter(|(_, n, _)| *n == name)
            .map(|(_, _, fields)| fields)
            .collect()
    }
}

/// What the recorder holds, keyed by `name{label=value,…}` with labels sorted.
fn snapshot(snapshotter: &Snapshotter) -> HashMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect()
}

fn counter(metrics: &HashMap<String, DebugValue>, key: &str) -> u64 {
    match metrics.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!(
            "{key}: {other:?}\nrecorded: {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    }
}

fn histogram(metrics: &HashMap<String, DebugValue>, key: &str) -> Vec<f64> {
    match metrics.get(key) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        other => panic!(
            "{key}: {other:?}\nrecorded: {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    }
}

fn gauge(metrics: &HashMap<String, DebugValue>, key: &str) -> f64 {
    match metrics.get(key) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!(
            "{key}: {other:?}\nrecorded: {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    }
}

fn command(instance: &str, id: &str) -> Command {
    Command::builder(instance, "account", id, "account.opened")
        .creator("test")
        .owner("org")
        .build()
        .unwrap()
}

/// Fails on the event of `b-3`; one attempt, then skipped.
struct Accounts;

impl Projection for Accounts {
    fn name(&self) -> &str {
        "accounts"
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("account")
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if event.aggregate.aggregate_id.as_str() == "b-3" {
            return Err(ReduceError::new("refused"));
        }
        Ok(Vec::new())
    }

    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        Vec::new()
    }

    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            max_failure_count: 1,
            on_failure: OnFailure::Skip,
            ..ProjectionConfig::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_records_what_it_did() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let spans = Spans::default();
    tracing::subscriber::set_global_default(Registry::default().with(spans.clone())).unwrap();

    // Migrating: a span with what was applied.
    let empty = TestDatabase::create_empty().await;
    strata_postgres::migrate(&empty.pool(1)).await.unwrap();
    let migrate = spans.take("strata.migrate");
    assert_eq!(migrate.len(), 1);
    assert_eq!(migrate[0]["db.system"], "postgresql");
    assert_ne!(migrate[0]["strata.migrations_applied"], "0");

    let database = TestDatabase::create().await;
    let store = database.store();
    snapshot(&snapshotter);
    spans.take("");

    // One push: its duration, its event, its group of one, the pool it waited on.
    store.push(vec![command("t-1", "a-1")]).await.unwrap();
    let metrics = snapshot(&snapshotter);
    assert_eq!(
        counter(&metrics, "strata_events_pushed_total{system=postgresql}"),
        1
    );
    assert_eq!(
        histogram(
            &metrics,
            "strata_push_duration_seconds{outcome=ok,system=postgresql}"
        )
        .len(),
        1
    );
    assert_eq!(
        histogram(&metrics, "strata_push_group_size{system=postgresql}"),
        vec![1.0]
    );
    assert_eq!(
        histogram(&metrics, "strata_pool_acquire_seconds{pool=push}").len(),
        1
    );
    let in_use = gauge(&metrics, "strata_pool_connections{pool=push,state=in_use}");
    let idle = gauge(&metrics, "strata_pool_connections{pool=push,state=idle}");
    assert!(in_use + idle >= 1.0);
    let push = spans.take("strata.push");
    assert_eq!(push.len(), 1);
    assert_eq!(push[0]["db.system"], "postgresql");
    assert_eq!(push[0]["db.operation.name"], "push");
    assert_eq!(push[0]["strata.instance_id"], "t-1");
    assert_eq!(push[0]["strata.aggregate_type"], "account");
    assert_eq!(push[0]["strata.event_count"], "1");
    assert_eq!(push[0]["strata.group_size"], "1");
    assert_eq!(push[0]["otel.status_code"], "OK");

    // Concurrent pushes travel in groups: every push is in exactly one group.
    let pushes = (0..12).map(|n| {
        let store = store.clone();
        async move { store.push(vec![command("t-1", &format!("b-{n}"))]).await }
    });
    for pushed in futures::future::join_all(pushes).await {
        pushed.unwrap();
    }
    let metrics = snapshot(&snapshotter);
    let groups = histogram(&metrics, "strata_push_group_size{system=postgresql}");
    assert_eq!(groups.iter().sum::<f64>(), 12.0, "{groups:?}");
    assert_eq!(
        counter(&metrics, "strata_events_pushed_total{system=postgresql}"),
        12
    );
    spans.take("");

    // A push that fails: counted by kind, and the span says so.
    let stale = Command::builder("t-1", "account", "a-1", "account.renamed")
        .creator("test")
        .owner("org")
        .expect_sequence(7)
        .build()
        .unwrap();
    store.push(vec![stale]).await.unwrap_err();
    let metrics = snapshot(&snapshotter);
    assert_eq!(
        counter(
            &metrics,
            "strata_push_errors_total{kind=conflict,system=postgresql}"
        ),
        1
    );
    assert_eq!(
        histogram(
            &metrics,
            "strata_push_duration_seconds{outcome=error,system=postgresql}"
        )
        .len(),
        1
    );
    let failed = spans.take("strata.push");
    assert_eq!(failed[0]["otel.status_code"], "ERROR");
    assert_eq!(failed[0]["error.type"], "conflict");

    // A read: its duration and its rows.
    let query = Query::builder().instance("t-1").build().unwrap();
    let events = store.query(&query).await.unwrap();
    assert_eq!(events.len(), 13);
    assert_eq!(store.count(&query).await.unwrap(), 13);
    let metrics = snapshot(&snapshotter);
    assert_eq!(
        histogram(
            &metrics,
            "strata_query_rows{operation=query,system=postgresql}"
        ),
        vec![13.0]
    );
    assert_eq!(
        histogram(
            &metrics,
            "strata_query_duration_seconds{operation=count,system=postgresql}"
        )
        .len(),
        1
    );
    let reads = spans.take("strata.query");
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0]["strata.instance_id"], "t-1");
    assert_eq!(reads[0]["strata.rows"], "13");

    // A subscription's start.
    let subscription = store.subscribe(&query, StartFrom::Now).await.unwrap();
    drop(subscription);
    assert_eq!(spans.take("strata.subscribe").len(), 1);

    // The in-memory store records the same names under its own system.
    let memory = MemoryStore::new();
    memory.push(vec![command("t-1", "a-1")]).await.unwrap();
    memory.query(&query).await.unwrap();
    let metrics = snapshot(&snapshotter);
    assert_eq!(
        counter(&metrics, "strata_events_pushed_total{system=memory}"),
        1
    );
    assert_eq!(
        histogram(&metrics, "strata_query_rows{operation=query,system=memory}"),
        vec![1.0]
    );
    assert_eq!(spans.take("strata.push")[0]["db.system"], "memory");

    // A projection over the 13 events: one of them fails once and is skipped.
    let runtime = ProjectionRuntime::builder(store.clone(), PgProjections::new(database.pool(3)))
        .register(Accounts)
        .unwrap()
        .start()
        .await
        .unwrap();
    // Batches run in the background: what they record is gathered over several snapshots.
    let mut metrics: HashMap<String, DebugValue> = HashMap::new();
    for _ in 0..100 {
        for (key, value) in snapshot(&snapshotter) {
            match (metrics.get_mut(&key), value) {
                (Some(DebugValue::Counter(total)), DebugValue::Counter(n)) => *total += n,
                (Some(DebugValue::Histogram(all)), DebugValue::Histogram(more)) => all.extend(more),
                (_, value) => {
                    metrics.insert(key, value);
                }
            }
        }
        if metrics.get("strata_projection_events_processed_total{projection=accounts}")
            == Some(&DebugValue::Counter(13))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counter(
            &metrics,
            "strata_projection_events_processed_total{projection=accounts}"
        ),
        13
    );
    assert_eq!(
        counter(
            &metrics,
            "strata_projection_event_failures_total{projection=accounts}"
        ),
        1
    );
    assert_eq!(
        counter(
            &metrics,
            "strata_projection_events_skipped_total{projection=accounts}"
        ),
        1
    );
    assert!(
        counter(
            &metrics,
            "strata_projection_batches_total{outcome=applied,projection=accounts}"
        ) >= 1
    );
    assert!(
        !histogram(
            &metrics,
            "strata_projection_batch_duration_seconds{projection=accounts}"
        )
        .is_empty()
    );
    assert_eq!(
        gauge(
            &metrics,
            "strata_projection_batch_lag_seconds{projection=accounts}"
        ),
        0.0
    );
    let batches = spans.take("strata.projection_batch");
    assert!(!batches.is_empty());
    assert_eq!(batches[0]["strata.projection"], "accounts");
    assert_eq!(batches[0]["strata.instance_id"], "t-1");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();

    // The cache: hits, misses and writes per connector; spans only where it leaves the process.
    let cache: Cache<Instance> = Cache::memory("tenants", CacheConfig::default()).unwrap();
    assert!(cache.get(InstanceIndex::Id, "i1").await.is_none());
    cache
        .set(Instance::new("i1", &["a.example"]))
        .await
        .unwrap();
    assert!(
        cache
            .get(InstanceIndex::Domain, "a.example")
            .await
            .is_some()
    );
    let metrics = snapshot(&snapshotter);
    let key = |operation: &str, result: &str| {
        format!(
            "strata_cache_requests_total{{cache=tenants,connector=memory,operation={operation},result={result}}}"
        )
    };
    assert_eq!(counter(&metrics, &key("get", "miss")), 1);
    assert_eq!(counter(&metrics, &key("get", "hit")), 1);
    assert_eq!(counter(&metrics, &key("set", "ok")), 1);
    assert!(spans.take("strata.cache").is_empty());
    let shared: Cache<Instance> =
        Cache::postgres(database.pool(2), "shared", CacheConfig::default())
            .await
            .unwrap();
    shared.set(Instance::new("i2", &[])).await.unwrap();
    assert!(shared.get(InstanceIndex::Id, "i2").await.is_some());
    let metrics = snapshot(&snapshotter);
    assert_eq!(
        counter(
            &metrics,
            "strata_cache_requests_total{cache=shared,connector=postgres,operation=get,result=hit}"
        ),
        1
    );
    assert_eq!(
        histogram(
            &metrics,
            "strata_cache_duration_seconds{cache=shared,connector=postgres,operation=set}"
        )
        .len(),
        1
    );
    let calls = spans.take("strata.cache");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["db.system"], "postgresql");
    assert_eq!(calls[1]["strata.cache_result"], "hit");
}
