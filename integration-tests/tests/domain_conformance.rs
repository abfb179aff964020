//! The typed layer's conformance suite, run against PostgreSQL: the same cases the in-memory store
//! passes (crates/domain/tests/memory_conformance.rs), each on a fresh database; and again with
//! every connection as the restricted `strata_writer` role, so everything the typed layer does
//! (personal-data keys created, erased and rewrapped included) needs no more than that role.

strata_domain::conformance_tests!(strata_integration_tests::fresh_store());

mod as_the_writer_role {
    strata_domain::conformance_tests!(strata_integration_tests::fresh_restricted_store());
}
