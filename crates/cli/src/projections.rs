//! `strata projections`: status, failed events, rebuilds, pending requests.
//!
//! The CLI does not have the projections' code, so it never runs one. It reads what running
//! runtimes registered and recorded, and asks them for work by queueing rows in
//! `projections.requests`, which every runtime polls about once a second.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use strata_event::{AggregateRef, InstanceId};
use strata_postgres::{PgProjections, PgStore, RegisteredProjection};
use strata_projection::{FailedEventKey, OperatorRequest, ProjectionBackend};
use strata_query::{Query, QueryBuilder, SubQuery};
use strata_store::EventStore;

use crate::connect::connect;
use crate::output::{OutputFormat, confirm, print_listing, shorten, write_json_line, write_table};
use crate::{FailedCommand, FailedEventArgs, ProjectionsCommand, usage};

/// How often `status --watch` refreshes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One line of `projections status`.
#[derive(Debug, Serialize)]
struct StatusLine {
    projection: String,
    instance_id: String,
    /// The checkpoint's position as an exact decimal string; `None` before the first event.
    position: Option<String>,
    in_tx_order: Option<u32>,
    events_behind: u64,
    seconds_behind: f64,
    failed_events: u64,
    has_side_effects: bool,
}

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

pub(crate) async fn run(url: &str, command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status { watch, output } => {
            let format = OutputFormat::resolve(output);
            let store = connect(url).await?;
            if !watch {
                return print_status(&store, format).await;
            }
            loop {
                if format == OutputFormat::Table {
                    // Clear the screen and go home, so the table redraws in place.
                    print!("\x1b[2J\x1b[H");
                    println!(
                        "{}  (every {} s; Ctrl-C stops)\n",
                        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
                        WATCH_EVERY.as_secs()
                    );
                }
                print_status(&store, format).await?;
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
        ProjectionsCommand::Failed(FailedCommand::List { projection, output }) => {
            let store = connect(url).await?;
            list_failed(&store, projection.as_deref(), OutputFormat::resolve(output)).await
        }
        ProjectionsCommand::Failed(FailedCommand::Retry(args)) => {
            request_for_failed(url, args, Kind::Retry).await
        }
        ProjectionsCommand::Failed(FailedCommand::Skip(args)) => {
            request_for_failed(url, args, Kind::Skip).await
        }
        ProjectionsCommand::Rebuild {
            name,
            instance,
            yes,
        } => rebuild(url, &name, instance.as_deref(), yes).await,
        ProjectionsCommand::Requests { output } => {
            let store = connect(url).await?;
            list_requests(&store, OutputFormat::resolve(output)).await
        }
    }
}

async fn print_status(store: &PgStore, format: OutputFormat) -> anyhow::Result<()> {
    let lines = status(store).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Json => {
            for line in &lines {
                write_json_line(&mut out, line)?;
            }
        }
        OutputFormat::Table => {
            if lines.is_empty() {
                writeln!(
                    out,
                    "no projections registered: a runtime registers its projections when it starts"
                )
                .context("writing to stdout")?;
            }
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|line| {
                    vec![
                        line.projection.clone(),
                        line.instance_id.clone(),
                        match (&line.position, line.in_tx_order) {
                            (Some(position), Some(order)) => format!("{position}/{order}"),
                            _ => "-".to_owned(),
                        },
                        line.events_behind.to_string(),
                        format!("{:.1}", line.seconds_behind),
                        line.failed_events.to_string(),
                        if line.has_side_effects { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                write_table(
                    &mut out,
                    &[
                        "PROJECTION",
                        "INSTANCE",
                        "POSITION/ORDER",
                        "EVENTS BEHIND",
                        "SECONDS BEHIND",
                        "FAILED",
                        "SIDE EFFECTS",
                    ],
                    &rows,
                )
                .context("writing to stdout")?;
            }
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// Per registered projection and per instance it has events or a checkpoint in: where it stands.
/// The same computation as `ProjectionRuntime::status`, from the registry instead of the code.
async fn status(store: &PgStore) -> anyhow::Result<Vec<StatusLine>> {
    let backend = PgProjections::new(store.pools().projection().clone()).without_listening();
    let registry = strata_postgres::registered_projections(store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    let states = backend
        .states()
        .await
        .context("reading projection checkpoints")?;
    let failed = backend
        .failed_events(None)
        .await
        .context("reading failed events")?;
    let mut lines = Vec::new();
    for projection in &registry {
        let mut instances: BTreeSet<InstanceId> = store
            .instance_ids(&build_reads(projection, reads_query(projection, None))?)
            .await
            .context("listing a projection's instances")?
            .into_iter()
            .collect();
        instances.extend(
            states
                .iter()
                .filter(|state| state.projection == projection.name)
                .map(|state| state.instance_id.clone()),
        );
        for instance in instances {
            let state = states
                .iter()
                .find(|state| state.projection == projection.name && state.instance_id == instance);
            let behind = || {
                let builder = reads_query(projection, Some(&instance));
                match state {
                    Some(state) => builder.resume_after(state.position, state.in_tx_order),
                    None => builder,
                }
            };
            let events_behind = store
                .count(&build_reads(projection, behind())?)
                .await
                .context("counting events behind")?;
            let seconds_behind = match events_behind {
                0 => 0.0,
                _ => store
                    .query(&build_reads(projection, behind().limit(1))?)
                    .await
                    .context("reading the oldest unprocessed event")?
                    .first()
                    .map_or(0.0, |event| {
                        (Utc::now() - event.created_at).num_milliseconds().max(0) as f64 / 1000.0
                    }),
            };
            lines.push(StatusLine {
                projection: projection.name.clone(),
                instance_id: instance.to_string(),
                position: state.map(|state| state.position.to_string()),
                in_tx_order: state.map(|state| state.in_tx_order),
                events_behind,
                seconds_behind,
                failed_events: failed
                    .iter()
                    .filter(|f| {
                        f.projection == projection.name && f.aggregate.instance_id == instance
                    })
                    .count() as u64,
                has_side_effects: projection.has_side_effects,
            });
        }
    }
    Ok(lines)
}

/// The events `projection` reads, in one instance or all: one OR branch per aggregate type.
fn reads_query(projection: &RegisteredProjection, instance: Option<&InstanceId>) -> QueryBuilder {
    let builder = match instance {
        Some(instance) => Query::builder().instance(instance.as_str()),
        None => Query::builder(),
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

fn build_reads(projection: &RegisteredProjection, builder: QueryBuilder) -> anyhow::Result<Query> {
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
    let backend = PgProjections::new(store.pools().projection().clone()).without_listening();
    let failed = backend
        .failed_events(projection)
        .await
        .context("reading failed events")?;
    let lines: Vec<FailedLine> = failed
        .into_iter()
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
                line.last_failed_at.clone(),
                shorten(&line.error, 60),
            ]
        },
    )
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Retry,
    Skip,
}

async fn request_for_failed(url: &str, args: FailedEventArgs, kind: Kind) -> anyhow::Result<()> {
    let aggregate = AggregateRef::new(&args.instance, &args.aggregate_type, &args.aggregate_id)
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(url).await?;
    let backend = PgProjections::new(store.pools().projection().clone()).without_listening();
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
    let (verb, request) = match kind {
        Kind::Retry => ("retry", OperatorRequest::Retry(key)),
        Kind::Skip => ("skip (give up on)", OperatorRequest::Skip(key)),
    };
    confirm(&format!("{verb} the {event}?"), args.yes)?;
    strata_postgres::request_projection_work(&store, &[request])
        .await
        .context("queueing the request")?;
    println!(
        "queued: {verb} the {event}; a running runtime that has the projection carries it out \
         within about a second (`strata projections failed list` shows when it is gone)"
    );
    Ok(())
}

async fn rebuild(url: &str, name: &str, instance: Option<&str>, yes: bool) -> anyhow::Result<()> {
    let instance = instance
        .map(InstanceId::new)
        .transpose()
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(url).await?;
    let registry = strata_postgres::registered_projections(&store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    let Some(projection) = registry.iter().find(|p| p.name == name) else {
        let known: Vec<&str> = registry.iter().map(|p| p.name.as_str()).collect();
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
            let backend =
                PgProjections::new(store.pools().projection().clone()).without_listening();
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
    let queued = strata_postgres::request_projection_work(&store, &requests)
        .await
        .context("queueing the rebuild")?;
    println!(
        "queued {queued} rebuild request(s) for {name:?}; a running runtime that has the projection \
         carries them out within about a second (watch with `strata projections status --watch`)"
    );
    Ok(())
}

async fn list_requests(store: &PgStore, format: OutputFormat) -> anyhow::Result<()> {
    let lines: Vec<RequestLine> = strata_postgres::pending_projection_requests(store)
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
