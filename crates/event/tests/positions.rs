//! Positions must survive every conversion exactly: the seed's float64 bug must never come back.

use rust_decimal::Decimal;
use strata_event::Position;

const VALUES: [&str; 4] = [
    "1725257931223002628",
    "1731582100.784168",
    "0",
    "18446744073709551615",
];

#[test]
fn text_round_trip_is_exact() {
    for text in VALUES {
        let position: Position = text.parse().unwrap();
        assert_eq!(position.to_string(), text);
        let decimal: Decimal = position.into();
        assert_eq!(decimal.to_string(), text);
        assert_eq!(Position::try_from(decimal).unwrap(), position);
    }
}

#[test]
fn json_round_trip_is_exact() {
    for text in VALUES {
        let position: Position = text.parse().unwrap();
        let json = serde_json::to_string(&position).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        let back: Position = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_string(), text);
    }
}

#[test]
fn json_numbers_are_read_exactly() {
    // The seed's example: as a float64 this became 1725257931223002624.
    let big: Position = serde_json::from_str("1725257931223002628").unwrap();
    assert_eq!(big.to_string(), "1725257931223002628");
    let fractional: Position = serde_json::from_str("1731582100.784168").unwrap();
    assert_eq!(fractional.to_string(), "1731582100.784168");
    let in_struct: serde_json::Value = serde_json::json!({ "position": "1725257931223002628" });
    #[derive(serde::Deserialize)]
    struct Holder {
        position: Position,
    }
    let holder: Holder = serde_json::from_value(in_struct).unwrap();
    assert_eq!(holder.position.to_string(), "1725257931223002628");
}

#[test]
fn float_would_have_lost_it() {
    // Guard the test itself: the value really is one a float cannot hold.
    let as_float = 1725257931223002628u64 as f64;
    assert_ne!(as_float as u64, 1725257931223002628);
}

mod proptests {
    use proptest::prelude::*;
    use strata_event::Position;

    proptest! {
        #[test]
        fn any_u64_round_trips(value in any::<u64>()) {
            let position = Position::from(value);
            let json = serde_json::to_string(&position).unwrap();
            let back: Position = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, position);
            let number: Position = serde_json::from_str(&value.to_string()).unwrap();
            prop_assert_eq!(number, position);
        }

        #[test]
        fn any_decimal_text_round_trips(int in 0u64..=u64::MAX, frac in 0u32..1_000_000) {
            let text = if frac == 0 { int.to_string() } else {
                format!("{int}.{}", format!("{frac:06}").trim_end_matches('0'))
            };
            let position: Position = text.parse().unwrap();
            prop_assert_eq!(position.to_string(), text.clone());
            let back: Position = serde_json::from_str(&serde_json::to_string(&position).unwrap()).unwrap();
            prop_assert_eq!(back.to_string(), text);
        }
    }
}
