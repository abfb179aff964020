//! Bad input at every entry point, table-driven: each case gets a typed error (or, for hostile but
//! valid strings, verbatim storage), never a panic, never a partial write — on both backends.

use std::time::Duration;

use strata_event::{
    Command, Event, InstanceId, MAX_ID_LEN, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, Position,
};
use strata_integration_tests::TestDatabase;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::{
    MemoryProjections, Projection, ProjectionError, ProjectionRuntime, Reads, ReduceError,
    Statement,
};
use strata_query::Query;
use strata_store::{ErrorKind, EventStore, MemoryStore};

fn base(
    instance: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
) -> strata_event::CommandBuilder {
    Command::builder(instance, aggregate_type, aggregate_id, event_type)
        .creator("tester")
        .owner("org")
}

fn deep_json(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Commands the model refuses before any store sees them, with the reason each case is bad.
fn refused_commands() -> Vec<(&'static str, Result<Command, strata_event::ValidationError>)> {
    let long = "x".repeat(MAX_ID_LEN + 1);
    vec![
        (
            "empty instance",
            base("", "user", "u", "user.added").build(),
        ),
        (
            "empty aggregate id",
            base("i", "user", "", "user.added").build(),
        ),
        (
            "empty aggregate type",
            base("i", "", "u", "user.added").build(),
        ),
        ("empty event type", base("i", "user", "u", "").build()),
        (
            "empty creator",
            Command::builder("i", "user", "u", "user.added")
                .owner("o")
                .build(),
        ),
        (
            "oversized instance",
            base(&long, "user", "u", "user.added").build(),
        ),
        (
            "oversized aggregate id",
            base("i", "user", &long, "user.added").build(),
        ),
        (
            "control character in id",
            base("i", "user", "a\u{0}b", "user.added").build(),
        ),
        (
            "newline in id",
            base("i", "user", "a\nb", "user.added").build(),
        ),
        (
            "upper-case event type",
            base("i", "user", "u", "User.Added").build(),
        ),
        (
            "event type with spaces",
            base("i", "user", "u", "user added").build(),
        ),
        (
            "empty event type segment",
            base("i", "user", "u", "user..added").build(),
        ),
        (
            "aggregate type with a quote",
            base("i", "us'er", "u", "user.added").build(),
        ),
        (
            "SQL in an event type",
            base("i", "user", "u", "x'; DROP TABLE eventstore.events; --").build(),
        ),
        (
            "payload that is not JSON",
            base("i", "user", "u", "user.added")
                .payload_json("{nope")
                .build(),
        ),
        (
            "payload that is a bare NaN",
            base("i", "user", "u", "user.added")
                .payload_json("NaN")
                .build(),
        ),
        (
            "payload nested too deep",
            base("i", "user", "u", "user.added")
                .payload_json(deep_json(MAX_PAYLOAD_DEPTH + 1))
                .build(),
        ),
        (
            "payload too large",
            base("i", "user", "u", "user.added")
                .payload(&serde_json::json!({ "blob": "x".repeat(MAX_PAYLOAD_BYTES) }))
                .build(),
        ),
        (
            "payload with a NUL escape",
            base("i", "user", "u", "user.added")
                .payload_json(r#"{"a":"\u0000"}"#)
                .build(),
        ),
        (
            "payload with a lone surrogate escape",
            base("i", "user", "u", "user.added")
                .payload_json(r#"{"s":"\ud800"}"#)
                .build(),
        ),
        (
            "payload with a number beyond f64",
            base("i", "user", "u", "user.added")
                .payload_json(r#"{"n":1e400}"#)
                .build(),
        ),
        (
            "payload with a key twice",
            base("i", "user", "u", "user.added")
                .payload_json(r#"{"a":1,"a":2}"#)
                .build(),
        ),
        (
            "empty unique constraint value",
            base("i", "user", "u", "user.added")
                .add_unique_constraint("username", "", "taken")
                .build(),
        ),
        (
            "unique type outside the grammar",
            base("i", "user", "u", "user.added")
                .add_unique_constraint("User Name", "x", "taken")
                .build(),
        ),
    ]
}

#[test]
fn the_model_refuses_bad_commands_with_typed_errors() {
    for (case, outcome) in refused_commands() {
        let err = outcome.expect_err(case);
        assert!(!err.to_string().is_empty(), "{case}");
    }
}

#[test]
fn json_input_is_validated_like_the_builder() {
    let valid = r#"{"aggregate":{"instance_id":"i","aggregate_type":"user","aggregate_id":"u"},
        "event_type":"user.added","creator":"c","owner":"o"}"#;
    serde_json::from_str::<Command>(valid).expect("a valid command parses");
    let cases: [(&str, &[u8]); 5] = [
        ("not UTF-8", b"{\"aggregate\":{\"instance_id\":\"\xff\xfe\"}}"),
        ("unknown field", br#"{"aggregate":{"instance_id":"i","aggregate_type":"user","aggregate_id":"u"},"event_type":"user.added","creator":"c","owner":"o","extra":1}"#),
        ("empty id", br#"{"aggregate":{"instance_id":"","aggregate_type":"user","aggregate_id":"u"},"event_type":"user.added","creator":"c","owner":"o"}"#),
        ("bad event type", br#"{"aggregate":{"instance_id":"i","aggregate_type":"user","aggregate_id":"u"},"event_type":"Nope","creator":"c","owner":"o"}"#),
        ("revision overflow", br#"{"aggregate":{"instance_id":"i","aggregate_type":"user","aggregate_id":"u"},"event_type":"user.added","creator":"c","owner":"o","revision":70000}"#),
    ];
    for (case, bytes) in cases {
        assert!(serde_json::from_slice::<Command>(bytes).is_err(), "{case}");
    }
}

#[test]
fn positions_refuse_nan_negative_and_overflow() {
    for text in [
        "NaN",
        "inf",
        "-inf",
        "-1",
        "1e400",
        "",
        "abc",
        "99999999999999999999999999999999",
    ] {
        assert!(text.parse::<Position>().is_err(), "{text:?}");
        assert!(
            serde_json::from_str::<Position>(&format!("\"{text}\"")).is_err(),
            "{text:?} as JSON"
        );
    }
    assert!(serde_json::from_str::<Position>("-5").is_err());
}

#[test]
fn queries_refuse_bad_limits_and_values() {
    let no_types: [&str; 0] = [];
    let cases = [
        ("zero limit", Query::builder().limit(0).build()),
        ("negative limit", Query::builder().limit(-5).build()),
        (
            "huge limit",
            Query::builder().limit(i128::from(u64::MAX)).build(),
        ),
        ("negative offset", Query::builder().offset(-1).build()),
        (
            "empty id in a list",
            Query::builder().aggregate_ids(["a", ""]).build(),
        ),
        (
            "bad event type",
            Query::builder().event_types(["user added"]).build(),
        ),
        (
            "exclusion without event types",
            Query::builder()
                .exclude_aggregates_with(["user"], no_types)
                .build(),
        ),
        (
            "payload filter not an object",
            Query::builder()
                .payload_contains(serde_json::json!([1]))
                .build(),
        ),
        (
            "payload filter with a NUL",
            Query::builder()
                .payload_contains(serde_json::json!({ "name": ["a\u{0}b"] }))
                .build(),
        ),
        (
            "created after an instant PostgreSQL cannot hold",
            Query::builder()
                .created_after(chrono::DateTime::<chrono::Utc>::MIN_UTC)
                .build(),
        ),
        (
            "created before an instant PostgreSQL cannot hold",
            Query::builder()
                .created_before(chrono::DateTime::<chrono::Utc>::MIN_UTC)
                .build(),
        ),
    ];
    for (case, outcome) in cases {
        let err = strata_store::Error::from(outcome.expect_err(case));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{case}");
    }
}

/// Hostile but valid strings are stored and returned byte for byte, never executed.
async fn hostile_strings_round_trip<S: EventStore>(store: &S) {
    let hostile = "x'; DROP TABLE eventstore.events; -- \" \\ $1 %s {} ☃";
    let command = Command::builder(hostile, "user", hostile, "user.added")
        .creator(hostile)
        .owner(hostile)
        .payload(&serde_json::json!({ hostile: hostile }))
        .add_unique_constraint("username", hostile, hostile)
        .build()
        .expect("hostile but valid");
    let stored = store.push(vec![command]).await.expect("push");
    let read = store
        .query(&Query::aggregate(&stored[0].aggregate))
        .await
        .expect("read");
    assert_eq!(read, stored);
    let event: &Event = &read[0];
    assert_eq!(event.aggregate.instance_id.as_str(), hostile);
    assert_eq!(event.aggregate.aggregate_id.as_str(), hostile);
    assert_eq!(event.creator.as_str(), hostile);
    assert_eq!(event.owner.as_str(), hostile);
    let payload: serde_json::Value = event.payload().expect("payload");
    assert_eq!(payload[hostile], hostile);
    // The unique value is taken verbatim too.
    let again = Command::builder(hostile, "user", "other", "user.added")
        .creator("c")
        .owner("o")
        .add_unique_constraint("username", hostile, "taken")
        .build()
        .expect("valid");
    let err = store.push(vec![again]).await.expect_err("taken");
    assert_eq!(err.kind(), ErrorKind::UniqueConstraintViolation);
    let filtered = Query::builder()
        .instance(hostile)
        .owner(hostile)
        .creator(hostile)
        .payload_contains(serde_json::json!({ hostile: hostile }))
        .build()
        .expect("query");
    assert_eq!(store.query(&filtered).await.expect("filtered").len(), 1);
}

/// Payloads at the edges of what JSON and PostgreSQL's `jsonb` accept: each builds, pushes and
/// reads back as the same JSON value on both backends.
async fn edge_payloads_read_back_as_written<S: EventStore>(store: &S) -> Vec<serde_json::Value> {
    let edges = [
        r#"{"s":"\\u0000"}"#,
        r#"{"emoji":"\ud83d\ude00","plain":"😀"}"#,
        r#"{"big":1e300,"small":-1e-300,"wide":12345678901234567890123,"max":18446744073709551615}"#,
        r#"{"\u00e9t\u00e9":"\"quoted\" \\ \/ \b\f\n\r\t"}"#,
        r#"[{"a":1},{"a":1}]"#,
        // jsonb writes these out in full; they must still read back as the same f64.
        r#"{"n":3e23,"tiny":1e-16383,"fine":1.5e-16382}"#,
        r#""a bare string""#,
    ];
    let mut read_back = Vec::new();
    for (n, edge) in edges.into_iter().enumerate() {
        let command = base("i", "user", &format!("edge-{n}"), "user.added")
            .payload_json(edge)
            .build()
            .unwrap_or_else(|err| panic!("{edge} builds: {err}"));
        let stored = store.push(vec![command]).await.expect(edge);
        let read = store
            .query(&Query::aggregate(&stored[0].aggregate))
            .await
            .expect("read");
        let value: serde_json::Value = read[0].payload().expect(edge);
        let written: serde_json::Value = serde_json::from_str(edge).expect(edge);
        assert_eq!(value, written, "{edge}");
        read_back.push(value);
    }
    // The earliest instant PostgreSQL holds is a valid bound on both backends.
    let earliest = chrono::DateTime::from_timestamp(-210_866_803_200, 0).expect("in range");
    let since = Query::builder()
        .all_instances()
        .created_after(earliest)
        .build()
        .expect("the earliest storable instant");
    assert_eq!(store.query(&since).await.expect("query").len(), edges.len());
    read_back
}

#[tokio::test]
async fn edge_payloads_read_back_alike_on_both_backends() {
    let memory = edge_payloads_read_back_as_written(&MemoryStore::new()).await;
    let database = TestDatabase::create().await;
    let postgres = edge_payloads_read_back_as_written(&database.store()).await;
    assert_eq!(memory, postgres);
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim_in_memory() {
    hostile_strings_round_trip(&MemoryStore::new()).await;
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim_in_postgres() {
    let database = TestDatabase::create().await;
    let store: PgStore = database.store();
    hostile_strings_round_trip(&store).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'eventstore' AND tablename = 'events'",
    )
    .fetch_one(&database.pool(1))
    .await
    .expect("tables");
    assert_eq!(tables, 1);
}

struct Named(&'static str);

impl Projection for Named {
    fn name(&self) -> &str {
        self.0
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(Vec::new())
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt here.
        Vec::new()
    }
}

struct ReadsNothing;

impl Projection for ReadsNothing {
    fn name(&self) -> &str {
        "reads_nothing"
    }
    fn reads(&self) -> Reads {
        Reads::new()
    }
    fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(Vec::new())
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt here.
        Vec::new()
    }
}

struct BadReads;

impl Projection for BadReads {
    fn name(&self) -> &str {
        "bad_reads"
    }
    fn reads(&self) -> Reads {
        Reads::new().events("user", ["Not An Event Type"])
    }
    fn reduce(&self, _: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(Vec::new())
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt here.
        Vec::new()
    }
}

#[tokio::test]
async fn projections_refuse_bad_definitions_and_unknown_names() {
    let builder = || ProjectionRuntime::builder(MemoryStore::new(), MemoryProjections::new());
    for name in ["", "Upper", "with space", "semi;colon", "x'--"] {
        let err = builder().register(Named(name)).expect_err(name);
        assert!(
            matches!(err, ProjectionError::InvalidProjection { .. }),
            "{name}: {err}"
        );
    }
    assert!(matches!(
        builder().register(ReadsNothing).expect_err("reads nothing"),
        ProjectionError::InvalidProjection { .. }
    ));
    assert!(matches!(
        builder().register(BadReads).expect_err("bad reads"),
        ProjectionError::InvalidProjection { .. }
    ));
    let duplicate = builder()
        .register(Named("twice"))
        .expect("first")
        .register(Named("twice"))
        .expect_err("second");
    assert!(matches!(duplicate, ProjectionError::DuplicateName(_)));

    let runtime = builder()
        .register(Named("known"))
        .expect("register")
        .start()
        .await
        .expect("start");
    let instance = strata_event::InstanceId::new("i").expect("id");
    let unknown = runtime
        .catch_up(
            "unknown",
            &instance,
            Position::from(1u64),
            Duration::from_millis(10),
        )
        .await
        .expect_err("unknown projection");
    assert!(matches!(unknown, ProjectionError::UnknownProjection(_)));
    assert!(matches!(
        runtime.rebuild("unknown", None).await,
        Err(ProjectionError::UnknownProjection(_))
    ));
    assert!(matches!(
        runtime.failed_events(Some("unknown")).await,
        Err(ProjectionError::UnknownProjection(_))
    ));
}

/// A projection that writes to a table name that is not an identifier fails that event (recorded),
/// it never reaches SQL.
/// A projection whose statement names a table or column that is not an identifier.
struct BadName {
    name: &'static str,
    table: &'static str,
    column: &'static str,
}

const BAD_NAMES: [BadName; 4] = [
    BadName {
        name: "bad_table",
        table: "users; DROP TABLE eventstore.events",
        column: "id",
    },
    BadName {
        name: "bad_column",
        table: "users",
        column: "Bad Col",
    },
    BadName {
        name: "dotted_column",
        table: "users",
        column: "users.id",
    },
    BadName {
        name: "injecting_column",
        table: "users",
        column: "name; drop",
    },
];

impl Projection for BadName {
    fn name(&self) -> &str {
        self.name
    }
    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }
    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            self.table,
            vec![(self.column, event.aggregate.aggregate_id.as_str().into())],
            vec![],
        )])
    }
    fn config(&self) -> strata_projection::ProjectionConfig {
        strata_projection::ProjectionConfig {
            max_failure_count: 1,
            ..Default::default()
        }
    }
    fn reset(&self, _: &InstanceId) -> Vec<Statement> {
        // Never rebuilt here.
        Vec::new()
    }
}

/// Each bad name is refused before anything is applied and recorded as a failed event, alike on
/// both backends (a projection tested in memory must not meet the refusal first in production).
async fn bad_names_are_refused<S, B>(store: S, backend: B)
where
    S: EventStore + Clone + 'static,
    B: strata_projection::ProjectionBackend + Clone + 'static,
{
    let mut builder = ProjectionRuntime::builder(store.clone(), backend);
    for bad in BAD_NAMES {
        builder = builder.register(bad).expect("register");
    }
    let runtime = builder.start().await.expect("start");
    let stored = store
        .push(vec![
            base("i", "user", "u", "user.added").build().expect("valid"),
        ])
        .await
        .expect("push");
    for bad in BAD_NAMES {
        // The runtime moves past the refused event, and a catch-up says it did.
        let caught_up = runtime
            .catch_up(
                bad.name,
                &stored[0].aggregate.instance_id,
                stored[0].position,
                Duration::from_secs(10),
            )
            .await;
        let Err(ProjectionError::EventFailed {
            failed,
            skipped: true,
        }) = caught_up
        else {
            panic!("{}: the refused event is reported: {caught_up:?}", bad.name);
        };
        assert_eq!(failed.sequence, stored[0].sequence, "{}", bad.name);
        let failed = runtime.failed_events(Some(bad.name)).await.expect("failed");
        assert_eq!(failed.len(), 1, "{}", bad.name);
        assert!(
            failed[0].error.contains("not a valid table or column name"),
            "{}: {}",
            bad.name,
            failed[0].error
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_with_a_bad_name_is_refused_in_memory() {
    let backend = MemoryProjections::new();
    bad_names_are_refused(MemoryStore::new(), backend.clone()).await;
    assert!(backend.rows("users").is_empty(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_with_a_bad_name_is_refused_before_sql() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let backend = PgProjections::new(store.pools().projection().clone());
    bad_names_are_refused(store, backend).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
        .fetch_one(&database.pool(1))
        .await
        .expect("events table still there");
    assert_eq!(events, 1);
}
