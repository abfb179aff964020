//! W1-beside-rebuild and P1-versioned: W1 at C = 8 while a new version of a projection builds
//! from P1's events in another process, beside W1 alone; and that build's rate, beside P1.
//!
//! The builds happen on the database of the read workloads, whose `session` events P1 projects.
//! Version 1 of [`Versioned`] catches up there first (not timed), so every build has a live
//! version beside it. Then come rounds of two equally long W1 windows, one beside a build and
//! one without, each side first in turn. Each build is a fresh version (2, 3, …) run by
//! `cargo xtask bench-rebuilder` with the runtime's defaults: one building batch at a time, and
//! the version switched in by the runtime itself once caught up.
//!
//! The build runs in another process, as P2's and W1P's projections do: its CPU work then
//! competes with the writers through the operating system, as in a deployment, and not inside
//! the bench's Tokio runtime, whose worker threads time the writers' pushes.
//!
//! W1's window beside a build is the build itself: it opens when the rebuilder is told to start
//! and closes at the first look at the checkpoints that finds every instance caught up. How long
//! a build of 200 000 events takes is not known in advance (seconds, more or less than a W1
//! round depending on the machine), and a fixed window would have measured W1 partly without the
//! build beside it, or ended before the build did.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use strata_event::{Cursor, Event, InstanceId};
use strata_postgres::{PgConfig, PgProjections, PgStore};
use strata_projection::{
    Projection, ProjectionBackend, ProjectionConfig, ProjectionRuntime, Reads, ReduceError,
    Statement, SwitchWhen, Table, VersionState, switch_version, version_lag, versioned_name,
};
use strata_query::Query;
use strata_store::EventStore;

use crate::perf::projections::{self, BULK, Worker};
use crate::perf::runner::{self, Timing};
use crate::perf::stats::{Latencies, Row, Samples};
use crate::perf::writes;

/// The two workloads' names; either one asks for both.
pub(crate) const W1_BESIDE_REBUILD: &str = "W1-beside-rebuild";
pub(crate) const P1_VERSIONED: &str = "P1-versioned";

/// The system of a round's row of W1 beside raw SQL's rebuild (the reference).
const ROUND_RAW: &str = "round-raw";

/// W1-beside-rebuild and P1-versioned on a database holding P1's events (`url` names it for the
/// rebuilder process): `pairs` rounds of W1 beside a build and W1 alone. Returns the two standard
/// rows, W1 alone (`strata-alone`), and each round's two rates (`round-beside`, `round-alone`)
/// for [`summary`].
pub(crate) async fn run(
    store: &PgStore,
    url: &str,
    timing: Timing,
    pairs: u32,
) -> Result<Vec<Row>> {
    let backend = PgProjections::new(store.pools().projection().clone());
    let targets = Targets::of(store).await?;
    eprintln!(
        "bench: {W1_BESIDE_REBUILD}: version 1 of {NAME} catches up on {} events (not timed)",
        targets.events
    );
    first_version(store, &backend, &targets).await?;

    let warmup = timing.warmup / 2;
    let (mut beside, mut beside_time) = (Samples::default(), Duration::ZERO);
    let (mut alone, mut alone_time) = (Samples::default(), Duration::ZERO);
    let (mut builds, mut build_time) = (Samples::default(), Duration::ZERO);
    let (mut raw_beside, mut raw_beside_time) = (Samples::default(), Duration::ZERO);
    let (mut raw_builds, mut raw_build_time) = (Samples::default(), Duration::ZERO);
    let mut rounds = Vec::new();
    let mut version = 1;
    let mut window = Duration::ZERO;
    for n in 1..=pairs {
        // Each side goes first in turn, so a drift of the disk's speed favours neither; a round
        // alone lasts as long as the last build did.
        version += 1;
        let (build, (alone_samples, alone_window)) = if n % 2 == 1 {
            let build = build_beside_w1(store, &backend, url, &targets, version, warmup).await?;
            let alone = w1_alone(store, warmup, build.window).await;
            (build, alone)
        } else {
            let alone = w1_alone(store, warmup, window).await;
            let build = build_beside_w1(store, &backend, url, &targets, version, warmup).await?;
            (build, alone)
        };
        window = build.window;
        let raw = raw_build_beside_w1(store, warmup).await?;
        let beside_rate = rate(&build.w1, build.window);
        let alone_rate = rate(&alone_samples, alone_window);
        eprintln!(
            "bench: {W1_BESIDE_REBUILD} round {n}/{pairs}: version {version} built {} events in \
             {:.2} s ({:.0} ev/s; version_lag on it took {:.0} ms afterwards); W1 beside it \
             {beside_rate:.0} ev/s over the build's {:.2} s, alone {alone_rate:.0} ev/s ({:.2}x)",
            build.applied,
            build.built.as_secs_f64(),
            build.applied as f64 / build.built.as_secs_f64().max(1e-9),
            build.lag_took.as_secs_f64() * 1e3,
            build.window.as_secs_f64(),
            beside_rate / alone_rate.max(1e-9)
        );
        eprintln!(
            "bench: {W1_BESIDE_REBUILD} round {n}/{pairs}, reference: raw SQL's P1 loop rebuilt {} \
             events in {:.2} s ({:.0} ev/s); W1 beside it {:.0} ev/s ({:.2}x of alone)",
            raw.applied,
            raw.built.as_secs_f64(),
            raw.applied as f64 / raw.built.as_secs_f64().max(1e-9),
            rate(&raw.w1, raw.window),
            rate(&raw.w1, raw.window) / alone_rate.max(1e-9)
        );
        rounds.push(
            raw.w1
                .clone()
                .events_row(ROUND_RAW, W1_BESIDE_REBUILD, 8, raw.window),
        );
        raw_beside.merge(raw.w1);
        raw_beside_time += raw.window;
        raw_builds.merge(Samples {
            latencies: Latencies::of(raw.built),
            events: raw.applied,
            errors: 0,
        });
        raw_build_time += raw.built;
        rounds.push(
            build
                .w1
                .clone()
                .events_row(ROUND_BESIDE, W1_BESIDE_REBUILD, 8, build.window),
        );
        rounds.push(alone_samples.clone().events_row(
            ROUND_ALONE,
            W1_BESIDE_REBUILD,
            8,
            alone_window,
        ));
        beside.merge(build.w1);
        beside_time += build.window;
        alone.merge(alone_samples);
        alone_time += alone_window;
        builds.merge(Samples {
            latencies: Latencies::of(build.built),
            events: build.applied,
            errors: build.failed,
        });
        build_time += build.built;
    }
    let mut rows = vec![
        beside.events_row("strata", W1_BESIDE_REBUILD, 8, beside_time),
        alone.events_row("strata-alone", W1_BESIDE_REBUILD, 8, alone_time),
        builds.events_row("strata", P1_VERSIONED, 1, build_time),
        raw_beside.events_row("raw", W1_BESIDE_REBUILD, 8, raw_beside_time),
        raw_builds.events_row("raw", P1_VERSIONED, 1, raw_build_time),
    ];
    rows.extend(rounds);
    Ok(rows)
}

/// The two rows against their references from the same run, when they ran: W1 beside the builds
/// against W1 alone (pooled, and the median of the rounds' ratios), and the builds' rate against
/// P1's (`p1`: Strata's P1 row of this run).
pub(crate) fn summary(rows: &[Row], p1: Option<&Row>) -> Vec<String> {
    let find = |system: &str, workload: &str| {
        rows.iter()
            .find(|row| row.system == system && row.workload == workload)
    };
    let mut lines = Vec::new();
    if let (Some(beside), Some(alone)) = (
        find("strata", W1_BESIDE_REBUILD),
        find("strata-alone", W1_BESIDE_REBUILD),
    ) {
        let rounds = |system: &str| -> Vec<f64> {
            rows.iter()
                .filter(|row| row.system == system && row.workload == W1_BESIDE_REBUILD)
                .map(events_per_sec)
                .collect()
        };
        let mut ratios: Vec<f64> = rounds(ROUND_BESIDE)
            .iter()
            .zip(rounds(ROUND_ALONE))
            .map(|(beside, alone)| beside / alone.max(1e-9))
            .collect();
        let listed: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
        ratios.sort_by(f64::total_cmp);
        lines.push(format!(
            "{W1_BESIDE_REBUILD} C=8 {:.0} ev/s beside the builds, {:.0} ev/s alone: ratio {:.2}; \
             rounds {}, median {:.2} (target >= 0.85)",
            events_per_sec(beside),
            events_per_sec(alone),
            events_per_sec(beside) / events_per_sec(alone).max(1e-9),
            listed.join(" "),
            median(&ratios)
        ));
    }
    if let (Some(raw_beside), Some(alone), Some(raw_build)) = (
        find("raw", W1_BESIDE_REBUILD),
        find("strata-alone", W1_BESIDE_REBUILD),
        find("raw", P1_VERSIONED),
    ) {
        let mut ratios: Vec<f64> = rows
            .iter()
            .filter(|row| row.system == ROUND_RAW && row.workload == W1_BESIDE_REBUILD)
            .map(events_per_sec)
            .zip(
                rows.iter()
                    .filter(|row| row.system == ROUND_ALONE && row.workload == W1_BESIDE_REBUILD)
                    .map(events_per_sec),
            )
            .map(|(beside, alone)| beside / alone.max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        lines.push(format!(
            "reference, same rounds: W1 beside raw SQL's rebuild {:.0} ev/s, {:.2} of alone \
             (median of rounds {:.2}); the raw rebuild itself {:.0} ev/s beside W1",
            events_per_sec(raw_beside),
            events_per_sec(raw_beside) / events_per_sec(alone).max(1e-9),
            median(&ratios),
            events_per_sec(raw_build)
        ));
    }
    if let (Some(build), Some(p1)) = (find("strata", P1_VERSIONED), p1) {
        lines.push(format!(
            "{P1_VERSIONED}: a new version built at {:.0} ev/s beside W1 (one building batch at a \
             time), {:.2} x Strata's P1 ({:.0} ev/s) in the same run (target >= 0.7)",
            events_per_sec(build),
            events_per_sec(build) / events_per_sec(p1).max(1e-9),
            events_per_sec(p1)
        ));
    }
    lines
}

/// `cargo xtask bench-rebuilder URL VERSION`: runs version VERSION of [`Versioned`], and nothing
/// else, with the runtime's defaults. Prints `ready` once connected, starts the runtime on the
/// input line `go`, and shuts it down when its input closes.
pub(crate) fn rebuilder(args: &[String]) -> Result<()> {
    let [url, version] = args else {
        bail!("usage: bench-rebuilder URL VERSION");
    };
    let version: u32 = version.parse().context("VERSION")?;
    let (go, started) = tokio::sync::oneshot::channel::<()>();
    let (closed, input_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut go = Some(go);
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() == "go" => {
                    if let Some(go) = go.take() {
                        let _ = go.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = closed.send(());
    });
    let runtime = crate::server::runtime()?;
    runtime.block_on(async {
        let store = PgStore::connect(url, PgConfig::default()).await?;
        let backend = PgProjections::new(store.pools().projection().clone());
        let builder =
            ProjectionRuntime::builder(store.clone(), backend).register(Versioned { version })?;
        println!("ready");
        std::io::stdout().flush()?;
        if started.await.is_err() {
            // The bench went away before saying go.
            return Ok(());
        }
        let projections = builder.start().await?;
        let _ = input_closed.await;
        projections.shutdown(Duration::from_secs(30)).await?;
        Ok(())
    })
}

/// The projection's name; its versions run as `bench_versioned@v2`… into `bench_versioned_v2`….
const NAME: &str = "bench_versioned";

/// What P1 reads, and what a build has to go through for the rows to mean what issue 22 asks.
const EVENTS_AT_LEAST: u64 = 200_000;

/// How often the bench looks at the checkpoints while a version builds: the build's time is
/// known to within this.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// How long a build may take before the run gives up (P1's events take seconds).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a caught-up version may wait to be switched in: the runtime looks once a second.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The systems of each round's own rates.
const ROUND_BESIDE: &str = "round-beside";
const ROUND_ALONE: &str = "round-alone";

/// P1's `Model` as a versioned projection: the same upsert per event, into a table the runtime
/// creates per version (`bench_versioned_v2`) and serves under the view `bench_versioned`.
struct Versioned {
    version: u32,
}

impl Projection for Versioned {
    fn name(&self) -> &str {
        NAME
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("session")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            NAME,
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("aggregate_id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![
                ("last_sequence", event.sequence.into()),
                ("last_event", event.event_type.as_str().into()),
            ],
        )])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            NAME,
            vec![("instance_id", instance.as_str().into())],
        )]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: BULK,
            switch: switch_when(),
            ..ProjectionConfig::default()
        }
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn tables(&self) -> Vec<Table> {
        vec![Table::new(
            NAME,
            "instance_id TEXT, aggregate_id TEXT, last_sequence BIGINT, last_event TEXT, \
             PRIMARY KEY (instance_id, aggregate_id)",
        )]
    }
}

/// How the builds are switched in: by the runtime once caught up (the default), or with
/// `STRATA_BENCH_REBUILD_ON_COMMAND` by the bench once it has seen the build caught up, which
/// measures a build without the runtime's once-a-second look at how far it is behind
/// (docs/benchmarks.md). The rebuilder inherits the variable.
fn switch_when() -> SwitchWhen {
    if std::env::var_os("STRATA_BENCH_REBUILD_ON_COMMAND").is_some() {
        SwitchWhen::OnCommand
    } else {
        SwitchWhen::CaughtUp
    }
}

/// Where each instance's last `session` event is: a version has caught up when its checkpoint
/// in every instance is there. (Its position alone would not tell: the events of a push share
/// one, and a batch may end inside a push.)
struct Targets {
    last: Vec<(InstanceId, Cursor)>,
    events: u64,
}

impl Targets {
    async fn of(store: &PgStore) -> Result<Targets> {
        let sessions = Query::builder()
            .all_instances()
            .aggregate_types(["session"])
            .build()?;
        let events = store.count(&sessions).await?;
        if events < EVENTS_AT_LEAST {
            bail!(
                "{events} session events loaded; the rebuild rows need at least {EVENTS_AT_LEAST}"
            );
        }
        let mut last = Vec::new();
        for instance in store.instance_ids(&sessions).await? {
            let newest = Query::builder()
                .instance(instance.as_str())
                .aggregate_types(["session"])
                .descending()
                .limit(1u64)
                .build()?;
            let event = store
                .query(&newest)
                .await?
                .into_iter()
                .next()
                .with_context(|| format!("the last session event of {instance}"))?;
            last.push((instance, event.cursor()));
        }
        Ok(Targets { last, events })
    }

    /// Waits until `pair`'s checkpoints are at every instance's last event, looking every
    /// [`POLL_EVERY`].
    async fn wait_until_reached(&self, backend: &PgProjections, pair: &str) -> Result<()> {
        let deadline = Instant::now() + BUILD_TIMEOUT;
        loop {
            let states = backend.states().await?;
            let reached = self.last.iter().all(|(instance, last)| {
                states.iter().any(|state| {
                    state.projection == pair
                        && &state.instance_id == instance
                        && state.cursor() >= *last
                })
            });
            if reached {
                return Ok(());
            }
            if deadline <= Instant::now() {
                bail!("{pair} did not catch up within {BUILD_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Version 1 in this process, caught up and then stopped: the live version the builds happen
/// beside. (Live from its registration, as the first version of a projection is.)
async fn first_version(store: &PgStore, backend: &PgProjections, targets: &Targets) -> Result<()> {
    let runtime = ProjectionRuntime::builder(store.clone(), backend.clone())
        .register(Versioned { version: 1 })?
        .start()
        .await?;
    let reached = targets
        .wait_until_reached(backend, &versioned_name(NAME, 1))
        .await;
    runtime.shutdown(Duration::from_secs(30)).await?;
    reached?;
    let live = live_version(backend).await?;
    if live != Some(1) {
        bail!("version 1 of {NAME} should be live after its first run, found {live:?}");
    }
    Ok(())
}

/// One build with W1 beside it.
struct Build {
    /// W1's operations completed while the version built.
    w1: Samples,
    /// W1's measured window: the build's time, and the few milliseconds it takes to stop.
    window: Duration,
    /// From telling the rebuilder to start to the first look that found it caught up.
    built: Duration,
    /// Events the version applied, by `version_lag` afterwards.
    applied: u64,
    /// Events it recorded as failed.
    failed: u64,
    /// How long `version_lag` took to count them afterwards.
    lag_took: Duration,
}

/// Builds `version` in the rebuilder process while W1 runs at C = 8 from `warmup` before the
/// build's start to its end; then waits for the runtime to switch it in (or switches it, see
/// [`switch_when`]) and stops the rebuilder.
async fn build_beside_w1(
    store: &PgStore,
    backend: &PgProjections,
    url: &str,
    targets: &Targets,
    version: u32,
    warmup: Duration,
) -> Result<Build> {
    let (mut rebuilder, _output) = projections::spawn_ready(
        &["bench-rebuilder", url, &version.to_string()],
        "the rebuilder",
    )?;
    let pair = versioned_name(NAME, version);
    let writers = runner::start_open(8, warmup, writes::w1_op(store));
    tokio::time::sleep_until(writers.measure_from().into()).await;
    let started = Instant::now();
    let build = async {
        let input = rebuilder
            .0
            .stdin
            .as_mut()
            .context("the rebuilder's input")?;
        writeln!(input, "go")?;
        input.flush()?;
        targets.wait_until_reached(backend, &pair).await
    }
    .await;
    let built = started.elapsed();
    // Closed whatever happened: the writers must not outlive the round.
    let (w1, window) = writers.close().await;
    build?;
    let versioned = Versioned { version };
    match versioned.config().switch {
        SwitchWhen::OnCommand => {
            switch_version(store, backend, NAME, version, &versioned.reads()).await?;
        }
        SwitchWhen::CaughtUp => wait_for_switch(backend, version).await?,
    }
    stop(rebuilder).await?;
    // Timed because a runtime that switches by itself makes the same call once a second while
    // the version builds (`SwitchWhen::CaughtUp`).
    let looked = Instant::now();
    let lag = version_lag(store, backend, &pair, &versioned.reads(), None).await?;
    let lag_took = looked.elapsed();
    if lag.events_behind > 0 {
        bail!(
            "{pair} was found caught up with {} events left",
            lag.events_behind
        );
    }
    let failed = backend.failed_events(Some(&pair)).await?.len() as u64;
    Ok(Build {
        w1,
        window,
        built,
        applied: lag.events_applied,
        failed,
        lag_took,
    })
}

/// A rebuild by raw SQL beside W1: the reference for what any rebuild costs the writers here.
struct RawBuild {
    w1: Samples,
    window: Duration,
    built: Duration,
    applied: u64,
}

/// The cheapest rebuild there is, raw SQL's P1 loop (pages of events, one multi-row upsert and a
/// checkpoint per transaction; no horizon, no leases, no switch) into an empty table, beside W1
/// at C = 8 for as long as it takes. It runs in the bench process: a plain loop of round trips,
/// it does not compete with the writers' clients for the async runtime the way a runtime would.
async fn raw_build_beside_w1(store: &PgStore, warmup: Duration) -> Result<RawBuild> {
    let pool = store.pools().projection().clone();
    projections::empty_raw_model(&pool).await?;
    let writers = runner::start_open(8, warmup, writes::w1_op(store));
    tokio::time::sleep_until(writers.measure_from().into()).await;
    let started = Instant::now();
    let applied = projections::raw_catch_up(&pool).await;
    let built = started.elapsed();
    let (w1, window) = writers.close().await;
    Ok(RawBuild {
        w1,
        window,
        built,
        applied: applied?,
    })
}

/// W1 at C = 8 alone for `window` after `warmup`.
async fn w1_alone(store: &PgStore, warmup: Duration, window: Duration) -> (Samples, Duration) {
    let writers = runner::start_open(8, warmup, writes::w1_op(store));
    tokio::time::sleep_until((writers.measure_from() + window).into()).await;
    writers.close().await
}

/// The live version of the projection, if one is.
async fn live_version(backend: &PgProjections) -> Result<Option<u32>> {
    Ok(backend
        .versions(Some(NAME))
        .await?
        .into_iter()
        .find(|record| record.state == VersionState::Live)
        .map(|record| record.version))
}

/// Waits until the rebuilder's runtime has switched `version` in by itself.
async fn wait_for_switch(backend: &PgProjections, version: u32) -> Result<()> {
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    loop {
        let live = live_version(backend).await?;
        if live == Some(version) {
            return Ok(());
        }
        if deadline <= Instant::now() {
            bail!(
                "version {version} of {NAME} caught up but was not switched in within \
                 {SWITCH_TIMEOUT:?} (live: {live:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Closes the rebuilder's input, which tells it to shut its runtime down, and waits for it.
async fn stop(mut rebuilder: Worker) -> Result<()> {
    drop(rebuilder.0.stdin.take());
    let (rebuilder, status) = tokio::task::spawn_blocking(move || {
        let status = rebuilder.0.wait();
        (rebuilder, status)
    })
    .await?;
    drop(rebuilder);
    let status = status?;
    if !status.success() {
        bail!("the rebuilder failed: {status}");
    }
    Ok(())
}

fn rate(samples: &Samples, window: Duration) -> f64 {
    samples.events as f64 / window.as_secs_f64().max(1e-9)
}

fn events_per_sec(row: &Row) -> f64 {
    row.events_per_sec.unwrap_or(0.0)
}

/// The median of sorted `values`; 0 when there are none.
fn median(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
