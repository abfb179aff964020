//! `strata projections versions|build|switch|rollback|drop` and the HEALTH of `status`, against
//! versioned projections that real runtimes run in this test process.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use strata_event::{Command, Event, InstanceId, Position};
use strata_integration_tests::TestDatabase;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    Projection, ProjectionBackend, ProjectionConfig, ProjectionRuntime, Reads, ReduceError,
    Registration, Statement, SwitchWhen, Table, VersionSetup, VersionTable,
};
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata};

const WAIT: Duration = Duration::from_secs(10);

const COLUMNS: &str = "instance_id TEXT NOT NULL, id TEXT NOT NULL, made_by TEXT NOT NULL, PRIMARY KEY (instance_id, id)";

/// A versioned projection: one row per user, stamped with the version that wrote it.
#[derive(Debug, Clone, Copy)]
struct Users {
    version: u32,
    switch: SwitchWhen,
    stall_after: Duration,
}

impl Users {
    /// Version `version`, switched in by itself once caught up.
    fn v(version: u32) -> Users {
        Users {
            version,
            switch: SwitchWhen::CaughtUp,
            stall_after: Duration::from_secs(60),
        }
    }

    /// Version `version`, switched in only on an operator's command.
    fn on_command(version: u32) -> Users {
        Users {
            switch: SwitchWhen::OnCommand,
            ..Users::v(version)
        }
    }
}

impl Projection for Users {
    fn name(&self) -> &str {
        "users"
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            "users",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![("made_by", format!("v{}", self.version).into())],
        )])
    }
    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "users",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn tables(&self) -> Vec<Table> {
        vec![Table::new("users", COLUMNS)]
    }
    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            switch: self.switch,
            stall_after: self.stall_after,
            drop_retired_after: None,
            ..ProjectionConfig::default()
        }
    }
}

type Runtime = ProjectionRuntime<PgStore, PgProjections>;

/// A runtime of its own (its own connections) running `projection`.
async fn start(database: &TestDatabase, projection: Users) -> Runtime {
    ProjectionRuntime::builder(database.store(), PgProjections::new(database.pool(4)))
        .register(projection)
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// Pushes one `user.added` per `(instance, user)` and returns the last position in each instance.
async fn push(store: &PgStore, users: &[(&str, &str)]) -> Vec<(InstanceId, Position)> {
    let mut last: Vec<(InstanceId, Position)> = Vec::new();
    for (instance, id) in users {
        let command = Command::builder(*instance, "user", *id, "user.added")
            .creator("test")
            .owner("org-1")
            .build()
            .unwrap();
        let stored = store.push(vec![command]).await.unwrap();
        let instance = stored[0].aggregate.instance_id.clone();
        last.retain(|(known, _)| known != &instance);
        last.push((instance, stored[0].position));
    }
    last
}

/// Waits until `runtime` applied `pushed` to the pair `pair`.
async fn caught_up(runtime: &Runtime, pair: &str, pushed: &[(InstanceId, Position)]) {
    for (instance, position) in pushed {
        runtime
            .catch_up(pair, instance, *position, WAIT)
            .await
            .unwrap();
    }
}

/// Runs `strata args…`, asserts success and parses its JSON lines.
fn json(url: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let output = strata(url, args, None);
    assert_success(&output);
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs `strata args…` and asserts that it fails with `code`, its stderr containing `says`.
#[track_caller]
fn refused(url: &str, args: &[&str], code: i32, says: &str) {
    let output = strata(url, args, None);
    assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
    assert!(stderr(&output).contains(says), "{}", stderr(&output));
}

/// The rows readers see under the stable name, as `(id, made_by)`.
async fn stable_rows(database: &TestDatabase) -> Vec<(String, String)> {
    sqlx::query_as("SELECT id, made_by FROM users ORDER BY instance_id, id")
        .fetch_all(&database.pool(1))
        .await
        .unwrap()
}

/// Version 2's record and tables, as a runtime with its code would prepare them.
fn v2_setup() -> VersionSetup {
    VersionSetup {
        projection: "users".into(),
        version: 2,
        tables: vec![VersionTable {
            name: "users".into(),
            physical: "users_v2".into(),
            columns: COLUMNS.into(),
            indexes: Vec::new(),
        }],
    }
}

/// Version 1 live (a runtime switching by itself) with three users in two instances, and
/// version 2 building in a runtime that switches on command, caught up.
async fn two_versions() -> (TestDatabase, String, Runtime, Runtime) {
    let database = TestDatabase::create().await;
    let url = support::url(&database);
    let v1 = start(&database, Users::v(1)).await;
    let pushed = push(
        &database.store(),
        &[
            ("tenant-a", "u-1"),
            ("tenant-a", "u-2"),
            ("tenant-b", "u-3"),
        ],
    )
    .await;
    caught_up(&v1, "users", &pushed).await;
    let v2 = start(&database, Users::on_command(2)).await;
    caught_up(&v2, "users@v2", &pushed).await;
    (database, url, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_behind_is_refused_and_switched_in_once_it_has_caught_up() {
    let database = TestDatabase::create().await;
    let url = support::url(&database);
    let store = database.store();
    let v1 = start(&database, Users::v(1)).await;
    let pushed = push(
        &store,
        &[
            ("tenant-a", "u-1"),
            ("tenant-a", "u-2"),
            ("tenant-b", "u-3"),
        ],
    )
    .await;
    caught_up(&v1, "users", &pushed).await;

    let versions = json(
        &url,
        &["projections", "versions", "users", "--output", "json"],
    );
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["pair_name"], "users@v1");
    assert_eq!(versions[0]["state"], "live");
    assert_eq!(versions[0]["tables"], serde_json::json!(["users"]));
    assert_eq!(
        versions[0]["physical_tables"],
        serde_json::json!(["users_v1"])
    );
    assert_eq!(versions[0]["events_behind"], 0);
    assert_eq!(versions[0]["runtimes_alive"], 1);
    assert!(versions[0]["switched_at"].is_string());

    // Version 2 recorded as a runtime with its code does at start, but no runtime builds it.
    let backend = PgProjections::new(database.pool(2));
    backend
        .register(&Registration {
            name: "users@v2",
            reads: &Users::v(2).reads(),
            has_side_effects: false,
            consumer: None,
            stall_after: Duration::from_secs(60),
        })
        .await
        .unwrap();
    backend.prepare_version(&v2_setup()).await.unwrap();

    let progress = json(&url, &["projections", "build", "users", "--output", "json"]);
    assert_eq!(progress.len(), 1, "{progress:?}");
    let progress = &progress[0];
    assert_eq!(progress["version"], 2);
    assert_eq!(progress["state"], "building");
    assert_eq!(progress["events_applied"], 0);
    assert_eq!(progress["events_behind"], 3);
    assert_eq!(progress["instances"], 2);
    assert_eq!(progress["instances_behind"], 2);
    assert_eq!(progress["caught_up"], false);
    assert!(progress["events_per_second"].is_null(), "{progress}");
    assert_eq!(progress["runtimes_alive"], 0);
    assert!(progress["set_building_from"].is_null());
    let sentence = strata(&url, &["projections", "build", "users"], None);
    assert_success(&sentence);
    assert!(
        stdout(&sentence).contains("nothing builds it"),
        "{}",
        stdout(&sentence)
    );

    refused(
        &url,
        &["projections", "switch", "users"],
        1,
        "3 event(s) behind in 2 instance(s); no live runtime runs users@v2",
    );
    refused(
        &url,
        &[
            "projections",
            "switch",
            "users",
            "--wait",
            "--timeout",
            "1s",
        ],
        1,
        "gave up after",
    );
    assert!(
        stable_rows(&database)
            .await
            .iter()
            .all(|(_, by)| by == "v1")
    );

    // A runtime with version 2's code builds it; it switches on command only.
    let v2 = start(&database, Users::on_command(2)).await;
    let watched = json(
        &url,
        &[
            "projections",
            "build",
            "users",
            "--watch",
            "--output",
            "json",
        ],
    );
    let last = watched.last().unwrap();
    assert_eq!(last["caught_up"], true, "{watched:?}");
    assert_eq!(last["events_behind"], 0);
    assert_eq!(last["events_applied"], 3);
    assert_eq!(last["seconds_to_catch_up"], 0.0);
    assert!(
        stable_rows(&database)
            .await
            .iter()
            .all(|(_, by)| by == "v1"),
        "readers still read version 1 until the switch"
    );

    let switched = json(
        &url,
        &["projections", "switch", "users", "--output", "json"],
    );
    assert_eq!(switched.len(), 1, "{switched:?}");
    assert_eq!(switched[0]["version"], 2);
    assert_eq!(switched[0]["state"], "live");
    assert_eq!(switched[0]["retired_version"], 1);
    assert_eq!(switched[0]["switched_by"], "this command");
    let rows = stable_rows(&database).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|(_, by)| by == "v2"), "{rows:?}");

    let versions = json(&url, &["projections", "versions", "--output", "json"]);
    let states: Vec<(u64, &str)> = versions
        .iter()
        .map(|line| {
            (
                line["version"].as_u64().unwrap(),
                line["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [(1, "retired"), (2, "live")]);
    assert!(
        versions[0]["events_behind"].is_null(),
        "not applied: no lag"
    );
    assert!(versions[0]["retired_at"].is_string());
    let table = strata(
        &url,
        &["projections", "versions", "--output", "table"],
        None,
    );
    assert_success(&table);
    let table = stdout(&table);
    assert!(table.starts_with("PROJECTION  VERSION  STATE"), "{table}");
    assert!(table.contains("users_v2"), "{table}");

    // Status lists only the applied version, under its pair name.
    let status = json(&url, &["projections", "status", "--output", "json"]);
    assert_eq!(status.len(), 2, "{status:?}");
    for line in &status {
        assert_eq!(line["projection"], "users@v2");
        assert_eq!(line["version"], 2);
        assert_eq!(line["version_state"], "live");
        assert_eq!(line["health"], "healthy");
    }
    refused(
        &url,
        &["projections", "status", "--projection", "users@v1"],
        1,
        "\"users@v1\" is not applied",
    );
    v2.shutdown(WAIT).await.unwrap();
    v1.shutdown(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_switches_back_and_drop_spares_only_the_live_version() {
    let (database, url, v1, v2) = two_versions().await;
    assert_success(&strata(&url, &["projections", "switch", "users"], None));
    // Version 1 is retired and falls behind.
    let pushed = push(&database.store(), &[("tenant-a", "u-4")]).await;
    caught_up(&v2, "users@v2", &pushed).await;

    // Behind: set building; its runtime catches it up, and it is switched in.
    let rolled = json(
        &url,
        &[
            "projections",
            "rollback",
            "users",
            "--wait",
            "--timeout",
            "30s",
            "--output",
            "json",
        ],
    );
    assert_eq!(rolled.len(), 2, "{rolled:?}");
    assert_eq!(rolled[0]["version"], 1);
    assert_eq!(rolled[0]["state"], "building");
    assert_eq!(rolled[0]["events_behind"], 1);
    assert!(rolled[0]["switched_by"].is_null());
    assert_eq!(rolled[1]["version"], 1);
    assert_eq!(rolled[1]["state"], "live");
    assert_eq!(rolled[1]["retired_version"], 2);
    let rows = stable_rows(&database).await;
    assert_eq!(rows.len(), 4, "it caught up before it took over: {rows:?}");
    assert!(rows.iter().all(|(_, by)| by == "v1"), "{rows:?}");

    // Caught up (nothing arrived since): switched back at once.
    let back = json(
        &url,
        &["projections", "rollback", "users", "--output", "json"],
    );
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["version"], 2);
    assert_eq!(back[0]["state"], "live");
    assert_eq!(back[0]["switched_by"], "this command");
    assert!(
        stable_rows(&database)
            .await
            .iter()
            .all(|(_, by)| by == "v2")
    );

    refused(
        &url,
        &["projections", "drop", "users", "--version", "2", "--yes"],
        1,
        "version 2 of projection users is live: only a building or retired version can be dropped",
    );
    refused(
        &url,
        &["projections", "drop", "users", "--version", "1"],
        2,
        "--yes",
    );
    let dropped = json(
        &url,
        &[
            "projections",
            "drop",
            "users",
            "--version",
            "1",
            "--yes",
            "--output",
            "json",
        ],
    );
    assert_eq!(dropped[0]["state"], "dropped");
    assert_eq!(
        dropped[0]["dropped_tables"],
        serde_json::json!(["users_v1"])
    );
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('users_v1')::text")
        .fetch_one(&database.pool(1))
        .await
        .unwrap();
    assert_eq!(exists, None, "its table is gone");
    let versions = json(
        &url,
        &["projections", "versions", "users", "--output", "json"],
    );
    assert_eq!(versions[0]["state"], "dropped");
    assert_eq!(versions[0]["physical_tables"], serde_json::json!([]));
    refused(
        &url,
        &["projections", "rollback", "users"],
        1,
        "has no retired version to roll back to (its versions: v1 dropped, v2 live)",
    );

    // Set building again: nobody runs version 1's code now, and the drop forgot what it reads.
    v1.shutdown(WAIT).await.unwrap();
    let again = json(
        &url,
        &[
            "projections",
            "build",
            "users",
            "--version",
            "1",
            "--output",
            "json",
        ],
    );
    assert_eq!(again[0]["state"], "building");
    assert_eq!(again[0]["set_building_from"], "dropped");
    assert_eq!(again[0]["runtimes_alive"], 0);
    assert!(again[0]["events_behind"].is_null(), "{again:?}");
    v2.shutdown(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_pair_whose_runtime_stopped_as_stalled() {
    let database = TestDatabase::create().await;
    let url = support::url(&database);
    let store = database.store();
    let runtime = start(
        &database,
        Users {
            stall_after: Duration::from_millis(300),
            ..Users::v(1)
        },
    )
    .await;
    let pushed = push(&store, &[("tenant-a", "u-1")]).await;
    caught_up(&runtime, "users", &pushed).await;
    let status = json(&url, &["projections", "status", "--output", "json"]);
    assert_eq!(status[0]["health"], "healthy", "{status:?}");

    runtime.shutdown(WAIT).await.unwrap();
    push(&store, &[("tenant-a", "u-2")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = json(
        &url,
        &[
            "projections",
            "status",
            "--projection",
            "users",
            "--output",
            "json",
        ],
    );
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["projection"], "users@v1");
    assert_eq!(status[0]["events_behind"], 1);
    assert_eq!(status[0]["health"], "stalled");
    let table = strata(&url, &["projections", "status", "--output", "table"], None);
    assert_success(&table);
    let table = stdout(&table);
    assert!(table.contains("HEALTH"), "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("users@v1 (live)"), "{table}");
    assert!(row.contains("stalled"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_projections_and_versions_are_refused_with_what_exists() {
    let (database, url, v1, v2) = two_versions().await;
    refused(
        &url,
        &["projections", "versions", "nope"],
        1,
        "no projection named \"nope\" has versions (versioned projections: users)",
    );
    refused(
        &url,
        &["projections", "switch", "users", "--to", "9"],
        1,
        "projection users has no version 9 (its versions: v1 live, v2 building)",
    );
    refused(
        &url,
        &["projections", "build", "users@v2"],
        2,
        "give the projection's name",
    );
    refused(
        &url,
        &["projections", "rollback", "users"],
        1,
        "has no retired version",
    );
    refused(
        &url,
        &["projections", "switch", "users", "--to", "1"],
        1,
        "version 1 of projection users is live",
    );
    // An unversioned projection has no versions to operate.
    PgProjections::new(database.pool(1))
        .register(&Registration {
            name: "audit",
            reads: &Reads::new().aggregate("user"),
            has_side_effects: false,
            consumer: None,
            stall_after: Duration::from_secs(60),
        })
        .await
        .unwrap();
    refused(
        &url,
        &["projections", "build", "audit"],
        1,
        "projection \"audit\" is not versioned",
    );
    refused(
        &url,
        &["projections", "status", "--projection", "users@v7"],
        1,
        "no projection named \"users@v7\" is registered",
    );
    // Both applied versions of `users` are selected by its name.
    let status = json(
        &url,
        &[
            "projections",
            "status",
            "--projection",
            "users",
            "--output",
            "json",
        ],
    );
    let mut pairs: Vec<&str> = status
        .iter()
        .map(|line| line["projection"].as_str().unwrap())
        .collect();
    pairs.dedup();
    assert_eq!(pairs, ["users@v1", "users@v2"]);
    assert_eq!(status.last().unwrap()["version_state"], "building");
    v2.shutdown(WAIT).await.unwrap();
    v1.shutdown(WAIT).await.unwrap();

    // No version building: nothing to build or switch by default.
    assert_success(&strata(
        &url,
        &["projections", "switch", "users", "--to", "2"],
        None,
    ));
    refused(
        &url,
        &["projections", "build", "users"],
        1,
        "no version of \"users\" is building (its versions: v1 retired, v2 live): name one with \
         --version N",
    );
}
