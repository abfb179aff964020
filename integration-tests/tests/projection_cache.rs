//! A projection keeps a cache fresh: after each committed batch it invalidates the entries of the
//! aggregates it touched, so a reader that caught up never gets the old value from the cache.
//! Runs on memory (store, read model and cache) and on PostgreSQL (all three).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheConfig, CacheInvalidator, Entry, Index};
use strata_event::{AggregateRef, Command, Event, InstanceId, Position};
use strata_integration_tests::TestDatabase;
use strata_postgres::PgProjections;
use strata_projection::{
    MemoryProjections, Projection, ProjectionBackend, ProjectionRuntime, Reads, ReduceError,
    SqlValue, Statement,
};
use strata_store::{EventStore, MemoryStore};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum UserIndex {
    Id,
}

impl Index for UserIndex {
    const ALL: &'static [Self] = &[UserIndex::Id];

    fn name(self) -> &'static str {
        "id"
    }
}

/// A cached copy of a user row, keyed `instance/id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedUser {
    instance_id: String,
    id: String,
    name: String,
}

impl Entry for CachedUser {
    type Index = UserIndex;

    fn keys(&self, _index: UserIndex) -> Vec<String> {
        vec![cache_key(&self.instance_id, &self.id)]
    }
}

fn cache_key(instance: &str, id: &str) -> String {
    format!("{instance}/{id}")
}

/// The users read model, invalidating cached users after each commit. When `read_model` is set,
/// the hook also reads the name the committed read model holds, to show it runs after the commit.
struct Users {
    cache: Arc<dyn CacheInvalidator>,
    read_model: Option<sqlx::PgPool>,
    seen_after_commit: SeenAfterCommit,
}

/// (aggregate id, name in the committed read model) as the hook saw them.
type SeenAfterCommit = Arc<Mutex<Vec<(String, Option<String>)>>>;

impl Projection for Users {
    fn name(&self) -> &str {
        "users"
    }

    fn reads(&self) -> Reads {
        Reads::new().events("user", ["user.added", "user.renamed"])
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let payload: serde_json::Value = event.payload()?;
        let name = payload["name"].as_str().unwrap_or_default();
        Ok(vec![Statement::upsert(
            "users",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![("name", SqlValue::from(name))],
        )])
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "users",
            vec![("instance_id", instance.as_str().into())],
        )]
    }

    fn after_commit<'a>(&'a self, touched: &'a [AggregateRef]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let keys: Vec<String> = touched
                .iter()
                .map(|aggregate| {
                    cache_key(
                        aggregate.instance_id.as_str(),
                        aggregate.aggregate_id.as_str(),
                    )
                })
                .collect();
            if let Some(pool) = &self.read_model {
                for aggregate in touched {
                    let name: Option<String> = sqlx::query_scalar(
                        "SELECT name FROM users WHERE instance_id = $1 AND id = $2",
                    )
                    .bind(aggregate.instance_id.as_str())
                    .bind(aggregate.aggregate_id.as_str())
                    .fetch_optional(pool)
                    .await
                    .expect("read model");
                    self.seen_after_commit
                        .lock()
                        .expect("not poisoned")
                        .push((aggregate.aggregate_id.as_str().to_owned(), name));
                }
            }
            self.cache.invalidate_keys("id", &keys).await;
        })
    }
}

fn user_event(id: &str, event_type: &str, name: &str) -> Command {
    Command::builder("tenant-a", "user", id, event_type)
        .creator("tester")
        .owner("org")
        .payload(&serde_json::json!({ "name": name }))
        .build()
        .expect("valid command")
}

async fn push<S: EventStore>(store: &S, commands: Vec<Command>) -> Position {
    store
        .push(commands)
        .await
        .expect("push")
        .last()
        .expect("events stored")
        .position
}

fn user(id: &str, name: &str) -> CachedUser {
    CachedUser {
        instance_id: "tenant-a".into(),
        id: id.into(),
        name: name.into(),
    }
}

/// The story both backends tell: cache two users, rename one, catch up; the renamed one is gone
/// from the cache, the other is still cached.
async fn renaming_invalidates_only_the_touched_user<S, B>(
    store: S,
    backend: B,
    cache: Arc<Cache<CachedUser>>,
    read_model: Option<sqlx::PgPool>,
) -> Vec<(String, Option<String>)>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    let seen_after_commit = SeenAfterCommit::default();
    let runtime = ProjectionRuntime::builder(store.clone(), backend)
        .register(Users {
            cache: cache.clone(),
            read_model,
            seen_after_commit: seen_after_commit.clone(),
        })
        .expect("register")
        .start()
        .await
        .expect("start");
    let instance = InstanceId::new("tenant-a").expect("id");

    let added = push(
        &store,
        vec![
            user_event("u1", "user.added", "Ada"),
            user_event("u2", "user.added", "Grace"),
        ],
    )
    .await;
    runtime
        .catch_up("users", &instance, added, WAIT)
        .await
        .expect("catch up");
    // A reader filled the cache from the read model.
    cache.set(user("u1", "Ada")).await.expect("set");
    cache.set(user("u2", "Grace")).await.expect("set");
    assert_eq!(
        cache.get(UserIndex::Id, "tenant-a/u1").await,
        Some(user("u1", "Ada"))
    );
    seen_after_commit.lock().expect("not poisoned").clear();

    let renamed = push(&store, vec![user_event("u1", "user.renamed", "Ada L.")]).await;
    runtime
        .catch_up("users", &instance, renamed, WAIT)
        .await
        .expect("catch up");
    assert_eq!(
        cache.get(UserIndex::Id, "tenant-a/u1").await,
        None,
        "the renamed user's stale entry must be gone once catch_up returns"
    );
    assert_eq!(
        cache.get(UserIndex::Id, "tenant-a/u2").await,
        Some(user("u2", "Grace")),
        "an untouched user stays cached"
    );
    runtime
        .shutdown(std::time::Duration::from_secs(30))
        .await
        .expect("shut down");
    seen_after_commit.lock().expect("not poisoned").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    let cache = Arc::new(Cache::memory("users", CacheConfig::default()).expect("cache"));
    renaming_invalidates_only_the_touched_user(
        MemoryStore::new(),
        MemoryProjections::new(),
        cache,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_after_the_commit() {
    let database = TestDatabase::create().await;
    let pool = database.pool(4);
    sqlx::query(
        "CREATE TABLE users (instance_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT, \
         PRIMARY KEY (instance_id, id))",
    )
    .execute(&pool)
    .await
    .expect("table");
    let store = database.store();
    let cache = Arc::new(
        Cache::postgres(pool.clone(), "users", CacheConfig::default())
            .await
            .expect("cache"),
    );
    let seen = renaming_invalidates_only_the_touched_user(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
        cache,
        Some(pool),
    )
    .await;
    // The hook saw the committed rename from another connection: it ran after the commit.
    assert_eq!(seen, vec![("u1".to_owned(), Some("Ada L.".to_owned()))]);
}
