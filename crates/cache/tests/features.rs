//! Each connector is a feature: a service that uses the memory cache compiles neither sqlx nor the
//! Redis client. Checked on the dependency tree Cargo resolves for each feature set.

use std::process::Command;

/// The names of the packages `strata-cache` depends on (normal dependencies, transitively) with
/// `features` and no defaults.
fn dependencies(features: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--package",
            "strata-cache",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--no-default-features",
            "--features",
            features,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn has(dependencies: &[String], name: &str) -> bool {
    dependencies.iter().any(|dependency| dependency == name)
}

#[test]
fn the_memory_cache_compiles_no_database_client() {
    let memory = dependencies("memory");
    assert!(has(&memory, "moka"), "{memory:?}");
    assert!(!has(&memory, "sqlx"), "{memory:?}");
    assert!(!has(&memory, "redis"), "{memory:?}");
}

#[test]
fn each_connector_brings_only_its_own_client() {
    let postgres = dependencies("postgres");
    assert!(has(&postgres, "sqlx"), "{postgres:?}");
    assert!(
        !has(&postgres, "redis") && !has(&postgres, "moka"),
        "{postgres:?}"
    );
    let redis = dependencies("redis");
    assert!(has(&redis, "redis"), "{redis:?}");
    assert!(!has(&redis, "sqlx") && !has(&redis, "moka"), "{redis:?}");
}
