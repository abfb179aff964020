//! What a W1P reader costs, beside what it does to the writers: the CPU of its process and of
//! the server sessions serving it (found by their `application_name`), so a round can say how
//! many events it projected per CPU-second; and, where the server loads `pg_stat_statements`,
//! how many statements (round trips) it ran per batch of one read model.
//!
//! `pg_stat_statements` is read, never reset: it is the server's, not the bench's.

use anyhow::Result;
use sqlx::PgPool;

use crate::perf::cpu::{TICKS_PER_SECOND, process_ticks};

/// The `application_name` of a reader's connections.
const READER_APP: &str = "strata-bench-reader";

/// `url` with the reader's `application_name`, for the worker process to connect with.
pub(crate) fn reader_url(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={READER_APP}")
}

/// Counters of a reader at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderSample {
    /// CPU ticks of the reader's process, and of its server sessions.
    process_ticks: u64,
    session_ticks: u64,
    /// Statements run in the bench's database other than the writers' and the bench's own;
    /// `None` without `pg_stat_statements`.
    statements: Option<i64>,
    /// Checkpoint moves so far: one per batch of one read model.
    moves: i64,
    /// Events in the store.
    events: i64,
}

/// Whether the server loads `pg_stat_statements`; if so, the extension is created in the
/// bench's database (which the bench drops afterwards) so its view can be read.
pub(crate) async fn statements_available(pool: &PgPool) -> bool {
    let loaded: Option<bool> = sqlx::query_scalar(
        "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    loaded == Some(true)
        && sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(pool)
            .await
            .is_ok()
}

impl ReaderSample {
    /// The reader's counters now; `worker` is its process.
    pub(crate) async fn now(pool: &PgPool, worker: u32, statements: bool) -> Result<ReaderSample> {
        let _ = sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(pool)
            .await;
        let sessions: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                .bind(READER_APP)
                .fetch_all(pool)
                .await?;
        let session_ticks = sessions
            .iter()
            .filter_map(|&pid| process_ticks(pid as u32))
            .sum::<u64>();
        let statements = if statements {
            // The writers' pushes and the bench's own sampling left out.
            Some(
                sqlx::query_scalar(
                    "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                       AND query NOT LIKE '%eventstore.push%' AND query NOT LIKE '%pg_stat%' \
                       AND query NOT LIKE '%pg_current_wal_lsn%' \
                       AND query NOT LIKE '%count(*) FROM eventstore.events%'",
                )
                .fetch_one(pool)
                .await?,
            )
        } else {
            None
        };
        let moves: Option<i64> = sqlx::query_scalar(
            "SELECT (n_tup_upd + n_tup_ins)::int8 FROM pg_stat_user_tables \
             WHERE schemaname = 'projections' AND relname = 'current_states'",
        )
        .fetch_optional(pool)
        .await?;
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM eventstore.events")
            .fetch_one(pool)
            .await?;
        Ok(ReaderSample {
            process_ticks: process_ticks(worker).unwrap_or(0),
            session_ticks,
            statements,
            moves: moves.unwrap_or(0),
            events,
        })
    }

    /// What the reader did from `self` until `later`, keeping `read_models` read models.
    pub(crate) fn until(&self, later: &ReaderSample, read_models: usize) -> ReaderCost {
        let seconds =
            |before: u64, after: u64| after.saturating_sub(before) as f64 / TICKS_PER_SECOND;
        let process_seconds = seconds(self.process_ticks, later.process_ticks);
        let session_seconds = seconds(self.session_ticks, later.session_ticks);
        let projected = (later.events - self.events).max(0) as f64 * read_models as f64;
        let batches = (later.moves - self.moves).max(0);
        ReaderCost {
            process_seconds,
            session_seconds,
            projected,
            batches,
            statements: later
                .statements
                .zip(self.statements)
                .map(|(after, before)| after - before),
        }
    }
}

/// What a reader did in one round.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReaderCost {
    /// CPU of the reader's process, and of its server sessions.
    process_seconds: f64,
    session_seconds: f64,
    /// Events pushed in the round, times the read models kept.
    projected: f64,
    /// Checkpoint moves (0 for readers that keep no checkpoints in `projections`).
    batches: i64,
    statements: Option<i64>,
}

impl ReaderCost {
    /// Adds another round of the same reader.
    pub(crate) fn add(&mut self, other: ReaderCost) {
        self.process_seconds += other.process_seconds;
        self.session_seconds += other.session_seconds;
        self.projected += other.projected;
        self.batches += other.batches;
        self.statements = match (self.statements, other.statements) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    /// One line for the bench's notes.
    pub(crate) fn describe(&self) -> String {
        let cpu_seconds = self.process_seconds + self.session_seconds;
        let mut line = format!(
            "{:.0} projected events per CPU-second ({:.1} CPU-s: {:.1} its process, {:.1} its \
             server sessions)",
            self.projected / cpu_seconds.max(1e-9),
            cpu_seconds,
            self.process_seconds,
            self.session_seconds
        );
        if self.batches > 0 {
            line.push_str(&format!(
                "; {} batches, {:.1} events each",
                self.batches,
                self.projected / self.batches as f64
            ));
            if let Some(statements) = self.statements {
                line.push_str(&format!(
                    "; {:.2} statements (round trips) per batch",
                    statements as f64 / self.batches as f64
                ));
            }
        }
        line
    }
}
