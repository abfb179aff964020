//! Erasure on real servers: a subject's data held by a PostgreSQL read model, a snapshot in Redis
//! and the events, while a projection runs; afterwards no byte of the plaintext is left anywhere a
//! read can reach (a `pg_dump` of the whole database and every value of the cache in Redis), the
//! projection keeps running, and a rebuild writes the erased mark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheConfig};
use strata_domain::{
    Aggregate, Context, DomainEvent, Envelope, ErasureRecord, EventSpec, Keyring, MasterKey,
    Personal, Repository, SnapshotEntry, Snapshots, Typed, TypedProjection, Vault,
};
use strata_event::InstanceId;
use strata_integration_tests::{TestDatabase, admin_url, postgres_binary};
use strata_postgres::PgProjections;
use strata_projection::{ProjectionRuntime, ReduceError, SqlValue, Statement};
use strata_query::Query;
use strata_store::EventStore;

const INSTANCE: &str = "tenant-a";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CustomerEvent {
    #[serde(rename = "customer.registered")]
    Registered {
        name: Personal<String>,
        email: Personal<String>,
    },
    #[serde(rename = "customer.email_changed")]
    EmailChanged { email: Personal<String> },
}

impl DomainEvent for CustomerEvent {
    const AGGREGATE_TYPE: &'static str = "customer";
    const EVENTS: &'static [EventSpec] = &[
        EventSpec::new("customer.registered").personal(&["name", "email"]),
        EventSpec::new("customer.email_changed").personal(&["email"]),
    ];
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Customer {
    name: Option<Personal<String>>,
    email: Option<Personal<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Customer {
    type Event = CustomerEvent;
    type Command = (String, String);
    type Error = Never;

    fn handle(&self, (name, email): (String, String)) -> Result<Vec<CustomerEvent>, Never> {
        Ok(vec![match self.name {
            None => CustomerEvent::Registered {
                name: Personal::Value(name),
                email: Personal::Value(email),
            },
            Some(_) => CustomerEvent::EmailChanged {
                email: Personal::Value(email),
            },
        }])
    }

    fn apply(&mut self, event: Envelope<CustomerEvent>) {
        match event.payload {
            CustomerEvent::Registered { name, email } => {
                self.name = Some(name);
                self.email = Some(email);
            }
            CustomerEvent::EmailChanged { email } => self.email = Some(email),
        }
    }
}

/// Names and e-mails in a PostgreSQL table, masked when a customer is erased.
struct Directory {
    vault: Vault,
}

impl TypedProjection for Directory {
    type Event = CustomerEvent;

    fn name(&self) -> &str {
        "directory"
    }

    fn reduce(&self, event: &Envelope<CustomerEvent>) -> Result<Vec<Statement>, ReduceError> {
        let text = |value: &Personal<String>| match value {
            Personal::Value(text) => SqlValue::from(text.as_str()),
            Personal::Erased => SqlValue::Null,
        };
        let mut columns = Vec::new();
        match &event.payload {
            CustomerEvent::Registered { name, email } => {
                columns.push(("name", text(name)));
                columns.push(("email", text(email)));
            }
            CustomerEvent::EmailChanged { email } => columns.push(("email", text(email))),
        }
        Ok(vec![Statement::upsert(
            "directory",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            columns,
        )])
    }

    fn erased(&self, erasure: &ErasureRecord) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            "directory",
            vec![
                ("instance_id", erasure.instance_id.as_str().into()),
                ("id", erasure.subject_id.as_str().into()),
            ],
            vec![("name", SqlValue::Null), ("email", SqlValue::Null)],
        )])
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "directory",
            vec![("instance_id", instance.as_str().into())],
        )]
    }

    fn vault(&self) -> Option<&Vault> {
        Some(&self.vault)
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Every value stored under the cache `name` in Redis, whatever its type.
async fn redis_values(name: &str) -> Vec<Vec<u8>> {
    let client = redis::Client::open(redis_url()).expect("REDIS_URL is a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("no Redis server at {} ({err})", redis_url()));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("strata:cache:{{{name}}}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut values = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let mut found: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap(),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut connection)
                .await
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut connection)
                .await
                .unwrap(),
            other => panic!("unexpected Redis type {other} at {key}"),
        };
        found.push(key.into_bytes());
        values.extend(found);
    }
    values
}

/// The whole database as `pg_dump` writes it: every table of every schema, data and definitions.
fn pg_dump(database: &TestDatabase) -> String {
    let admin = admin_url();
    let (server, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL has a database path");
    let output = std::process::Command::new(postgres_binary("pg_dump"))
        .arg(format!("{server}/{}", database.name))
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a text dump")
}

fn hits(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle.as_bytes())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_an_erasure_no_plaintext_is_left_in_postgres_or_redis() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let pool = database.pool(4);
    sqlx::query(
        "CREATE TABLE directory (instance_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT, \
         email TEXT, PRIMARY KEY (instance_id, id))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (master, _) = MasterKey::generate("k1").unwrap();
    let vault = Vault::new(store.clone(), Keyring::new(master));
    let cache_name = format!("snapshots_{}", database.name);
    let cache: Cache<SnapshotEntry> =
        Cache::redis(&redis_url(), &cache_name, CacheConfig::default()).unwrap();
    let repository = Repository::new(store.clone())
        .with_vault(vault.clone())
        .with_snapshots(Snapshots::new(cache.clone()).every(2));
    let context = Context::new("test", "org-1");
    let secrets = [
        "Ada Secretname",
        "ada.secret@example.com",
        "ada.second@example.com",
    ];
    let command = |email: &str| ("Ada Secretname".to_owned(), email.to_owned());
    repository
        .execute::<Customer>(INSTANCE, "c-1", command(secrets[1]), &context)
        .await
        .unwrap();
    repository
        .execute::<Customer>(INSTANCE, "c-1", command(secrets[2]), &context)
        .await
        .unwrap();
    repository
        .execute::<Customer>(
            INSTANCE,
            "c-2",
            ("Bob Kept".to_owned(), "bob@example.com".to_owned()),
            &context,
        )
        .await
        .unwrap();
    // A load of c-1 reads two events and writes its snapshot to Redis.
    let loaded = repository.load::<Customer>(INSTANCE, "c-1").await.unwrap();
    assert_eq!(
        loaded.state.email,
        Some(Personal::Value(secrets[2].to_owned()))
    );

    let runtime = ProjectionRuntime::builder(
        store.clone(),
        PgProjections::new(store.pools().projection().clone()),
    )
    .register(Typed(Directory {
        vault: vault.clone(),
    }))
    .unwrap()
    .start()
    .await
    .unwrap();
    let instance = InstanceId::new(INSTANCE).unwrap();
    let all = Query::builder().instance(INSTANCE).build().unwrap();
    let head = store.latest_position(&all).await.unwrap().unwrap();
    runtime
        .catch_up("directory", &instance, head, Duration::from_secs(20))
        .await
        .unwrap();

    // Before: the read model holds the plaintext (so the scan can find it); the events and the
    // Redis snapshot hold it sealed only.
    let dump = pg_dump(&database);
    assert_eq!(hits(dump.as_bytes(), secrets[0]), 1, "the read model's row");
    let redis = redis_values(&cache_name).await;
    assert!(!redis.is_empty(), "the snapshot is in Redis");
    for secret in secrets {
        assert_eq!(
            redis.iter().map(|value| hits(value, secret)).sum::<usize>(),
            0
        );
        assert_eq!(
            store
                .query(&all)
                .await
                .unwrap()
                .iter()
                .map(|e| hits(e.raw_payload.json().unwrap_or("").as_bytes(), secret))
                .sum::<usize>(),
            0
        );
    }

    // Erase c-1 while the projection runs.
    let erasure = vault.erase(INSTANCE, "c-1", &context).await.unwrap();
    let record = erasure.recorded.unwrap();
    runtime
        .catch_up(
            "directory",
            &instance,
            record.position,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    // Every read path now answers erased; the snapshot that held it sealed is gone at the next load.
    let loaded = repository.load::<Customer>(INSTANCE, "c-1").await.unwrap();
    assert_eq!(
        (loaded.state.name, loaded.state.email),
        (Some(Personal::Erased), Some(Personal::Erased))
    );

    let dump = pg_dump(&database);
    let redis = redis_values(&cache_name).await;
    for secret in secrets {
        assert_eq!(hits(dump.as_bytes(), secret), 0, "{secret} in the database");
        assert_eq!(
            redis.iter().map(|value| hits(value, secret)).sum::<usize>(),
            0,
            "{secret} in Redis"
        );
    }
    assert_eq!(
        hits(dump.as_bytes(), "Bob Kept"),
        1,
        "other subjects keep their data"
    );

    // The projection keeps running, and a rebuild writes the erased mark from the events.
    repository
        .execute::<Customer>(
            INSTANCE,
            "c-2",
            ("Bob Kept".to_owned(), "bob@new.example.com".to_owned()),
            &context,
        )
        .await
        .unwrap();
    let head = store.latest_position(&all).await.unwrap().unwrap();
    runtime
        .catch_up("directory", &instance, head, Duration::from_secs(20))
        .await
        .unwrap();
    runtime.rebuild("directory", Some(&instance)).await.unwrap();
    runtime
        .catch_up("directory", &instance, head, Duration::from_secs(20))
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, name, email FROM directory ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("c-1".to_owned(), None, None),
            (
                "c-2".to_owned(),
                Some("Bob Kept".to_owned()),
                Some("bob@new.example.com".to_owned())
            )
        ]
    );
    let dump = pg_dump(&database);
    for secret in secrets {
        assert_eq!(
            hits(dump.as_bytes(), secret),
            0,
            "{secret} after the rebuild"
        );
    }
    runtime.shutdown(Duration::from_secs(10)).await.unwrap();
    cache.truncate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_forgets_an_erased_subjects_keys_at_once() {
    let database = TestDatabase::create().await;
    // Two stores on their own pools: what two processes are to each other.
    let (here, there) = (database.store(), database.store());
    let (master, _) = MasterKey::generate("k1").unwrap();
    let erasing = Vault::new(here.clone(), Keyring::new(master.clone()));
    let writer = Repository::new(here.clone()).with_vault(erasing.clone());
    let context = Context::new("test", "org-1");
    writer
        .execute::<Customer>(
            INSTANCE,
            "c-1",
            ("Ada Secretname".to_owned(), "ada@example.com".to_owned()),
            &context,
        )
        .await
        .unwrap();
    // The other process would keep the key for an hour: only the database's notice can reach it.
    let reader = Repository::new(there.clone()).with_vault(
        Vault::new(there.clone(), Keyring::new(master)).fresh_for(Duration::from_secs(3600)),
    );
    let email = || async {
        reader
            .load::<Customer>(INSTANCE, "c-1")
            .await
            .unwrap()
            .state
            .email
    };
    assert!(matches!(email().await, Some(Personal::Value(_))));
    // Let its listener connect before the erasure (a notice sent earlier is not heard).
    tokio::time::sleep(Duration::from_millis(300)).await;
    erasing.erase(INSTANCE, "c-1", &context).await.unwrap();
    let noticed = async {
        while email().await != Some(Personal::Erased) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), noticed)
        .await
        .expect("the other process heard the erasure through NOTIFY strata_erased");
}
