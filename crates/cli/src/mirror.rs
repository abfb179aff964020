//! `strata mirror`: copy a store (or some instances) into another, resumably and without duplicates.
//!
//! The source is read through the store API, in `(position, in_tx_order)` order and strictly below
//! the commit horizon taken when the run starts: every event positioned there has committed, so
//! the cursor can never move past an event whose transaction commits late. Each batch is written
//! to the destination in one transaction together with the mirror's progress row, so an
//! interrupted run resumes after the last committed batch; the events' primary key
//! (`ON CONFLICT DO NOTHING`) makes even a replayed batch harmless.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use strata_event::{Event, InstanceId, Position};
use strata_postgres::{MirrorKey, PgStore};
use strata_query::{Query, QueryBuilder};
use strata_store::EventStore;

use crate::connect::{connect, database_key, redact};
use crate::output::write_table;
use crate::{MirrorArgs, usage};

/// Test hook: exit abruptly (no cleanup, like a kill) after this many batches have committed, so
/// the tests can interrupt a run at a known point and check that the next one resumes.
const ABORT_AFTER_BATCHES_ENV: &str = "STRATA_MIRROR_ABORT_AFTER_BATCHES";

pub(crate) async fn run(args: MirrorArgs) -> anyhow::Result<()> {
    let mut filter: Vec<InstanceId> = args
        .instances
        .iter()
        .map(InstanceId::new)
        .collect::<Result<_, _>>()
        .map_err(|err| usage(err.to_string()))?;
    filter.sort();
    filter.dedup();
    let filter = (!filter.is_empty()).then_some(filter);
    if database_key(&args.from) == database_key(&args.to) {
        return Err(usage(format!(
            "--from and --to name the same database ({}); mirror into another one",
            database_key(&args.to)
        )));
    }
    let source = connect(&args.from)
        .await
        .context("connecting to the source (--from)")?;
    let destination = connect(&args.to)
        .await
        .context("connecting to the destination (--to)")?;
    let key = MirrorKey {
        source: database_key(&args.from),
        instances: match &filter {
            Some(list) => list
                .iter()
                .map(InstanceId::as_str)
                .collect::<Vec<_>>()
                .join(","),
            None => "*".to_owned(),
        },
    };
    let progress = strata_postgres::mirror_progress(&destination, &key)
        .await
        .with_context(|| {
            format!(
                "reading the mirror's progress in {}: run `strata migrate --database-url <--to URL>` \
                 first if the destination is not migrated",
                redact(&args.to)
            )
        })?;
    let mut cursor: Option<(Position, u32)> = progress.as_ref().map(|p| p.cursor);

    // Side-effect projections: those the destination's runtimes registered as such, plus those
    // named on the command line (a runtime that has not started there yet has not registered).
    let mut side_effects: BTreeSet<String> = strata_postgres::registered_projections(&destination)
        .await
        .context("reading the destination's projections.registry")?
        .into_iter()
        .filter(|projection| projection.has_side_effects)
        .map(|projection| projection.name)
        .collect();
    side_effects.extend(args.side_effects.iter().cloned());
    let side_effects: Vec<String> = side_effects.into_iter().collect();

    let horizon = source
        .commit_horizon()
        .await
        .context("reading the source's commit horizon")?;
    let remaining = source
        .count(&page(&filter, horizon, cursor, None)?)
        .await
        .context("counting the events to copy")?;
    eprintln!(
        "mirroring {} -> {} ({}): {remaining} events to copy{}",
        redact(&args.from),
        redact(&args.to),
        match &filter {
            Some(_) => format!("instances {}", key.instances),
            None => "every instance".to_owned(),
        },
        match &progress {
            Some(progress) => format!(
                ", resuming after {} events copied by earlier runs",
                progress.events_copied
            ),
            None => String::new(),
        }
    );
    if !side_effects.is_empty() {
        eprintln!(
            "not replayed on the destination (side effects): {}",
            side_effects.join(", ")
        );
    }

    let bar = ProgressBar::new(remaining);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, ETA {eta})",
        )
        .context("progress bar template")?,
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let abort_after: Option<u64> = std::env::var(ABORT_AFTER_BATCHES_ENV)
        .ok()
        .and_then(|value| value.parse().ok());
    let mut batches = 0u64;
    let mut inserted = 0u64;
    let mut read = 0u64;
    loop {
        let events: Vec<Event> = source
            .query(&page(&filter, horizon, cursor, Some(args.batch))?)
            .await
            .context("reading a batch from the source")?;
        let Some(last) = events.last() else {
            break;
        };
        cursor = Some(last.cursor());
        inserted += strata_postgres::copy_mirror_batch(&destination, &key, &events, &side_effects)
            .await
            .context(
                "writing a batch to the destination (nothing of that batch was written; run the \
                 mirror again to resume)",
            )?;
        read += events.len() as u64;
        batches += 1;
        bar.inc(events.len() as u64);
        if abort_after == Some(batches) {
            bar.abandon();
            eprintln!("{ABORT_AFTER_BATCHES_ENV}: exiting abruptly after {batches} batches");
            std::process::exit(137);
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "copied {inserted} events in {batches} batches ({} already present)",
        read - inserted
    );

    // The instances this mirror covers: those named, or every instance the source has events or
    // unique constraints in.
    let scope: Vec<InstanceId> = match &filter {
        Some(list) => list.clone(),
        None => {
            let mut all: BTreeSet<InstanceId> = source
                .instance_ids(&page(&filter, horizon, None, None)?)
                .await
                .context("listing the source's instances")?
                .into_iter()
                .collect();
            all.extend(
                strata_postgres::unique_constraints(&source, None)
                    .await
                    .context("reading the source's unique constraints")?
                    .into_iter()
                    .map(|row| InstanceId::from_stored(row.instance_id)),
            );
            all.into_iter().collect()
        }
    };
    let constraints = strata_postgres::unique_constraints(&source, Some(&scope))
        .await
        .context("reading the source's unique constraints")?;
    strata_postgres::replace_unique_constraints(&destination, &scope, &constraints)
        .await
        .context("copying unique constraints")?;
    eprintln!("unique constraints: {} copied", constraints.len());
    if !side_effects.is_empty() {
        let moved = strata_postgres::skip_to_head(&destination, &side_effects, &scope)
            .await
            .context("moving side-effect projections to the mirrored head")?;
        eprintln!("side-effect projections: {moved} checkpoints moved to the mirrored head");
    }
    verify(&source, &destination, &scope, horizon).await
}

/// The source read: the instance filter, below `horizon`, after `cursor`, in order.
fn page(
    filter: &Option<Vec<InstanceId>>,
    horizon: Position,
    cursor: Option<(Position, u32)>,
    limit: Option<u32>,
) -> anyhow::Result<Query> {
    let mut builder: QueryBuilder = Query::builder().position_before(horizon);
    if let Some(list) = filter {
        builder = builder.instances(list.iter().map(InstanceId::as_str));
    }
    if let Some((position, in_tx_order)) = cursor {
        builder = builder.resume_after(position, in_tx_order);
    }
    if let Some(limit) = limit {
        builder = builder.limit(limit);
    }
    builder
        .build()
        .context("building the mirror's source query")
}

/// Prints the event count of every instance on both sides; fails when they differ.
async fn verify(
    source: &PgStore,
    destination: &PgStore,
    scope: &[InstanceId],
    horizon: Position,
) -> anyhow::Result<()> {
    // The source is counted below the horizon this run copied up to; later commits are the next
    // run's work.
    let source_counts = strata_postgres::event_counts(source, Some(scope), Some(horizon))
        .await
        .context("counting the source's events")?;
    let destination_counts = strata_postgres::event_counts(destination, Some(scope), None)
        .await
        .context("counting the destination's events")?;
    let count = |counts: &[(InstanceId, u64)], instance: &InstanceId| {
        counts
            .iter()
            .find(|(id, _)| id == instance)
            .map_or(0, |(_, count)| *count)
    };
    let mut differing = Vec::new();
    let rows: Vec<Vec<String>> = scope
        .iter()
        .map(|instance| {
            let (from, to) = (
                count(&source_counts, instance),
                count(&destination_counts, instance),
            );
            if from != to {
                differing.push(instance.as_str().to_owned());
            }
            vec![
                instance.to_string(),
                from.to_string(),
                to.to_string(),
                if from == to { "ok" } else { "DIFFERS" }.to_owned(),
            ]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    write_table(
        &mut out,
        &["INSTANCE", "SOURCE", "DESTINATION", "CHECK"],
        &rows,
    )
    .context("writing to stdout")?;
    if !differing.is_empty() {
        anyhow::bail!(
            "event counts differ in {} instance(s): {}; if the destination has fewer, run the \
             mirror again; if it has more, it received events from elsewhere",
            differing.len(),
            differing.join(", ")
        );
    }
    Ok(())
}
