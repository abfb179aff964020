//! The in-memory backend runs the same conformance suite as PostgreSQL.

strata_store::conformance_tests!(async { strata_store::MemoryStore::new() });
