//! The CLI speaks TLS: managed PostgreSQL services (RDS, Cloud SQL, Azure) require it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_integration_tests::{TestCertificates, ThrowawayServer};
use support::{assert_success, stderr, strata};

#[test]
fn the_cli_connects_with_sslmode_and_checks_the_certificate() {
    let (server, certificates) = ThrowawayServer::start_with_tls();
    let url = |parameters: String| format!("{}?{parameters}", server.url());
    let verified = url(format!(
        "sslmode=verify-full&sslrootcert={}",
        certificates.ca.display()
    ));
    assert_success(&strata(&verified, &["migrate"], None));
    assert_success(&strata(&verified, &["query", "--all-instances"], None));
    assert_success(&strata(
        &url("sslmode=require".to_owned()),
        &["query", "--all-instances"],
        None,
    ));

    let elsewhere = std::env::temp_dir().join(format!("strata-cli-tls-{}", std::process::id()));
    let other = TestCertificates::generate(&elsewhere, "other");
    let wrong = url(format!(
        "sslmode=verify-full&sslrootcert={}",
        other.ca.display()
    ));
    let refused = strata(&wrong, &["query", "--all-instances"], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).to_lowercase().contains("certificate"),
        "{}",
        stderr(&refused)
    );
    let _ = std::fs::remove_dir_all(elsewhere);
}
