//! The conformance suite again, with every connection running as the restricted `strata_writer`
//! role: the normal path needs no more than that role grants.

strata_store::conformance_tests!(
    strata_integration_tests::fresh_restricted_store(),
    expiring: strata_integration_tests::fresh_expiring_restricted_store(),
);
