//! Memory-connector specifics the shared suite cannot see: eviction for room never leaves part of
//! an object behind.

use strata_cache::conformance::{Instance, InstanceIndex};
use strata_cache::{Cache, CacheConfig};

#[tokio::test]
async fn eviction_drops_whole_objects() {
    let cache: Cache<Instance> = Cache::memory(
        "small",
        CacheConfig {
            max_entries: 16,
            ..CacheConfig::default()
        },
    )
    .unwrap();
    for n in 0..500 {
        let id = format!("i{n}");
        cache
            .set(Instance::new(&id, &[&format!("{id}.example")]))
            .await
            .unwrap();
    }
    // Let moka finish its pending evictions, then check every object: found by both keys or by
    // neither, never by one alone.
    cache.prune().await;
    let mut found = 0;
    for n in 0..500 {
        let id = format!("i{n}");
        let by_id = cache.get(InstanceIndex::Id, &id).await;
        let by_domain = cache
            .get(InstanceIndex::Domain, &format!("{id}.example"))
            .await;
        assert_eq!(by_id, by_domain, "{id} is only partly cached");
        found += usize::from(by_id.is_some());
    }
    // Every index evicts its least recently used keys, so the newest objects are whole in all
    // (under TinyLFU each index admitted on its own, and sometimes no object kept every key).
    assert!(
        found >= 8,
        "only {found} whole objects kept in a cache of 16 keys per index"
    );
    assert!(found <= 16, "{found} objects kept in a cache of 16 keys");
}
