//! The operator commands added around the core ones: `migrate` and `migrate info`, `roles create`,
//! `--output json` on every command, progress lines for logs, and the unmigrated-database hint.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use strata_integration_tests::TestDatabase;
use support::{assert_success, command_line, stderr, stdout, strata, strata_with_env, url};

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reports_as_json_and_info_shows_applied_and_pending() {
    let database = TestDatabase::create_empty().await;
    let url = url(&database);

    // Unmigrated: the error names the command that fixes it.
    let unmigrated = strata(&url, &["query", "--all-instances"], None);
    assert_eq!(unmigrated.status.code(), Some(1));
    assert!(
        stderr(&unmigrated).contains("strata migrate"),
        "{}",
        stderr(&unmigrated)
    );
    let pending = strata(&url, &["migrate", "info", "--output", "json"], None);
    assert_success(&pending);
    let lines = json_lines(&stdout(&pending));
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|line| line["state"] == "pending"),
        "{lines:?}"
    );

    let migrated = strata(&url, &["migrate", "--output", "json"], None);
    assert_success(&migrated);
    let report: serde_json::Value = serde_json::from_str(stdout(&migrated).trim()).unwrap();
    assert_eq!(
        report["migrations"].as_array().unwrap().len(),
        strata_postgres::MIGRATOR.iter().count()
    );
    assert_eq!(
        report["functions"].as_array().unwrap().len(),
        strata_postgres::FUNCTIONS.len()
    );
    let again = strata(&url, &["migrate", "run"], None);
    assert_success(&again);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));

    let applied = strata(&url, &["migrate", "info", "--output", "json"], None);
    assert_success(&applied);
    let lines = json_lines(&stdout(&applied));
    assert!(
        lines
            .iter()
            .all(|line| line["state"] == "applied" || line["state"] == "current"),
        "{lines:?}"
    );
    let table = strata(&url, &["migrate", "info", "--output", "table"], None);
    assert!(stdout(&table).starts_with("KIND"), "{}", stdout(&table));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_create_names_what_it_created_and_reused() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let suffix = format!("{}_{}", std::process::id(), database.name.len());
    let (writer, migrator) = (
        format!("cli_writer_{suffix}"),
        format!("cli_migrator_{suffix}"),
    );
    let args = [
        "roles",
        "create",
        "--writer",
        &writer,
        "--migrator",
        &migrator,
        "--output",
        "json",
    ];
    let created = strata(&url, &args, None);
    assert_success(&created);
    let lines = json_lines(&stdout(&created));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "writer");
    assert_eq!(lines[0]["role"], writer.as_str());
    assert_eq!(lines[0]["created"], true);
    let reused = strata(&url, &args[..6], None);
    assert_success(&reused);
    assert!(
        stdout(&reused).contains("already existed"),
        "{}",
        stdout(&reused)
    );
    let bad = strata(&url, &["roles", "create", "--writer", "pg_sneaky"], None);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("pg_"), "{}", stderr(&bad));

    let pool = database.pool(1);
    for role in [&writer, &migrator] {
        sqlx::raw_sql(&format!(r#"DROP OWNED BY "{role}"; DROP ROLE "{role}""#))
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_work_prints_progress_lines_when_stderr_is_not_a_terminal() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let input: Vec<String> = (0..30)
        .map(|n| command_line("tenant-1", &format!("u-{n}"), "user.added", n))
        .collect();
    let pushed = strata_with_env(
        &url,
        &["push", "--batch", "5"],
        Some(&input.join("\n")),
        &[("STRATA_PROGRESS_EVERY", "0")],
    );
    assert_success(&pushed);
    let log = stderr(&pushed);
    let progress: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("progress: "))
        .collect();
    assert!(progress.len() >= 6, "{log}");
    assert!(
        progress.iter().any(|line| line.contains("30 lines")),
        "{progress:?}"
    );

    let other = TestDatabase::create().await;
    let mirrored = strata_with_env(
        &url,
        &[
            "mirror",
            "--from",
            &url,
            "--to",
            &support::url(&other),
            "--batch",
            "10",
            "--output",
            "json",
        ],
        None,
        &[("STRATA_PROGRESS_EVERY", "0")],
    );
    assert_success(&mirrored);
    assert!(
        stderr(&mirrored).contains("progress: 30/30 events"),
        "{}",
        stderr(&mirrored)
    );
    let report: serde_json::Value = serde_json::from_str(stdout(&mirrored).trim()).unwrap();
    assert_eq!(report["copied"], 30);
    assert_eq!(report["instances"][0]["instance_id"], "tenant-1");
    assert_eq!(report["instances"][0]["destination"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_commands_report_as_json() {
    let database = TestDatabase::create().await;
    let url = url(&database);
    let pool = database.pool(1);
    for setup in [
        "SELECT cache.create_partitions('demo')",
        r"SELECT cache.set_object('demo', ARRAY['id'], ARRAY['one'], '\x00')",
    ] {
        sqlx::query(setup).execute(&pool).await.unwrap();
    }
    let pruned = strata(&url, &["cache", "prune", "demo", "--output", "json"], None);
    assert_success(&pruned);
    let report: serde_json::Value = serde_json::from_str(stdout(&pruned).trim()).unwrap();
    assert_eq!(report["action"], "prune");
    assert_eq!(report["removed"], 0);
    let truncated = strata(
        &url,
        &["cache", "truncate", "demo", "--yes", "--output", "json"],
        None,
    );
    assert_success(&truncated);
    let report: serde_json::Value = serde_json::from_str(stdout(&truncated).trim()).unwrap();
    assert_eq!(report["removed"], 1);
}
