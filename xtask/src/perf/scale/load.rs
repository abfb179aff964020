//! The `--scale` data: events generated on the server, straight into `eventstore.events`, in
//! batches of one transaction each, in a shape a multi-tenant identity service has.
//!
//! - 100 instances, skewed: instance `k` holds about `1/k` of the events (`scale-001` about a
//!   fifth, as in the probe the issue cites).
//! - 12 aggregate types: `user` and `session` three tenths each, the ten others share the rest.
//! - Aggregate sizes: 99.5 % hold 1–50 events (log-uniform), 0.5 % hold 100–10 000; about 23
//!   events per aggregate on average.
//! - The first event of an aggregate is `<type>.added`, then `<type>.changed`; one aggregate of
//!   ten with two or more events ends with `<type>.removed` (Q1 excludes those).
//! - About 200 bytes of JSON payload, as W1 writes.
//!
//! Every batch is one transaction, so its events share its position (the transaction id, as a
//! push's do) with `in_tx_order` numbering them; within a batch the aggregates interleave (every
//! aggregate's first event, then every second one...), so each aggregate's sequence order is also
//! its position order, as the store's invariant requires. Aggregate `g` is the same in every run:
//! every choice is a hash of `g`.
//!
//! Loading through `push` would take as long again (W3's rate, about 70 000 events/s here) and
//! measure the push, which W1-W3 already do; this measures reads of a table that is large.

use std::time::Instant;

use anyhow::{Context, Result};
use sqlx::PgPool;

/// Aggregates per batch: about 55 000 events, a few seconds of work per transaction.
const AGGREGATES_PER_BATCH: i64 = 2_400;

/// The R1 aggregates (in the largest instance): one of 10 000 events and one of 10.
pub(crate) const R1_LARGE: [&str; 3] = ["scale-001", "user", "r1-large"];
pub(crate) const R1_SMALL: [&str; 3] = ["scale-001", "user", "r1-small"];

/// Where generating stopped: the next aggregate number, and the events written so far.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    next_aggregate: i64,
    pub(crate) events: u64,
}

/// One batch: aggregates `$1` up to but not including `$2`, with their events.
const BATCH: &str = r#"
WITH aggregates AS (
    SELECT g,
        -- Uniform in [0, 1) from the hash of g and a salt, one per choice.
        (hashint8extended(g, 1) & 16777215) / 16777216.0 AS u_instance,
        (hashint8extended(g, 2) & 16777215) / 16777216.0 AS u_type,
        (hashint8extended(g, 3) & 16777215) / 16777216.0 AS u_large,
        (hashint8extended(g, 4) & 16777215) / 16777216.0 AS u_size,
        (hashint8extended(g, 5) & 16777215) / 16777216.0 AS u_removed
    FROM generate_series($1::bigint, $2::bigint - 1) AS g
), shaped AS (
    SELECT g,
        'scale-' || lpad(floor(power(101, u_instance))::int::text, 3, '0') AS instance_id,
        CASE
            WHEN u_type < 0.3 THEN 'user'
            WHEN u_type < 0.6 THEN 'session'
            ELSE (ARRAY['org', 'project', 'app', 'key', 'idp', 'policy', 'action', 'grant',
                        'member', 'instance'])[1 + floor((u_type - 0.6) * 25)::int]
        END AS aggregate_type,
        greatest(1, CASE
            WHEN u_large < 0.005 THEN floor(100 * power(100, u_size))
            ELSE floor(power(50, u_size))
        END)::int AS size,
        u_removed < 0.1 AS removed
    FROM aggregates
), events AS (
    SELECT s.instance_id, s.aggregate_type, 'a-' || s.g AS aggregate_id, n AS sequence,
        s.aggregate_type || CASE
            WHEN n = 1 THEN '.added'
            WHEN n = s.size AND s.removed THEN '.removed'
            ELSE '.changed'
        END AS event_type,
        s.g
    FROM shaped s, generate_series(1, s.size) AS n
)
INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence, event_type,
    revision, created_at, creator, owner, payload, position, in_tx_order)
SELECT instance_id, aggregate_type, aggregate_id, sequence, event_type, 1, now(), 'scale', 'org',
    jsonb_build_object(
        'user_id', 'user-' || g, 'email', 'someone-' || g || '@example.com',
        'display_name', 'A reasonably ordinary display name', 'locale', 'en-GB',
        'flags', '["verified", "mfa"]'::jsonb, 'plan', 'pro', 'counter', sequence),
    pg_current_xact_id()::text::numeric,
    (row_number() OVER (ORDER BY sequence, g) - 1)::int
FROM events
"#;

/// The R1 aggregates, in a transaction of their own.
const R1_AGGREGATES: &str = r#"
INSERT INTO eventstore.events (instance_id, aggregate_type, aggregate_id, sequence, event_type,
    revision, created_at, creator, owner, payload, position, in_tx_order)
SELECT 'scale-001', 'user', r.id, n, CASE WHEN n = 1 THEN 'user.added' ELSE 'user.changed' END,
    1, now(), 'scale', 'org',
    jsonb_build_object('user_id', r.id, 'email', 'someone@example.com',
        'display_name', 'A reasonably ordinary display name', 'locale', 'en-GB',
        'flags', '["verified", "mfa"]'::jsonb, 'plan', 'pro', 'counter', n),
    pg_current_xact_id()::text::numeric,
    (row_number() OVER (ORDER BY n, r.id) - 1)::int
FROM (VALUES ('r1-large', 10000), ('r1-small', 10)) AS r(id, size), generate_series(1, r.size) AS n
"#;

/// Generates events until the table holds at least `target`, continuing from `loaded`.
pub(crate) async fn load_to(pool: &PgPool, loaded: &mut Loaded, target: u64) -> Result<()> {
    let started = Instant::now();
    let before = loaded.events;
    if loaded.events == 0 {
        let written = sqlx::query(R1_AGGREGATES)
            .execute(pool)
            .await
            .context("writing the R1 aggregates")?;
        loaded.events += written.rows_affected();
    }
    let mut last_report = Instant::now();
    while loaded.events < target {
        let from = loaded.next_aggregate;
        let to = from + AGGREGATES_PER_BATCH;
        let written = sqlx::query(BATCH)
            .bind(from)
            .bind(to)
            .execute(pool)
            .await
            .with_context(|| format!("generating aggregates {from}..{to}"))?;
        loaded.next_aggregate = to;
        loaded.events += written.rows_affected();
        if last_report.elapsed().as_secs() >= 30 {
            eprintln!(
                "bench: scale: {} events loaded, {:.0} events/s",
                loaded.events,
                (loaded.events - before) as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    eprintln!(
        "bench: scale: loaded {} events (to {}) in {:.0} s",
        loaded.events - before,
        loaded.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
