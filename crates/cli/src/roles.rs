//! `strata roles create`: the database's writer and migrator roles, set up on request only.

use anyhow::Context;
use serde::Serialize;
use strata_postgres::admin::RoleNames;

use crate::RolesCommand;
use crate::connect::{connect, redact};
use crate::output::{OutputFormat, report, write_json_line};

/// One role in `strata roles create --output json`.
#[derive(Debug, Serialize)]
struct RoleLine {
    kind: &'static str,
    role: String,
    created: bool,
}

pub(crate) async fn run(command: RolesCommand) -> anyhow::Result<()> {
    let RolesCommand::Create {
        writer,
        migrator,
        database,
        output,
    } = command;
    let url = &database.database_url;
    let store = connect(url).await?;
    let set_up = strata_postgres::admin::set_up_roles(
        store.pools().push(),
        &RoleNames { writer, migrator },
    )
    .await
    .with_context(|| {
        format!(
            "setting up roles in {}: it needs a role allowed to create roles (CREATEROLE) that \
                 owns the schema, and a migrated database (`strata migrate`)",
            redact(url)
        )
    })?;
    let lines: Vec<RoleLine> = set_up
        .into_iter()
        .map(|role| RoleLine {
            kind: role.kind.as_str(),
            role: role.role,
            created: role.created,
        })
        .collect();
    if output.output == OutputFormat::Json {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in &lines {
            write_json_line(&mut out, line)?;
        }
        return Ok(());
    }
    report(output.output, &lines, || {
        lines
            .iter()
            .map(|line| {
                let what = if line.created {
                    "created"
                } else {
                    "already existed (possibly another database's: make sure sharing it is meant)"
                };
                format!(
                    "{} role {}: {what}; granted its rights in {}",
                    line.kind,
                    line.role,
                    redact(url)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
