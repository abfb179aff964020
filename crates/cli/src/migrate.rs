//! `strata migrate` and `strata migrate info`: apply the schema, or show where a database stands.

use anyhow::Context;
use serde::Serialize;

use crate::connect::{connect, redact};
use crate::output::{OutputFormat, print_listing, report};
use crate::{Database, ListingOutput, MigrateAction, MigrateArgs, ReportOutput};

/// What `strata migrate --output json` prints.
#[derive(Debug, Serialize)]
struct Applied<'a> {
    database: String,
    /// `"version description"` of each versioned migration applied.
    migrations: Vec<String>,
    /// Each function file applied because it was new or changed.
    functions: &'a [&'static str],
}

/// One line of `strata migrate info`.
#[derive(Debug, Serialize)]
struct InfoLine {
    /// `migration` or `function`.
    kind: &'static str,
    /// `version description`, or the function file.
    name: String,
    /// `applied` or `pending` (migrations), `current` or `pending` (functions); `unknown` for a
    /// version the database has and this build does not.
    state: &'static str,
    /// When a migration was applied.
    applied_at: Option<String>,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    match args.action {
        None => apply(&args.database, &args.output).await,
        Some(MigrateAction::Run { database, output }) => apply(&database, &output).await,
        Some(MigrateAction::Info { database, output }) => info(&database, &output).await,
    }
}

async fn apply(database: &Database, output: &ReportOutput) -> anyhow::Result<()> {
    let url = &database.database_url;
    let store = connect(url).await?;
    let migrated = strata_postgres::migrate(store.pools().push())
        .await
        .with_context(|| {
            format!(
                "migrating {} failed: the migrations run in transactions, so fix the cause \
                 (often missing rights: run as a role with strata_migrator) and run again",
                redact(url)
            )
        })?;
    let migrations: Vec<String> = migrated
        .migrations
        .iter()
        .map(|migration| format!("{} {}", migration.version, migration.description))
        .collect();
    let applied = Applied {
        database: redact(url),
        migrations,
        functions: &migrated.functions,
    };
    report(output.output, &applied, || {
        if migrated.is_empty() {
            return format!("{}: up to date, nothing to apply", applied.database);
        }
        let mut lines: Vec<String> = applied
            .migrations
            .iter()
            .map(|migration| format!("applied {migration}"))
            .collect();
        if !applied.functions.is_empty() {
            lines.push(format!(
                "applied {} SQL function definition(s), new or changed: {}",
                applied.functions.len(),
                applied.functions.join(", ")
            ));
        }
        lines.join("\n")
    })
}

async fn info(database: &Database, output: &ListingOutput) -> anyhow::Result<()> {
    let store = connect(&database.database_url).await?;
    let status = strata_postgres::admin::migration_status(store.pools().query())
        .await
        .context("reading the applied migrations")?;
    let mut lines: Vec<InfoLine> = status
        .unknown_versions
        .iter()
        .map(|version| InfoLine {
            kind: "migration",
            name: format!("{version} (not in this build)"),
            state: "unknown",
            applied_at: None,
        })
        .collect();
    lines.extend(status.migrations.iter().map(|migration| {
        InfoLine {
            kind: "migration",
            name: format!("{} {}", migration.version, migration.description),
            state: match migration.applied_at {
                Some(_) => "applied",
                None => "pending",
            },
            applied_at: migration
                .applied_at
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }
    }));
    lines.extend(status.functions.iter().map(|function| InfoLine {
        kind: "function",
        name: function.file.to_owned(),
        state: if function.current {
            "current"
        } else {
            "pending"
        },
        applied_at: None,
    }));
    print_listing(
        OutputFormat::resolve(output.output),
        &lines,
        &["KIND", "NAME", "STATE", "APPLIED AT"],
        "nothing to show",
        |line| {
            vec![
                line.kind.to_owned(),
                line.name.clone(),
                line.state.to_owned(),
                line.applied_at.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        },
    )?;
    if !status.is_current() && OutputFormat::resolve(output.output) == OutputFormat::Table {
        eprintln!("pending work: run `strata migrate`");
    }
    Ok(())
}
