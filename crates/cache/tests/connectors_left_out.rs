//! A configuration that names a connector this build leaves out is refused with a typed error
//! that names the feature, not a panic and not a silent fallback. `cargo xtask test` runs this
//! crate's tests on their own, with the default features (memory only); in a build with every
//! connector on, this file has nothing to check and holds no test.

#![cfg(not(all(feature = "postgres", feature = "redis")))]

use strata_cache::conformance::Instance;
use strata_cache::{Cache, CacheConfig, ConnectorKind, Connectors, Error, ErrorKind};

#[tokio::test]
async fn a_connector_left_out_of_the_build_is_a_typed_error() {
    #[cfg(not(feature = "postgres"))]
    let left_out = ConnectorKind::Postgres;
    #[cfg(all(feature = "postgres", not(feature = "redis")))]
    let left_out = ConnectorKind::Redis;
    let config = CacheConfig {
        connector: left_out,
        ..CacheConfig::default()
    };
    let started = Cache::<Instance>::start("left_out", config, &Connectors::default()).await;
    let Err(err) = started else {
        panic!("a {left_out} cache started without its feature");
    };
    assert!(
        matches!(&err, Error::ConnectorNotEnabled { connector } if *connector == left_out),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.to_string().contains(&format!("`{left_out}` feature")),
        "{err}"
    );
}
