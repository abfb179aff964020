//! `strata`: the operator command line for a Strata event store on PostgreSQL.
//!
//! Every subcommand lives in its own module; this file holds the command list, the arguments every
//! command shares and those of the older commands, the dispatch, and the exit codes: 0 success,
//! 1 failure, 2 bad usage. The later command groups (`subscribe`, `consumers`, `delete`,
//! `archive`, `erase`, `keys`) define their arguments beside their code, and `filters.rs` the
//! query filters `query` and `subscribe` share. Argument doc comments are the `--help` text,
//! snapshotted in `tests/help/`.

mod archive;
mod cache;
mod connect;
mod consumers;
mod delete;
mod erase;
mod filters;
mod keys;
mod migrate;
mod mirror;
mod output;
mod progress;
mod projections;
mod push;
mod query;
mod roles;
mod serve;
mod subscribe;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// The database used when neither `--database-url` nor `DATABASE_URL` names one.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Operate a Strata event store on PostgreSQL: migrate, push, query, subscribe, projections,
/// consumers, cache, mirror.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    propagate_version = true,
    after_help = "\
Examples:
  strata migrate                                   apply the migrations to DATABASE_URL
  strata migrate info                              what is applied and what is pending
  strata roles create                              least-privilege roles for this database
  strata push events.jsonl                         push one command per line
  strata query --instance tenant-1 --limit 20      the first 20 events of an instance
  strata subscribe --instance tenant-1             stream its events, then each as it commits
  strata projections status --watch                projection lag, refreshed every 2 s
  strata consumers parked                          aggregates consumers parked after failures
  strata mirror --from postgres://old/app --to postgres://new/app

Every command takes --output json for one JSON object per line on stdout.
Database URLs take sslmode=require / verify-full and sslrootcert=PATH for TLS.
Exit codes: 0 success, 1 failure, 2 bad usage.
More: docs/operations.md"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The database a command operates on.
#[derive(Debug, Args)]
struct Database {
    /// The database to operate on (TLS: add ?sslmode=verify-full&sslrootcert=ca.pem)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    database_url: String,
}

/// `--output` of a command that lists things: a table for a person, JSON lines for a program.
#[derive(Debug, Args)]
struct ListingOutput {
    /// Output format [default: table on a terminal, json otherwise]
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
}

/// `--output` of a command that does something: sentences for a person, or one JSON object.
#[derive(Debug, Args)]
struct ReportOutput {
    /// Output format: `table` prints sentences, `json` one JSON object per line [default: table]
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, hide_default_value = true)]
    output: OutputFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the migrations the database does not have yet, or show them (`info`)
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "\
Applies the versioned migrations (tables, indexes) and then every SQL function whose definition
changed; re-running is a no-op. Creates no roles: see `strata roles create`.

Examples:
  strata migrate
  strata migrate --database-url postgres://strata_admin@db.internal:5432/app
  strata migrate info

Run it as a role with strata_migrator rights (or the schema's owner)."
    )]
    Migrate(MigrateArgs),

    /// Least-privilege roles for this database (never created by `migrate`)
    #[command(subcommand)]
    Roles(RolesCommand),

    /// Push commands read as JSON lines from a file or stdin
    #[command(after_help = "\
Each line is one command:
  {\"aggregate\": {\"instance_id\": \"tenant-1\", \"aggregate_type\": \"user\", \"aggregate_id\": \"u-1\"},
   \"event_type\": \"user.added\", \"revision\": 1, \"payload\": {\"name\": \"alice\"},
   \"creator\": \"import\", \"owner\": \"org-1\",
   \"unique_constraints\": [{\"op\": \"add\", \"unique_type\": \"username\", \"value\": \"alice\",
                           \"error_message_id\": \"errors.username_taken\"}],
   \"expected_sequence\": 0, \"metadata\": {\"correlation_id\": \"req-1\", \"headers\": {\"trace\": \"t-9\"}}}
revision (default 1), payload, unique_constraints, expected_sequence and metadata may be left out; blank lines
are skipped. Every line of a batch is validated before the batch is pushed, and a batch is stored
entirely or not at all. Each stored event is printed as one JSON line (with its cursor), and progress
goes to stderr (a line every few seconds when stderr is not a terminal).

Examples:
  strata push events.jsonl
  strata push --batch 500 < export.jsonl
  strata push --check events.jsonl                 validate only, push nothing")]
    Push(PushArgs),

    /// Read events with every query-builder filter, as JSON lines or a table
    #[command(after_help = "\
Filters combine with AND; a repeated flag means any of its values. A query names its instance(s)
with --instance, or reads every instance with --all-instances. Events come in (position,
in_tx_order) order. Positions are printed as exact decimal strings, and each JSON line carries a
`cursor` (position:in_tx_order): pass the last line's cursor to --after for the next page, however
many events share a position.

Examples:
  strata query --instance tenant-1 --aggregate-type user --event-type user.added
  strata query --instance tenant-1 --payload-contains '{\"plan\": \"pro\"}' --output table
  strata query --instance tenant-1 --limit 100 --after 1725257931223002628:3
  strata query --all-instances --event-type user.added --limit 10
  strata query --instance t1 --aggregate-type session --exclude-aggregates-with-type session \\
               --exclude-aggregates-with-event session.revoked

To keep reading as events commit, use `strata subscribe` with the same filters.")]
    Query(Box<QueryArgs>),

    /// Stream the events a query selects as JSON lines: the stored ones, then each as it commits
    #[command(after_help = "\
Takes the filters of `strata query` and prints each event as `strata query --output json` does,
one line per event, flushed at once, in (position, in_tx_order) order, each once. It reads only
below the commit horizon and is woken by LISTEN/NOTIFY, so an event whose push commits late is
never skipped. It starts with the first matching event (--from-beginning, the default), after a
cursor (--after, e.g. the last line's `cursor` of an earlier run), or with what commits from now
on (--from-now), and runs until interrupted, until --stop-after N events, until the reader closes
the pipe (exit 0), or, with --at-or-before, once it passed that position.

--limit, --offset, --descending and the aggregate exclusions are refused: a stream has no end,
skips nothing, reads oldest first, and cannot take back an event already printed.

Examples:
  strata subscribe --instance tenant-1 | jq .event_type
  strata subscribe --instance tenant-1 --from-now --event-type user.added
  strata subscribe --all-instances --after 1725257931223002628:3 --stop-after 100",
        // The shared filters' help speaks of a query's pages; a subscription starts there. The
        // exclusions are refused, so they are not offered.
        mut_arg("after", |arg| arg.help(
            "Start right after a cursor (POS:ORDER, e.g. the last line's `cursor` of an earlier \
             run), or after every event of a position (POS)"
        )),
        mut_arg("exclude_aggregate_types", |arg| arg.hide(true)),
        mut_arg("exclude_event_types", |arg| arg.hide(true))
    )]
    Subscribe(Box<subscribe::SubscribeArgs>),

    /// Projections: status, failed events, rebuilds, unregistering, versions
    #[command(subcommand)]
    Projections(ProjectionsCommand),

    /// Durable consumers: status, parked aggregates, retrying or skipping them, unregistering
    #[command(subcommand)]
    Consumers(consumers::ConsumersCommand),

    /// Cache administration (the PostgreSQL cache connector's tables)
    #[command(subcommand)]
    Cache(CacheCommand),

    /// Copy events and unique constraints into another store; safe to run again
    #[command(after_help = "\
Copies in source order, in batches, below the source's commit horizon, so an event that commits
late is never skipped. A second run copies only what is new; an interrupted run resumes where it
stopped; nothing is ever copied twice. The destination assigns new positions, in the source's order
(a position is the id of the writing transaction, and the copy is written by other transactions);
sequence, created_at, creator, owner, revision and payload are kept.

Projections with side effects (registered in the destination, or named with --side-effects) are not
replayed there: their checkpoints move to the copied head, so nothing is sent twice.

At the end it prints the event count of every instance on both sides and fails if they differ.
Progress goes to stderr (a line every few seconds when stderr is not a terminal).

Examples:
  strata migrate --database-url postgres://new-db/app
  strata mirror --from postgres://old-db/app --to postgres://new-db/app
  strata mirror --from postgres://old-db/app --to postgres://new-db/app --instance tenant-1 --batch 5000")]
    Mirror(MirrorArgs),

    /// Hard delete: remove an aggregate's or an instance's events for good, audited
    #[command(subcommand)]
    Delete(delete::DeleteCommand),

    /// Move closed aggregates' events to the archive table and back: plan, run, verify, restore
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),

    /// Erase a subject's personal data (crypto-shredding), or replay recorded erasures
    #[command(after_help = "\
Deletes the subject's keys, records it as erased and pushes a `strata.subject.erased` event on
aggregate strata.subject/SUBJECT, in one transaction. Every field sealed with those keys then
reads as erased, in every process (within its Vault's fresh_for), in projections (their `erased`
hook runs) and in copies made by `strata mirror` afterwards. The events themselves stay. Erasing
twice changes nothing. Needs no master key.

--reapply deletes again the keys of every subject whose erasure event exists: after the keys
table came back from a backup older than the events.

Examples:
  strata erase --instance tenant-1 --subject u-42 --actor dpo@example.com
  strata erase --reapply --yes")]
    Erase(erase::EraseArgs),

    /// Personal-data keys: state, a new master key, master-key rotation
    #[command(subcommand)]
    Keys(keys::KeysCommand),

    /// Serve a status page, Prometheus /metrics and /health for this database
    #[command(after_help = "\
Samples the database every --sample-every seconds (a handful of statements however many
projections and instances there are) and serves, from the latest sample:
  /            projections and consumers, aggregated over their instances, worst first, with
               charts of the push rate and lag over the last minutes; click one for its instances
  /failed      failed and parked events with their errors
  /metrics     Prometheus text: lag, health, failed events per projection and consumer
  /health      200 while the database answers (add ?stalled=fail to also fail on a stalled pair)

Read-only unless started with --token (or STRATA_SERVE_TOKEN): an operator who signs in with it
may retry or skip failed events and rebuild a projection in an instance. Binds 127.0.0.1.

Examples:
  strata serve
  strata serve --listen 127.0.0.1:9650 --sample-every 10
  STRATA_SERVE_TOKEN=$(openssl rand -hex 16) strata serve")]
    Serve(Box<serve::ServeArgs>),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(subcommand)]
    action: Option<MigrateAction>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply what is pending (what `strata migrate` alone does)
    Run {
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Every migration and SQL function, applied or pending, like `sqlx migrate info`
    #[command(after_help = "\
A versioned migration is applied or pending; a SQL function is current, or pending when the
database lacks it or holds an older definition. Exits 0 either way.

Examples:
  strata migrate info
  strata migrate info --output json")]
    Info {
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ListingOutput,
    },
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    /// Create (or reuse) the writer and migrator roles and grant them their rights here
    #[command(after_help = "\
Roles are server-wide, so `migrate` never creates them; this does, once per database. The writer
(the application) reads events and pushes them only through Strata's push functions, runs
projections and caches; it cannot change, delete or directly insert events. The migrator applies
migrations and administers. Both are NOLOGIN: grant them to your login roles. On a shared server,
give each database roles of its own names. Later `strata migrate` runs keep their grants current.

Examples:
  strata roles create
  strata roles create --writer billing_writer --migrator billing_migrator
  psql -c 'GRANT billing_writer TO billing_service'")]
    Create {
        /// The application's role
        #[arg(long, value_name = "ROLE", default_value = "strata_writer")]
        writer: String,
        /// The role that migrates and administers
        #[arg(long, value_name = "ROLE", default_value = "strata_migrator")]
        migrator: String,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
}

#[derive(Debug, Args)]
struct PushArgs {
    /// The JSON-lines file to read; stdin when absent or `-`
    file: Option<std::path::PathBuf>,
    /// Lines per push (one transaction each)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Validate every line and push nothing
    #[arg(long)]
    check: bool,
    /// Push batch n with the idempotency key KEY/n (in its first command's instance), so running
    /// the same input again with the same key stores nothing twice
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ListingOutput,
}

#[derive(Debug, Args)]
struct QueryArgs {
    #[command(flatten)]
    filters: filters::QueryFilters,
    /// Newest first
    #[arg(long)]
    descending: bool,
    /// Return at most N events
    // Negative numbers parse as values, so the error names the flag instead of an unknown `-1`.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    limit: Option<u64>,
    /// Skip the first N events (reads what it skips; prefer --after for paging)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    offset: Option<u64>,
    /// Gone: refused with a pointer to `strata subscribe`, which streams instead of polling
    #[arg(long, hide = true)]
    follow: bool,
    /// Also read the archive (`strata archive run` moved events there), as if its events were
    /// still in the hot table
    #[arg(long)]
    include_archive: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ListingOutput,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Per projection and instance: position, lag, health, failed events, runtimes
    #[command(after_help = "\
Projections are listed from projections.registry, which every running runtime fills in at start.
\"events behind\" counts the events the projection reads after its checkpoint; \"seconds behind\"
is the age of the oldest of them. \"health\" is healthy while nothing waits longer than the
projection's stall_after (60 s unless configured), catching up while events wait that long but
the checkpoint moved within it, and stalled when it has not moved for that long either: no
runtime applies the pair, or its event keeps failing. \"runtimes\" counts the live runtimes (a
heartbeat within 15 s) that run the projection: with none, queued rebuilds, retries and skips
wait until one starts.

A versioned projection is listed once per building or live version, as `users@v2 (building)`;
--projection users selects all of them (`strata projections versions` lists every version).

Examples:
  strata projections status
  strata projections status --projection users --instance tenant-1
  strata projections status --watch
  strata projections status --output json")]
    Status {
        /// Only this projection
        #[arg(long, value_name = "NAME")]
        projection: Option<String>,
        /// Only this instance
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// Refresh every 2 seconds (Ctrl-C stops)
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ListingOutput,
    },
    /// Failed events: list, retry or skip
    #[command(subcommand)]
    Failed(FailedCommand),
    /// Reset a projection and replay it from the first event (other projections keep running)
    #[command(after_help = "\
Queues a request in projections.requests; a running runtime that has the projection carries it
out within about a second. Without --instance, every instance the projection has events or a
checkpoint in is rebuilt.

Examples:
  strata projections rebuild users --instance tenant-1
  strata projections rebuild users --yes")]
    Rebuild {
        /// The projection's name
        name: String,
        /// Only this instance (every instance when absent)
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Operator requests no runtime has taken yet
    Requests {
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ListingOutput,
    },
    /// Forget a projection: its registration, checkpoints, failed events and queued requests
    #[command(after_help = "\
For a projection whose code is gone (or an experiment): status stops listing it. Its read-model
tables are the application's; drop them yourself. Refused while a live runtime still runs the
projection (it would register it again), unless --force.

Examples:
  strata projections unregister old_report --yes")]
    Unregister {
        /// The projection's name
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        /// Even while a live runtime runs the projection
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// The versions of versioned projections: versions, build, switch, rollback, drop
    #[command(flatten)]
    Versions(projections::VersionsCommand),
}

#[derive(Debug, Subcommand)]
enum FailedCommand {
    /// List the events projections gave up on
    #[command(after_help = "\
Examples:
  strata projections failed list
  strata projections failed list --projection users --output json")]
    List {
        /// Only this projection
        #[arg(long, value_name = "NAME")]
        projection: Option<String>,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ListingOutput,
    },
    /// Apply a failed event again (after a fix) and forget the failure
    #[command(after_help = "\
Queues a request in projections.requests; a running runtime that has the projection carries it
out within about a second. The event is applied out of order: the projection has moved on.

Example:
  strata projections failed retry --projection users --instance tenant-1 \\
      --aggregate-type user --aggregate-id u-1 --sequence 3")]
    Retry(FailedEventArgs),
    /// Give up on a failed event for good
    #[command(after_help = "\
Queues a request in projections.requests; a running runtime that has the projection carries it
out within about a second. Once skipped, the event no longer makes catch-ups fail.

Example:
  strata projections failed skip --projection users --instance tenant-1 \\
      --aggregate-type user --aggregate-id u-1 --sequence 3 --yes")]
    Skip(FailedEventArgs),
}

#[derive(Debug, Args)]
struct FailedEventArgs {
    /// The projection
    #[arg(long, value_name = "NAME")]
    projection: String,
    /// The event's instance
    #[arg(long, value_name = "ID")]
    instance: String,
    /// The event's aggregate type
    #[arg(long, value_name = "TYPE")]
    aggregate_type: String,
    /// The event's aggregate id
    #[arg(long, value_name = "ID")]
    aggregate_id: String,
    /// The event's sequence
    #[arg(long, value_name = "N")]
    sequence: u64,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: Database,
    #[command(flatten)]
    output: ReportOutput,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Delete the expired entries of a cache
    #[command(after_help = "\
A cache's ages live in the application's configuration, so give them here: an entry written at
least --max-age ago, or last read at least --last-use-age ago, is removed. With neither, only what
an interrupted write left behind (entries without keys, keys without entries) is removed.
Connectors never return expired entries, so pruning frees space; it changes no answer.

Examples:
  strata cache prune instances --max-age 1h --last-use-age 10m
  strata cache prune sessions")]
    Prune {
        /// The cache's name
        name: String,
        /// Remove entries written at least this long ago (e.g. 90s, 15m, 12h, 7d)
        #[arg(long, value_name = "AGE", value_parser = cache::parse_age)]
        max_age: Option<std::time::Duration>,
        /// Remove entries last read at least this long ago (e.g. 10m)
        #[arg(long, value_name = "AGE", value_parser = cache::parse_age)]
        last_use_age: Option<std::time::Duration>,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// Delete every entry of a cache
    #[command(after_help = "\
Truncates the cache's own partitions; other caches are untouched. The application refills the
cache on misses.

Example:
  strata cache truncate instances --yes")]
    Truncate {
        /// The cache's name
        name: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        output: ReportOutput,
    },
}

#[derive(Debug, Args)]
struct MirrorArgs {
    /// The source store's database URL
    #[arg(long, value_name = "URL")]
    from: String,
    /// The destination store's database URL (migrated: run `strata migrate` on it first)
    #[arg(long, value_name = "URL")]
    to: String,
    /// Only this instance (repeatable; every instance when absent)
    #[arg(long = "instance", value_name = "ID")]
    instances: Vec<String>,
    /// Events per batch (one destination transaction each)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// Also treat this projection as having side effects (repeatable), for projections the
    /// destination's runtimes have not registered yet
    #[arg(long = "side-effects", value_name = "PROJECTION")]
    side_effects: Vec<String>,
    #[command(flatten)]
    output: ReportOutput,
}

/// An error caused by how the command was called: exit code 2, like clap's own.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Fails with exit code 2 and `message`.
fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Test hook: when set, the binary exits 0 right after parsing its arguments, so the docs test can
/// check that every command line in the documentation parses without running it.
const PARSE_ONLY_ENV: &str = "STRATA_PARSE_ONLY";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os(PARSE_ONLY_ENV).is_some() {
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", without_repeats(&err));
            if err.chain().any(|cause| cause.is::<UsageError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => migrate::run(args).await,
        Command::Roles(command) => roles::run(command).await,
        Command::Push(args) => push::run(args).await,
        Command::Query(args) => query::run(*args).await,
        Command::Subscribe(args) => subscribe::run(*args).await,
        Command::Projections(command) => projections::run(command).await,
        Command::Consumers(command) => consumers::run(command).await,
        Command::Cache(command) => cache::run(command).await,
        Command::Mirror(args) => mirror::run(args).await,
        Command::Delete(command) => delete::run(command).await,
        Command::Archive(command) => archive::run(command).await,
        Command::Erase(args) => erase::run(args).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Serve(args) => serve::run(*args).await,
    }
}

/// The error and its causes, `: `-separated like `{:#}`, leaving out a cause whose text the
/// error above it already holds: the store's errors repeat the driver's message, and the driver's
/// error repeats the server's, so `{:#}` would print the server's message several times.
fn without_repeats(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut above = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if above.is_empty() || !above.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        above = text;
    }
    line
}
