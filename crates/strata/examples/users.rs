//! A small user directory on the typed layer: sign-up with a unique username, e-mail change,
//! deactivation that frees the username, a stale write caught by the expected sequence, an event
//! an older build stored read through an upcaster, and a `users` read model kept by a typed
//! projection, read with read-your-writes.
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

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata::projection::ProjectionBackend;
use strata::{
    Aggregate, Change, Command, Context, DomainEvent, Envelope, ErrorKind, EventSpec, EventStore,
    InstanceId, MemoryProjections, MemoryStore, ProjectionRuntime, Query, ReduceError, Repository,
    SqlValue, Statement, Typed, TypedProjection, Unique, Upcaster,
};

/// The tenant this run writes to.
fn instance_for_this_run() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    format!("example-{started}")
}

/// What happens to a user. Variant names are the stored event types; the content is the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum UserEvent {
    #[serde(rename = "user.signed_up")]
    SignedUp {
        username: String,
        email: String,
        display_name: String,
    },
    #[serde(rename = "user.email_changed")]
    EmailChanged { email: String },
    #[serde(rename = "user.deactivated")]
    Deactivated { username: String },
}

impl DomainEvent for UserEvent {
    const AGGREGATE_TYPE: &'static str = "user";
    const EVENTS: &'static [EventSpec] = &[
        // Revision 2 added `display_name`; revision 1 events are upcast when read.
        EventSpec::new("user.signed_up").revision(2),
        EventSpec::new("user.email_changed"),
        EventSpec::new("user.deactivated"),
    ];
    const UPCASTERS: &'static [Upcaster] = &[Upcaster::new("user.signed_up", 1, display_name)];

    fn unique_constraints(&self) -> Vec<Unique> {
        match self {
            UserEvent::SignedUp { username, .. } => {
                vec![Unique::add(
                    "user.username",
                    username,
                    "errors.username_taken",
                )]
            }
            UserEvent::Deactivated { username } => vec![Unique::remove("user.username", username)],
            UserEvent::EmailChanged { .. } => Vec::new(),
        }
    }
}

/// Revision 1 to 2: the display name starts as the username.
fn display_name(mut payload: Value) -> Result<Value, String> {
    let fields = payload.as_object_mut().ok_or("not an object")?;
    let username = fields.get("username").cloned().ok_or("no username")?;
    fields.insert("display_name".into(), username);
    Ok(payload)
}

/// What callers ask of a user.
#[derive(Debug, Clone)]
enum UserCommand {
    SignUp { username: String, email: String },
    ChangeEmail { email: String },
    Deactivate,
}

#[derive(Debug, thiserror::Error)]
enum UserError {
    #[error("the user already signed up")]
    AlreadySignedUp,
    #[error("the user is not active")]
    NotActive,
}

/// The state a command decides on, folded from the user's events.
#[derive(Debug, Default, Serialize, Deserialize)]
struct User {
    username: String,
    email: String,
    display_name: String,
    active: bool,
}

impl Aggregate for User {
    type Event = UserEvent;
    type Command = UserCommand;
    type Error = UserError;

    fn handle(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::SignUp { .. } if !self.username.is_empty() => {
                Err(UserError::AlreadySignedUp)
            }
            UserCommand::SignUp { username, email } => Ok(vec![UserEvent::SignedUp {
                display_name: username.clone(),
                username,
                email,
            }]),
            _ if !self.active => Err(UserError::NotActive),
            // Nothing changes, so nothing is stored.
            UserCommand::ChangeEmail { email } if email == self.email => Ok(Vec::new()),
            UserCommand::ChangeEmail { email } => Ok(vec![UserEvent::EmailChanged { email }]),
            UserCommand::Deactivate => Ok(vec![UserEvent::Deactivated {
                username: self.username.clone(),
            }]),
        }
    }

    fn apply(&mut self, event: Envelope<UserEvent>) {
        match event.payload {
            UserEvent::SignedUp {
                username,
                email,
                display_name,
            } => {
                self.username = username;
                self.email = email;
                self.display_name = display_name;
                self.active = true;
            }
            UserEvent::EmailChanged { email } => self.email = email,
            UserEvent::Deactivated { .. } => self.active = false,
        }
    }
}

/// The read side: one row per active user in `example_users`, kept by the projection runtime.
struct ActiveUsers;

impl TypedProjection for ActiveUsers {
    type Event = UserEvent;

    fn name(&self) -> &str {
        "example_users"
    }

    fn reduce(&self, event: &Envelope<UserEvent>) -> Result<Vec<Statement>, ReduceError> {
        let key = vec![
            ("instance_id", event.aggregate.instance_id.as_str().into()),
            ("user_id", event.aggregate.aggregate_id.as_str().into()),
        ];
        Ok(match &event.payload {
            UserEvent::SignedUp {
                username, email, ..
            } => vec![Statement::upsert(
                "example_users",
                key,
                vec![
                    ("username", username.as_str().into()),
                    ("email", email.as_str().into()),
                ],
            )],
            UserEvent::EmailChanged { email } => vec![Statement::update(
                "example_users",
                vec![("email", email.as_str().into())],
                key,
            )],
            UserEvent::Deactivated { .. } => vec![Statement::delete("example_users", key)],
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

async fn story<S, B>(store: &S, runtime: &ProjectionRuntime<S, B>, instance: &str) -> Result<()>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    let users = Repository::new(store.clone());
    let context = Context::new("example", "org-example");
    let sign_up = |username: &str, email: &str| UserCommand::SignUp {
        username: username.into(),
        email: email.into(),
    };

    users
        .execute::<User>(
            instance,
            "u-1",
            sign_up("alice", "alice@example.com"),
            &context,
        )
        .await?;
    println!("alice signed up as u-1");

    match users
        .execute::<User>(
            instance,
            "u-2",
            sign_up("alice", "mallory@example.com"),
            &context,
        )
        .await
    {
        Err(err) if err.store_kind() == Some(ErrorKind::UniqueConstraintViolation) => {
            println!("u-2 could not take the username alice: {err}");
        }
        other => anyhow::bail!("a second alice must be refused, got {other:?}"),
    }

    // A second editor loads alice before her change and decides on that state.
    let stale = users.load::<User>(instance, "u-1").await?;
    let change = |email: &str| UserCommand::ChangeEmail {
        email: email.into(),
    };
    users
        .execute::<User>(instance, "u-1", change("alice@work.example"), &context)
        .await?;
    println!("alice changed her e-mail to alice@work.example");

    // Its push expects the sequence it loaded, so it is refused instead of overwriting hers.
    let decided = stale.state.handle(change("stale@example.com"))?;
    let changes = decided
        .into_iter()
        .map(|event| Change::new(instance, "u-1", event))
        .collect();
    match users.push(&stale, changes, &context).await {
        Err(err) if err.is_conflict() => println!("a stale e-mail change was refused: {err}"),
        other => anyhow::bail!("a stale write must conflict, got {other:?}"),
    }

    users
        .execute::<User>(instance, "u-1", UserCommand::Deactivate, &context)
        .await?;
    println!("alice was deactivated; her username is free again");

    users
        .execute::<User>(
            instance,
            "u-2",
            sign_up("alice", "alice2@example.com"),
            &context,
        )
        .await?;
    println!("u-2 signed up as alice");

    // An older build wrote sign-ups at revision 1, without a display name.
    let old_build = Command::builder(instance, "user", "u-3", "user.signed_up")
        .revision(1)
        .payload(&json!({ "username": "bob", "email": "bob@example.com" }))
        .add_unique_constraint("user.username", "bob", "errors.username_taken")
        .creator("old-build")
        .owner("org-example")
        .build()?;
    store.push(vec![old_build]).await?;
    println!("an older build signed up bob (revision 1)");

    println!("\nthe event log of instance {instance}:");
    println!(
        "  (sequence: the event's number within its user; position/in_tx_order: its place in\n   \
         the store's total order, where the events of one push share a position)"
    );
    let everything = Query::builder().instance(instance).build()?;
    for event in store.query(&everything).await? {
        println!(
            "  {:<4} sequence {}  {:<20} revision {}  position {}/{}",
            event.aggregate.aggregate_id.as_str(),
            event.sequence,
            event.event_type.as_str(),
            event.revision,
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

    println!("\nwhat the users look like now (folded from their events, upcast where old):");
    for user_id in ["u-1", "u-2", "u-3"] {
        let user = users.load::<User>(instance, user_id).await?;
        println!(
            "  {user_id}: {} ({}) <{}>, {}, version {}",
            user.state.username,
            user.state.display_name,
            user.state.email,
            if user.state.active {
                "active"
            } else {
                "deactivated"
            },
            user.sequence()
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
                .register(Typed(ActiveUsers))?
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
                .register(Typed(ActiveUsers))?
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
