//! The typed layer's conformance suite, run against PostgreSQL: the same cases the in-memory store
//! passes (crates/domain/tests/memory_conformance.rs), each on a fresh database.

strata_domain::conformance_tests!(strata_integration_tests::fresh_store());
