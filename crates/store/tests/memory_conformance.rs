//! The in-memory backend runs the same conformance suite as PostgreSQL.

strata_store::conformance_tests!(
    async { strata_store::MemoryStore::new() },
    expiring: async {
        strata_store::MemoryStore::with_idempotency_retention(
            strata_store::conformance::SHORT_RETENTION,
        )
    },
);
