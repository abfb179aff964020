//! `strata mirror`: copy a store (or some instances) into another, resumably and without duplicates.
//!
//! The source is read through the store API, in `(position, in_tx_order)` order and strictly below
//! the commit horizon taken when the run starts: every event positioned there has committed, so
//! the cursor can never move past an event whose transaction commits late. Each batch is written
//! to the destination in one transaction together with the mirror's progress row, so an
//! interrupted run resumes after the last committed batch; the events' primary key
//! (`ON CONFLICT DO NOTHING`) makes even a replayed batch harmless.

use std::collections::BTreeSet;

use anyhow::Context;
use serde::Serialize;
use strata_event::{Cursor, Event, InstanceId, Position};
use strata_postgres::PgStore;
use strata_postgres::mirror::MirrorKey;
use strata_query::{Query, QueryBuilder};
use strata_store::EventStore;

use crate::connect::{connect, database_key, redact};
use crate::output::{report, write_table};
use crate::progress::Progress;
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
    let progress = strata_postgres::mirror::progress(&destination, &key)
        .await
        .with_context(|| {
            format!(
                "reading the mirror's progress in {}: run `strata migrate --database-url <--to URL>` \
                 first if the destination is not migrated",
                redact(&args.to)
            )
        })?;
    let mut cursor: Option<Cursor> = progress.as_ref().map(|p| p.cursor);

    // Side-effect projections: those the destination's runtimes registered as such, plus those
    // named on the command line (a runtime that has not started there yet has not registered).
    let mut side_effects: BTreeSet<String> =
        strata_postgres::admin::registered_projections(&destination)
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

    let mut bar = Progress::start("events", Some(remaining));
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
        inserted += strata_postgres::mirror::copy_batch(&destination, &key, &events, &side_effects)
            .await
            .context(
                "writing a batch to the destination (nothing of that batch was written; run the \
                 mirror again to resume)",
            )?;
        read += events.len() as u64;
        batches += 1;
        bar.add(events.len() as u64);
        if abort_after == Some(batches) {
            bar.abandon();
            eprintln!("{ABORT_AFTER_BATCHES_ENV}: exiting abruptly after {batches} batches");
            std::process::exit(137);
        }
    }
    bar.finish();
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
                strata_postgres::mirror::unique_constraints(&source, None)
                    .await
                    .context("reading the source's unique constraints")?
                    .into_iter()
                    .map(|row| InstanceId::from_stored(row.instance_id)),
            );
            let keys = strata_postgres::mirror::subject_key_rows(&source, None)
                .await
                .context("reading the source's personal-data keys")?;
            all.extend(
                keys.keys
                    .into_iter()
                    .map(|row| row.0)
                    .chain(keys.erased.into_iter().map(|row| row.0))
                    .map(InstanceId::from_stored),
            );
            all.into_iter().collect()
        }
    };
    let constraints = strata_postgres::mirror::unique_constraints(&source, Some(&scope))
        .await
        .context("reading the source's unique constraints")?;
    strata_postgres::mirror::replace_unique_constraints(&destination, &scope, &constraints)
        .await
        .context("copying unique constraints")?;
    eprintln!("unique constraints: {} copied", constraints.len());
    // After the events: a copy interrupted before this point fails loudly on sealed fields
    // (a key missing) rather than reading them as erased.
    let keys = strata_postgres::mirror::subject_key_rows(&source, Some(&scope))
        .await
        .context("reading the source's personal-data keys")?;
    strata_postgres::mirror::replace_subject_keys(&destination, &scope, &keys)
        .await
        .context("copying personal-data keys")?;
    eprintln!(
        "personal-data keys: {} copied, {} erased subjects",
        keys.keys.len(),
        keys.erased.len()
    );
    let mut moved = 0;
    if !side_effects.is_empty() {
        moved = strata_postgres::mirror::skip_to_head(&destination, &side_effects, &scope)
            .await
            .context("moving side-effect projections to the mirrored head")?;
        eprintln!("side-effect projections: {moved} checkpoints moved to the mirrored head");
    }
    let counts = count_both(&source, &destination, &scope, horizon).await?;
    let outcome = Mirrored {
        copied: inserted,
        already_present: read - inserted,
        batches,
        unique_constraints: constraints.len(),
        subject_keys: keys.keys.len(),
        erased_subjects: keys.erased.len(),
        checkpoints_moved: moved,
        instances: counts,
    };
    report(args.output.output, &outcome, || {
        let rows: Vec<Vec<String>> = outcome
            .instances
            .iter()
            .map(|counts| {
                vec![
                    counts.instance_id.clone(),
                    counts.source.to_string(),
                    counts.destination.to_string(),
                    if counts.source == counts.destination {
                        "ok"
                    } else {
                        "DIFFERS"
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let mut text = Vec::new();
        let _ = write_table(
            &mut text,
            &["INSTANCE", "SOURCE", "DESTINATION", "CHECK"],
            &rows,
        );
        String::from_utf8_lossy(&text).trim_end().to_owned()
    })?;
    let differing: Vec<&str> = outcome
        .instances
        .iter()
        .filter(|counts| counts.source != counts.destination)
        .map(|counts| counts.instance_id.as_str())
        .collect();
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

/// What `strata mirror --output json` prints.
#[derive(Debug, Serialize)]
struct Mirrored {
    /// Events inserted by this run.
    copied: u64,
    /// Events read from the source that the destination already had.
    already_present: u64,
    batches: u64,
    unique_constraints: usize,
    /// Personal-data keys copied (still wrapped by the source's master keys).
    subject_keys: usize,
    /// Subjects erased in the source, and so in the copy.
    erased_subjects: usize,
    /// Checkpoints of side-effect projections moved to the mirrored head.
    checkpoints_moved: u64,
    instances: Vec<InstanceCounts>,
}

/// The event count of one instance on both sides.
#[derive(Debug, Serialize)]
struct InstanceCounts {
    instance_id: String,
    source: u64,
    destination: u64,
}

/// The source read: the instance filter, below `horizon`, after `cursor`, in order.
fn page(
    filter: &Option<Vec<InstanceId>>,
    horizon: Position,
    cursor: Option<Cursor>,
    limit: Option<u32>,
) -> anyhow::Result<Query> {
    let mut builder: QueryBuilder = match filter {
        Some(list) => Query::builder().instances(list.iter().map(InstanceId::as_str)),
        None => Query::builder().all_instances(),
    };
    builder = builder.position_before(horizon);
    if let Some(cursor) = cursor {
        builder = builder.resume_after(cursor);
    }
    if let Some(limit) = limit {
        builder = builder.limit(limit);
    }
    builder
        .build()
        .context("building the mirror's source query")
}

/// The event count of every instance of `scope` on both sides.
async fn count_both(
    source: &PgStore,
    destination: &PgStore,
    scope: &[InstanceId],
    horizon: Position,
) -> anyhow::Result<Vec<InstanceCounts>> {
    // The source is counted below the horizon this run copied up to; later commits are the next
    // run's work.
    let source_counts = strata_postgres::mirror::event_counts(source, Some(scope), Some(horizon))
        .await
        .context("counting the source's events")?;
    let destination_counts = strata_postgres::mirror::event_counts(destination, Some(scope), None)
        .await
        .context("counting the destination's events")?;
    let count = |counts: &[(InstanceId, u64)], instance: &InstanceId| {
        counts
            .iter()
            .find(|(id, _)| id == instance)
            .map_or(0, |(_, count)| *count)
    };
    Ok(scope
        .iter()
        .map(|instance| InstanceCounts {
            instance_id: instance.to_string(),
            source: count(&source_counts, instance),
            destination: count(&destination_counts, instance),
        })
        .collect())
}
