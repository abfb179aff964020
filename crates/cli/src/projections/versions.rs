//! `strata projections versions|build|switch|rollback|drop`: the versions of versioned
//! projections, operated from outside the runtimes; this file holds the commands' arguments, the
//! lookups they share, the listing and `drop`.
//!
//! The CLI has no projection's code, and changing a version's state needs none: a switch needs
//! only what the version reads, which its runtime registered under the version's pair name
//! (`users@v2`), and `strata_projection::switch_version` does exactly what a runtime does (under
//! the projection's switch lock, it swaps the stable names only when the version has nothing left
//! below the commit horizon). Building a version does need its code: `build --version N` and
//! `rollback` set a version building, and a runtime that runs that version's code applies it.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use strata_postgres::admin::RegisteredProjection;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    ProjectionBackend, ProjectionError, ProjectionVersion, Reads, VersionLag, VersionOperation,
    VersionState, physical_table, split_versioned_name, version_lag,
};

use crate::connect::connect;
use crate::output::{OutputFormat, confirm, print_listing, report};
use crate::projections::{build, refuse_consumer, runtimes_running, switch};
use crate::{Database, ListingOutput, ReportOutput, usage};

#[derive(Debug, Subcommand)]
pub(crate) enum VersionsCommand {
    /// Every version of versioned projections: state, tables, events behind, switch times
    #[command(after_help = "\
A projection that declares its tables (Projection::tables) is versioned: each version has tables
of its own (users_v2) and checkpoints under its pair name (users@v2), and readers read the live
version through views under the declared names (users). A version is building (applied beside the
live one, unseen by readers), live (exactly one), retired (replaced by a switch, its tables kept
for a rollback) or dropped (its tables gone, its record kept). Version 0 is the projection as it
ran before it declared versions.

\"events behind\" counts the events a building or live version has yet to apply, in every
instance (`-` for retired and dropped versions, which are not applied; `?` when no runtime has
registered the version, so what it reads is unknown). \"runtimes\" counts the live runtimes that
run the version's code.

Examples:
  strata projections versions
  strata projections versions users --output json")]
    Versions(VersionsArgs),

    /// Progress of the version being built, or set a retired or dropped version building again
    // `--version N` names the version here, so the `--version` every command inherits (the
    // binary's version) gives way; `strata --version` still prints it.
    #[command(
        disable_version_flag = true,
        after_help = "\
Shows how far the version being built (or the one --version names) is: events applied, events
behind, instances behind. With --watch it refreshes every 2 seconds, adds the rate (events/s
between two refreshes) and an estimate of the time to catch up (from how fast the events behind
fall, so new events count), and stops once it has caught up.

--version naming a retired or dropped version sets it building again: a runtime that runs that
version's code resumes it from its checkpoints (a dropped one from the first event, its tables
created again). The CLI has no projection's code, so it cannot build a version itself.

Examples:
  strata projections build users
  strata projections build users --watch
  strata projections build users --version 1 --watch"
    )]
    Build(BuildArgs),

    /// Make a version live once it has caught up: readers of the stable names then read it
    #[command(after_help = "\
Switches the projection's stable names (views) to the version's tables and retires the live
version, in one transaction, only when the version has nothing left to apply in any instance:
readers never see a read model behind the one they had. While it is behind, the switch is refused
(exit 1) and says how far behind it is; --wait keeps trying every 2 seconds until it switches or
--timeout passes. Without --to, the version being built is switched in.

Examples:
  strata projections switch users
  strata projections switch users --to 2 --wait --timeout 10m")]
    Switch(SwitchArgs),

    /// Go back to the version that was live before: now if it has caught up, or once it has
    #[command(after_help = "\
Rolls back to the most recently retired version. When it has no events left it is switched in at
once. Otherwise it is set building: a runtime that runs its code resumes it from where it stopped
and, unless the projection switches on command (SwitchWhen::OnCommand), switches it in once it
has caught up. --wait waits for that switch, and makes it itself when the version has caught up.

Examples:
  strata projections rollback users
  strata projections rollback users --wait --timeout 10m")]
    Rollback(RollbackArgs),

    /// Drop a version that is not live: its tables, checkpoints and failed events
    // As for `build`: `--version N` names the version.
    #[command(
        disable_version_flag = true,
        after_help = "\
Drops a building or retired version's tables and forgets its checkpoints, failed events and
registration; its record stays, as dropped, so a runtime still running its code does not build it
again by itself (`strata projections build NAME --version N` would, from the first event). The
live version is refused: switch away from it first. Runtimes drop retired versions by themselves
after ProjectionConfig::drop_retired_after (one day by default).

Example:
  strata projections drop users --version 1 --yes"
    )]
    Drop(DropArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VersionsArgs {
    /// Only this projection's versions
    name: Option<String>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ListingOutput,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The projection's name
    pub(super) name: String,
    /// The version [default: the one building]; a retired or dropped one is set building again
    #[arg(long, value_name = "N")]
    pub(super) version: Option<u32>,
    /// Refresh every 2 seconds until it has caught up (Ctrl-C stops)
    #[arg(long)]
    pub(super) watch: bool,
    #[command(flatten)]
    pub(super) database: Database,
    #[command(flatten)]
    pub(super) output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct SwitchArgs {
    /// The projection's name
    pub(super) name: String,
    /// The version to make live [default: the one building]
    #[arg(long, value_name = "N")]
    pub(super) to: Option<u32>,
    /// While it is behind, wait until it has caught up and switch it in then
    #[arg(long)]
    pub(super) wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout, requires = "wait")]
    pub(super) timeout: Duration,
    #[command(flatten)]
    pub(super) database: Database,
    #[command(flatten)]
    pub(super) output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The projection's name
    pub(super) name: String,
    /// Wait until the version rolled back to is live
    #[arg(long)]
    pub(super) wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout, requires = "wait")]
    pub(super) timeout: Duration,
    #[command(flatten)]
    pub(super) database: Database,
    #[command(flatten)]
    pub(super) output: ReportOutput,
}

#[derive(Debug, Args)]
pub(crate) struct DropArgs {
    /// The projection's name
    name: String,
    /// The version to drop
    #[arg(long, value_name = "N")]
    version: u32,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

pub(crate) async fn run(command: VersionsCommand) -> anyhow::Result<()> {
    match command {
        VersionsCommand::Versions(args) => list(args).await,
        VersionsCommand::Build(args) => build::run(args).await,
        VersionsCommand::Switch(args) => switch::switch(args).await,
        VersionsCommand::Rollback(args) => switch::rollback(args).await,
        VersionsCommand::Drop(args) => drop_version(args).await,
    }
}

/// `--timeout`: a number and a unit, as `cache prune` takes its ages.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::cache::parse_age(text).map_err(|_| {
        format!("{text:?} is not a duration: use a number and a unit, e.g. 90s, 10m, 1h")
    })
}

/// A versioned projection as the version commands find it: its versions, and the registry that
/// says what each version reads.
pub(super) struct Versioned {
    /// The projection's name.
    pub(super) name: String,
    pub(super) store: PgStore,
    pub(super) backend: PgProjections,
    /// Its versions, by version.
    pub(super) versions: Vec<ProjectionVersion>,
    registry: Vec<RegisteredProjection>,
}

impl Versioned {
    /// Connects and reads `name`'s versions. Refuses a pair name (`users@v2`), a consumer, an
    /// unversioned projection and an unknown name, each with what to do instead.
    pub(super) async fn open(database: &Database, name: &str) -> anyhow::Result<Versioned> {
        let store = connect(&database.database_url).await?;
        Versioned::load(store, name).await
    }

    /// [`Versioned::open`] on a store already connected.
    async fn load(store: PgStore, name: &str) -> anyhow::Result<Versioned> {
        let (projection, version) = split_versioned_name(name);
        if 0 < version {
            return Err(usage(format!(
                "{name:?} names version {version} of {projection:?}: give the projection's name \
                 and the version as an option (e.g. `strata projections versions {projection}`)"
            )));
        }
        let backend = PgProjections::new(store.pools().projection().clone());
        let mut versioned = Versioned {
            name: name.to_owned(),
            store,
            backend,
            versions: Vec::new(),
            registry: Vec::new(),
        };
        versioned.refresh().await?;
        refuse_consumer(&versioned.registry, name)?;
        if !versioned.versions.is_empty() {
            return Ok(versioned);
        }
        if versioned.registry.iter().any(|pair| pair.name == name) {
            anyhow::bail!(
                "projection {name:?} is not versioned: it declares no tables (Projection::tables), \
                 so it is rebuilt in place (`strata projections rebuild {name}`)"
            );
        }
        let all = versioned
            .backend
            .versions(None)
            .await
            .context("reading projection versions")?;
        let mut known: Vec<&str> = all
            .iter()
            .map(|record| record.projection.as_str())
            .collect();
        known.dedup();
        anyhow::bail!(
            "no projection named {name:?} has versions (versioned projections: {}); a runtime \
             records a projection's versions when it starts",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    }

    /// Reads the versions and the registry again.
    pub(super) async fn refresh(&mut self) -> anyhow::Result<()> {
        self.registry = strata_postgres::admin::registered_projections(&self.store)
            .await
            .context("reading projections.registry (run `strata migrate` if it is missing)")?;
        self.versions =
            self.backend.versions(Some(&self.name)).await.context(
                "reading projection versions (run `strata migrate` if they are missing)",
            )?;
        Ok(())
    }

    /// Version `version`'s record.
    pub(super) fn version(&self, version: u32) -> anyhow::Result<ProjectionVersion> {
        let found = self
            .versions
            .iter()
            .find(|record| record.version == version);
        match found {
            Some(record) => Ok(record.clone()),
            None => {
                let unknown = ProjectionError::UnknownVersion {
                    projection: self.name.clone(),
                    version,
                };
                anyhow::bail!("{unknown} (its versions: {})", self.summary())
            }
        }
    }

    /// The version being built: what `build` and `switch` act on unless told a version with
    /// `option`.
    pub(super) fn building(&self, option: &str) -> anyhow::Result<ProjectionVersion> {
        let building: Vec<&ProjectionVersion> = self
            .versions
            .iter()
            .filter(|record| record.state == VersionState::Building)
            .collect();
        match building.as_slice() {
            [one] => Ok((*one).clone()),
            [] => anyhow::bail!(
                "no version of {:?} is building (its versions: {}): name one with {option} N",
                self.name,
                self.summary()
            ),
            several => {
                let numbers: Vec<String> = several
                    .iter()
                    .map(|record| record.version.to_string())
                    .collect();
                Err(usage(format!(
                    "versions {} of {:?} are building: name one with {option} N",
                    numbers.join(" and "),
                    self.name
                )))
            }
        }
    }

    /// What the pair `pair` reads, as its runtime registered it; `None` when no runtime has.
    pub(super) fn reads(&self, pair: &str) -> Option<Reads> {
        self.registry
            .iter()
            .find(|registered| registered.name == pair)
            .map(|registered| {
                registered.reads.iter().fold(
                    Reads::new(),
                    |reads, (aggregate_type, event_types)| {
                        reads.events(aggregate_type.clone(), event_types.clone())
                    },
                )
            })
    }

    /// How far `record` is from the latest events; `None` when no runtime registered what it
    /// reads.
    pub(super) async fn lag(
        &self,
        record: &ProjectionVersion,
    ) -> anyhow::Result<Option<VersionLag>> {
        let pair = record.pair_name();
        let Some(reads) = self.reads(&pair) else {
            return Ok(None);
        };
        version_lag(&self.store, &self.backend, &pair, &reads, None)
            .await
            .map(Some)
            .with_context(|| format!("counting the events {pair} has yet to apply"))
    }

    /// Live runtimes that run `record`'s code.
    pub(super) async fn runtimes(&self, record: &ProjectionVersion) -> anyhow::Result<usize> {
        runtimes_running(&self.store, &record.pair_name()).await
    }

    /// The versions in a few words: `v1 live, v2 building`.
    pub(super) fn summary(&self) -> String {
        let states: Vec<String> = self
            .versions
            .iter()
            .map(|record| format!("v{} {}", record.version, record.state))
            .collect();
        states.join(", ")
    }
}

/// The tables a version has now: `users_v2`, or for version 0 while live the declared names
/// themselves (a switch renames them to `users_v0` only when it retires version 0); none once
/// dropped.
pub(super) fn physical_tables(record: &ProjectionVersion) -> Vec<String> {
    match (record.version, record.state) {
        (_, VersionState::Dropped) => Vec::new(),
        (0, VersionState::Live) => record.tables.clone(),
        (version, _) => record
            .tables
            .iter()
            .map(|table| physical_table(table, version))
            .collect(),
    }
}

/// A time as the listings print it.
pub(super) fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One line of `projections versions`.
#[derive(Debug, Serialize)]
struct VersionLine {
    projection: String,
    version: u32,
    /// The name its checkpoints, failed events and status lines are kept under: `users@v2`, the
    /// plain name for version 0.
    pair_name: String,
    /// `building`, `live`, `retired` or `dropped`.
    state: &'static str,
    /// The declared (stable) names of its tables, which readers read.
    tables: Vec<String>,
    /// Its own tables as they exist now (`users_v2`); empty once dropped.
    physical_tables: Vec<String>,
    /// Events it has yet to apply, in every instance; `None` for a retired or dropped version
    /// (not applied), or when no runtime registered what it reads.
    events_behind: Option<u64>,
    /// Instances where it has events left; `None` as for `events_behind`.
    instances_behind: Option<u64>,
    /// Live runtimes that run its code.
    runtimes_alive: usize,
    created_at: String,
    /// When it last became live.
    switched_at: Option<String>,
    /// When it was last retired.
    retired_at: Option<String>,
}

async fn list(args: VersionsArgs) -> anyhow::Result<()> {
    let format = OutputFormat::resolve(args.output.output);
    let store = connect(&args.database.database_url).await?;
    let records = match &args.name {
        Some(name) => Versioned::load(store.clone(), name).await?.versions,
        None => PgProjections::new(store.pools().projection().clone())
            .versions(None)
            .await
            .context("reading projection versions (run `strata migrate` if they are missing)")?,
    };
    let mut lines = Vec::with_capacity(records.len());
    let mut projections: Vec<&str> = records
        .iter()
        .map(|record| record.projection.as_str())
        .collect();
    projections.dedup();
    for projection in projections {
        let versioned = Versioned::load(store.clone(), projection).await?;
        for record in &versioned.versions {
            let lag = match record.state.is_applied() {
                true => versioned.lag(record).await?,
                false => None,
            };
            lines.push(VersionLine {
                projection: record.projection.clone(),
                version: record.version,
                pair_name: record.pair_name(),
                state: record.state.as_str(),
                tables: record.tables.clone(),
                physical_tables: physical_tables(record),
                events_behind: lag.map(|lag| lag.events_behind),
                instances_behind: lag.map(|lag| lag.instances_behind),
                runtimes_alive: versioned.runtimes(record).await?,
                created_at: timestamp(record.created_at),
                switched_at: record.switched_at.map(timestamp),
                retired_at: record.retired_at.map(timestamp),
            });
        }
    }
    print_listing(
        format,
        &lines,
        &[
            "PROJECTION",
            "VERSION",
            "STATE",
            "TABLES",
            "EVENTS BEHIND",
            "RUNTIMES",
            "SWITCHED AT",
            "RETIRED AT",
        ],
        "no versioned projections: a projection is versioned when it declares its tables \
         (Projection::tables), and a runtime records its versions when it starts",
        |line| {
            let behind = match (line.events_behind, line.state) {
                (Some(behind), _) => behind.to_string(),
                (None, "building" | "live") => "?".to_owned(),
                (None, _) => "-".to_owned(),
            };
            vec![
                line.projection.clone(),
                line.version.to_string(),
                line.state.to_owned(),
                dash_if_empty(line.physical_tables.join(", ")),
                behind,
                line.runtimes_alive.to_string(),
                line.switched_at.clone().unwrap_or_else(|| "-".to_owned()),
                line.retired_at.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        },
    )
}

fn dash_if_empty(text: String) -> String {
    match text.is_empty() {
        true => "-".to_owned(),
        false => text,
    }
}

/// What `strata projections drop --output json` prints.
#[derive(Debug, Serialize)]
struct DroppedLine {
    projection: String,
    version: u32,
    /// Always `dropped`.
    state: &'static str,
    /// The tables dropped.
    dropped_tables: Vec<String>,
}

async fn drop_version(args: DropArgs) -> anyhow::Result<()> {
    let versioned = Versioned::open(&args.database, &args.name).await?;
    let record = versioned.version(args.version)?;
    // Checked before asking, with the backend's own rule and words; the backend checks again
    // under the projection's switch lock.
    VersionOperation::DROP
        .check(&record)
        .map_err(anyhow::Error::new)?;
    let tables = physical_tables(&record);
    let running = versioned.runtimes(&record).await?;
    let mut question = format!(
        "drop version {} of {:?}: its tables ({}), checkpoints and failed events",
        record.version,
        record.projection,
        dash_if_empty(tables.join(", "))
    );
    if 0 < running {
        question.push_str(&format!(
            "; {running} live runtime(s) run its code and stop applying it"
        ));
    }
    question.push('?');
    confirm(&question, args.yes)?;
    let dropped = versioned
        .backend
        .drop_version(&args.name, args.version)
        .await
        .with_context(|| format!("dropping version {} of {:?}", args.version, args.name))?;
    let line = DroppedLine {
        projection: dropped.projection,
        version: dropped.version,
        state: dropped.state.as_str(),
        dropped_tables: tables,
    };
    report(args.output.output, &line, || {
        format!(
            "dropped version {} of {:?}: its tables ({}), checkpoints and failed events are \
             gone; `strata projections build {} --version {}` would build it again from the \
             first event",
            line.version,
            line.projection,
            dash_if_empty(line.dropped_tables.join(", ")),
            line.projection,
            line.version
        )
    })
}
