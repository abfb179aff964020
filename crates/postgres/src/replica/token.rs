//! Read-your-writes across the standby's lag: a [`ReadToken`] names a push, and a read given it
//! waits until the standby shows that push, or goes to the primary.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sqlx::PgPool;
use strata_event::{Event, Position};

use crate::error::from_sqlx;

/// A push a later read must see: take it with [`ReadToken::of`] from the events a push returned,
/// carry it (in process, or across processes as its [`position`](ReadToken::position)), and read
/// through [`PgStore::reading_after`](crate::PgStore::reading_after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadToken {
    position: Position,
}

impl ReadToken {
    /// The token of the push that stored `events` (they share one position); `None` when it stored
    /// nothing. Give it one push's events: given several pushes', it names the one positioned
    /// last, and a standby showing that one need not show the others yet (transactions commit
    /// out of position order), so keep a token per push that must be seen.
    pub fn of(events: &[Event]) -> Option<ReadToken> {
        events
            .iter()
            .map(|event| event.position)
            .max()
            .map(Self::at)
    }

    /// The token of the push whose events are positioned at `position` (on PostgreSQL, the id of
    /// the transaction that stored them).
    pub fn at(position: Position) -> ReadToken {
        ReadToken { position }
    }

    /// The position of the push's events.
    pub fn position(&self) -> Position {
        self.position
    }
}

/// Waits up to `wait` until a snapshot of `standby` shows the transaction of `token`; `false`
/// when it does not by then.
pub(crate) async fn shown_within(
    standby: &PgPool,
    token: &ReadToken,
    wait: Duration,
) -> Result<bool, strata_store::Error> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        let shown: bool = sqlx::query_scalar(
            // A position is the writing transaction's 64-bit id. An id the standby has not heard
            // of yet is at or above its snapshot's xmax, and so not visible.
            "SELECT pg_visible_in_snapshot($1::numeric::text::xid8, pg_current_snapshot())",
        )
        .bind(Decimal::from(token.position))
        .fetch_one(standby)
        .await
        .map_err(|err| from_sqlx("waiting for the standby to show a push", err))?;
        if shown {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
