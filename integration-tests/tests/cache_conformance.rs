//! The cache conformance suite (strata-cache's `conformance` feature) against the PostgreSQL and
//! Redis connectors. PostgreSQL tests get a fresh database each; Redis tests share the server at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`) and stay apart through unique cache names.

use strata_cache::conformance::Env;
use strata_cache::{ConnectorKind, Connectors};
use strata_integration_tests::TestDatabase;

async fn postgres_env() -> Env {
    let database = TestDatabase::create().await;
    Env {
        connector: ConnectorKind::Postgres,
        connectors: Connectors::default().with_postgres(database.pool(8)),
    }
}

/// The Redis server tests use.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis_env() -> Env {
    // The connector turns a missing server into misses, which would surface as puzzling assertion
    // failures: check it is there first and say so plainly.
    let url = redis_url();
    let address = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Err(err) = tokio::net::TcpStream::connect(&address).await {
        panic!("no Redis server at {url} ({err}); start one or set REDIS_URL");
    }
    Env {
        connector: ConnectorKind::Redis,
        connectors: Connectors::default()
            .with_redis(&url)
            .expect("REDIS_URL is a Redis URL"),
    }
}

mod postgres {
    strata_cache::conformance_tests!(super::postgres_env());
}

mod redis {
    strata_cache::conformance_tests!(super::redis_env());
}

/// A case the macro does not list would never run, on any connector.
#[test]
fn every_cache_case_is_listed() {
    strata_store::conformance::assert_every_case_listed(
        include_str!("../../crates/cache/src/conformance.rs"),
        "strata_cache::conformance_tests!",
    );
}
