//! `strata cache prune|truncate` against the PostgreSQL cache connector's tables.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_integration_tests::TestDatabase;
use support::{assert_success, stderr, stdout, strata};

/// How many objects cache `name` holds.
async fn objects(pool: &sqlx::PgPool, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM cache.objects WHERE cache_name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_expired_entries_and_truncate_empties_one_cache() {
    let database = TestDatabase::create().await;
    let url = support::url(&database);
    let pool = database.pool(2);
    // What the connector does when it starts a cache and stores objects, through the same SQL
    // functions (migration ..._cache.sql).
    for setup in [
        "SELECT cache.create_partitions('demo')",
        "SELECT cache.create_partitions('other')",
        r"SELECT cache.set_object('demo', ARRAY['id'], ARRAY['old'], '\x00')",
        r"SELECT cache.set_object('demo', ARRAY['id'], ARRAY['fresh'], '\x00')",
        r"SELECT cache.set_object('other', ARRAY['id'], ARRAY['kept'], '\x00')",
        "UPDATE cache.objects SET created_at = now() - interval '2 hours' \
         WHERE cache_name = 'demo' AND id = (SELECT object_id FROM cache.string_keys \
         WHERE cache_name = 'demo' AND index_key = 'old')",
    ] {
        sqlx::query(setup).execute(&pool).await.unwrap();
    }

    let pruned = strata(&url, &["cache", "prune", "demo", "--max-age", "1h"], None);
    assert_success(&pruned);
    assert!(
        stdout(&pruned).contains("pruned 1 objects"),
        "{}",
        stdout(&pruned)
    );
    assert_eq!(objects(&pool, "demo").await, 1);

    let refused = strata(&url, &["cache", "truncate", "demo"], None);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(objects(&pool, "demo").await, 1);

    let truncated = strata(&url, &["cache", "truncate", "demo", "--yes"], None);
    assert_success(&truncated);
    assert!(
        stdout(&truncated).contains("1 objects removed"),
        "{}",
        stdout(&truncated)
    );
    assert_eq!(objects(&pool, "demo").await, 0);
    assert_eq!(
        objects(&pool, "other").await,
        1,
        "other caches are untouched"
    );

    let unknown = strata(&url, &["cache", "prune", "nope"], None);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no cache named \"nope\""),
        "{}",
        stderr(&unknown)
    );
    let invalid = strata(&url, &["cache", "truncate", "Bad-Name", "--yes"], None);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        stderr(&invalid).contains("invalid cache name \"Bad-Name\""),
        "{}",
        stderr(&invalid)
    );
    let bad_age = strata(&url, &["cache", "prune", "demo", "--max-age", "soon"], None);
    assert_eq!(bad_age.status.code(), Some(2));
}
