//! The conformance suite against the memory connector.

strata_cache::conformance_tests!(async { strata_cache::conformance::Env::memory() });
