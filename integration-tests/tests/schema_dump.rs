//! `docs/schema.sql` is the schema as `pg_dump --schema-only` prints it after migrating: every
//! table, index, function and grant Strata creates, in one file a reader can search. This test
//! keeps it current: it fails when the file differs from a fresh dump, and
//! `UPDATE_EXPECT=1 cargo xtask test --test schema_dump` rewrites it.

use std::process::Command;

use expect_test::expect_file;
use strata_integration_tests::{TestDatabase, postgres_binary};

/// Lines that name the versions of the server and of pg_dump, carry a key pg_dump draws at random
/// on each run, or set what only newer pg_dumps set: they say nothing about the schema.
fn is_noise(line: &str) -> bool {
    line.starts_with("-- Dumped from database version")
        || line.starts_with("-- Dumped by pg_dump version")
        || line.starts_with("\\restrict")
        || line.starts_with("\\unrestrict")
        || line.starts_with("SET transaction_timeout")
}

/// The pg_dump of the server's own major version when it is installed (an older pg_dump refuses
/// a newer server, a newer one prints more), else the newest.
async fn pg_dump_for(database: &TestDatabase) -> std::path::PathBuf {
    let version: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&database.pool(1))
        .await
        .expect("the server's version");
    let major = version
        .parse::<u32>()
        .map(|number| number / 10_000)
        .unwrap_or(0);
    let same_major = std::path::PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_dump"));
    if same_major.is_file() {
        same_major
    } else {
        postgres_binary("pg_dump")
    }
}

#[tokio::test]
async fn docs_schema_sql_is_what_migrating_creates() {
    let database = TestDatabase::create().await;
    let options = &database.options;
    let output = Command::new(pg_dump_for(&database).await)
        .args(["--schema-only", "--no-owner"])
        .arg(format!("--host={}", options.get_host()))
        .arg(format!("--port={}", options.get_port()))
        .arg(format!("--username={}", options.get_username()))
        .arg(format!("--dbname={}", database.name))
        .env("PGSSLMODE", "prefer")
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8(output.stdout).expect("pg_dump prints UTF-8");
    let schema: String = dump
        .lines()
        .filter(|line| !is_noise(line))
        .map(|line| format!("{line}\n"))
        .collect();
    expect_file!["../../docs/schema.sql"].assert_eq(&schema);
}
