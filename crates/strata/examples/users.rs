//! A small user directory on event sourcing: sign-up with a unique username, e-mail change,
//! deactivation that frees the username, a stale write caught by an expected sequence, and a
//! `users` read model kept by a projection, read with read-your-writes.
//!
//! Runs on the in-memory store by default:
//!
//! ```text
//! cargo run --example users
//! ```
//!
//! With `DATABASE_URL` set it migrates that PostgreSQL database and runs the same story there (each
//! run uses an instance of its own, so it can be re-run against the same database).

use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use strata::projection::ProjectionBackend;
use strata::{
    AggregateRef, Command, ErrorKind, Event, EventStore, InstanceId, MemoryProjections,
    MemoryStore, Projection, ProjectionRuntime, Query, Reads, ReduceError, SqlValue, Statement,
};

/// The tenant this run writes to.
fn instance_for_this_run() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    format!("example-{started}")
}

const SIGNED_UP: &str = "user.signed_up";
const EMAIL_CHANGED: &str = "user.email_changed";
const DEACTIVATED: &str = "user.deactivated";
const USERNAME: &str = "user.username";

#[derive(Debug, Serialize, Deserialize)]
struct SignedUp {
    username: String,
    email: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EmailChanged {
    email: String,
}

/// The state a command handler decides on, folded from the aggregate's events.
#[derive(Debug, Default)]
struct User {
    username: String,
    email: String,
    active: bool,
    /// The sequence of the last event folded in: what a write expects to build upon.
    version: u64,
}

impl User {
    fn fold(events: &[Event]) -> Result<User> {
        let mut user = User::default();
        for event in events {
            match event.event_type.as_str() {
                SIGNED_UP => {
                    let signed_up: SignedUp = event.payload()?;
                    user.username = signed_up.username;
                    user.email = signed_up.email;
                    user.active = true;
                }
                EMAIL_CHANGED => user.email = event.payload::<EmailChanged>()?.email,
                DEACTIVATED => user.active = false,
                // Unknown types are skipped so old readers survive new events.
                _ => {}
            }
            user.version = event.sequence;
        }
        Ok(user)
    }
}

/// The read side: one row per active user in `example_users`, kept by the projection runtime.
struct ActiveUsers;

impl Projection for ActiveUsers {
    fn name(&self) -> &str {
        "example_users"
    }

    fn reads(&self) -> Reads {
        Reads::new().events("user", [SIGNED_UP, EMAIL_CHANGED, DEACTIVATED])
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let key = vec![
            ("instance_id", event.aggregate.instance_id.as_str().into()),
            ("user_id", event.aggregate.aggregate_id.as_str().into()),
        ];
        Ok(match event.event_type.as_str() {
            SIGNED_UP => {
                let signed_up: SignedUp = event.payload()?;
                vec![Statement::upsert(
                    "example_users",
                    key,
                    vec![
                        ("username", signed_up.username.into()),
                        ("email", signed_up.email.into()),
                    ],
                )]
            }
            EMAIL_CHANGED => {
                let changed: EmailChanged = event.payload()?;
                vec![Statement::update(
                    "example_users",
                    vec![("email", changed.email.into())],
                    key,
                )]
            }
            DEACTIVATED => vec![Statement::delete("example_users", key)],
            _ => Vec::new(),
        })
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        // A rebuild starts from an empty read model of the instance.
        vec![Statement::delete(
            "example_users",
            vec![("instance_id", instance.as_str().into())],
        )]
    }
}

/// The command side: each function checks the user's state and pushes what happened.
struct Directory<'a, S> {
    store: &'a S,
    instance: &'a str,
}

impl<S: EventStore> Directory<'_, S> {
    fn command(&self, user_id: &str, event_type: &str) -> strata::CommandBuilder {
        Command::builder(self.instance, "user", user_id, event_type)
            .creator("example")
            .owner("org-example")
    }

    async fn load(&self, user_id: &str) -> Result<User> {
        let aggregate = AggregateRef::new(self.instance, "user", user_id)?;
        User::fold(&self.store.query(&Query::aggregate(&aggregate)).await?)
    }

    async fn sign_up(&self, user_id: &str, username: &str, email: &str) -> strata::Result<()> {
        let command = self
            .command(user_id, SIGNED_UP)
            .payload(&SignedUp {
                username: username.into(),
                email: email.into(),
            })
            .add_unique_constraint(USERNAME, username, "errors.username_taken")
            .expect_sequence(0)
            .build()?;
        self.store.push(vec![command]).await.map(drop)
    }

    async fn change_email(&self, user_id: &str, email: &str, expected: u64) -> strata::Result<()> {
        let command = self
            .command(user_id, EMAIL_CHANGED)
            .payload(&EmailChanged {
                email: email.into(),
            })
            .expect_sequence(expected)
            .build()?;
        self.store.push(vec![command]).await.map(drop)
    }

    async fn deactivate(&self, user_id: &str, user: &User) -> strata::Result<()> {
        // Deactivation frees the username in the same atomic push.
        let command = self
            .command(user_id, DEACTIVATED)
            .remove_unique_constraint(USERNAME, &user.username)
            .expect_sequence(user.version)
            .build()?;
        self.store.push(vec![command]).await.map(drop)
    }
}

async fn story<S, B>(store: &S, runtime: &ProjectionRuntime<S, B>, instance: &str) -> Result<()>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    let directory = Directory { store, instance };

    directory
        .sign_up("u-1", "alice", "alice@example.com")
        .await?;
    println!("alice signed up as u-1");

    match directory
        .sign_up("u-2", "alice", "mallory@example.com")
        .await
    {
        Err(err) if err.kind() == ErrorKind::UniqueConstraintViolation => {
            println!("u-2 could not take the username alice: {err}");
        }
        other => anyhow::bail!("a second alice must be refused, got {other:?}"),
    }

    let alice = directory.load("u-1").await?;
    directory
        .change_email("u-1", "alice@work.example", alice.version)
        .await?;
    println!("alice changed her e-mail to alice@work.example");

    // A second editor still holds the state from before the change: its write is refused instead
    // of silently overwriting hers.
    match directory
        .change_email("u-1", "stale@example.com", alice.version)
        .await
    {
        Err(err) if err.kind() == ErrorKind::Conflict => {
            println!("a stale e-mail change was refused: {err}");
        }
        other => anyhow::bail!("a stale write must conflict, got {other:?}"),
    }

    let alice = directory.load("u-1").await?;
    directory.deactivate("u-1", &alice).await?;
    println!("alice was deactivated; her username is free again");

    directory
        .sign_up("u-2", "alice", "alice2@example.com")
        .await?;
    println!("u-2 signed up as alice");

    println!("\nthe event log of instance {instance}:");
    println!(
        "  (sequence: the event's number within its user; position/in_tx_order: its place in\n   \
         the store's total order, where the events of one push share a position)"
    );
    let everything = Query::builder().instance(instance).build()?;
    for event in store.query(&everything).await? {
        println!(
            "  {:<4} sequence {}  {:<20} position {}/{}",
            event.aggregate.aggregate_id.as_str(),
            event.sequence,
            event.event_type.as_str(),
            event.position,
            event.in_tx_order,
        );
    }

    // Read your writes: wait until the projection has applied everything up to the last push.
    let last = store
        .latest_position(&everything)
        .await?
        .context("events were pushed")?;
    runtime
        .catch_up(
            "example_users",
            &InstanceId::new(instance)?,
            last,
            Duration::from_secs(10),
        )
        .await?;

    println!("\nwhat the users look like now (folded from their events):");
    for user_id in ["u-1", "u-2"] {
        let user = directory.load(user_id).await?;
        println!(
            "  {user_id}: {} <{}>, {}, version {}",
            user.username,
            user.email,
            if user.active { "active" } else { "deactivated" },
            user.version
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let instance = instance_for_this_run();
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let store = strata::postgres::PgStore::connect(&url, Default::default())
                .await
                .context("connecting to DATABASE_URL")?;
            let applied = strata::postgres::migrate(store.pools().push()).await?;
            println!(
                "storage: PostgreSQL (DATABASE_URL), {} migration(s) applied\n",
                applied.migrations.len()
            );
            // The read model's table is the application's; a real service creates it in its own
            // migrations.
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS example_users (instance_id TEXT, user_id TEXT, \
                 username TEXT, email TEXT, PRIMARY KEY (instance_id, user_id))",
            )
            .execute(store.pools().projection())
            .await?;
            let backend = strata::postgres::PgProjections::new(store.pools().projection().clone());
            let runtime = ProjectionRuntime::builder(store.clone(), backend)
                .register(ActiveUsers)?
                .start()
                .await?;
            story(&store, &runtime, &instance).await?;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT username, email FROM example_users WHERE instance_id = $1 ORDER BY user_id",
            )
            .bind(&instance)
            .fetch_all(store.pools().query())
            .await?;
            print_read_model(rows);
            clean_up(&store, &runtime, &instance).await?;
        }
        Err(_) => {
            println!("storage: in memory (set DATABASE_URL to use PostgreSQL)\n");
            let store = MemoryStore::new();
            let read_models = MemoryProjections::new();
            let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
                .register(ActiveUsers)?
                .start()
                .await?;
            story(&store, &runtime, &instance).await?;
            let text = |value: Option<&SqlValue>| match value {
                Some(SqlValue::Text(text)) => text.clone(),
                _ => String::new(),
            };
            print_read_model(
                read_models
                    .rows("example_users")
                    .iter()
                    .map(|row| (text(row.get("username")), text(row.get("email"))))
                    .collect(),
            );
        }
    }
    Ok(())
}

/// Leaves the database as the run found it: stops the runtime (waiting for its batches),
/// forgets the projection, drops its table and removes this run's instance.
async fn clean_up<B: ProjectionBackend + Clone>(
    store: &strata::postgres::PgStore,
    runtime: &ProjectionRuntime<strata::postgres::PgStore, B>,
    instance: &str,
) -> Result<()> {
    runtime.shutdown(Duration::from_secs(10)).await?;
    strata::postgres::admin::unregister_projection(store.pools().push(), "example_users").await?;
    sqlx::query("DROP TABLE IF EXISTS example_users")
        .execute(store.pools().push())
        .await?;
    let removed = match store.remove_instance(&InstanceId::new(instance)?).await {
        Ok(removed) => format!("its {removed} events"),
        // Removing events is administration: a role without it keeps them.
        Err(err) => format!("not its events ({err})"),
    };
    println!(
        "\ncleaned up: the runtime stopped, the projection was unregistered, example_users was \
         dropped, and instance {instance} lost {removed}"
    );
    Ok(())
}

fn print_read_model(rows: Vec<(String, String)>) {
    println!("\nthe example_users read model (kept by a projection, read after catch_up):");
    for (username, email) in rows {
        println!("  {username} <{email}>");
    }
}
