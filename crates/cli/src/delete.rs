//! `strata delete aggregate|instance`: hard delete through `strata_postgres::admin::hard_delete`,
//! after a confirmation, reporting what was removed.

use anyhow::Context;
use serde::Serialize;
use strata_event::{AggregateRef, InstanceId};
use strata_postgres::admin::{DeleteTarget, HardDelete, HardDeleteError, hard_delete};

use crate::connect::connect;
use crate::output::{confirm, report};
use crate::{DeleteCommand, DeleteCommon, usage};

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
