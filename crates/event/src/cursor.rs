//! Where an event stands in the store's total order, as one value a reader can keep and hand back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::position::{Position, PositionError};

/// An event's place in the store's total order: its [`Position`] and its `in_tx_order` among the
/// events sharing that position. Cursors order like the events they point at, so a reader that
/// keeps the cursor of the last event it handled resumes exactly after it
/// (`Query::resumed_after`), however many events share a position.
///
/// Its text form is `position:in_tx_order` (`1725257931223002628:3`), which is also how it is
/// written in JSON, so it can travel through URLs, page tokens and the `strata` CLI:
///
/// ```
/// use strata_event::{Cursor, Position};
///
/// let cursor: Cursor = "1731582100.784168:3".parse()?;
/// assert_eq!(cursor.position, "1731582100.784168".parse::<Position>()?);
/// assert_eq!(cursor.in_tx_order, 3);
/// assert_eq!(cursor.to_string(), "1731582100.784168:3");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The event's position (shared by the events of one push).
    pub position: Position,
    /// The event's order among those sharing its position.
    pub in_tx_order: u32,
}

/// A cursor's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CursorError {
    /// No `:` separates the position from the order.
    #[error("invalid cursor {0:?}: expected position:in_tx_order, e.g. 1725257931223002628:3")]
    Shape(String),
    /// The position part is not a position.
    #[error("invalid cursor: {0}")]
    Position(#[from] PositionError),
    /// The order part is not a number from 0 to 4294967295.
    #[error("invalid cursor {0:?}: in_tx_order must be a whole number from 0 to 4294967295")]
    Order(String),
}

impl Cursor {
    /// The cursor of the event at `position` with `in_tx_order`.
    pub fn new(position: Position, in_tx_order: u32) -> Self {
        Cursor {
            position,
            in_tx_order,
        }
    }
}

impl From<(Position, u32)> for Cursor {
    fn from((position, in_tx_order): (Position, u32)) -> Self {
        Cursor::new(position, in_tx_order)
    }
}

impl From<Cursor> for (Position, u32) {
    fn from(cursor: Cursor) -> Self {
        (cursor.position, cursor.in_tx_order)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.position, self.in_tx_order)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(text: &str) -> Result<Self, CursorError> {
        let shown = || text.chars().take(80).collect::<String>();
        let (position, order) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| CursorError::Shape(shown()))?;
        let in_tx_order = order
            .parse::<u32>()
            .map_err(|_| CursorError::Order(shown()))?;
        Ok(Cursor::new(position.parse()?, in_tx_order))
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        for text in [
            "0:0",
            "1725257931223002628:4294967295",
            "1731582100.784168:3",
        ] {
            let cursor: Cursor = text.parse().expect(text);
            assert_eq!(cursor.to_string(), text);
            let json = serde_json::to_string(&cursor).expect("serialise");
            assert_eq!(serde_json::from_str::<Cursor>(&json).expect("read"), cursor);
        }
        assert!(matches!("12".parse::<Cursor>(), Err(CursorError::Shape(_))));
        assert!(matches!(
            "x:1".parse::<Cursor>(),
            Err(CursorError::Position(_))
        ));
        assert!(matches!(
            "-1:1".parse::<Cursor>(),
            Err(CursorError::Position(_))
        ));
        assert!(matches!(
            "1:-1".parse::<Cursor>(),
            Err(CursorError::Order(_))
        ));
        assert!(matches!(
            "1:4294967296".parse::<Cursor>(),
            Err(CursorError::Order(_))
        ));
    }

    #[test]
    fn cursors_order_like_their_events() {
        let at = |position: u64, order: u32| Cursor::new(Position::from(position), order);
        assert!(at(1, 5) < at(2, 0));
        assert!(at(2, 0) < at(2, 1));
    }
}
