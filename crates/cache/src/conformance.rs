//! The conformance suite: every semantic in the crate docs as a test any connector can run.
//!
//! Each case gets an [`Env`] (the connector to test and what it runs on) and panics (fails the
//! test) when the connector breaks a rule. Every cache a case makes has a fresh, unique name, so
//! cases running in parallel on one Redis or one database never see each other's entries. Run them
//! all with [`conformance_tests!`](crate::conformance_tests), which writes one `#[tokio::test]` per
//! case around an expression yielding a future of an [`Env`]:
//!
//! ```ignore
//! strata_cache::conformance_tests!(async { strata_cache::conformance::Env::memory() });
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//!
//! Timing: ages are a few hundred milliseconds, and the suite only ever asserts that an entry is
//! present well within its age and gone after at least twice its age, never anything at the edge.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A failed expectation here is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Cache, CacheConfig, CacheInvalidator, ConnectorKind, Connectors, Entry, Error, Index};

/// Writes one `#[tokio::test]` per conformance case. `$env` is an expression evaluating to a future
/// that yields an [`Env`]; it is evaluated once per test.
#[macro_export]
macro_rules! conformance_tests {
    ($env:expr) => {
        $crate::conformance_tests!(@cases $env;
            multi_index_set_get,
            ghost_is_invalidated,
            overwrite_replaces_every_key,
            delete_drops_keys_invalidate_drops_objects,
            expires_by_max_age,
            expires_by_last_use_age,
            truncate_is_isolated_between_caches,
            concurrent_set_get,
            concurrent_overlapping_replacements,
            invalidator_hook,
            bad_input_is_refused,
            prune_keeps_live_entries,
        );
    };
    (@cases $env:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let env = $env.await;
                $crate::conformance::$case(&env).await;
            }
        )*
    };
}

/// The connector under test and the resources it runs on.
#[derive(Debug, Clone)]
pub struct Env {
    /// The connector every cache of the case uses.
    pub connector: ConnectorKind,
    /// What it runs on.
    pub connectors: Connectors,
}

impl Env {
    /// The memory connector.
    pub fn memory() -> Env {
        Env {
            connector: ConnectorKind::Memory,
            connectors: Connectors::default(),
        }
    }

    /// A new cache with a unique name and `config` (its connector replaced by this env's).
    pub async fn cache(&self, config: CacheConfig) -> Cache<Instance> {
        let config = CacheConfig {
            connector: self.connector,
            ..config
        };
        Cache::start(&unique_name(), config, &self.connectors)
            .await
            .unwrap()
    }
}

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A cache name no other test (in this process, another process, or an earlier run) uses.
pub fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "t{:x}_{:x}_{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        NAME_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The suite's indices: an instance by id and by domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceIndex {
    /// One key: the id.
    Id,
    /// Any number of keys: the domains.
    Domain,
}

impl Index for InstanceIndex {
    const ALL: &'static [Self] = &[InstanceIndex::Id, InstanceIndex::Domain];

    fn name(self) -> &'static str {
        match self {
            InstanceIndex::Id => "id",
            InstanceIndex::Domain => "domain",
        }
    }
}

/// The suite's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Found by [`InstanceIndex::Id`].
    pub id: String,
    /// Found by [`InstanceIndex::Domain`].
    pub domains: Vec<String>,
    /// Tells versions apart.
    pub version: u32,
}

impl Instance {
    /// An instance with these domains, at version 1.
    pub fn new(id: &str, domains: &[&str]) -> Instance {
        Instance {
            id: id.to_owned(),
            domains: domains.iter().map(|domain| (*domain).to_owned()).collect(),
            version: 1,
        }
    }
}

impl Entry for Instance {
    type Index = InstanceIndex;

    fn keys(&self, index: InstanceIndex) -> Vec<String> {
        match index {
            InstanceIndex::Id => vec![self.id.clone()],
            InstanceIndex::Domain => self.domains.clone(),
        }
    }
}

use InstanceIndex::{Domain, Id};

fn no_ages() -> CacheConfig {
    CacheConfig::default()
}

/// A value is found through every key of every index, and nothing else finds it.
pub async fn multi_index_set_get(env: &Env) {
    let cache = env.cache(no_ages()).await;
    let acme = Instance::new("i1", &["acme.example", "acme.test"]);
    cache.set(acme.clone()).await.unwrap();
    assert_eq!(cache.get(Id, "i1").await, Some(acme.clone()));
    assert_eq!(cache.get(Domain, "acme.example").await, Some(acme.clone()));
    assert_eq!(cache.get(Domain, "acme.test").await, Some(acme));
    // A key of one index does not find anything in another.
    assert_eq!(cache.get(Domain, "i1").await, None);
    assert_eq!(cache.get(Id, "acme.example").await, None);
    assert_eq!(cache.get(Id, "i2").await, None);

    let other = Instance::new("i2", &["other.example"]);
    cache.set(other.clone()).await.unwrap();
    assert_eq!(cache.get(Id, "i2").await, Some(other));
    assert_eq!(cache.get(Id, "i1").await.unwrap().id, "i1");
}

/// Setting a value whose key already found another object removes that object entirely: its other
/// keys find nothing.
pub async fn ghost_is_invalidated(env: &Env) {
    let cache = env.cache(no_ages()).await;
    cache
        .set(Instance::new("i1", &["a.example", "b.example"]))
        .await
        .unwrap();
    // b.example moves to i2.
    let i2 = Instance::new("i2", &["b.example", "c.example"]);
    cache.set(i2.clone()).await.unwrap();
    assert_eq!(cache.get(Domain, "b.example").await, Some(i2.clone()));
    assert_eq!(
        cache.get(Id, "i1").await,
        None,
        "i1 stayed reachable by its id"
    );
    assert_eq!(
        cache.get(Domain, "a.example").await,
        None,
        "i1 stayed reachable by a domain"
    );
    assert_eq!(cache.get(Domain, "c.example").await, Some(i2.clone()));
    assert_eq!(cache.get(Id, "i2").await, Some(i2));
}

/// Writing a new version of an object replaces it under every key, and a key the new version dropped
/// finds nothing.
pub async fn overwrite_replaces_every_key(env: &Env) {
    let cache = env.cache(no_ages()).await;
    cache
        .set(Instance::new("i1", &["old.example", "kept.example"]))
        .await
        .unwrap();
    let mut v2 = Instance::new("i1", &["kept.example", "new.example"]);
    v2.version = 2;
    cache.set(v2.clone()).await.unwrap();
    assert_eq!(cache.get(Id, "i1").await, Some(v2.clone()));
    assert_eq!(cache.get(Domain, "kept.example").await, Some(v2.clone()));
    assert_eq!(cache.get(Domain, "new.example").await, Some(v2));
    assert_eq!(cache.get(Domain, "old.example").await, None);
}

/// `delete` removes only the keys; `invalidate` removes the objects with all their keys.
pub async fn delete_drops_keys_invalidate_drops_objects(env: &Env) {
    let cache = env.cache(no_ages()).await;
    let i1 = Instance::new("i1", &["a.example", "b.example"]);
    let i2 = Instance::new("i2", &["c.example"]);
    cache.set(i1.clone()).await.unwrap();
    cache.set(i2.clone()).await.unwrap();

    cache.delete(Domain, &["a.example"]).await;
    assert_eq!(cache.get(Domain, "a.example").await, None);
    assert_eq!(cache.get(Id, "i1").await, Some(i1.clone()));
    assert_eq!(cache.get(Domain, "b.example").await, Some(i1));

    cache.invalidate(Domain, &["b.example"]).await;
    assert_eq!(cache.get(Domain, "b.example").await, None);
    assert_eq!(
        cache.get(Id, "i1").await,
        None,
        "invalidate left the object"
    );

    // Unknown keys, and keys that could never exist, are ignored.
    cache.invalidate(Id, &["nobody", ""]).await;
    cache.delete(Id, &["nobody", ""]).await;
    let none: &[&str] = &[];
    cache.invalidate(Id, none).await;
    assert_eq!(cache.get(Id, "i2").await, Some(i2.clone()));

    // Deleting every key of an object makes it unreachable, and setting it again works.
    cache.delete(Id, &["i2"]).await;
    cache.delete(Domain, &["c.example"]).await;
    assert_eq!(cache.get(Id, "i2").await, None);
    assert_eq!(cache.get(Domain, "c.example").await, None);
    cache.set(i2.clone()).await.unwrap();
    assert_eq!(cache.get(Domain, "c.example").await, Some(i2));
}

/// An entry is gone after twice its `max_age`, even when read all along.
pub async fn expires_by_max_age(env: &Env) {
    let age = Duration::from_millis(400);
    let cache = env
        .cache(CacheConfig {
            max_age: Some(age),
            ..CacheConfig::default()
        })
        .await;
    let i1 = Instance::new("i1", &["a.example"]);
    cache.set(i1.clone()).await.unwrap();
    assert_eq!(cache.get(Id, "i1").await, Some(i1));
    // Reads do not extend max_age.
    let deadline = tokio::time::Instant::now() + age * 2;
    while tokio::time::Instant::now() < deadline {
        let _ = cache.get(Domain, "a.example").await;
        tokio::time::sleep(age / 8).await;
    }
    assert_eq!(cache.get(Id, "i1").await, None);
    assert_eq!(cache.get(Domain, "a.example").await, None);
}

/// Reads keep an entry alive past its `last_use_age`; once unread for twice that, it is gone.
pub async fn expires_by_last_use_age(env: &Env) {
    let age = Duration::from_millis(600);
    let cache = env
        .cache(CacheConfig {
            last_use_age: Some(age),
            ..CacheConfig::default()
        })
        .await;
    let i1 = Instance::new("i1", &["a.example", "b.example"]);
    cache.set(i1.clone()).await.unwrap();
    // Read every sixth of the age for twice the age: each read is far inside the window the
    // previous one opened, even with the coarse touch of the persistent connectors.
    let deadline = tokio::time::Instant::now() + age * 2;
    while tokio::time::Instant::now() < deadline {
        assert_eq!(
            cache.get(Id, "i1").await,
            Some(i1.clone()),
            "a read entry expired"
        );
        tokio::time::sleep(age / 6).await;
    }
    // Reading through one key keeps the object alive for its other keys too.
    assert_eq!(cache.get(Domain, "b.example").await, Some(i1));
    tokio::time::sleep(age * 2).await;
    assert_eq!(cache.get(Id, "i1").await, None);
    assert_eq!(cache.get(Domain, "a.example").await, None);
}

/// Truncating one cache leaves another cache (same connector, same keys) untouched.
pub async fn truncate_is_isolated_between_caches(env: &Env) {
    let first = env.cache(no_ages()).await;
    let second = env.cache(no_ages()).await;
    let i1 = Instance::new("i1", &["a.example"]);
    first.set(i1.clone()).await.unwrap();
    second.set(i1.clone()).await.unwrap();
    for n in 0..50 {
        first
            .set(Instance::new(&format!("f{n}"), &[]))
            .await
            .unwrap();
    }
    first.truncate().await;
    assert_eq!(first.get(Id, "i1").await, None);
    assert_eq!(first.get(Domain, "a.example").await, None);
    assert_eq!(first.get(Id, "f7").await, None);
    assert_eq!(second.get(Id, "i1").await, Some(i1.clone()));
    assert_eq!(second.get(Domain, "a.example").await, Some(i1.clone()));
    // The truncated cache works afterwards.
    first.set(i1.clone()).await.unwrap();
    assert_eq!(first.get(Domain, "a.example").await, Some(i1));
}

/// Many tasks set and get at once: every read returns either nothing or a consistent value for the
/// key asked, and the ghost rule holds when writers fight over shared keys.
pub async fn concurrent_set_get(env: &Env) {
    let cache = env.cache(no_ages()).await;
    let tasks = 16;
    let per_task = 20;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let cache = cache.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..per_task {
                let id = format!("t{task}_{n}");
                let own = Instance::new(&id, &[&format!("{id}.example")]);
                cache.set(own.clone()).await.unwrap();
                assert_eq!(cache.get(Id, &id).await, Some(own));
                // Everyone also rewrites the shared instance, with domains that overlap.
                let mut shared = Instance::new(
                    "shared",
                    &[
                        "shared.example",
                        &format!("shared-{}.example", (task + n) % 3),
                    ],
                );
                shared.version = task * 1000 + n;
                cache.set(shared).await.unwrap();
                if let Some(found) = cache.get(Domain, "shared.example").await {
                    assert_eq!(found.id, "shared");
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    for task in 0..tasks {
        for n in 0..per_task {
            let id = format!("t{task}_{n}");
            assert_eq!(
                cache
                    .get(Domain, &format!("{id}.example"))
                    .await
                    .unwrap()
                    .id,
                id
            );
        }
    }
    // Exactly one version of the shared instance is reachable, through all of its keys, and no
    // older version through any.
    let last = cache.get(Id, "shared").await.expect("shared instance");
    for domain in &last.domains {
        assert_eq!(cache.get(Domain, domain).await.as_ref(), Some(&last));
    }
    for other in 0..3 {
        let domain = format!("shared-{other}.example");
        if !last.domains.contains(&domain) {
            assert_eq!(
                cache.get(Domain, &domain).await,
                None,
                "an old version stayed reachable"
            );
        }
    }
}

/// Writers replace, invalidate and delete objects whose keys overlap in every way (one shared key,
/// several, none but an older object's) from many tasks at once. Afterwards every object a key
/// finds is found by each of its keys: no key was left on a replaced object.
pub async fn concurrent_overlapping_replacements(env: &Env) {
    let cache = env.cache(no_ages()).await;
    let (tasks, per_task, ids, domains) = (12u32, 40u32, 6u32, 9u32);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let cache = cache.clone();
        handles.push(tokio::spawn(async move {
            for n in 0..per_task {
                // A fixed spread over a small key space, so writers keep meeting.
                let mix = task
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(n.wrapping_mul(40_503));
                let id = format!("o{}", mix % ids);
                let first = format!("d{}.example", (mix >> 3) % domains);
                let second = format!("d{}.example", (mix >> 7) % domains);
                let mut object = Instance::new(&id, &[&first, &second]);
                object.version = task * 1000 + n;
                match mix % 10 {
                    0 => cache.invalidate(Domain, &[first]).await,
                    1 => cache.delete(Domain, &[second]).await,
                    _ => cache.set(object).await.unwrap(),
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut found_any = false;
    for n in 0..domains {
        let domain = format!("d{n}.example");
        let Some(object) = cache.get(Domain, &domain).await else {
            continue;
        };
        found_any = true;
        assert!(
            object.domains.contains(&domain),
            "{domain} found {object:?}"
        );
        assert_eq!(
            cache.get(Id, &object.id).await.as_ref(),
            Some(&object),
            "{domain} finds a version its id does not"
        );
    }
    for n in 0..ids {
        let id = format!("o{n}");
        let Some(object) = cache.get(Id, &id).await else {
            continue;
        };
        found_any = true;
        for domain in &object.domains {
            let by_domain = cache.get(Domain, domain).await;
            // A domain may have been deleted on its own (then it finds nothing); it never finds
            // another object or another version.
            assert!(
                by_domain.is_none() || by_domain.as_ref() == Some(&object),
                "{id} is {object:?} but {domain} finds {by_domain:?}"
            );
        }
    }
    assert!(found_any, "the writers left nothing in the cache");
}

/// The projection hook invalidates by index name and ignores index names it does not know.
pub async fn invalidator_hook(env: &Env) {
    let cache = env.cache(no_ages()).await;
    cache
        .set(Instance::new("i1", &["a.example"]))
        .await
        .unwrap();
    cache
        .set(Instance::new("i2", &["b.example"]))
        .await
        .unwrap();
    let hook: Arc<dyn CacheInvalidator> = Arc::new(cache.clone());
    assert_eq!(hook.cache_name(), cache.name());
    hook.invalidate_keys("no_such_index", &["i1".to_owned()])
        .await;
    assert!(cache.get(Id, "i1").await.is_some());
    hook.invalidate_keys("domain", &["a.example".to_owned()])
        .await;
    assert_eq!(cache.get(Id, "i1").await, None);
    assert!(cache.get(Id, "i2").await.is_some());
}

/// Keys that could never be stored are typed errors on `set` (nothing written) and misses on `get`.
pub async fn bad_input_is_refused(env: &Env) {
    let cache = env.cache(no_ages()).await;
    let err = cache
        .set(Instance::new("i1", &["ok.example", ""]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::EmptyKey { index: "domain" }),
        "{err:?}"
    );
    assert_eq!(
        cache.get(Domain, "ok.example").await,
        None,
        "a refused set wrote"
    );

    let long = "x".repeat(crate::MAX_KEY_LEN + 1);
    let err = cache.set(Instance::new("i1", &[&long])).await.unwrap_err();
    assert!(matches!(err, Error::KeyTooLong { .. }), "{err:?}");

    let err = cache.set(Instance::new("", &[])).await.unwrap_err();
    assert!(matches!(err, Error::EmptyKey { index: "id" }), "{err:?}");

    let err = cache
        .set(Instance::new("i\0d", &["nul.example"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyWithNul { index: "id" }), "{err:?}");
    assert_eq!(
        cache.get(Domain, "nul.example").await,
        None,
        "a refused set wrote"
    );

    assert_eq!(cache.get(Id, "").await, None);
    assert_eq!(cache.get(Id, &long).await, None);
    assert_eq!(cache.get(Id, "i\0d").await, None);

    // Hostile keys are keys like any other: stored and found verbatim, never executed, and never
    // confused with a key they resemble.
    let hostile = [
        "'; DROP TABLE cache.objects; --",
        "%",
        "_",
        "*",
        "a:b:c",
        "\\x00",
        "\u{202e}rtl\u{7}\u{1b}[31m",
        "\u{1F600} emoji",
    ];
    for (n, key) in hostile.iter().enumerate() {
        let value = Instance {
            version: n as u32,
            ..Instance::new(key, &[&format!("{key}.example")])
        };
        cache.set(value.clone()).await.unwrap();
        assert_eq!(cache.get(Id, key).await, Some(value.clone()), "{key:?}");
        assert_eq!(
            cache.get(Domain, &format!("{key}.example")).await,
            Some(value),
            "{key:?}"
        );
    }
    assert_eq!(
        cache.get(Id, "x").await,
        None,
        "a pattern character matched"
    );
    assert_eq!(cache.get(Id, "a:b").await, None, "a key prefix matched");

    for name in ["", "Upper", "1st", "a-b", "x\"; DROP SCHEMA cache; --"] {
        let started = Cache::<Instance>::start(name, CacheConfig::default(), &env.connectors).await;
        assert!(
            matches!(started, Err(Error::InvalidCacheName { .. })),
            "{name}"
        );
    }
    let zero_age = CacheConfig {
        connector: env.connector,
        max_age: Some(Duration::ZERO),
        ..CacheConfig::default()
    };
    let started = Cache::<Instance>::start(&unique_name(), zero_age, &env.connectors).await;
    assert!(matches!(started, Err(Error::InvalidConfig { .. })));
}

/// Pruning removes expired entries and nothing live.
pub async fn prune_keeps_live_entries(env: &Env) {
    let cache = env
        .cache(CacheConfig {
            max_age: Some(Duration::from_millis(300)),
            ..CacheConfig::default()
        })
        .await;
    cache
        .set(Instance::new("old", &["old.example"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = Instance::new("fresh", &["fresh.example"]);
    cache.set(fresh.clone()).await.unwrap();
    cache.prune().await;
    assert_eq!(cache.get(Id, "old").await, None);
    assert_eq!(cache.get(Domain, "fresh.example").await, Some(fresh));
}
