//! `strata projections status`: where every registered projection stands in every instance, how
//! healthy it is, and which runtimes are alive to run them.
//!
//! A versioned projection is listed once per version that is applied (building or live), under
//! its pair name (`users@v2`); retired and dropped versions are not applied, so not listed
//! (`strata projections versions` shows them).

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use strata_event::InstanceId;
use strata_postgres::admin::RegisteredProjection;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    Health, ProjectionBackend, ProjectionConfig, ProjectionVersion, VersionState,
    split_versioned_name,
};
use strata_store::EventStore;

use crate::connect::connect;
use crate::output::{OutputFormat, checkpoint_cell, write_json_line, write_table};
use crate::projections::{WATCH_EVERY, build_reads, reads_query, refuse_consumer};
use crate::{Database, usage};

/// One line of `projections status`.
#[derive(Debug, Serialize)]
struct StatusLine {
    /// The pair's name: the projection's, or a version's (`users@v2`).
    projection: String,
    /// The version, for a versioned projection; `None` for an unversioned one.
    version: Option<u32>,
    /// The version's state (`building` or `live`); `None` for an unversioned projection.
    version_state: Option<&'static str>,
    instance_id: String,
    /// The checkpoint's position as an exact decimal string; `None` before the first event.
    position: Option<String>,
    in_tx_order: Option<u32>,
    events_behind: u64,
    seconds_behind: f64,
    /// `healthy`, `catching up` or `stalled` (`strata_projection::Health`).
    health: &'static str,
    failed_events: u64,
    /// Live runtimes (a heartbeat within the last 15 s) that run the projection.
    runtimes_alive: usize,
    has_side_effects: bool,
}

/// `status --projection/--instance`.
#[derive(Debug)]
struct StatusFilter {
    projection: Option<String>,
    instance: Option<InstanceId>,
}

/// `strata projections status`, once or (`watch`) every [`WATCH_EVERY`].
pub(super) async fn run(
    projection: Option<String>,
    instance: Option<String>,
    watch: bool,
    database: &Database,
    output: Option<OutputFormat>,
) -> anyhow::Result<()> {
    let format = OutputFormat::resolve(output);
    let filter = StatusFilter {
        projection,
        instance: instance
            .map(InstanceId::new)
            .transpose()
            .map_err(|err| usage(err.to_string()))?,
    };
    let store = connect(&database.database_url).await?;
    if !watch {
        return print_status(&store, &filter, format).await;
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
        print_status(&store, &filter, format).await?;
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

async fn print_status(
    store: &PgStore,
    filter: &StatusFilter,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let runtimes = strata_postgres::admin::live_runtimes(store)
        .await
        .context("reading the runtimes' heartbeats")?;
    let lines = status(store, filter, &runtimes).await?;
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
                        projection_cell(line),
                        line.instance_id.clone(),
                        checkpoint_cell(line.position.as_deref(), line.in_tx_order),
                        line.events_behind.to_string(),
                        format!("{:.1}", line.seconds_behind),
                        line.health.to_owned(),
                        line.failed_events.to_string(),
                        line.runtimes_alive.to_string(),
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
                        "HEALTH",
                        "FAILED",
                        "RUNTIMES",
                        "SIDE EFFECTS",
                    ],
                    &rows,
                )
                .context("writing to stdout")?;
            }
            writeln!(out).context("writing to stdout")?;
            if runtimes.is_empty() {
                writeln!(
                    out,
                    "no runtime is alive: queued rebuilds, retries and skips wait until one starts"
                )
                .context("writing to stdout")?;
            }
            for runtime in &runtimes {
                writeln!(
                    out,
                    "runtime alive: {} pid {} (last seen {} s ago), running {}",
                    runtime.host,
                    runtime.pid,
                    (Utc::now() - runtime.last_seen_at).num_seconds().max(0),
                    runtime.projections.join(", ")
                )
                .context("writing to stdout")?;
            }
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// The PROJECTION cell: the pair's name, with its version's state when it is versioned
/// (`users@v2 (building)`; version 0, the projection as it ran unversioned, keeps the plain name).
fn projection_cell(line: &StatusLine) -> String {
    match (line.version, line.version_state) {
        (Some(0), Some(state)) => format!("{} (v0 {state})", line.projection),
        (Some(_), Some(state)) => format!("{} ({state})", line.projection),
        _ => line.projection.clone(),
    }
}

/// The record of the version the registered pair `pair` is; `None` for an unversioned
/// projection (or a consumer's part).
fn version_of<'a>(versions: &'a [ProjectionVersion], pair: &str) -> Option<&'a ProjectionVersion> {
    let (projection, version) = split_versioned_name(pair);
    versions
        .iter()
        .find(|record| record.projection == projection && record.version == version)
}

/// Whether `--projection NAME` selects the pair `pair`: its own name, or the name of the
/// projection it is a version of.
fn selects(name: &str, pair: &str) -> bool {
    pair == name || split_versioned_name(pair).0 == name
}

/// Per registered projection and per instance it has events or a checkpoint in: where it stands.
/// The same computation as `ProjectionRuntime::status`, from the registry instead of the code.
async fn status(
    store: &PgStore,
    filter: &StatusFilter,
    runtimes: &[strata_postgres::admin::LiveRuntime],
) -> anyhow::Result<Vec<StatusLine>> {
    let backend = PgProjections::new(store.pools().projection().clone());
    let registry = strata_postgres::admin::registered_projections(store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    if let Some(name) = &filter.projection {
        refuse_consumer(&registry, name)?;
    }
    let registry: Vec<RegisteredProjection> = registry
        .into_iter()
        .filter(|projection| projection.consumer.is_none())
        .collect();
    let states = backend
        .states()
        .await
        .context("reading projection checkpoints")?;
    let failed = backend
        .failed_events(None)
        .await
        .context("reading failed events")?;
    let versions = backend
        .versions(None)
        .await
        .context("reading projection versions (run `strata migrate` if they are missing)")?;
    let selected: Vec<(&RegisteredProjection, Option<&ProjectionVersion>)> = registry
        .iter()
        .filter(|projection| {
            filter
                .projection
                .as_ref()
                .is_none_or(|name| selects(name, &projection.name))
        })
        .map(|projection| (projection, version_of(&versions, &projection.name)))
        .collect();
    if let Some(name) = &filter.projection {
        if selected.is_empty() {
            anyhow::bail!("no projection named {name:?} is registered");
        }
        if selected
            .iter()
            .all(|(_, version)| version.is_some_and(|version| !version.state.is_applied()))
        {
            anyhow::bail!(
                "{name:?} is not applied (only building and live versions are, and status lists \
                 only those): `strata projections versions {}` shows every version",
                split_versioned_name(name).0
            );
        }
    }
    let now = Utc::now();
    let mut lines = Vec::new();
    for (projection, version) in selected {
        if version.is_some_and(|version| !version.state.is_applied()) {
            continue;
        }
        // A runtime that registered no stall_after ran with the default one.
        let stall_after = projection
            .stall_after
            .unwrap_or(ProjectionConfig::default().stall_after);
        let instances: BTreeSet<InstanceId> = match &filter.instance {
            Some(instance) => BTreeSet::from([instance.clone()]),
            None => {
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
                instances
            }
        };
        let runtimes_alive = runtimes
            .iter()
            .filter(|runtime| runtime.projections.contains(&projection.name))
            .count();
        for instance in instances {
            let state = states
                .iter()
                .find(|state| state.projection == projection.name && state.instance_id == instance);
            let behind = || {
                let builder = reads_query(projection, Some(&instance));
                match state {
                    Some(state) => builder.resume_after(state.cursor()),
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
                        (now - event.created_at).num_milliseconds().max(0) as f64 / 1000.0
                    }),
            };
            let building = version.is_some_and(|version| version.state == VersionState::Building);
            let health = Health::assess(
                events_behind,
                seconds_behind,
                Health::last_moved(&states, &projection.name, &instance, building),
                stall_after,
                now,
            );
            lines.push(StatusLine {
                projection: projection.name.clone(),
                version: version.map(|version| version.version),
                version_state: version.map(|version| version.state.as_str()),
                instance_id: instance.to_string(),
                position: state.map(|state| state.position.to_string()),
                in_tx_order: state.map(|state| state.in_tx_order),
                events_behind,
                seconds_behind,
                health: health.as_str(),
                failed_events: failed
                    .iter()
                    .filter(|f| {
                        f.projection == projection.name && f.aggregate.instance_id == instance
                    })
                    .count() as u64,
                runtimes_alive,
                has_side_effects: projection.has_side_effects,
            });
        }
    }
    Ok(lines)
}
