//! W1P's reference readers: raw-SQL pollers keeping the same read models as the runtime's
//! projections, run by `cargo xtask bench-worker URL N poll|poll-grouped`.

use std::time::Duration;

use anyhow::Result;
use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_postgres::PgConfig;

use crate::perf::projections::{BULK, LATEST_TABLES};

/// How often W1P's reference readers poll (docs/benchmarks.md, W1P).
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(50);

/// W1P's references: readers in raw SQL that keep the same read models as the bench's `Latest` projections, each
/// polling every [`POLL_EVERY`] for events past its cursor: one per read model, or with `grouped`
/// one for all `count` of them in one transaction per poll (one read, one commit: the cheapest
/// shape a polling reader can take, and W1P's `raw` row). They run on as many connections as the
/// runtime's projection pool and with the same asynchronous commits. They block no writer and wake
/// on no notice; they can skip an event whose push commits after a later one was read, which the
/// runtime cannot (docs/projections.md), so they do less than it does. Runs until killed.
pub(crate) async fn pollers(url: &str, count: usize, grouped: bool) -> Result<()> {
    use std::str::FromStr;
    let options =
        sqlx::postgres::PgConnectOptions::from_str(url)?.options([("synchronous_commit", "off")]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(PgConfig::default().projection_pool.max_connections)
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS poll_checkpoints (name TEXT PRIMARY KEY, position NUMERIC, \
         in_tx_order INT)",
    )
    .execute(&pool)
    .await?;
    // From the newest event: like the runtime's worker, measured keeping up, not catching up.
    let start: Option<(Decimal, i32)> = sqlx::query_as(
        "SELECT position, in_tx_order FROM eventstore.events \
         ORDER BY position DESC, in_tx_order DESC LIMIT 1",
    )
    .fetch_optional(&pool)
    .await?;
    let start = start.unwrap_or((Decimal::ZERO, -1));
    let groups: Vec<&[&'static str]> = if grouped {
        vec![&LATEST_TABLES[..count]]
    } else {
        LATEST_TABLES[..count].chunks(1).collect()
    };
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|tables| tokio::spawn(poll(pool.clone(), tables, start)))
        .collect();
    println!("ready");
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One reference reader: every [`POLL_EVERY`], reads what is past its cursor and applies it to
/// each of `tables` with its checkpoint in one transaction, a page of [`BULK`] at a time.
async fn poll(
    pool: PgPool,
    tables: &'static [&'static str],
    mut cursor: (Decimal, i32),
) -> Result<()> {
    let upserts: Vec<String> = tables
        .iter()
        .map(|table| {
            format!(
                "INSERT INTO {table} (aggregate_id, sequence) \
                 SELECT * FROM UNNEST($1::text[], $2::int8[]) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET sequence = EXCLUDED.sequence"
            )
        })
        .collect();
    let name = tables.join(",");
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let mut tx = pool.begin().await?;
            let page: Vec<(String, i64, Decimal, i32)> = sqlx::query_as(
                "SELECT aggregate_id, sequence, position, in_tx_order FROM eventstore.events \
                 WHERE aggregate_type = 'user' AND (position, in_tx_order) > ($1, $2) \
                 ORDER BY position, in_tx_order LIMIT $3",
            )
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(i64::from(BULK))
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = page.last() else {
                tx.commit().await?;
                break;
            };
            cursor = (last.2, last.3);
            // Last write per key wins, as in the runtime's merged upserts.
            let mut seen = std::collections::HashSet::new();
            let (mut ids, mut sequences) = (Vec::new(), Vec::new());
            for row in page.iter().rev() {
                if seen.insert(row.0.as_str()) {
                    ids.push(row.0.as_str());
                    sequences.push(row.1);
                }
            }
            for upsert in &upserts {
                sqlx::query(upsert)
                    .bind(&ids)
                    .bind(&sequences)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO poll_checkpoints VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
                 SET position = EXCLUDED.position, in_tx_order = EXCLUDED.in_tx_order",
            )
            .bind(&name)
            .bind(cursor.0)
            .bind(cursor.1)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if page.len() < BULK as usize {
                break;
            }
        }
    }
}
