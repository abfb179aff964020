//! Conformance cases for versioned projections and health: a first version is live at once, a
//! new one builds beside it and takes over only when caught up, the old one stops, rollback and
//! drop, upgrading an unversioned projection, and a frozen pair reported stalled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use strata_event::{Event, InstanceId};
use tokio::sync::Semaphore;

use super::{Harness, WAIT, instance, push_each};
use crate::{
    Health, Projection, ProjectionBackend, ProjectionConfig, ProjectionError, ProjectionRuntime,
    Reads, ReduceError, Statement, SwitchWhen, Table, VersionSetup, VersionState, VersionTable,
    switch_version,
};

const CATALOG: &str = "conformance_catalog";

/// A versioned projection: one row per document, stamped with the version that wrote it.
#[derive(Clone, Copy)]
struct Catalog {
    version: u32,
    switch: SwitchWhen,
    /// Fails on `doc.poisoned` events (given up on after one attempt).
    poisoned: bool,
}

impl Catalog {
    fn v(version: u32) -> Self {
        Catalog {
            version,
            switch: SwitchWhen::OnCommand,
            poisoned: false,
        }
    }
}

impl Projection for Catalog {
    fn name(&self) -> &str {
        "catalog"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        if self.poisoned && event.event_type.as_str() == "doc.poisoned" {
            return Err(ReduceError::new("poisoned document"));
        }
        Ok(vec![Statement::upsert(
            CATALOG,
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![
                ("state", event.event_type.as_str().into()),
                ("made_by", format!("v{}", self.version).into()),
            ],
        )])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            CATALOG,
            vec![("instance_id", instance.as_str().into())],
        )]
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn tables(&self) -> Vec<Table> {
        vec![
            Table::new(
                CATALOG,
                "instance_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, \
                 made_by TEXT NOT NULL, PRIMARY KEY (instance_id, id)",
            )
            .index("(state)"),
        ]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            switch: self.switch,
            drop_retired_after: None,
            max_failure_count: 1,
            ..ProjectionConfig::default()
        }
    }
}

async fn start_with<H: Harness>(
    harness: &H,
    projections: &[Catalog],
) -> ProjectionRuntime<H::Store, H::Backend> {
    let mut builder = ProjectionRuntime::builder(harness.store(), harness.backend());
    for projection in projections {
        builder = builder.register(*projection).unwrap();
    }
    builder.start().await.unwrap()
}

/// The stable name's rows as `(id, made_by)`.
async fn catalog<H: Harness>(harness: &H, table: &'static str) -> Vec<(String, String)> {
    harness
        .rows(table)
        .await
        .into_iter()
        .map(|row| (row["id"].clone(), row["made_by"].clone()))
        .collect()
}

async fn state_of<H: Harness>(harness: &H, version: u32) -> VersionState {
    harness
        .backend()
        .versions(Some("catalog"))
        .await
        .unwrap()
        .into_iter()
        .find(|record| record.version == version)
        .map(|record| record.state)
        .expect("the version is recorded")
}

/// Waits until `check` holds, failing the case after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first version of a projection is live at once: readers read it under the declared name,
/// and `catch_up` by the projection's own name waits for it.
pub async fn a_first_version_is_live_and_read_through_its_stable_name<H: Harness>(harness: &H) {
    let runtime = start_with(harness, &[Catalog::v(1)]).await;
    let last = push_each(&harness.store(), &[("a", "doc.added"), ("b", "doc.added")]).await;
    runtime
        .catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(state_of(harness, 1).await, VersionState::Live);
    let expected = vec![("a".to_owned(), "v1".to_owned()), ("b".into(), "v1".into())];
    assert_eq!(catalog(harness, CATALOG).await, expected);
    assert_eq!(catalog(harness, "conformance_catalog_v1").await, expected);
    let status = runtime.status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].projection, "catalog@v1");
    assert_eq!(status[0].health, Health::Healthy);
    runtime.shutdown(WAIT).await.unwrap();
}

/// A new version builds beside the live one, in its own tables, while readers keep reading the
/// old; it takes over only once caught up, and from then on the old version stops.
pub async fn a_new_version_builds_beside_the_live_one_and_takes_over<H: Harness>(harness: &H) {
    let old = start_with(harness, &[Catalog::v(1)]).await;
    let store = harness.store();
    let last = push_each(&store, &[("a", "doc.added"), ("b", "doc.added")]).await;
    old.catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();

    // A process with the new code: version 2 builds, readers still read version 1.
    let new = start_with(harness, &[Catalog::v(2)]).await;
    assert_eq!(state_of(harness, 2).await, VersionState::Building);
    let last = push_each(&store, &[("c", "doc.added")]).await;
    new.catch_up("catalog@v2", &instance(), last, WAIT)
        .await
        .unwrap();
    old.catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();
    let made_by = |rows: Vec<(String, String)>| {
        rows.into_iter()
            .map(|(_, made_by)| made_by)
            .collect::<Vec<_>>()
    };
    assert_eq!(made_by(catalog(harness, CATALOG).await), ["v1", "v1", "v1"]);
    assert_eq!(
        made_by(catalog(harness, "conformance_catalog_v2").await),
        ["v2", "v2", "v2"]
    );

    let live = new.switch("catalog", 2).await.unwrap();
    assert_eq!((live.version, live.state), (2, VersionState::Live));
    assert_eq!(state_of(harness, 1).await, VersionState::Retired);
    assert_eq!(made_by(catalog(harness, CATALOG).await), ["v2", "v2", "v2"]);
    // `catalog` now names the live version in the new process.
    let last = push_each(&store, &[("d", "doc.added")]).await;
    new.catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(catalog(harness, CATALOG).await.len(), 4);

    // The old process stops applying version 1: its checkpoint stays where the switch found it.
    let backend = harness.backend();
    let before = backend
        .state("catalog@v1", &instance())
        .await
        .unwrap()
        .map(|state| state.cursor());
    old.trigger(&instance());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = backend
        .state("catalog@v1", &instance())
        .await
        .unwrap()
        .map(|state| state.cursor());
    assert_eq!(before, after, "a retired version must not be applied");
    assert!(old.status().await.unwrap().is_empty());
    new.shutdown(WAIT).await.unwrap();
    old.shutdown(WAIT).await.unwrap();
}

/// A switch to a version with events left is refused, names how far behind it is, and changes
/// nothing.
pub async fn a_version_behind_cannot_take_over<H: Harness>(harness: &H) {
    let runtime = start_with(harness, &[Catalog::v(1)]).await;
    let store = harness.store();
    let last = push_each(&store, &[("a", "doc.added"), ("b", "doc.added")]).await;
    runtime
        .catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();
    // Version 2 recorded, but no process builds it.
    let backend = harness.backend();
    let building = backend
        .prepare_version(&VersionSetup {
            projection: "catalog".into(),
            version: 2,
            tables: vec![VersionTable {
                name: CATALOG.into(),
                physical: "conformance_catalog_v2".into(),
                columns: "instance_id TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, \
                          made_by TEXT NOT NULL, PRIMARY KEY (instance_id, id)"
                    .into(),
                indexes: Vec::new(),
            }],
        })
        .await
        .unwrap();
    assert_eq!(building.state, VersionState::Building);
    let refused = switch_version(&store, &backend, "catalog", 2, &Catalog::v(2).reads()).await;
    assert!(
        matches!(
            refused,
            Err(ProjectionError::VersionBehind {
                events_behind: 2,
                instances_behind: 1,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(state_of(harness, 1).await, VersionState::Live);
    assert_eq!(catalog(harness, CATALOG).await.len(), 2);
    // The live version cannot be switched to again, nor dropped.
    assert!(matches!(
        switch_version(&store, &backend, "catalog", 1, &Catalog::v(1).reads()).await,
        Err(ProjectionError::VersionRefused { .. })
    ));
    assert!(matches!(
        backend.drop_version("catalog", 1).await,
        Err(ProjectionError::VersionRefused {
            state: VersionState::Live,
            ..
        })
    ));
    assert!(matches!(
        backend.drop_version("catalog", 7).await,
        Err(ProjectionError::UnknownVersion { version: 7, .. })
    ));
    runtime.shutdown(WAIT).await.unwrap();
}

/// Rollback goes back to the retired version: it resumes from where it stopped and takes over
/// once it has caught up, so readers never see it behind. Then the version rolled back from
/// can be dropped, with its checkpoints.
pub async fn rollback_catches_the_old_version_up_and_switches_back<H: Harness>(harness: &H) {
    let old = Catalog {
        switch: SwitchWhen::CaughtUp,
        ..Catalog::v(1)
    };
    let runtime = start_with(harness, &[old, Catalog::v(2)]).await;
    let store = harness.store();
    let last = push_each(&store, &[("a", "doc.added"), ("b", "doc.added")]).await;
    runtime
        .catch_up("catalog@v2", &instance(), last, WAIT)
        .await
        .unwrap();
    runtime
        .catch_up("catalog@v1", &instance(), last, WAIT)
        .await
        .unwrap();
    runtime.switch("catalog", 2).await.unwrap();
    // Version 1 is retired and falls behind.
    let last = push_each(&store, &[("c", "doc.added")]).await;
    runtime
        .catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();

    let back = runtime.rollback("catalog").await.unwrap();
    assert_eq!(back.version, 1);
    eventually("version 1 is live again", || async {
        state_of(harness, 1).await == VersionState::Live
    })
    .await;
    assert_eq!(state_of(harness, 2).await, VersionState::Retired);
    let rows = catalog(harness, CATALOG).await;
    assert_eq!(rows.len(), 3, "the rolled-back version caught up first");
    assert!(rows.iter().all(|(_, made_by)| made_by == "v1"));

    let dropped = runtime.drop_version("catalog", 2).await.unwrap();
    assert_eq!(dropped.state, VersionState::Dropped);
    let backend = harness.backend();
    assert!(
        backend
            .state("catalog@v2", &instance())
            .await
            .unwrap()
            .is_none()
    );
    // A dropped version is not revived by a process that still runs its code.
    runtime.shutdown(WAIT).await.unwrap();
    let restarted = start_with(harness, &[Catalog::v(2)]).await;
    assert_eq!(state_of(harness, 2).await, VersionState::Dropped);
    assert!(restarted.status().await.unwrap().is_empty());
    // An operator sets it building again: the process running its code builds it from the
    // first event, in tables created afresh.
    let building = backend.rebuild_version("catalog", 2).await.unwrap();
    assert_eq!(building.state, VersionState::Building);
    eventually("the process takes the version up again", || async {
        !restarted.status().await.unwrap().is_empty()
    })
    .await;
    eventually("the dropped version is built again", || async {
        catalog(harness, "conformance_catalog_v2").await.len() == 3
    })
    .await;
    let last = push_each(&store, &[("d", "doc.added")]).await;
    restarted
        .catch_up("catalog@v2", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(catalog(harness, "conformance_catalog_v2").await.len(), 4);
    assert_eq!(state_of(harness, 1).await, VersionState::Live);
    restarted.shutdown(WAIT).await.unwrap();
}

/// A projection that ran unversioned becomes version 0 when it declares tables: it stays live
/// while the new version builds, its table is kept as `name_v0` at the switch, and it stops.
pub async fn an_unversioned_projection_upgrades_to_a_version<H: Harness>(harness: &H) {
    harness
        .create_table(
            "CREATE TABLE conformance_catalog (instance_id TEXT NOT NULL, id TEXT NOT NULL, \
             state TEXT NOT NULL, made_by TEXT NOT NULL, PRIMARY KEY (instance_id, id))",
        )
        .await;
    let legacy = ProjectionRuntime::builder(harness.store(), harness.backend())
        .register(Unversioned)
        .unwrap()
        .start()
        .await
        .unwrap();
    let store = harness.store();
    let last = push_each(&store, &[("a", "doc.added")]).await;
    legacy
        .catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();

    let new = start_with(harness, &[Catalog::v(1)]).await;
    assert_eq!(state_of(harness, 0).await, VersionState::Live);
    assert_eq!(state_of(harness, 1).await, VersionState::Building);
    let last = push_each(&store, &[("b", "doc.added")]).await;
    new.catch_up("catalog@v1", &instance(), last, WAIT)
        .await
        .unwrap();
    legacy
        .catch_up("catalog", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(
        catalog(harness, CATALOG).await,
        vec![("a".into(), "v0".into()), ("b".into(), "v0".into())]
    );
    new.switch("catalog", 1).await.unwrap();
    assert_eq!(
        catalog(harness, CATALOG).await,
        vec![("a".into(), "v1".into()), ("b".into(), "v1".into())]
    );
    assert_eq!(catalog(harness, "conformance_catalog_v0").await.len(), 2);
    // The unversioned runtime stops at the switch.
    let before = harness
        .backend()
        .state("catalog", &instance())
        .await
        .unwrap()
        .map(|state| state.cursor());
    push_each(&store, &[("c", "doc.added")]).await;
    legacy.trigger(&instance());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = harness
        .backend()
        .state("catalog", &instance())
        .await
        .unwrap()
        .map(|state| state.cursor());
    assert_eq!(before, after);
    assert_eq!(catalog(harness, "conformance_catalog_v0").await.len(), 2);
    new.shutdown(WAIT).await.unwrap();
    legacy.shutdown(WAIT).await.unwrap();
}

/// The catalog as it was before it declared versions.
struct Unversioned;

impl Projection for Unversioned {
    fn name(&self) -> &str {
        "catalog"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        // Writes `made_by = "v0"` to the table itself: it declares no tables.
        Catalog::v(0).reduce(event)
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        Catalog::v(0).reset(instance)
    }
}

/// A projection whose batches wait at a gate after they commit: closed, the pair is frozen (no
/// further batch of it starts) without holding a connection.
struct Frozen {
    gate: Arc<Semaphore>,
}

impl Projection for Frozen {
    fn name(&self) -> &str {
        "frozen"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("doc")
    }
    fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(Vec::new())
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        Vec::new()
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            stall_after: Duration::from_millis(400),
            ..ProjectionConfig::default()
        }
    }
    fn after_commit<'a>(&'a self, _: &'a [strata_event::AggregateRef]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            drop(self.gate.acquire().await);
        })
    }
}

/// A pair whose checkpoint stops moving while events wait is reported stalled, though its lag
/// is one event; it is healthy again once it moves.
pub async fn a_frozen_runtime_is_reported_stalled<H: Harness>(harness: &H) {
    let gate = Arc::new(Semaphore::new(1));
    let runtime = ProjectionRuntime::builder(harness.store(), harness.backend())
        .register(Frozen {
            gate: Arc::clone(&gate),
        })
        .unwrap()
        .start()
        .await
        .unwrap();
    let store = harness.store();
    let last = push_each(&store, &[("a", "doc.added")]).await;
    runtime
        .catch_up("frozen", &instance(), last, WAIT)
        .await
        .unwrap();
    let health = |runtime: ProjectionRuntime<H::Store, H::Backend>| async move {
        let status = runtime.status().await.unwrap();
        assert_eq!(status.len(), 1);
        (status[0].health, status[0].events_behind)
    };
    assert_eq!(health(runtime.clone()).await, (Health::Healthy, 0));

    let frozen = gate.acquire().await.unwrap();
    // Applied, and the pair freezes after its commit.
    push_each(&store, &[("b", "doc.added")]).await;
    eventually("the frozen pair applied its last batch", || {
        let runtime = runtime.clone();
        async move { health(runtime).await.1 == 0 }
    })
    .await;
    let last = push_each(&store, &[("c", "doc.added")]).await;
    // Young lag is healthy: the event may simply not have been applied yet.
    assert_eq!(health(runtime.clone()).await, (Health::Healthy, 1));
    eventually("the frozen pair is reported stalled", || {
        let runtime = runtime.clone();
        async move { health(runtime).await == (Health::Stalled, 1) }
    })
    .await;
    drop(frozen);
    runtime
        .catch_up("frozen", &instance(), last, WAIT)
        .await
        .unwrap();
    assert_eq!(health(runtime.clone()).await, (Health::Healthy, 0));
    runtime.shutdown(WAIT).await.unwrap();
}

/// A version that gave up on an event does not take over, caught up or not, until an operator
/// skips (or retries) it.
pub async fn a_version_with_failed_events_does_not_take_over<H: Harness>(harness: &H) {
    let poisoned = Catalog {
        poisoned: true,
        ..Catalog::v(2)
    };
    let runtime = start_with(harness, &[Catalog::v(1), poisoned]).await;
    let last = push_each(
        &harness.store(),
        &[("a", "doc.added"), ("b", "doc.poisoned")],
    )
    .await;
    runtime
        .catch_up("catalog@v1", &instance(), last, WAIT)
        .await
        .unwrap();
    let caught_up = runtime
        .catch_up("catalog@v2", &instance(), last, WAIT)
        .await;
    assert!(
        matches!(caught_up, Err(ProjectionError::EventFailed { .. })),
        "{caught_up:?}"
    );
    let refused = runtime.switch("catalog", 2).await;
    assert!(
        matches!(&refused, Err(ProjectionError::VersionRefused { reason, .. }) if reason.contains("1 failed event")),
        "{refused:?}"
    );
    assert_eq!(state_of(harness, 1).await, VersionState::Live);
    let failed = harness
        .backend()
        .failed_events(Some("catalog@v2"))
        .await
        .unwrap();
    runtime.skip_failed(&failed[0]).await.unwrap();
    runtime.switch("catalog", 2).await.unwrap();
    assert_eq!(state_of(harness, 2).await, VersionState::Live);
    runtime.shutdown(WAIT).await.unwrap();
}
