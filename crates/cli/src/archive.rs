//! `strata archive plan|run|verify|restore`: moving closed aggregates to the archive table and
//! back through `strata_postgres::admin`, with confirmations, progress and JSON reports.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use strata_event::{AggregateId, AggregateType, EventType, InstanceId};
use strata_postgres::PgStore;
use strata_postgres::admin::{
    ArchiveError, ArchiveRun, ArchiveSelection, BatchOutcome, RestoreSelection, archive_batch,
    plan_archive, restore_batch, start_archive_run, start_restore_run, verify_archive,
};

use crate::connect::connect;
use crate::output::{OutputFormat, confirm, report, write_json_line, write_table};
use crate::progress::Progress;
use crate::{Database, ReportOutput, usage};

#[derive(Debug, Subcommand)]
pub(crate) enum ArchiveCommand {
    /// What a run would move now: aggregates, events, size, projections in the way
    #[command(after_help = "\
An aggregate is archived whole, when its latest event is older than --older-than (or --before),
of the --aggregate-type given (any when absent), and, with --closed-by, when its latest event has
one of those types.

Examples:
  strata archive plan --instance tenant-1 --older-than 365d
  strata archive plan --instance tenant-1 --aggregate-type user --closed-by user.removed --older-than 90d")]
    Plan(ArchiveSelectionArgs),
    /// Move the selected aggregates to eventstore.archived_events, in resumable batches
    #[command(after_help = "\
Each batch moves whole aggregates in one transaction together with the run's row in
eventstore.archive_runs, so an interrupted run leaves every event in exactly one place, and the
next `strata archive run` with the same instance, types and --closed-by resumes it (keeping its
first horizon). Refused while a projection reading those aggregates has not processed them yet
(it reads only the hot table). Progress goes to stderr.

Examples:
  strata archive run --instance tenant-1 --older-than 365d --actor ops --yes
  strata archive run --instance tenant-1 --aggregate-type user --closed-by user.removed \\
      --older-than 90d --batch 500 --actor ops --yes")]
    Run(ArchiveRunArgs),
    /// Check the archive against the manifest: counts, checksums, nothing both hot and archived
    #[command(after_help = "\
Exits 1 when an instance's archive differs from its manifest or shares an event with the hot
table. Also reports split aggregates (pushed to after they were archived: their sequence
continued in the hot table) and unfinished runs.

Examples:
  strata archive verify
  strata archive verify --instance tenant-1 --output json")]
    Verify {
        /// Only this instance
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Move archived aggregates back to the hot table, unchanged, in resumable batches
    #[command(after_help = "\
Restored events keep their positions and sequences. Projections that processed them before they
were archived keep what they made of them; a projection rebuilt since without the archive needs
another rebuild to see them.

Examples:
  strata archive restore --instance tenant-1 --actor ops --yes
  strata archive restore --instance tenant-1 --aggregate-type user --aggregate-id u-1 --actor ops --yes")]
    Restore(ArchiveRestoreArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveSelectionArgs {
    /// The instance
    #[arg(long, value_name = "ID")]
    instance: String,
    /// Only aggregates of this type (repeatable; every type when absent)
    #[arg(long = "aggregate-type", value_name = "TYPE")]
    aggregate_types: Vec<String>,
    /// Only aggregates whose latest event has this type (repeatable), e.g. user.removed
    #[arg(long = "closed-by", value_name = "EVENT_TYPE")]
    closed_by: Vec<String>,
    /// Only aggregates whose latest event is at least this old (e.g. 90d, 12h)
    #[arg(long, value_name = "AGE", value_parser = crate::cache::parse_age, required_unless_present = "before", conflicts_with = "before")]
    older_than: Option<std::time::Duration>,
    /// Only aggregates whose latest event was created before TIME (RFC 3339)
    #[arg(long, value_name = "TIME", value_parser = crate::filters::parse_instant)]
    before: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveRunArgs {
    #[command(flatten)]
    selection: ArchiveSelectionArgs,
    /// Aggregates per batch (one transaction each)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Who runs it, recorded in the manifest
    #[arg(long, value_name = "WHO")]
    actor: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveRestoreArgs {
    /// The instance
    #[arg(long, value_name = "ID")]
    instance: String,
    /// Only aggregates of this type (repeatable; every type when absent)
    #[arg(long = "aggregate-type", value_name = "TYPE")]
    aggregate_types: Vec<String>,
    /// Only this aggregate (with exactly one --aggregate-type)
    #[arg(long, value_name = "ID")]
    aggregate_id: Option<String>,
    /// Aggregates per batch (one transaction each)
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Who runs it, recorded in the manifest
    #[arg(long, value_name = "WHO")]
    actor: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

/// What `archive plan` prints.
#[derive(Debug, Serialize)]
struct PlanLine {
    instance_id: String,
    horizon: String,
    aggregates: u64,
    events: u64,
    bytes: u64,
    projections_behind: Vec<String>,
}

/// What `archive run` and `archive restore` print at the end.
#[derive(Debug, Serialize)]
struct RunLine {
    instance_id: String,
    run_id: i64,
    kind: &'static str,
    resumed: bool,
    horizon: Option<String>,
    /// Moved by every batch of the run, this invocation's and earlier ones'.
    aggregates: u64,
    events: u64,
}

/// One instance of `archive verify`.
#[derive(Debug, Serialize)]
struct VerifyLine {
    instance_id: String,
    consistent: bool,
    manifest_events: i64,
    archived_events: i64,
    manifest_checksum: String,
    archived_checksum: String,
    in_both: i64,
    split_aggregates: i64,
    unfinished_runs: i64,
}

pub(crate) async fn run(command: ArchiveCommand) -> anyhow::Result<()> {
    match command {
        ArchiveCommand::Plan(args) => plan(args).await,
        ArchiveCommand::Run(args) => archive(args).await,
        ArchiveCommand::Verify {
            instance,
            database,
            output,
        } => verify(instance, &database.database_url, output.output).await,
        ArchiveCommand::Restore(args) => restore(args).await,
    }
}

fn selection(args: &ArchiveSelectionArgs) -> anyhow::Result<ArchiveSelection> {
    let invalid = |err: strata_event::ValidationError| usage(err.to_string());
    let horizon = match (args.before, args.older_than) {
        (Some(before), _) => before,
        (None, Some(age)) => {
            let age =
                chrono::Duration::from_std(age).map_err(|_| usage("--older-than is too large"))?;
            chrono::Utc::now() - age
        }
        (None, None) => return Err(usage("give --older-than or --before")),
    };
    Ok(ArchiveSelection {
        instance: InstanceId::new(&args.instance).map_err(invalid)?,
        aggregate_types: args
            .aggregate_types
            .iter()
            .map(AggregateType::new)
            .collect::<Result<_, _>>()
            .map_err(invalid)?,
        closing_event_types: args
            .closed_by
            .iter()
            .map(EventType::new)
            .collect::<Result<_, _>>()
            .map_err(invalid)?,
        horizon,
    })
}

/// A library error as the CLI reports it: bad input is bad usage (exit code 2).
fn failed(err: ArchiveError, doing: &'static str) -> anyhow::Error {
    match err {
        ArchiveError::InvalidInput { reason } => usage(reason),
        err => anyhow::Error::new(err).context(doing),
    }
}

async fn plan(args: ArchiveSelectionArgs) -> anyhow::Result<()> {
    let selection = selection(&args)?;
    let store = connect(&args.database.database_url).await?;
    let plan = plan_archive(store.pools().query(), &selection)
        .await
        .map_err(|err| failed(err, "planning"))?;
    let line = PlanLine {
        instance_id: selection.instance.to_string(),
        horizon: selection.horizon.to_rfc3339(),
        aggregates: plan.aggregates,
        events: plan.events,
        bytes: plan.bytes,
        projections_behind: plan.projections_behind,
    };
    report(args.output.output, &line, || {
        let mut text = format!(
            "would archive {} aggregate(s) of instance {} with {} event(s), about {} bytes of \
             table (latest event before {})",
            line.aggregates, line.instance_id, line.events, line.bytes, line.horizon
        );
        if !line.projections_behind.is_empty() {
            text.push_str(&format!(
                "\nrefused until these projections catch up: {}",
                line.projections_behind.join(", ")
            ));
        }
        text
    })
}

async fn archive(args: ArchiveRunArgs) -> anyhow::Result<()> {
    let selection = selection(&args.selection)?;
    let store = connect(&args.selection.database.database_url).await?;
    let pool = store.pools().push();
    let plan = plan_archive(pool, &selection)
        .await
        .map_err(|err| failed(err, "planning"))?;
    confirm(
        &format!(
            "move {} aggregate(s) ({} events) of instance {} to the archive (or resume the \
             unfinished run with the same selection)?",
            plan.aggregates, plan.events, selection.instance
        ),
        args.yes,
    )?;
    let run = start_archive_run(pool, &selection, args.batch, &args.actor)
        .await
        .map_err(|err| failed(err, "starting the run"))?;
    let progress = Progress::start("aggregates", Some(plan.aggregates));
    let moved = run_batches(
        progress,
        || archive_batch(pool, &run),
        "archiving (run again to resume)",
    )
    .await?;
    finish(&store, &run, "archive", moved, args.selection.output.output).await
}

async fn restore(args: ArchiveRestoreArgs) -> anyhow::Result<()> {
    let invalid = |err: strata_event::ValidationError| usage(err.to_string());
    let selection = RestoreSelection {
        instance: InstanceId::new(&args.instance).map_err(invalid)?,
        aggregate_types: args
            .aggregate_types
            .iter()
            .map(AggregateType::new)
            .collect::<Result<_, _>>()
            .map_err(invalid)?,
        aggregate_id: args
            .aggregate_id
            .as_ref()
            .map(AggregateId::new)
            .transpose()
            .map_err(invalid)?,
    };
    let store = connect(&args.database.database_url).await?;
    let pool = store.pools().push();
    confirm(
        &format!(
            "move archived aggregates of instance {} back to the hot table?",
            selection.instance
        ),
        args.yes,
    )?;
    let run = start_restore_run(pool, &selection, args.batch, &args.actor)
        .await
        .map_err(|err| failed(err, "starting the restore"))?;
    let progress = Progress::start("aggregates", None);
    let moved = run_batches(
        progress,
        || restore_batch(pool, &run),
        "restoring (run again to resume)",
    )
    .await?;
    finish(&store, &run, "restore", moved, args.output.output).await
}

/// Runs `batch` until the run is done, showing progress; returns the aggregates and events moved
/// by this invocation.
async fn run_batches<F, B>(
    mut progress: Progress,
    mut batch: F,
    doing: &'static str,
) -> anyhow::Result<(u64, u64)>
where
    F: FnMut() -> B,
    B: std::future::Future<Output = Result<BatchOutcome, ArchiveError>>,
{
    let mut moved = (0, 0);
    loop {
        match batch().await {
            Ok(batch) => {
                progress.add(batch.aggregates);
                moved = (moved.0 + batch.aggregates, moved.1 + batch.events);
                if batch.done {
                    progress.finish();
                    return Ok(moved);
                }
            }
            Err(err) => {
                progress.abandon();
                return Err(failed(err, doing));
            }
        }
    }
}

/// Reports the run's totals (an earlier, interrupted invocation's batches included: `run` holds
/// what the manifest had when it resumed, `moved` what this invocation moved), after verifying.
async fn finish(
    store: &PgStore,
    run: &ArchiveRun,
    kind: &'static str,
    moved: (u64, u64),
    format: OutputFormat,
) -> anyhow::Result<()> {
    let verified = verify_archive(store.pools().query(), Some(&run.instance))
        .await
        .map_err(|err| failed(err, "verifying"))?;
    let consistent = verified.iter().all(|line| line.is_consistent());
    let line = RunLine {
        instance_id: run.instance.to_string(),
        run_id: run.id,
        kind,
        resumed: run.resumed,
        horizon: run.horizon.map(|horizon| horizon.to_rfc3339()),
        aggregates: run.aggregates + moved.0,
        events: run.events + moved.1,
    };
    report(format, &line, || {
        format!(
            "{kind} run {} of instance {}{}: {} aggregate(s), {} event(s) moved",
            line.run_id,
            line.instance_id,
            if line.resumed { " (resumed)" } else { "" },
            line.aggregates,
            line.events
        )
    })?;
    if !consistent {
        anyhow::bail!("the archive does not match its manifest: run `strata archive verify`");
    }
    Ok(())
}

async fn verify(instance: Option<String>, url: &str, format: OutputFormat) -> anyhow::Result<()> {
    let instance = instance
        .map(InstanceId::new)
        .transpose()
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(url).await?;
    let verified = verify_archive(store.pools().query(), instance.as_ref())
        .await
        .map_err(|err| failed(err, "verifying"))?;
    let lines: Vec<VerifyLine> = verified
        .iter()
        .map(|v| VerifyLine {
            instance_id: v.instance_id.clone(),
            consistent: v.is_consistent(),
            manifest_events: v.manifest_events,
            archived_events: v.archived_events,
            manifest_checksum: v.manifest_checksum.to_string(),
            archived_checksum: v.archived_checksum.to_string(),
            in_both: v.in_both,
            split_aggregates: v.split_aggregates,
            unfinished_runs: v.unfinished_runs,
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Json => {
            for line in &lines {
                write_json_line(&mut out, line)?;
            }
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| {
                    vec![
                        l.instance_id.clone(),
                        if l.consistent { "ok" } else { "MISMATCH" }.to_owned(),
                        l.manifest_events.to_string(),
                        l.archived_events.to_string(),
                        l.in_both.to_string(),
                        l.split_aggregates.to_string(),
                        l.unfinished_runs.to_string(),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                &[
                    "INSTANCE",
                    "STATE",
                    "MANIFEST",
                    "ARCHIVED",
                    "IN BOTH",
                    "SPLIT",
                    "UNFINISHED",
                ],
                &rows,
            )
            .context("writing to stdout")?;
        }
    }
    drop(out);
    if lines.iter().any(|line| !line.consistent) {
        anyhow::bail!("the archive does not match its manifest");
    }
    Ok(())
}
