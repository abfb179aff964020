//! One sample of the database: every pair's lag, health and failures, the live runtimes and the
//! events stored since the previous sample, read in a handful of statements (`strata_postgres::admin`'s
//! overview) and summarised per projection. The page, `/metrics` and `/health` all read the
//! latest sample, so a scrape or a page view never queries the database itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use strata_event::{InstanceId, Position};
use strata_postgres::admin::{self, LiveRuntime};
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    FailedEvent, Health, ProjectionBackend, ProjectionConfig, VersionState, split_versioned_name,
};

/// Most failed events a sample keeps (the oldest first): enough for an operator to act on, and
/// the counts per pair stay exact whatever the cap.
const FAILED_EVENTS_KEPT: usize = 5_000;

/// What the database looked like at one moment.
#[derive(Debug)]
pub(super) struct Sample {
    pub(super) taken_at: DateTime<Utc>,
    /// How long reading it took.
    pub(super) took: Duration,
    /// One per registered pair that is applied (retired and dropped versions are left out),
    /// sorted by name.
    pub(super) projections: Vec<ProjectionSummary>,
    /// Every (pair, instance), grouped by pair in the order of `projections`.
    pub(super) pairs: Vec<PairRow>,
    /// Failed events not skipped by an operator, oldest failure first, at most
    /// [`FAILED_EVENTS_KEPT`].
    pub(super) failed: Vec<FailedEvent>,
    /// Failed events there were in all (`failed` may hold fewer).
    pub(super) failed_total: usize,
    pub(super) runtimes: Vec<LiveRuntime>,
    /// The commit horizon when the sample was taken.
    pub(super) horizon: Position,
    /// Events stored between the previous sample's horizon and this one's (0 for the first).
    pub(super) events_stored: u64,
    /// Events stored since `strata serve` started, this sample's included.
    pub(super) events_stored_total: u64,
}

/// Whether a pair is a projection or a consumer's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Projection,
    /// A part of this consumer.
    Consumer(String),
}

/// One registered pair, summed over its instances.
#[derive(Debug, Clone)]
pub(super) struct ProjectionSummary {
    /// The registered pair name (`users`, `users@v2`, `mailer#0/4`).
    pub(super) name: String,
    pub(super) kind: Kind,
    /// The version and its state, for a versioned projection.
    pub(super) version: Option<(u32, VersionState)>,
    pub(super) has_side_effects: bool,
    pub(super) stall_after: Duration,
    /// Index of its first row in [`Sample::pairs`], and how many it has.
    pub(super) rows: std::ops::Range<usize>,
    /// Its instances' rows summed.
    pub(super) counts: Counts,
    pub(super) runtimes_alive: usize,
}

/// Instances' rows summed: how many are in each health, events and failures added up, the
/// oldest waiting event's age the largest. The summary, the overview's instance filter and
/// `/metrics` all add rows up this way.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) healthy: usize,
    pub(super) catching_up: usize,
    pub(super) stalled: usize,
    pub(super) events_behind: u64,
    pub(super) seconds_behind: f64,
    pub(super) failed: u64,
    pub(super) parked: u64,
}

impl Counts {
    /// Counts one instance's row in.
    pub(super) fn add(&mut self, row: &PairRow) {
        match row.health {
            Health::Healthy => self.healthy += 1,
            Health::CatchingUp => self.catching_up += 1,
            Health::Stalled => self.stalled += 1,
        }
        self.events_behind += row.events_behind;
        self.seconds_behind = self.seconds_behind.max(row.seconds_behind);
        self.failed += row.failed;
        self.parked += row.parked;
    }

    /// Adds another sum in.
    pub(super) fn merge(&mut self, other: &Counts) {
        self.healthy += other.healthy;
        self.catching_up += other.catching_up;
        self.stalled += other.stalled;
        self.events_behind += other.events_behind;
        self.seconds_behind = self.seconds_behind.max(other.seconds_behind);
        self.failed += other.failed;
        self.parked += other.parked;
    }

    /// The worst health counted.
    pub(super) fn health(&self) -> Health {
        if self.stalled > 0 {
            Health::Stalled
        } else if self.catching_up > 0 {
            Health::CatchingUp
        } else {
            Health::Healthy
        }
    }

    /// How many rows were counted.
    pub(super) fn instances(&self) -> usize {
        self.healthy + self.catching_up + self.stalled
    }
}

impl ProjectionSummary {
    /// The worst health of its instances.
    pub(super) fn health(&self) -> Health {
        self.counts.health()
    }

    /// The name series are labelled with: the projection's pair name, or the consumer's name.
    pub(super) fn label(&self) -> &str {
        match &self.kind {
            Kind::Projection => &self.name,
            Kind::Consumer(consumer) => consumer,
        }
    }
}

/// One (pair, instance).
#[derive(Debug, Clone)]
pub(super) struct PairRow {
    pub(super) instance_id: InstanceId,
    pub(super) events_behind: u64,
    pub(super) seconds_behind: f64,
    pub(super) health: Health,
    pub(super) failed: u64,
    pub(super) parked: u64,
    pub(super) last_moved_at: Option<DateTime<Utc>>,
    /// The checkpoint, `position/in_tx_order`; `None` before the first event.
    pub(super) checkpoint: Option<String>,
}

/// Reads a sample; `previous` is the sample before it, if any.
pub(super) async fn take(store: &PgStore, previous: Option<&Sample>) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let backend = PgProjections::new(store.pools().projection().clone());
    let registry = admin::registered_projections(store)
        .await
        .context("reading projections.registry (run `strata migrate` if it is missing)")?;
    let versions = backend
        .versions(None)
        .await
        .context("reading projection versions")?;
    let states = backend
        .states()
        .await
        .context("reading projection checkpoints")?;
    let lags = admin::pair_lags(store)
        .await
        .context("measuring the projections' lag")?;
    let failures = admin::failure_counts(store)
        .await
        .context("counting failed events")?;
    let mut failed = backend
        .failed_events(None)
        .await
        .context("reading failed events")?;
    let runtimes = admin::live_runtimes(store)
        .await
        .context("reading the runtimes' heartbeats")?;
    let stored = admin::events_stored_since(store, previous.map(|sample| &sample.horizon))
        .await
        .context("counting the events stored since the last sample")?;
    let now = Utc::now();

    failed.retain(|event| !event.skipped_by_operator);
    failed.sort_by_key(|event| event.last_failed_at);
    let failed_total = failed.len();
    failed.truncate(FAILED_EVENTS_KEPT);

    // Everything below is keyed by (pair, instance) so the sample stays linear in the pairs.
    let state_of: HashMap<(&str, &InstanceId), &strata_projection::CurrentState> = states
        .iter()
        .map(|state| ((state.projection.as_str(), &state.instance_id), state))
        .collect();
    let mut moved_last: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for state in &states {
        let latest = moved_last
            .entry(state.projection.as_str())
            .or_insert(state.updated_at);
        *latest = (*latest).max(state.updated_at);
    }
    let mut lag_of: HashMap<&str, Vec<&admin::PairLag>> = HashMap::new();
    for lag in &lags {
        lag_of.entry(lag.projection.as_str()).or_default().push(lag);
    }
    let failures_of: HashMap<(&str, &InstanceId), &admin::FailureCount> = failures
        .iter()
        .map(|count| ((count.projection.as_str(), &count.instance_id), count))
        .collect();
    let mut states_of: HashMap<&str, Vec<&InstanceId>> = HashMap::new();
    for state in &states {
        states_of
            .entry(state.projection.as_str())
            .or_default()
            .push(&state.instance_id);
    }
    let mut failed_instances_of: HashMap<&str, Vec<&InstanceId>> = HashMap::new();
    for count in &failures {
        failed_instances_of
            .entry(count.projection.as_str())
            .or_default()
            .push(&count.instance_id);
    }

    let mut projections = Vec::with_capacity(registry.len());
    let mut pairs = Vec::new();
    for registered in &registry {
        let (base, version) = split_versioned_name(&registered.name);
        let version = versions
            .iter()
            .find(|record| record.projection == base && record.version == version)
            .map(|record| (record.version, record.state));
        if version.is_some_and(|(_, state)| !state.is_applied()) {
            continue;
        }
        let building = version.is_some_and(|(_, state)| state == VersionState::Building);
        let stall_after = registered
            .stall_after
            .unwrap_or(ProjectionConfig::default().stall_after);
        // The instances it has events in, a checkpoint in, or failures in.
        let mut instances: Vec<&InstanceId> = Vec::new();
        let lags_here = lag_of.get(registered.name.as_str());
        instances.extend(lags_here.into_iter().flatten().map(|lag| &lag.instance_id));
        instances.extend(
            states_of
                .get(registered.name.as_str())
                .into_iter()
                .flatten(),
        );
        instances.extend(
            failed_instances_of
                .get(registered.name.as_str())
                .into_iter()
                .flatten(),
        );
        instances.sort();
        instances.dedup();
        let lag_by_instance: HashMap<&InstanceId, &admin::PairLag> = lags_here
            .into_iter()
            .flatten()
            .map(|lag| (&lag.instance_id, *lag))
            .collect();
        let first_row = pairs.len();
        let mut summary = ProjectionSummary {
            name: registered.name.clone(),
            kind: match &registered.consumer {
                Some(consumer) => Kind::Consumer(consumer.clone()),
                None => Kind::Projection,
            },
            version,
            has_side_effects: registered.has_side_effects,
            stall_after,
            rows: first_row..first_row,
            counts: Counts::default(),
            runtimes_alive: runtimes
                .iter()
                .filter(|runtime| runtime.projections.contains(&registered.name))
                .count(),
        };
        for instance in instances {
            let state = state_of.get(&(registered.name.as_str(), instance));
            let lag = lag_by_instance.get(instance);
            let events_behind = lag.map_or(0, |lag| lag.events_behind);
            let seconds_behind = lag.and_then(|lag| lag.oldest_behind).map_or(0.0, |oldest| {
                (now - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            let last_moved_at = state.map(|state| state.updated_at);
            let moved = if building {
                moved_last.get(registered.name.as_str()).copied()
            } else {
                last_moved_at
            };
            let health = Health::assess(events_behind, seconds_behind, moved, stall_after, now);
            let failures = failures_of.get(&(registered.name.as_str(), instance));
            let row = PairRow {
                instance_id: instance.clone(),
                events_behind,
                seconds_behind,
                health,
                failed: failures.map_or(0, |count| count.failed),
                parked: failures.map_or(0, |count| count.parked),
                last_moved_at,
                checkpoint: state.map(|state| format!("{}/{}", state.position, state.in_tx_order)),
            };
            summary.counts.add(&row);
            pairs.push(row);
        }
        summary.rows = first_row..pairs.len();
        projections.push(summary);
    }
    // By bytes, whatever the database's collation: lookups search this order.
    projections.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Sample {
        taken_at: now,
        took: started.elapsed(),
        projections,
        pairs,
        failed,
        failed_total,
        runtimes,
        horizon: stored.horizon,
        events_stored: stored.events,
        events_stored_total: previous.map_or(0, |sample| sample.events_stored_total)
            + stored.events,
    })
}

impl Sample {
    /// The summary of the pair named `name`.
    pub(super) fn projection(&self, name: &str) -> Option<&ProjectionSummary> {
        self.projections
            .binary_search_by(|summary| summary.name.as_str().cmp(name))
            .ok()
            .and_then(|index| self.projections.get(index))
    }

    /// Its instances' rows.
    pub(super) fn rows_of(&self, summary: &ProjectionSummary) -> &[PairRow] {
        self.pairs.get(summary.rows.clone()).unwrap_or_default()
    }

    /// Pairs in each health, over every projection and consumer.
    pub(super) fn health_counts(&self) -> (usize, usize, usize) {
        let mut all = Counts::default();
        for summary in &self.projections {
            all.merge(&summary.counts);
        }
        (all.healthy, all.catching_up, all.stalled)
    }
}
