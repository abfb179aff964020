//! `strata projections switch` and `rollback`: making a version live from outside the runtimes,
//! now when it has caught up, or, with `--wait`, as soon as it has.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use strata_projection::{
    ProjectionBackend, ProjectionError, ProjectionVersion, Reads, VersionState, switch_version,
    version_lag,
};

use crate::output::{OutputFormat, report};
use crate::projections::WATCH_EVERY;
use crate::projections::versions::{RollbackArgs, SwitchArgs, Versioned, physical_tables};

/// What `switch` and `rollback` report.
#[derive(Debug, Serialize)]
struct VersionReport {
    projection: String,
    version: u32,
    /// Its state now: `live` after a switch, `building` when `rollback` set it building.
    state: &'static str,
    /// The version that was live before the switch and is retired now; `None` when no switch
    /// happened (yet).
    retired_version: Option<u32>,
    /// Who switched it in: `this command` or `another process` (a runtime, or another operator);
    /// `None` when no switch happened (yet).
    switched_by: Option<&'static str>,
    /// Events it had left when `rollback` set it building; `None` otherwise, or when no runtime
    /// registered what it reads.
    events_behind: Option<u64>,
    /// Live runtimes that run its code.
    runtimes_alive: usize,
}

pub(super) async fn switch(args: SwitchArgs) -> anyhow::Result<()> {
    let mut versioned = Versioned::open(&args.database, &args.name).await?;
    let target = match args.to {
        Some(version) => versioned.version(version)?,
        None => versioned.building("--to")?,
    };
    let pair = target.pair_name();
    let Some(reads) = versioned.reads(&pair) else {
        anyhow::bail!(
            "no runtime has registered {pair}, so what it reads, and whether it has caught up, is \
             unknown: start a runtime that runs version {}'s code first",
            target.version
        );
    };
    let live_before = live_version(&versioned);
    let wait = args.wait.then_some(args.timeout);
    let (live, switched_by) = switch_in(&mut versioned, &target, Some(&reads), wait).await?;
    report_switch(
        &versioned,
        args.output.output,
        &live,
        live_before,
        switched_by,
    )
    .await
}

pub(super) async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let mut versioned = Versioned::open(&args.database, &args.name).await?;
    let Some(previous) = versioned
        .versions
        .iter()
        .filter(|record| record.state == VersionState::Retired)
        .max_by_key(|record| record.retired_at)
        .cloned()
    else {
        anyhow::bail!(
            "{:?} has no retired version to roll back to (its versions: {})",
            versioned.name,
            versioned.summary()
        );
    };
    let live_before = live_version(&versioned);
    let pair = previous.pair_name();
    let reads = versioned.reads(&pair);
    let mut events_behind = None;
    if let Some(reads) = &reads {
        let lag = version_lag(&versioned.store, &versioned.backend, &pair, reads, None)
            .await
            .with_context(|| format!("counting the events {pair} has yet to apply"))?;
        events_behind = Some(lag.events_behind);
        // Nothing arrived since it was retired: it takes over now.
        if lag.events_behind == 0 {
            match switch_version(
                &versioned.store,
                &versioned.backend,
                &versioned.name,
                previous.version,
                reads,
            )
            .await
            {
                Ok(live) => {
                    return report_switch(
                        &versioned,
                        args.output.output,
                        &live,
                        live_before,
                        "this command",
                    )
                    .await;
                }
                // Events arrived meanwhile: it is built first, like any version behind.
                Err(ProjectionError::VersionBehind {
                    events_behind: now, ..
                }) => {
                    events_behind = Some(now);
                }
                Err(err) => return Err(switch_failed(err, &previous)),
            }
        }
    }
    let building = versioned
        .backend
        .rebuild_version(&versioned.name, previous.version)
        .await
        .with_context(|| {
            format!(
                "setting version {} of {:?} building again",
                previous.version, versioned.name
            )
        })?;
    let line = VersionReport {
        projection: building.projection.clone(),
        version: building.version,
        state: building.state.as_str(),
        retired_version: None,
        switched_by: None,
        events_behind,
        runtimes_alive: versioned.runtimes(&building).await?,
    };
    report(args.output.output, &line, || rolling_back(&line, &pair))?;
    if !args.wait {
        return Ok(());
    }
    let (live, switched_by) = switch_in(
        &mut versioned,
        &building,
        reads.as_ref(),
        Some(args.timeout),
    )
    .await?;
    report_switch(
        &versioned,
        args.output.output,
        &live,
        live_before,
        switched_by,
    )
    .await
}

/// The live version's number.
fn live_version(versioned: &Versioned) -> Option<u32> {
    versioned
        .versions
        .iter()
        .find(|record| record.state == VersionState::Live)
        .map(|record| record.version)
}

/// Switches `target` in once it has caught up, and says who did: this command, or another
/// process (a runtime) that got there first. Without `wait` it tries once and fails while
/// `target` is behind; with it, it tries every [`WATCH_EVERY`] for that long, showing on stderr
/// how far behind it is. Without `reads` (no runtime registered them) it cannot tell whether
/// `target` caught up, so it only waits for another process to switch it in.
async fn switch_in(
    versioned: &mut Versioned,
    target: &ProjectionVersion,
    reads: Option<&Reads>,
    wait: Option<Duration>,
) -> anyhow::Result<(ProjectionVersion, &'static str)> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        versioned.refresh().await?;
        let now = versioned.version(target.version)?;
        let switched_elsewhere =
            now.state == VersionState::Live && target.state != VersionState::Live;
        if switched_elsewhere {
            return Ok((now, "another process"));
        }
        if !now.state.is_applied() && now.state != target.state {
            anyhow::bail!(
                "version {} of {:?} was {} meanwhile: it will not take over",
                now.version,
                now.projection,
                now.state
            );
        }
        let behind = match reads {
            Some(reads) => match switch_version(
                &versioned.store,
                &versioned.backend,
                &versioned.name,
                target.version,
                reads,
            )
            .await
            {
                Ok(live) => return Ok((live, "this command")),
                Err(ProjectionError::VersionBehind {
                    events_behind,
                    instances_behind,
                    ..
                }) => Some((events_behind, instances_behind)),
                Err(ProjectionError::VersionRefused {
                    state: VersionState::Live,
                    ..
                }) if target.state != VersionState::Live => {
                    // Switched in since the versions were read: read its record as it is now.
                    versioned.refresh().await?;
                    let live = versioned.version(target.version)?;
                    return Ok((live, "another process"));
                }
                Err(err) => return Err(switch_failed(err, target)),
            },
            None => None,
        };
        let runtimes = versioned.runtimes(target).await?;
        let pair = target.pair_name();
        let how_far = match behind {
            Some((events, instances)) => {
                format!("{events} event(s) behind in {instances} instance(s)")
            }
            None => {
                format!("not live (how far behind it is is unknown: no runtime registered {pair})")
            }
        };
        let nobody_builds = match runtimes {
            0 => format!("; no live runtime runs {pair}, so nothing builds it until one starts"),
            _ => String::new(),
        };
        let version = format!("version {} of {:?}", target.version, versioned.name);
        let Some(wait) = wait else {
            anyhow::bail!(
                "{version} cannot take over yet: it is {how_far}{nobody_builds}; `strata projections \
                 build {} --version {} --watch` follows it, and --wait switches it in once it has \
                 caught up",
                versioned.name,
                target.version
            );
        };
        let waited = started.elapsed();
        if wait <= waited {
            anyhow::bail!(
                "gave up after {}: {version} is still {how_far}{nobody_builds}",
                seconds(waited)
            );
        }
        if runtimes == 0 && !warned {
            warned = true;
            eprintln!("note: no live runtime runs {pair}: nothing builds it until one starts");
        }
        eprintln!(
            "waiting: {version} is {how_far} ({} waited, gives up after {})",
            seconds(waited),
            seconds(wait)
        );
        tokio::time::sleep(WATCH_EVERY.min(wait - waited)).await;
    }
}

/// A switch's error, naming what was switched.
fn switch_failed(err: ProjectionError, target: &ProjectionVersion) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "switching {:?} to version {}",
        target.projection, target.version
    ))
}

/// `duration` in whole seconds: `12 s`.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

/// Reports that `live` took over from `live_before`.
async fn report_switch(
    versioned: &Versioned,
    format: OutputFormat,
    live: &ProjectionVersion,
    live_before: Option<u32>,
    switched_by: &'static str,
) -> anyhow::Result<()> {
    let line = VersionReport {
        projection: live.projection.clone(),
        version: live.version,
        state: live.state.as_str(),
        retired_version: live_before.filter(|before| *before != live.version),
        switched_by: Some(switched_by),
        events_behind: None,
        runtimes_alive: versioned.runtimes(live).await?,
    };
    report(format, &line, || {
        let who = match switched_by {
            "this command" => "switched",
            _ => "another process (a runtime) switched",
        };
        let mut sentence = format!(
            "{who} {:?} to version {}: readers of {} now read its tables ({})",
            line.projection,
            line.version,
            live.tables.join(", "),
            physical_tables(live).join(", ")
        );
        if let Some(retired) = line.retired_version {
            sentence.push_str(&format!(
                "; version {retired} is retired, its tables kept for a rollback (`strata \
                 projections rollback {}`) until dropped",
                line.projection
            ));
        }
        sentence
    })
}

/// What `rollback` did when the version it rolls back to is behind, for a person.
fn rolling_back(line: &VersionReport, pair: &str) -> String {
    let behind = match line.events_behind {
        Some(events) => format!("it is {events} event(s) behind"),
        None => format!("how far behind it is is unknown (no runtime registered {pair})"),
    };
    let who = match line.runtimes_alive {
        0 => format!("no live runtime runs {pair} now: it is built once one starts"),
        alive => format!("{alive} live runtime(s) run it"),
    };
    format!(
        "rolling {:?} back to version {}: {behind}, so it is building again from where it \
         stopped; a runtime that runs its code catches it up and switches it in (unless the \
         projection switches on command: then `strata projections switch {} --to {}`, or \
         rollback --wait, switches it in once it has caught up); {who}",
        line.projection, line.version, line.projection, line.version
    )
}
