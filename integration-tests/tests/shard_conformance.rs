//! The storage conformance suite on a store of two shards on two real PostgreSQL servers: the
//! shared test server and a throwaway one this test binary starts once. The suite's instances are
//! placed so that its multi-instance cases cross the servers (`crates/shard/tests/support`), and
//! the one case a store of several shards must refuse is replaced by the per-shard check in
//! `crates/shard/tests/memory_conformance.rs`.

use strata_event::InstanceId;
use strata_integration_tests::{TestDatabase, ThrowawayServer, expiring_config, test_config};
use strata_postgres::{PgConfig, PgStore};
use strata_shard::{Fallback, ShardName, ShardedStore};

include!("../../crates/shard/tests/support/cases.rs");

async fn two_servers(config: fn() -> PgConfig) -> ShardedStore<PgStore> {
    let shared = TestDatabase::create().await.store_with(config());
    let other = TestDatabase::create_on(&ThrowawayServer::shared().url())
        .await
        .store_with(config());
    let (one, two) = (
        ShardName::new("shared").expect("a valid name"),
        ShardName::new("throwaway").expect("a valid name"),
    );
    let store = ShardedStore::new(
        vec![(one.clone(), shared), (two.clone(), other)],
        Fallback::StableHash,
    )
    .expect("two distinct shards");
    for (names, shard) in [(FIRST_SHARD, &one), (SECOND_SHARD, &two)] {
        for name in names {
            let instance = InstanceId::new(*name).expect("a valid instance");
            store
                .assign(instance, shard)
                .await
                .expect("an empty instance is assigned");
        }
    }
    store
}

sharded_conformance_cases!(two_servers(test_config), expiring: two_servers(expiring_config));
