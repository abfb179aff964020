//! `cargo xtask examples`: runs the examples (`users`, `notifications`) as the README says, on the
//! in-memory store and on a fresh PostgreSQL database each, and checks that every PostgreSQL run
//! leaves the database as it found it (nothing registered, no read-model table, no events).

use std::process::Command;

use anyhow::{Context, Result, bail};
use sqlx::{Connection, Executor};

use crate::server;

/// The examples, each run on both backends.
const EXAMPLES: [&str; 2] = ["users", "notifications"];

pub(crate) fn run() -> Result<()> {
    for example in EXAMPLES {
        run_example(example)?;
    }
    Ok(())
}

fn run_example(example: &str) -> Result<()> {
    crate::run(Command::new(crate::cargo()).args(["run", "--quiet", "--example", example]))?;
    let server = server::PgServer::find_or_start()?;
    let runtime = server::runtime()?;
    let admin_url = server.url().to_owned();
    let name = format!("strata_test_{}_example_{example}", std::process::id());
    let url = with_database(&admin_url, &name);
    runtime.block_on(async {
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .context("connecting to the test server")?;
        admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}""#).as_str())
            .await?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let ran = crate::run(
        Command::new(crate::cargo())
            .args(["run", "--quiet", "--example", example])
            .env("DATABASE_URL", &url),
    );
    let checked = ran.and_then(|()| runtime.block_on(left_as_found(&url)));
    runtime.block_on(async {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                .await;
        }
    });
    checked
}

/// Whether the example cleaned up after itself.
async fn left_as_found(url: &str) -> Result<()> {
    let mut connection = sqlx::PgConnection::connect(url).await?;
    let (registered, table, events): (i64, bool, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projections.registry), \
                to_regclass('public.example_users') IS NOT NULL, \
                (SELECT count(*) FROM eventstore.events)",
    )
    .fetch_one(&mut connection)
    .await
    .context("inspecting the example's database")?;
    if registered != 0 || table || events != 0 {
        bail!(
            "the example left things behind: {registered} registered projection(s), \
             example_users exists: {table}, {events} event(s)"
        );
    }
    eprintln!("xtask: the example ran on PostgreSQL and left nothing behind");
    Ok(())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => {
            format!("{server}/{database}{query}")
        }
        _ => format!("{base}/{database}{query}"),
    }
}
