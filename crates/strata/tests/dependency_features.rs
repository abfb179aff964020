//! Depending on Strata changes nothing about how a program's own code uses the crates Strata
//! depends on. Cargo unifies features across a build, so a feature a Strata crate turned on (as
//! `rust_decimal/serde-str` once was) would change the user's types too. This test builds like a
//! user's crate: `rust_decimal` with its default features beside `strata` with all of its own.

use rust_decimal::Decimal;

#[test]
fn a_programs_own_decimals_still_read_json_numbers() {
    let read: Result<Decimal, _> = serde_json::from_str("12.5");
    assert_eq!(read.map(|d| d.to_string()).ok(), Some("12.5".to_owned()));
    #[derive(serde::Deserialize)]
    struct Price {
        amount: Decimal,
    }
    let price: Price = serde_json::from_str(r#"{"amount": 12.5}"#).expect("a number field");
    assert_eq!(price.amount, Decimal::new(125, 1));
}

#[test]
fn positions_still_travel_as_strings() {
    let position: strata::Position = "1725257931223002628".parse().expect("a position");
    assert_eq!(
        serde_json::to_string(&position).expect("serialise"),
        "\"1725257931223002628\""
    );
}
