//! The global position of an event: a decimal, never a float.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Where an event stands in the store's total order, together with its `in_tx_order`.
///
/// Events of one push share a position and differ in `in_tx_order`; `(position, in_tx_order)` orders
/// every event of a store with no ties. What the number means is the backend's business (the
/// in-memory store counts pushes; PostgreSQL uses the writing transaction's id, see
/// `docs/position.md`). Callers only compare, store and send it back.
///
/// A position is a non-negative [`Decimal`] and never passes through a float: `1725257931223002628`
/// and `1731582100.784168` round-trip exactly through strings, JSON and the database.
///
/// In JSON it is written as a string (so JavaScript and other float-only readers cannot round it) and
/// read from a string or a number. A JSON number with a fraction is read through its shortest
/// round-trip text, which is exact for up to 15 significant digits; send longer values as strings.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(Decimal);

/// A position could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PositionError {
    /// The text is not a decimal number (`NaN`, `inf`, `1e400`, `abc`…).
    #[error("invalid position {0:?}: expected a non-negative decimal number")]
    NotADecimal(String),
    /// The number is negative.
    #[error("invalid position {0}: positions are never negative")]
    Negative(String),
}

impl Position {
    /// Position zero: before every event.
    pub const ZERO: Position = Position(Decimal::ZERO);

    /// Wraps a decimal, refusing negative values.
    pub fn new(value: Decimal) -> Result<Self, PositionError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(PositionError::Negative(value.to_string()));
        }
        Ok(Position(value.normalize()))
    }

    /// The decimal value.
    pub fn as_decimal(&self) -> Decimal {
        self.0
    }
}

impl From<u64> for Position {
    fn from(value: u64) -> Self {
        Position(Decimal::from(value))
    }
}

impl TryFrom<Decimal> for Position {
    type Error = PositionError;
    fn try_from(value: Decimal) -> Result<Self, PositionError> {
        Position::new(value)
    }
}

impl From<Position> for Decimal {
    fn from(value: Position) -> Self {
        value.0
    }
}

impl FromStr for Position {
    type Err = PositionError;
    fn from_str(text: &str) -> Result<Self, PositionError> {
        let value = Decimal::from_str_exact(text.trim())
            .map_err(|_| PositionError::NotADecimal(text.chars().take(80).collect()))?;
        Position::new(value)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PositionVisitor)
    }
}

struct PositionVisitor;

impl serde::de::Visitor<'_> for PositionVisitor {
    type Value = Position;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative decimal number or a string holding one")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Position, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Position, E> {
        Ok(Position::from(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Position, E> {
        Position::new(Decimal::from(v)).map_err(E::custom)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Position, E> {
        Decimal::from_str_exact(&v.to_string())
            .map_err(|_| E::custom(PositionError::NotADecimal(v.to_string())))
            .and_then(|d| Position::new(d).map_err(E::custom))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Position, E> {
        // NOTE: `f64`'s `Display` prints the shortest text that reads back as the same float, which is
        // the text the sender wrote whenever it had at most 15 significant digits. Going through that
        // text instead of `Decimal::from_f64` keeps `1731582100.784168` from becoming
        // `1731582100.7841680049…`.
        if !v.is_finite() {
            return Err(E::custom(PositionError::NotADecimal(v.to_string())));
        }
        v.to_string().parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nan_negative_and_overflow() {
        assert!(matches!(
            "NaN".parse::<Position>(),
            Err(PositionError::NotADecimal(_))
        ));
        assert!(matches!(
            "inf".parse::<Position>(),
            Err(PositionError::NotADecimal(_))
        ));
        assert!(matches!(
            "1e400".parse::<Position>(),
            Err(PositionError::NotADecimal(_))
        ));
        assert!(matches!(
            "99999999999999999999999999999999999".parse::<Position>(),
            Err(PositionError::NotADecimal(_))
        ));
        assert!(matches!(
            "-1".parse::<Position>(),
            Err(PositionError::Negative(_))
        ));
        assert_eq!("0".parse::<Position>(), Ok(Position::ZERO));
        assert!(serde_json::from_str::<Position>("-3").is_err());
        assert!(serde_json::from_str::<Position>("\"NaN\"").is_err());
    }

    #[test]
    fn orders_numerically() {
        let a: Position = "9.5".parse().unwrap();
        let b: Position = "10".parse().unwrap();
        assert!(a < b);
        let c: Position = "10.000".parse().unwrap();
        assert_eq!(b, c);
    }
}
