//! `strata projections`: status, failed events, rebuilds, pending requests.
//!
//! The CLI does not have the projections' code, so it never runs one. It reads what running
//! runtimes registered and recorded, and asks them for work by queueing rows in
//! `projections.requests`, which every runtime polls about once a second.
//!
//! Durable consumers are registered in the same tables (one pair per part), but these commands
//! leave them out and refuse their names: `strata consumers` (`consumers.rs`) shows them summed
//! over their parts and acts on parked aggregates, which a projection's retry does not know.
//!
//! - `status.rs`: where every projection stands, and the live runtimes.
//! - `versions.rs`: the versions of versioned projections (listing, dropping), with `build.rs`
//!   (how far a version being built is) and `switch.rs` (switch and rollback).

mod build;
mod status;
mod switch;
mod versions;

pub(crate) use self::versions::VersionsCommand;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use strata_event::{AggregateRef, InstanceId};
use strata_postgres::admin::RegisteredProjection;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{FailedEventKey, OperatorRequest, ProjectionBackend};
use strata_query::{Query, QueryBuilder, SubQuery};
use strata_store::EventStore;

use crate::connect::connect;
use crate::output::{OutputFormat, confirm, print_listing, report, shorten};
use crate::{Database, FailedCommand, FailedEventArgs, ProjectionsCommand, ReportOutput, usage};

/// How often `status --watch` refreshes.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One line of `projections failed list`.
#[derive(Debug, Serialize)]
struct FailedLine {
    projection: String,
    instance_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: u64,
    position: String,
    failure_count: u32,
    error: String,
    last_failed_at: String,
    /// An operator gave up on it: catch-ups no longer report it.
    skipped_by_operator: bool,
    /// Its aggregate is parked (a projection set to `OnFailure::Park`): its later events wait
    /// for a retry or skip.
    parked: bool,
}

/// One line of `projections requests`.
#[derive(Debug, Serialize)]
struct RequestLine {
    projection: String,
    instance_id: String,
    kind: String,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    requested_at: String,
}

pub(crate) async fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status {
            projection,
            instance,
            watch,
            database,
            output,
        } => status::run(projection, instance, watch, &database, output.output).await,
        ProjectionsCommand::Failed(FailedCommand::List {
            projection,
            database,
            output,
        }) => {
            let store = connect(&database.database_url).await?;
            list_failed(
                &store,
                projection.as_deref(),
                OutputFormat::resolve(output.output),
            )
            .await
        }
        ProjectionsCommand::Failed(FailedCommand::Retry(args)) => {
            request_for_failed(args, Kind::Retry).await
        }
        ProjectionsCommand::Failed(FailedCommand::Skip(args)) => {
            request_for_failed(args, Kind::Skip).await
        }
        ProjectionsCommand::Rebuild {
            name,
            instance,
            yes,
            database,
            output,
        } => rebuild(&database, &name, instance.as_deref(), yes, &output).await,
        ProjectionsCommand::Requests { database, output } => {
            let store = connect(&database.database_url).await?;
            list_requests(&store, OutputFormat::resolve(output.output)).await
        }
        ProjectionsCommand::Unregister {
            name,
            yes,
            force,
            database,
            output,
        } => unregister(&database, &name, yes, force, &output).await,
        ProjectionsCommand::Versions(command) => versions::run(command).await,
    }
}

/// What a command that queues requests reports.
#[derive(Debug, Serialize)]
struct Queued {
    projection: String,
    /// `rebuild`, `retry` or `skip`.
    kind: &'static str,
    /// Requests queued.
    queued: u64,
    /// Live runtimes that run the projection and so will carry the requests out.
    runtimes_alive: usize,
}

/// Live runtimes that run `projection`.
pub(crate) async fn runtimes_running(store: &PgStore, projection: &str) -> anyhow::Result<usize> {
    Ok(strata_postgres::admin::live_runtimes(store)
        .await
        .context("reading the runtimes' heartbeats")?
        .iter()
        .filter(|runtime| runtime.projections.iter().any(|name| name == projection))
        .count())
}

/// The sentence a queueing command ends with: who will carry the request out.
fn who_carries_it_out(queued: &Queued) -> String {
    match queued.runtimes_alive {
        0 => format!(
            "no live runtime runs {:?} now: the request waits until one starts (`strata \
             projections status` shows the runtimes)",
            queued.projection
        ),
        alive => format!(
            "{alive} live runtime(s) run {:?}: one carries it out within about a second",
            queued.projection
        ),
    }
}

/// The events `projection` reads, in one instance or all: one OR branch per aggregate type.
pub(crate) fn reads_query(
    projection: &RegisteredProjection,
    instance: Option<&InstanceId>,
) -> QueryBuilder {
    let builder = match instance {
        Some(instance) => Query::builder().instance(instance.as_str()),
        None => Query::builder().all_instances(),
    };
    projection
        .reads
        .iter()
        .fold(builder, |builder, (aggregate_type, event_types)| {
            builder.or(SubQuery::builder()
                .aggregate_types([aggregate_type.as_str()])
                .event_types(event_types.iter().map(String::as_str)))
        })
}

pub(crate) fn build_reads(
    projection: &RegisteredProjection,
    builder: QueryBuilder,
) -> anyhow::Result<Query> {
    builder.build().with_context(|| {
        format!(
            "projection {:?} registered reads that are not a valid query",
            projection.name
        )
    })
}

async fn list_failed(
    store: &PgStore,
    projection: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let registry = strata_postgres::admin::registered_projections(store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    if let Some(name) = projection {
        refuse_consumer(&registry, name)?;
    }
    let backend = PgProjections::new(store.pools().projection().clone());
    let failed = backend
        .failed_events(projection)
        .await
        .context("reading failed events")?;
    let lines: Vec<FailedLine> = failed
        .into_iter()
        .filter(|failed| !is_consumer_part(&registry, &failed.projection))
        .map(|failed| FailedLine {
            projection: failed.projection,
            instance_id: failed.aggregate.instance_id.to_string(),
            aggregate_type: failed.aggregate.aggregate_type.to_string(),
            aggregate_id: failed.aggregate.aggregate_id.to_string(),
            sequence: failed.sequence,
            position: failed.position.to_string(),
            failure_count: failed.failure_count,
            error: failed.error,
            last_failed_at: failed
                .last_failed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            skipped_by_operator: failed.skipped_by_operator,
            parked: failed.parked,
        })
        .collect();
    print_listing(
        format,
        &lines,
        &[
            "PROJECTION",
            "INSTANCE",
            "AGGREGATE",
            "SEQ",
            "POSITION",
            "FAILURES",
            "STATE",
            "LAST FAILED",
            "ERROR",
        ],
        "no failed events",
        |line| {
            vec![
                line.projection.clone(),
                line.instance_id.clone(),
                format!("{}/{}", line.aggregate_type, line.aggregate_id),
                line.sequence.to_string(),
                line.position.clone(),
                line.failure_count.to_string(),
                failed_state(line).to_owned(),
                line.last_failed_at.clone(),
                shorten(&line.error, 60),
            ]
        },
    )
}

/// What became of a failed event, as the listing's STATE column says it.
fn failed_state(line: &FailedLine) -> &'static str {
    if line.parked {
        "parked"
    } else if line.skipped_by_operator {
        "skipped by operator"
    } else {
        "-"
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Retry,
    Skip,
}

async fn request_for_failed(args: FailedEventArgs, kind: Kind) -> anyhow::Result<()> {
    let aggregate = AggregateRef::new(&args.instance, &args.aggregate_type, &args.aggregate_id)
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(&args.database.database_url).await?;
    let registry = strata_postgres::admin::registered_projections(&store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    refuse_consumer(&registry, &args.projection)?;
    let backend = PgProjections::new(store.pools().projection().clone());
    let known = backend
        .failed_events(Some(&args.projection))
        .await
        .context("reading failed events")?
        .into_iter()
        .any(|failed| failed.aggregate == aggregate && failed.sequence == args.sequence);
    let event = format!(
        "failed event {aggregate} sequence {} of projection {:?}",
        args.sequence, args.projection
    );
    if !known {
        anyhow::bail!(
            "there is no {event}; `strata projections failed list --projection {}` shows the \
             failed events",
            args.projection
        );
    }
    let key = FailedEventKey {
        projection: args.projection.clone(),
        aggregate,
        sequence: args.sequence,
    };
    let (verb, kind, request) = match kind {
        Kind::Retry => ("retry", "retry", OperatorRequest::Retry(key)),
        Kind::Skip => ("skip (give up on)", "skip", OperatorRequest::Skip(key)),
    };
    confirm(&format!("{verb} the {event}?"), args.yes)?;
    let queued = strata_postgres::admin::request_projection_work(&store, &[request])
        .await
        .context("queueing the request")?;
    let queued = Queued {
        runtimes_alive: runtimes_running(&store, &args.projection).await?,
        projection: args.projection,
        kind,
        queued,
    };
    report(args.output.output, &queued, || {
        format!(
            "queued: {verb} the {event}; {} (`strata projections failed list` shows when it is \
             gone)",
            who_carries_it_out(&queued)
        )
    })
}

async fn rebuild(
    database: &Database,
    name: &str,
    instance: Option<&str>,
    yes: bool,
    output: &ReportOutput,
) -> anyhow::Result<()> {
    let instance = instance
        .map(InstanceId::new)
        .transpose()
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(&database.database_url).await?;
    let registry = strata_postgres::admin::registered_projections(&store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    refuse_consumer(&registry, name)?;
    let Some(projection) = registry.iter().find(|p| p.name == name) else {
        let known: Vec<&str> = registry
            .iter()
            .filter(|p| p.consumer.is_none())
            .map(|p| p.name.as_str())
            .collect();
        anyhow::bail!(
            "no projection named {name:?} is registered (registered: {}); a runtime registers its \
             projections when it starts",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let instances: Vec<InstanceId> = match instance {
        Some(instance) => vec![instance],
        None => {
            let backend = PgProjections::new(store.pools().projection().clone());
            let mut all: BTreeSet<InstanceId> = store
                .instance_ids(&build_reads(projection, reads_query(projection, None))?)
                .await
                .context("listing the projection's instances")?
                .into_iter()
                .collect();
            all.extend(
                backend
                    .states()
                    .await
                    .context("reading projection checkpoints")?
                    .into_iter()
                    .filter(|state| state.projection == name)
                    .map(|state| state.instance_id),
            );
            all.into_iter().collect()
        }
    };
    if instances.is_empty() {
        anyhow::bail!(
            "projection {name:?} has no events and no checkpoint in any instance: nothing to rebuild"
        );
    }
    let list: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
    let mut question = format!(
        "rebuild projection {name:?} in {} instance(s) ({})",
        list.len(),
        shorten(&list.join(", "), 200)
    );
    if projection.has_side_effects {
        question
            .push_str("; it has side effects, so replaying it repeats them (e-mails, webhooks…)");
    }
    question.push('?');
    confirm(&question, yes)?;
    let requests: Vec<OperatorRequest> = instances
        .into_iter()
        .map(|instance_id| OperatorRequest::Rebuild {
            projection: name.to_owned(),
            instance_id,
        })
        .collect();
    let queued = strata_postgres::admin::request_projection_work(&store, &requests)
        .await
        .context("queueing the rebuild")?;
    let queued = Queued {
        projection: name.to_owned(),
        kind: "rebuild",
        queued,
        runtimes_alive: runtimes_running(&store, name).await?,
    };
    report(output.output, &queued, || {
        format!(
            "queued {} rebuild request(s) for {name:?}; {} (watch with `strata projections status \
             --watch`)",
            queued.queued,
            who_carries_it_out(&queued)
        )
    })
}

/// What `strata projections unregister --output json` prints.
#[derive(Debug, Serialize)]
struct UnregisteredLine<'a> {
    projection: &'a str,
    registered: bool,
    checkpoints: u64,
    failed_events: u64,
    requests: u64,
}

async fn unregister(
    database: &Database,
    name: &str,
    yes: bool,
    force: bool,
    output: &ReportOutput,
) -> anyhow::Result<()> {
    let store = connect(&database.database_url).await?;
    let registry = strata_postgres::admin::registered_projections(&store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    refuse_consumer(&registry, name)?;
    let running = runtimes_running(&store, name).await?;
    if running > 0 && !force {
        anyhow::bail!(
            "{running} live runtime(s) run {name:?} and would register it again: stop them first, \
             or pass --force"
        );
    }
    confirm(
        &format!(
            "forget projection {name:?} (its registration, checkpoints, failed events and queued \
             requests; its read-model tables stay)?"
        ),
        yes,
    )?;
    let removed = strata_postgres::admin::unregister_projection(store.pools().push(), name)
        .await
        .context("unregistering the projection")?;
    if !removed.registered && removed.checkpoints == 0 && removed.failed_events == 0 {
        anyhow::bail!("no projection named {name:?} is registered or has a checkpoint");
    }
    let line = UnregisteredLine {
        projection: name,
        registered: removed.registered,
        checkpoints: removed.checkpoints,
        failed_events: removed.failed_events,
        requests: removed.requests,
    };
    report(output.output, &line, || {
        format!(
            "unregistered {name:?}: removed {} checkpoint(s), {} failed event(s) and {} queued \
             request(s); drop its read-model tables in your own migrations",
            removed.checkpoints, removed.failed_events, removed.requests
        )
    })
}

/// Whether `pair` is a consumer's part.
fn is_consumer_part(registry: &[RegisteredProjection], pair: &str) -> bool {
    registry
        .iter()
        .any(|registered| registered.name == pair && registered.consumer.is_some())
}

/// Refuses `name` when it is a consumer or one of its parts: `strata consumers` operates on them,
/// summed over their parts, and its retry and skip know parked aggregates.
pub(crate) fn refuse_consumer(registry: &[RegisteredProjection], name: &str) -> anyhow::Result<()> {
    let consumer = registry.iter().find_map(|registered| {
        registered
            .consumer
            .as_deref()
            .filter(|consumer| registered.name == name || *consumer == name)
    });
    match consumer {
        Some(consumer) => anyhow::bail!(
            "{name:?} is a consumer, not a projection: use `strata consumers` (e.g. `strata \
             consumers status --consumer {consumer}`)"
        ),
        None => Ok(()),
    }
}

async fn list_requests(store: &PgStore, format: OutputFormat) -> anyhow::Result<()> {
    let lines: Vec<RequestLine> = strata_postgres::admin::pending_projection_requests(store)
        .await
        .context("reading projections.requests")?
        .into_iter()
        .map(|request| RequestLine {
            projection: request.projection,
            instance_id: request.instance_id,
            kind: request.kind,
            aggregate_type: request.aggregate_type,
            aggregate_id: request.aggregate_id,
            sequence: request.sequence,
            requested_at: request
                .requested_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .collect();
    print_listing(
        format,
        &lines,
        &["PROJECTION", "INSTANCE", "KIND", "EVENT", "REQUESTED AT"],
        "no pending requests",
        |line| {
            let event = match (&line.aggregate_type, &line.aggregate_id, line.sequence) {
                (Some(t), Some(a), Some(s)) => format!("{t}/{a} #{s}"),
                _ => "-".to_owned(),
            };
            vec![
                line.projection.clone(),
                line.instance_id.clone(),
                line.kind.clone(),
                event,
                line.requested_at.clone(),
            ]
        },
    )
}
