//! `strata erase`: erase a subject's personal data (delete its keys, record the erasure), or
//! replay recorded erasures after keys came back from an older backup.

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use strata_domain::{Context, erase_subject, reapply_erasures};

use crate::connect::connect;
use crate::output::{confirm, report};
use crate::{Database, ReportOutput, usage};

#[derive(Debug, Args)]
pub(crate) struct EraseArgs {
    /// The subject's instance (with --reapply: only this instance)
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// The subject to erase (a user id, usually)
    #[arg(long, value_name = "ID", required_unless_present = "reapply")]
    subject: Option<String>,
    /// Who erases (recorded as the event's creator)
    #[arg(long, value_name = "WHO", default_value = "strata-cli")]
    actor: String,
    /// The resource owner recorded on the event
    #[arg(long, value_name = "ID", default_value = "strata-cli")]
    owner: String,
    /// Replay every recorded erasure instead of erasing one subject
    #[arg(long, conflicts_with = "subject")]
    reapply: bool,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

/// What `strata erase` prints.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Erased {
    Erased {
        instance_id: String,
        subject_id: String,
        keys_deleted: u64,
        /// The recorded event's cursor; absent when the subject was erased before.
        recorded: Option<String>,
    },
    Reapplied {
        instance_id: Option<String>,
        keys_deleted: u64,
    },
}

pub(crate) async fn run(args: EraseArgs) -> anyhow::Result<()> {
    let store = connect(&args.database.database_url).await?;
    let erased = if args.reapply {
        confirm(
            &format!(
                "delete the keys of every subject whose erasure is recorded in {}",
                args.instance
                    .as_deref()
                    .map_or("any instance".to_owned(), |i| format!("instance {i}"))
            ),
            args.yes,
        )?;
        let deleted = reapply_erasures(&store, &store, args.instance.as_deref())
            .await
            .context("replaying erasures")?;
        Erased::Reapplied {
            instance_id: args.instance,
            keys_deleted: deleted,
        }
    } else {
        let (Some(instance), Some(subject)) = (args.instance, args.subject) else {
            return Err(usage("--instance and --subject name the subject to erase"));
        };
        if args.actor.trim().is_empty() {
            return Err(usage("--actor must not be empty"));
        }
        let context = Context::new(args.actor.as_str(), args.owner.as_str());
        // Checked before asking: a confirmation of something that cannot run helps nobody.
        strata_event::InstanceId::new(instance.as_str()).map_err(|err| usage(err.to_string()))?;
        strata_event::SubjectId::new(subject.as_str()).map_err(|err| usage(err.to_string()))?;
        strata_event::Creator::new(args.actor.as_str()).map_err(|err| usage(err.to_string()))?;
        strata_event::Owner::new(args.owner.as_str()).map_err(|err| usage(err.to_string()))?;
        confirm(
            &format!(
                "erase subject {subject} of instance {instance}: its personal data becomes \
                 unreadable everywhere, for good"
            ),
            args.yes,
        )?;
        let erasure = erase_subject(&store, &instance, &subject, &context)
            .await
            .context("erasing the subject")?;
        Erased::Erased {
            instance_id: instance,
            subject_id: subject,
            keys_deleted: erasure.keys_deleted,
            recorded: erasure.recorded.map(|event| event.cursor().to_string()),
        }
    };
    report(args.output.output, &erased, || match &erased {
        Erased::Erased {
            instance_id,
            subject_id,
            keys_deleted,
            recorded: Some(cursor),
        } => format!(
            "erased subject {subject_id} of instance {instance_id}: {keys_deleted} key(s) \
             deleted; recorded as strata.subject.erased at {cursor}"
        ),
        Erased::Erased {
            instance_id,
            subject_id,
            ..
        } => format!("subject {subject_id} of instance {instance_id} was erased before"),
        Erased::Reapplied { keys_deleted, .. } => {
            format!("erasures replayed: {keys_deleted} key(s) that had come back deleted")
        }
    })
    .context("reporting")
}
