//! `strata delete aggregate|instance`: hard delete through `strata_postgres::admin::hard_delete`,
//! after a confirmation, reporting what was removed.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use strata_event::{AggregateRef, InstanceId};
use strata_postgres::admin::{DeleteTarget, HardDelete, HardDeleteError, hard_delete};

use crate::connect::connect;
use crate::output::{confirm, report};
use crate::{Database, ReportOutput, usage};

#[derive(Debug, Subcommand)]
pub(crate) enum DeleteCommand {
    /// Remove one aggregate's events (hot and archived), its idempotency keys and named uniques
    #[command(after_help = "\
The only exception to append-only besides removing an instance: for a court order or data pushed
by mistake. In one transaction it removes the aggregate's events from the hot table and the
archive, the idempotency keys whose push included one of them (a retry then pushes again), their
failed-event records and the unique constraints named with --release-unique (unique constraints
name no aggregate, so others stay), and records who, when, why and how much in
eventstore.removals. Refused while a projection has processed any of the events, unless --rebuild
queues a rebuild of those projections for the instance in the same transaction.
Run it as the migrator role; the writer role may not.

Examples:
  strata delete aggregate --instance tenant-1 --type user --id u-1 --actor dpo@example.com \\
      --reason 'court order 2026-17' --release-unique username=alice --rebuild
  strata delete aggregate --instance t1 --type user --id u-9 --actor ops --reason 'test data' --yes")]
    Aggregate(DeleteAggregateArgs),
    /// Remove every event of an instance (hot and archived), its unique constraints and keys
    #[command(after_help = "\
Like `delete aggregate` for every aggregate of the instance, audited in eventstore.removals.
Stop the instance's writers first: a push that commits after the delete is kept.

Example:
  strata delete instance --instance tenant-9 --actor ops --reason 'tenant left' --rebuild --yes")]
    Instance(DeleteInstanceArgs),
}

/// What every hard delete takes besides its target.
#[derive(Debug, Args)]
pub(crate) struct DeleteCommon {
    /// Who asks (a person, a ticket), recorded with the database role
    #[arg(long, value_name = "WHO")]
    actor: String,
    /// Why, recorded in eventstore.removals
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Queue a rebuild of the projections that processed the removed events instead of refusing
    #[arg(long)]
    rebuild: bool,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteAggregateArgs {
    /// The aggregate's instance
    #[arg(long, value_name = "ID")]
    instance: String,
    /// The aggregate's type
    #[arg(long = "type", value_name = "TYPE")]
    aggregate_type: String,
    /// The aggregate's id
    #[arg(long = "id", value_name = "ID")]
    aggregate_id: String,
    /// Also release this unique constraint, as TYPE=VALUE (repeatable)
    #[arg(long = "release-unique", value_name = "TYPE=VALUE", value_parser = parse_unique)]
    release_unique: Vec<(String, String)>,
    #[command(flatten)]
    common: DeleteCommon,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteInstanceArgs {
    /// The instance
    #[arg(long, value_name = "ID")]
    instance: String,
    #[command(flatten)]
    common: DeleteCommon,
}

/// What `strata delete` prints.
#[derive(Debug, Serialize)]
struct Removed {
    target: String,
    removal_id: i64,
    hot_events: u64,
    archived_events: u64,
    idempotency_keys: u64,
    unique_constraints: u64,
    failed_events: u64,
    projections_rebuilt: Vec<String>,
}

/// `--release-unique TYPE=VALUE`.
pub(crate) fn parse_unique(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((unique_type, value)) if !unique_type.is_empty() && !value.is_empty() => {
            Ok((unique_type.to_owned(), value.to_owned()))
        }
        _ => Err("must be TYPE=VALUE, both non-empty (e.g. username=alice)".into()),
    }
}

pub(crate) async fn run(command: DeleteCommand) -> anyhow::Result<()> {
    let (target, release_unique, common) = match command {
        DeleteCommand::Aggregate(args) => {
            let aggregate =
                AggregateRef::new(args.instance, args.aggregate_type, args.aggregate_id)
                    .map_err(|err| usage(err.to_string()))?;
            (
                DeleteTarget::Aggregate(aggregate),
                args.release_unique,
                args.common,
            )
        }
        DeleteCommand::Instance(args) => {
            let instance = InstanceId::new(args.instance).map_err(|err| usage(err.to_string()))?;
            (DeleteTarget::Instance(instance), Vec::new(), args.common)
        }
    };
    let DeleteCommon {
        actor,
        reason,
        rebuild,
        yes,
        database,
        output,
    } = common;
    if actor.trim().is_empty() || reason.trim().is_empty() {
        return Err(usage("--actor and --reason must not be empty"));
    }
    let request = HardDelete {
        target,
        actor,
        reason,
        rebuild,
        release_unique,
    };
    let store = connect(&database.database_url).await?;
    confirm(
        &format!(
            "remove every event of {} for good, hot and archived{}?",
            request.target,
            if request.rebuild {
                ", and rebuild the projections that processed them"
            } else {
                ""
            }
        ),
        yes,
    )?;
    let removal = match hard_delete(store.pools().push(), &request).await {
        Ok(removal) => removal,
        Err(HardDeleteError::InvalidInput { reason }) => return Err(usage(reason)),
        Err(err) => return Err(anyhow::Error::new(err).context("hard delete refused")),
    };
    let removed = Removed {
        target: request.target.to_string(),
        removal_id: removal.removal_id,
        hot_events: removal.hot_events,
        archived_events: removal.archived_events,
        idempotency_keys: removal.idempotency_keys,
        unique_constraints: removal.unique_constraints,
        failed_events: removal.failed_events,
        projections_rebuilt: removal.projections_rebuilt,
    };
    report(output.output, &removed, || {
        let mut text = format!(
            "removed {}: {} hot and {} archived event(s), {} idempotency key(s), {} unique \
             constraint(s), {} failed-event record(s); recorded as removal {} in \
             eventstore.removals",
            removed.target,
            removed.hot_events,
            removed.archived_events,
            removed.idempotency_keys,
            removed.unique_constraints,
            removed.failed_events,
            removed.removal_id
        );
        if !removed.projections_rebuilt.is_empty() {
            text.push_str(&format!(
                "\nqueued rebuilds of {} (watch with `strata projections status --watch`)",
                removed.projections_rebuilt.join(", ")
            ));
        }
        text
    })
    .context("reporting")
}
