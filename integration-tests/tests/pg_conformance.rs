//! The storage conformance suite, run against PostgreSQL: the same cases the in-memory backend
//! passes, each on a fresh database.

strata_store::conformance_tests!(
    strata_integration_tests::fresh_store(),
    expiring: strata_integration_tests::fresh_expiring_store(),
);
