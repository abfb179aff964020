//! The typed layer's conformance suite on the in-memory store (PostgreSQL runs it in
//! integration-tests/tests/domain_conformance.rs).

strata_domain::conformance_tests!(async { strata_store::MemoryStore::new() });

#[test]
fn every_case_is_listed() {
    strata_domain::conformance::assert_every_case_listed();
}
