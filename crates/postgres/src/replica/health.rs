//! The standby's health check: is it answering, is it still a standby, and how far behind is it.
//!
//! Lag is measured in time, from WAL positions: every check notes the primary's inserted WAL
//! position and when it was read; the standby is behind by the age of the oldest noted position it
//! has not replayed yet. That needs no clock shared by the servers, reads zero on an idle pair (the
//! primary's position stops moving, the standby reaches it), and does not depend on
//! `pg_last_xact_replay_timestamp()`, which ages on a standby that is fully caught up with an idle
//! primary.

use std::collections::VecDeque;
use std::sync::Weak;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use strata_store::Error;

use super::{Fallback, Shared};
use crate::error::from_sqlx;
use crate::telemetry::REPLICA_LAG;

/// PostgreSQL's default WAL page and segment sizes, and the headers that open them.
const WAL_PAGE: u64 = 8192;
const WAL_SEGMENT: u64 = 16 * 1024 * 1024;
const PAGE_HEADER: u64 = 24;
const SEGMENT_HEADER: u64 = 40;

/// Whether a standby that replayed up to `replayed` has everything the primary had inserted when
/// its insert position was `inserted`. The insert position is where the next record will start:
/// after a page's header when the last record filled its page, while the standby reports the
/// end of that last record, before the header. No record fits inside a header, so the two are
/// the same point. (With non-default page or segment sizes an idle pair may read as a few bytes
/// behind until the next write: safe, only slower to return.)
pub(super) fn reached(replayed: u64, inserted: u64) -> bool {
    let header = if inserted % WAL_SEGMENT == SEGMENT_HEADER {
        SEGMENT_HEADER
    } else if inserted % WAL_PAGE == PAGE_HEADER {
        PAGE_HEADER
    } else {
        0
    };
    replayed + header >= inserted
}

/// The primary's WAL positions noted by the last checks, oldest first, each with when it was read.
#[derive(Debug, Default)]
struct Noted {
    positions: VecDeque<(Instant, u64)>,
}

impl Noted {
    /// How long ago the oldest noted position the standby has not replayed was read (zero when it
    /// has replayed them all), after forgetting those it has.
    fn lag(&mut self, replayed: u64, now: Instant) -> Duration {
        while self
            .positions
            .front()
            .is_some_and(|&(_, position)| reached(replayed, position))
        {
            self.positions.pop_front();
        }
        self.positions
            .front()
            .map_or(Duration::ZERO, |&(noted_at, _)| now - noted_at)
    }
}

/// Checks the standby every `check_every` until its store is dropped.
pub(super) async fn check_until_dropped(shared: Weak<Shared>) {
    let mut noted = Noted::default();
    // Held only while checking: a store dropped between checks ends the loop.
    while let Some(strong) = shared.upgrade() {
        check_once(&strong, &mut noted).await;
        let pause = strong.check_every;
        drop(strong);
        tokio::time::sleep(pause).await;
    }
}

async fn check_once(shared: &Shared, noted: &mut Noted) {
    // The primary first: a position noted after the standby's would count its own read as lag.
    match primary_wal_inserted(&shared.primary).await {
        Ok(position) => noted.positions.push_back((Instant::now(), position)),
        // The primary is down: nothing to compare with, and reads are not this check's to move.
        Err(_) => return,
    }
    let replayed = match standby_replayed(&shared.pool).await {
        Ok(Some(replayed)) => replayed,
        Ok(None) => {
            shared.fall_back(Fallback::NotAStandby, &"pg_is_in_recovery() is false on it");
            return;
        }
        Err(err) => {
            let err = from_sqlx("checking the standby", err);
            shared.fall_back(Fallback::Unavailable, &err);
            return;
        }
    };
    let lag = noted.lag(replayed, Instant::now());
    metrics::gauge!(REPLICA_LAG).set(lag.as_secs_f64());
    if lag > shared.max_lag {
        shared.fall_back(
            Fallback::Lagging,
            &format_args!(
                "{:.1} s behind (max_lag {:?})",
                lag.as_secs_f64(),
                shared.max_lag
            ),
        );
    } else if let Err(err) = shared.try_return().await {
        tracing::debug!(replica = %shared.address, "reads stay on the primary: {err}");
    }
}

/// The primary's inserted WAL position, in bytes. Inserted rather than flushed: a transaction
/// that commits with `synchronous_commit = off` is visible to other sessions before its WAL is
/// flushed, so a read may have seen it.
pub(super) async fn primary_wal_inserted(primary: &PgPool) -> Result<u64, Error> {
    let position: i64 =
        sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
            .fetch_one(primary)
            .await
            .map_err(|err| from_sqlx("reading the primary's WAL position", err))?;
    Ok(position as u64)
}

/// The standby's replayed WAL position in bytes; `None` when the server is not in recovery.
pub(super) async fn standby_replayed(standby: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    let replayed: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN pg_is_in_recovery() \
         THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END",
    )
    .fetch_one(standby)
    .await?;
    Ok(replayed.map(|position| position as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_yet_replayed() {
        let start = Instant::now();
        let mut noted = Noted::default();
        for (seconds, position) in [(0, 100), (1, 200), (2, 300)] {
            noted
                .positions
                .push_back((start + Duration::from_secs(seconds), position));
        }
        let now = start + Duration::from_secs(3);
        assert_eq!(noted.lag(50, now), Duration::from_secs(3));
        assert_eq!(noted.lag(200, now), Duration::from_secs(1));
        assert_eq!(noted.positions.len(), 1, "replayed positions are forgotten");
        assert_eq!(noted.lag(300, now), Duration::ZERO);
        assert!(noted.positions.is_empty());
    }

    #[test]
    fn a_page_header_is_not_lag() {
        let next_page = 5 * WAL_PAGE;
        assert!(reached(next_page, next_page + PAGE_HEADER));
        assert!(!reached(next_page - 8, next_page + PAGE_HEADER));
        assert!(!reached(next_page + 100, next_page + 124));
        let next_segment = 3 * WAL_SEGMENT;
        assert!(reached(next_segment, next_segment + SEGMENT_HEADER));
        assert!(!reached(next_segment - 8, next_segment + SEGMENT_HEADER));
    }
}
