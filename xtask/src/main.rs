//! `cargo xtask`: the workspace's tasks, written in Rust so they run wherever cargo does.
//!
//! - `cargo xtask test [args]` finds or starts a PostgreSQL server, installs Chromium and
//!   ChromeDriver (the status page's browser test) and PgBouncer (the tests behind a pooling
//!   proxy) when missing, runs every test of the
//!   workspace against it (extra args go to `cargo test`), and drops the databases the tests made;
//!   without args it also runs the cache's tests with its default features alone (memory only).
//! - `cargo xtask migrate` applies the migrations to `DATABASE_URL` and prints what it applied.
//! - `cargo xtask standby` starts a throwaway primary and a hot standby of it (`pg_basebackup -R`)
//!   on loopback, migrated, prints their URLs for `PgConfig::replica`, and stops and deletes both
//!   when Enter is pressed (`docs/scaling.md`).
//! - `cargo xtask examples` runs `examples/users.rs` in memory and on a fresh PostgreSQL database and
//!   checks that it leaves the database as it found it.
//! - `cargo xtask ci` runs the steps `.ci/run` runs, in the same order, for running CI locally:
//!   format check, clippy (also of each cache connector alone), docs with warnings as errors,
//!   `test`, `examples`. `.ci/run` lists the steps itself rather than calling this, so CI shows
//!   each command it runs.
//! - `cargo xtask bench [--quick] [--json]` runs the benchmarks beside a raw-SQL baseline.
//!
//! This is the matklad `cargo-xtask` pattern: no shell scripts, no extra tools to install.

mod examples;
mod packages;
mod perf;
mod server;

use std::process::Command;

use anyhow::{Context, Result, bail};
use sqlx::Connection;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [cargo test args]   run every test against a real PostgreSQL (found or started)
  migrate                  apply the migrations to DATABASE_URL (default: local server)
  standby                  start a primary and a hot standby on loopback, until Enter
  examples                 run examples/users.rs in memory and on PostgreSQL, check its clean-up
  ci                       what .ci/run does: fmt, clippy, docs, test, examples
  bench [--quick] [--json] benchmarks with a raw-SQL baseline from the same run
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("test") => test(&rest),
        Some("migrate") => migrate(),
        Some("standby") => standby(),
        Some("examples") => examples::run(),
        Some("ci") => ci(),
        Some("bench") if cfg!(debug_assertions) => {
            // Benchmarks of a debug build measure the compiler, not Strata: run it optimised.
            eprintln!("xtask: building the benchmarks in release mode");
            run(Command::new(cargo())
                .args([
                    "run",
                    "--release",
                    "--quiet",
                    "--package",
                    "xtask",
                    "--",
                    "bench",
                ])
                .args(&rest))
        }
        Some("bench") => perf::run(&rest),
        // The projection worker process `bench` starts for P2 and W1P.
        Some("bench-worker") => perf::worker(&rest),
        // The process `bench` builds projection versions in for W1-beside-rebuild.
        Some("bench-rebuilder") => perf::rebuilder(&rest),
        // The subscriber process `bench` starts for S2.
        Some("bench-subscriber") => perf::subscriber(&rest),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

fn standby() -> Result<()> {
    let Some(bindir) = server::find_bindir() else {
        bail!("`cargo xtask standby` needs PostgreSQL's server programs (initdb, pg_basebackup)");
    };
    let primary = server::ThrowawayCluster::start(&bindir, server::BENCH_SETTINGS)?;
    server::runtime()?.block_on(async {
        let pool = sqlx::PgPool::connect(&primary.url()).await?;
        strata_postgres::migrate(&pool).await?;
        pool.close().await;
        anyhow::Ok(())
    })?;
    let standby = primary.start_standby()?;
    println!("primary: {}", primary.url());
    println!("standby: {}", standby.url());
    println!("press Enter to stop both and delete their files");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(standby);
    drop(primary);
    Ok(())
}

fn test(cargo_args: &[String]) -> Result<()> {
    packages::ensure_test_programs()?;
    let server = server::PgServer::find_or_start()?;
    eprintln!("xtask: testing against {}", server.describe());
    let runtime = server::runtime()?;
    runtime.block_on(server::drop_test_databases(server.url()))?;
    let status = Command::new(cargo())
        .args(["test", "--workspace"])
        .args(cargo_args)
        .env("DATABASE_URL", server.url())
        .status()
        .context("running cargo test")?;
    if let Err(err) = runtime.block_on(server::drop_test_databases(server.url())) {
        eprintln!("xtask: could not drop the test databases: {err:#}");
    }
    if !status.success() {
        bail!("tests failed");
    }
    if cargo_args.is_empty() {
        // The workspace build turns every cache connector on; the cache's own tests also run
        // with its default features alone, as a service that uses only the memory cache builds it.
        run(Command::new(cargo()).args(["test", "--package", "strata-cache"]))?;
    }
    Ok(())
}

fn migrate() -> Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| server::DEFAULT_URL.to_owned());
    let runtime = server::runtime()?;
    runtime.block_on(async {
        // A single connection first: its error names the cause (refused, bad password…), where a
        // pool would only report that it timed out.
        let probe = sqlx::PgConnection::connect(&url).await.with_context(|| {
            format!(
                "connecting to {} (is PostgreSQL running there? set DATABASE_URL to choose the database)",
                server::redact(&url)
            )
        })?;
        probe.close().await.ok();
        let pool = sqlx::PgPool::connect(&url)
            .await
            .with_context(|| format!("connecting to {}", server::redact(&url)))?;
        let migrated = strata_postgres::migrate(&pool)
            .await
            .context("applying migrations")?;
        if migrated.is_empty() {
            println!("{}: up to date, nothing to apply", server::redact(&url));
        }
        for migration in &migrated.migrations {
            println!("applied {} {}", migration.version, migration.description);
        }
        if !migrated.functions.is_empty() {
            println!(
                "applied {} SQL function definition(s), new or changed: {}",
                migrated.functions.len(),
                migrated.functions.join(", ")
            );
        }
        Ok(())
    })
}

/// When updating this, also update `.ci/run`: they run the same steps.
fn ci() -> Result<()> {
    run(Command::new(cargo()).args(["fmt", "--all", "--check"]))?;
    run(Command::new(cargo()).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Each cache connector builds alone (the workspace build has them all on).
    for connector in ["memory", "postgres", "redis"] {
        run(Command::new(cargo()).args([
            "clippy",
            "--package",
            "strata-cache",
            "--no-default-features",
            "--features",
            connector,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(Command::new(cargo())
        .args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    test(&[])?;
    examples::run()
}

pub(crate) fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
