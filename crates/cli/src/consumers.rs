//! `strata consumers`: durable consumers' status, their parked aggregates, retrying or skipping a
//! parked event, and unregistering a consumer with all its parts.
//!
//! As for projections, the CLI has no consumer's code and never runs one: it reads what runtimes
//! registered and recorded (`strata_postgres::admin`'s consumer functions) and queues retry and
//! skip requests in `projections.requests`, which a runtime running the consumer carries out: it
//! hands the parked event (or, for a skip, the one after it) and every event the aggregate
//! received meanwhile to the consumer, in order, and the aggregate flows again.
//!
//! A consumer's parts are pairs of their own (`name#k/n`); the commands take the consumer's name
//! and find the part themselves.

use std::collections::BTreeSet;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use serde::Serialize;
use strata_event::{AggregateRef, Cursor, InstanceId};
use strata_postgres::admin::{ConsumerFailure, LiveRuntime, RegisteredConsumer};
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    CurrentState, FailedEventKey, OperatorRequest, ProjectionBackend, aggregate_partition,
    partition_name, split_partition_name,
};
use strata_store::EventStore;

use crate::connect::connect;
use crate::output::{OutputFormat, checkpoint_cell, confirm, print_listing, report, shorten};
use crate::projections::{build_reads, reads_query};
use crate::{Database, ListingOutput, ReportOutput, usage};

#[derive(Debug, Subcommand)]
pub(crate) enum ConsumersCommand {
    /// Per consumer and instance: parts, checkpoint, events behind, parked and failed events
    #[command(after_help = "\
Consumers are listed from projections.registry, which every running runtime fills in at start; a
consumer's parts (`name#k/n` when it has several) are summed up in one row per instance.
\"position/order\" is the lowest checkpoint of its parts; \"events behind\" counts the events a
part has yet to handle (each part handles its share of the aggregates); \"parked\" the aggregates
whose events wait for an operator (`strata consumers parked`); \"failed\" the other failed
events: being retried, or given up on. \"runtimes\" counts the live runtimes that run it.

Examples:
  strata consumers status
  strata consumers status --consumer mailer --instance tenant-1 --output json")]
    Status(StatusArgs),

    /// Aggregates a consumer parked: their later events wait for `retry` or `skip`
    #[command(after_help = "\
An event that failed max_failure_count times parks its aggregate (ConsumerConfig::on_failure):
the aggregate's later events wait in that part, in order, while every other aggregate flows.

Examples:
  strata consumers parked
  strata consumers parked --consumer mailer --instance tenant-1 --output json")]
    Parked(ParkedArgs),

    /// Hand a parked event to its consumer again (after a fix), then the events held behind it
    #[command(after_help = "\
Queues a request in projections.requests; a running runtime that has the consumer hands the
parked event and every event the aggregate received meanwhile to the consumer, in order, within
about a second. If one of them fails again, the aggregate stays parked at that one.

Example:
  strata consumers retry mailer --instance tenant-1 --aggregate-type user --aggregate-id u-1")]
    Retry(ParkedAggregateArgs),

    /// Give up on a parked event for good; the events held behind it are handled, in order
    #[command(after_help = "\
Queues a request in projections.requests; a running runtime that has the consumer passes the
parked event without handling it, hands the aggregate's later events to the consumer in order,
and lets the aggregate flow again. The event stays listed in `strata consumers status` as failed.

Example:
  strata consumers skip mailer --instance tenant-1 --aggregate-type user --aggregate-id u-1 --yes")]
    Skip(ParkedAggregateArgs),

    /// Forget a consumer: registration, checkpoints, failed events and requests of every part
    #[command(after_help = "\
For a consumer whose code is gone, or before starting it with another number of parts (the
runtime refuses a count other than its checkpoints'). A runtime that starts it again handles every
event from the first: its effects happen again. Refused while a live runtime runs the consumer
(it would register it again), unless --force.

Example:
  strata consumers unregister old_mailer --yes")]
    Unregister(UnregisterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Only this consumer
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// Only this instance
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ListingOutput,
}

#[derive(Debug, Args)]
pub(crate) struct ParkedArgs {
    /// Only this consumer
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// Only this instance
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ListingOutput,
}

#[derive(Debug, Args)]
pub(crate) struct ParkedAggregateArgs {
    /// The consumer
    consumer: String,
    /// The parked aggregate's instance
    #[arg(long, value_name = "ID")]
    instance: String,
    /// The parked aggregate's type
    #[arg(long, value_name = "TYPE")]
    aggregate_type: String,
    /// The parked aggregate's id
    #[arg(long, value_name = "ID")]
    aggregate_id: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct UnregisterArgs {
    /// The consumer
    consumer: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    /// Even while a live runtime runs the consumer
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

pub(crate) async fn run(command: ConsumersCommand) -> anyhow::Result<()> {
    match command {
        ConsumersCommand::Status(args) => status(args).await,
        ConsumersCommand::Parked(args) => parked(args).await,
        ConsumersCommand::Retry(args) => request(args, Kind::Retry).await,
        ConsumersCommand::Skip(args) => request(args, Kind::Skip).await,
        ConsumersCommand::Unregister(args) => unregister(args).await,
    }
}

/// One line of `consumers status`.
#[derive(Debug, Serialize)]
struct StatusLine {
    consumer: String,
    instance_id: String,
    /// Parts each instance's events are split into.
    parts: u16,
    /// The lowest checkpoint of the parts as an exact decimal string; `None` while a part has
    /// handled nothing.
    position: Option<String>,
    in_tx_order: Option<u32>,
    /// Events some part has yet to handle.
    events_behind: u64,
    /// Age of the oldest of them.
    seconds_behind: f64,
    /// Aggregates parked: their events wait for an operator.
    parked: u64,
    /// Other failed events: being retried, or given up on.
    failed_events: u64,
    /// Live runtimes (a heartbeat within the last 15 s) that run the consumer.
    runtimes_alive: usize,
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let format = OutputFormat::resolve(args.output.output);
    let instance = parse_instance(args.instance.as_deref())?;
    let store = connect(&args.database.database_url).await?;
    let consumers = registered(&store).await?;
    let chosen: Vec<&RegisteredConsumer> = match &args.consumer {
        Some(name) => vec![find(&consumers, name)?],
        None => consumers.iter().collect(),
    };
    let backend = PgProjections::new(store.pools().projection().clone());
    let states = backend
        .states()
        .await
        .context("reading consumer checkpoints")?;
    let failures = strata_postgres::admin::consumer_failures(&store, args.consumer.as_deref())
        .await
        .context("reading consumers' failed events")?;
    let runtimes = strata_postgres::admin::live_runtimes(&store)
        .await
        .context("reading the runtimes' heartbeats")?;
    let mut lines = Vec::new();
    for consumer in chosen {
        lines.extend(
            consumer_status(
                &store,
                consumer,
                instance.as_ref(),
                &states,
                &failures,
                &runtimes,
            )
            .await?,
        );
    }
    print_listing(
        format,
        &lines,
        &[
            "CONSUMER",
            "INSTANCE",
            "PARTS",
            "POSITION/ORDER",
            "EVENTS BEHIND",
            "SECONDS BEHIND",
            "PARKED",
            "FAILED",
            "RUNTIMES",
        ],
        "no consumers registered: a runtime registers its consumers when it starts",
        |line| {
            vec![
                line.consumer.clone(),
                line.instance_id.clone(),
                line.parts.to_string(),
                checkpoint_cell(line.position.as_deref(), line.in_tx_order),
                line.events_behind.to_string(),
                format!("{:.1}", line.seconds_behind),
                line.parked.to_string(),
                line.failed_events.to_string(),
                line.runtimes_alive.to_string(),
            ]
        },
    )
}

/// Where `consumer` stands in each instance it has events or a checkpoint in (or in `instance`).
async fn consumer_status(
    store: &PgStore,
    consumer: &RegisteredConsumer,
    instance: Option<&InstanceId>,
    states: &[CurrentState],
    failures: &[ConsumerFailure],
    runtimes: &[LiveRuntime],
) -> anyhow::Result<Vec<StatusLine>> {
    let Some(reads) = consumer.parts.first() else {
        return Ok(Vec::new());
    };
    let partitions = consumer.partitions();
    let part_names: Vec<String> = (0..partitions)
        .map(|part| partition_name(&consumer.name, part, partitions))
        .collect();
    let instances: BTreeSet<InstanceId> = match instance {
        Some(instance) => BTreeSet::from([instance.clone()]),
        None => {
            let mut instances: BTreeSet<InstanceId> = store
                .instance_ids(&build_reads(reads, reads_query(reads, None))?)
                .await
                .context("listing a consumer's instances")?
                .into_iter()
                .collect();
            instances.extend(
                states
                    .iter()
                    .filter(|state| part_names.contains(&state.projection))
                    .map(|state| state.instance_id.clone()),
            );
            instances
        }
    };
    let runtimes_alive = runtimes_running(runtimes, &consumer.name);
    let mut lines = Vec::new();
    for instance in instances {
        // Each part's checkpoint in this instance, by part index.
        let checkpoints: Vec<Option<Cursor>> = part_names
            .iter()
            .map(|name| {
                states
                    .iter()
                    .find(|state| &state.projection == name && state.instance_id == instance)
                    .map(CurrentState::cursor)
            })
            .collect();
        let lowest = checkpoints
            .iter()
            .copied()
            .collect::<Option<Vec<Cursor>>>()
            .and_then(|cursors| cursors.into_iter().min());
        let behind = events_behind(store, reads, &instance, &checkpoints).await?;
        let failures_here = failures
            .iter()
            .filter(|f| f.consumer == consumer.name && f.failed.aggregate.instance_id == instance);
        let (parked, failed): (Vec<&ConsumerFailure>, Vec<&ConsumerFailure>) =
            failures_here.partition(|f| f.failed.parked);
        lines.push(StatusLine {
            consumer: consumer.name.clone(),
            instance_id: instance.to_string(),
            parts: partitions,
            position: lowest.map(|cursor| cursor.position.to_string()),
            in_tx_order: lowest.map(|cursor| cursor.in_tx_order),
            events_behind: behind.events,
            seconds_behind: behind.seconds,
            parked: parked.len() as u64,
            failed_events: failed.len() as u64,
            runtimes_alive,
        });
    }
    Ok(lines)
}

/// Events some part has yet to handle, and the age of the oldest.
struct Behind {
    events: u64,
    seconds: f64,
}

/// What the parts with these `checkpoints` (by part index) have yet to handle in `instance`.
///
/// With one part that is a count after its checkpoint. With several, every part reads all the
/// consumer's events but handles only its aggregates' share, so the events after the lowest
/// checkpoint are read and each is counted only when it lies after its own part's checkpoint.
async fn events_behind(
    store: &PgStore,
    reads: &strata_postgres::admin::RegisteredProjection,
    instance: &InstanceId,
    checkpoints: &[Option<Cursor>],
) -> anyhow::Result<Behind> {
    let after = |cursor: Option<Cursor>| {
        let builder = reads_query(reads, Some(instance));
        match cursor {
            Some(cursor) => builder.resume_after(cursor),
            None => builder,
        }
    };
    let age = |created_at: chrono::DateTime<Utc>| {
        (Utc::now() - created_at).num_milliseconds().max(0) as f64 / 1000.0
    };
    if let [checkpoint] = checkpoints {
        let events = store
            .count(&build_reads(reads, after(*checkpoint))?)
            .await
            .context("counting events behind")?;
        let seconds = match events {
            0 => 0.0,
            _ => store
                .query(&build_reads(reads, after(*checkpoint).limit(1))?)
                .await
                .context("reading the oldest unhandled event")?
                .first()
                .map_or(0.0, |event| age(event.created_at)),
        };
        return Ok(Behind { events, seconds });
    }
    let lowest = checkpoints
        .iter()
        .copied()
        .collect::<Option<Vec<Cursor>>>()
        .and_then(|cursors| cursors.into_iter().min());
    let partitions = u16::try_from(checkpoints.len()).unwrap_or(u16::MAX);
    let query = build_reads(reads, after(lowest))?;
    let mut events = store.stream(&query);
    let mut behind = Behind {
        events: 0,
        seconds: 0.0,
    };
    while let Some(event) = events.try_next().await.context("reading events behind")? {
        let part = usize::from(aggregate_partition(&event.aggregate, partitions));
        let handled = checkpoints
            .get(part)
            .copied()
            .flatten()
            .is_some_and(|checkpoint| event.cursor() <= checkpoint);
        if handled {
            continue;
        }
        if behind.events == 0 {
            behind.seconds = age(event.created_at);
        }
        behind.events += 1;
    }
    Ok(behind)
}

/// One line of `consumers parked`.
#[derive(Debug, Serialize)]
struct ParkedLine {
    consumer: String,
    /// The part's pair name (the consumer's own name when it has one part).
    part: String,
    instance_id: String,
    aggregate_type: String,
    aggregate_id: String,
    /// The parked event's sequence: the aggregate's events from it on wait.
    sequence: u64,
    position: String,
    /// Attempts to handle it so far.
    failure_count: u32,
    error: String,
    last_failed_at: String,
}

async fn parked(args: ParkedArgs) -> anyhow::Result<()> {
    let format = OutputFormat::resolve(args.output.output);
    let instance = parse_instance(args.instance.as_deref())?;
    let store = connect(&args.database.database_url).await?;
    if let Some(name) = &args.consumer {
        find(&registered(&store).await?, name)?;
    }
    let lines: Vec<ParkedLine> =
        strata_postgres::admin::consumer_failures(&store, args.consumer.as_deref())
            .await
            .context("reading consumers' failed events")?
            .into_iter()
            .filter(|f| f.failed.parked)
            .filter(|f| {
                instance
                    .as_ref()
                    .is_none_or(|instance| &f.failed.aggregate.instance_id == instance)
            })
            .map(|f| ParkedLine {
                consumer: f.consumer,
                part: f.failed.projection,
                instance_id: f.failed.aggregate.instance_id.to_string(),
                aggregate_type: f.failed.aggregate.aggregate_type.to_string(),
                aggregate_id: f.failed.aggregate.aggregate_id.to_string(),
                sequence: f.failed.sequence,
                position: f.failed.position.to_string(),
                failure_count: f.failed.failure_count,
                error: f.failed.error,
                last_failed_at: f
                    .failed
                    .last_failed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .collect();
    print_listing(
        format,
        &lines,
        &[
            "CONSUMER",
            "PART",
            "INSTANCE",
            "AGGREGATE",
            "SEQ",
            "ATTEMPTS",
            "LAST FAILED",
            "ERROR",
        ],
        "no parked aggregates",
        |line| {
            vec![
                line.consumer.clone(),
                match split_partition_name(&line.part).1 {
                    Some((index, count)) => format!("{index}/{count}"),
                    None => "-".to_owned(),
                },
                line.instance_id.clone(),
                format!("{}/{}", line.aggregate_type, line.aggregate_id),
                line.sequence.to_string(),
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

/// What `consumers retry` and `consumers skip` report.
#[derive(Debug, Serialize)]
struct QueuedLine {
    consumer: String,
    /// The part the request is for.
    part: String,
    /// `retry` or `skip`.
    kind: &'static str,
    instance_id: String,
    aggregate_type: String,
    aggregate_id: String,
    /// The parked event's sequence.
    sequence: u64,
    /// Live runtimes that run the consumer and so will carry the request out.
    runtimes_alive: usize,
}

async fn request(args: ParkedAggregateArgs, kind: Kind) -> anyhow::Result<()> {
    let aggregate = AggregateRef::new(&args.instance, &args.aggregate_type, &args.aggregate_id)
        .map_err(|err| usage(err.to_string()))?;
    let store = connect(&args.database.database_url).await?;
    find(&registered(&store).await?, &args.consumer)?;
    let Some(parked) = strata_postgres::admin::parked_event(&store, &args.consumer, &aggregate)
        .await
        .context("reading consumers' parked events")?
    else {
        anyhow::bail!(
            "{aggregate} is not parked in consumer {:?}; `strata consumers parked --consumer {}` \
             lists what is",
            args.consumer,
            args.consumer
        );
    };
    let failed = parked.failed;
    let what = format!(
        "{aggregate} at sequence {} in consumer {:?}",
        failed.sequence, args.consumer
    );
    let key = FailedEventKey {
        projection: failed.projection.clone(),
        aggregate,
        sequence: failed.sequence,
    };
    let (question, kind, request) = match kind {
        Kind::Retry => (
            format!(
                "hand the parked event of {what} to the consumer again, then the events held \
                 behind it?"
            ),
            "retry",
            OperatorRequest::Retry(key),
        ),
        Kind::Skip => (
            format!(
                "give up on the parked event of {what} for good, and hand the events held behind \
                 it to the consumer?"
            ),
            "skip",
            OperatorRequest::Skip(key),
        ),
    };
    confirm(&question, args.yes)?;
    strata_postgres::admin::request_projection_work(&store, &[request])
        .await
        .context("queueing the request")?;
    let runtimes = strata_postgres::admin::live_runtimes(&store)
        .await
        .context("reading the runtimes' heartbeats")?;
    let line = QueuedLine {
        runtimes_alive: runtimes_running(&runtimes, &args.consumer),
        consumer: args.consumer,
        part: failed.projection,
        kind,
        instance_id: failed.aggregate.instance_id.to_string(),
        aggregate_type: failed.aggregate.aggregate_type.to_string(),
        aggregate_id: failed.aggregate.aggregate_id.to_string(),
        sequence: failed.sequence,
    };
    let who = match line.runtimes_alive {
        0 => format!(
            "no live runtime runs {:?} now: the request waits until one starts",
            line.consumer
        ),
        alive => format!(
            "{alive} live runtime(s) run {:?}: one carries it out within about a second",
            line.consumer
        ),
    };
    if line.runtimes_alive == 0 && args.output.output == OutputFormat::Json {
        eprintln!("warning: {who}");
    }
    report(args.output.output, &line, || {
        format!(
            "queued: {kind} the parked event of {what}; {who} (`strata consumers parked` shows \
             when the aggregate is released)"
        )
    })
}

/// What `consumers unregister --output json` prints.
#[derive(Debug, Serialize)]
struct UnregisteredLine {
    consumer: String,
    parts: Vec<String>,
    registered_parts: u64,
    checkpoints: u64,
    failed_events: u64,
    requests: u64,
}

async fn unregister(args: UnregisterArgs) -> anyhow::Result<()> {
    let store = connect(&args.database.database_url).await?;
    let name = args.consumer;
    let runtimes = strata_postgres::admin::live_runtimes(&store)
        .await
        .context("reading the runtimes' heartbeats")?;
    let running = runtimes_running(&runtimes, &name);
    if running > 0 && !args.force {
        anyhow::bail!(
            "{running} live runtime(s) run {name:?} and would register it again: stop them first, \
             or pass --force"
        );
    }
    confirm(
        &format!(
            "forget consumer {name:?} (the registration, checkpoints, failed and parked events \
             and queued requests of every part; started again, it handles every event from the \
             first)?"
        ),
        args.yes,
    )?;
    let removed = strata_postgres::admin::unregister_consumer(store.pools().push(), &name)
        .await
        .context("unregistering the consumer")?;
    if removed.parts.is_empty() {
        anyhow::bail!("no consumer named {name:?} is registered or has a checkpoint");
    }
    let line = UnregisteredLine {
        consumer: name,
        parts: removed.parts,
        registered_parts: removed.registered_parts,
        checkpoints: removed.checkpoints,
        failed_events: removed.failed_events,
        requests: removed.requests,
    };
    report(args.output.output, &line, || {
        format!(
            "unregistered consumer {:?}: removed {} part(s) ({}), {} checkpoint(s), {} failed or \
             parked event(s) and {} queued request(s)",
            line.consumer,
            line.parts.len(),
            shorten(&line.parts.join(", "), 200),
            line.checkpoints,
            line.failed_events,
            line.requests
        )
    })
}

fn parse_instance(instance: Option<&str>) -> anyhow::Result<Option<InstanceId>> {
    instance
        .map(InstanceId::new)
        .transpose()
        .map_err(|err| usage(err.to_string()))
}

async fn registered(store: &PgStore) -> anyhow::Result<Vec<RegisteredConsumer>> {
    strata_postgres::admin::registered_consumers(store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")
}

/// The registered consumer `name`, or an error that lists the registered ones.
fn find<'a>(
    consumers: &'a [RegisteredConsumer],
    name: &str,
) -> anyhow::Result<&'a RegisteredConsumer> {
    match consumers.iter().find(|consumer| consumer.name == name) {
        Some(consumer) => Ok(consumer),
        None => {
            let known: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
            anyhow::bail!(
                "no consumer named {name:?} is registered (registered: {}); a runtime registers \
                 its consumers when it starts",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// Live runtimes that run some part of consumer `name`: their heartbeats list part names.
fn runtimes_running(runtimes: &[LiveRuntime], name: &str) -> usize {
    runtimes
        .iter()
        .filter(|runtime| {
            runtime
                .projections
                .iter()
                .any(|pair| split_partition_name(pair).0 == name)
        })
        .count()
}
