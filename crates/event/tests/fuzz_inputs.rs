//! Property-based fuzzing of everything that parses outside input: arbitrary strings and bytes
//! through the command builder, command JSON, payloads and positions must give a value or a typed
//! error, never a panic, and whatever is accepted must satisfy the documented rules.
//!
//! `PROPTEST_CASES=100000 cargo test -p strata-event --test fuzz_inputs` runs it longer.

use proptest::prelude::*;
use strata_event::{Command, MAX_ID_LEN, Payload, Position};

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z.]{0,12}",
        "[ -~]{0,40}",
        Just(String::new()),
        Just("x".repeat(MAX_ID_LEN + 1)),
        Just("a\u{0}b".to_owned()),
        // JSON with unicode escapes (lone surrogates, NUL) and numbers at the edge of f64.
        r#"\{"a":"(\\u[0-9a-fA-F]{4}){1,3}"\}"#,
        r#"\[-?[0-9]{1,3}(\.[0-9]{1,3})?[eE][-+]?[0-9]{1,4}\]"#,
    ]
}

proptest! {
    #[test]
    fn the_builder_never_panics_and_accepts_only_valid_values(
        instance in any_text(), aggregate_type in any_text(), aggregate_id in any_text(),
        event_type in any_text(), creator in any_text(), owner in any_text(), payload in any_text(),
        unique in any_text(),
    ) {
        let built = Command::builder(&instance, &aggregate_type, &aggregate_id, &event_type)
            .creator(&creator)
            .owner(&owner)
            .payload_json(payload.clone())
            .add_unique_constraint("username", &unique, "taken")
            .build();
        if let Ok(command) = built {
            let aggregate = command.aggregate();
            for id in [aggregate.instance_id.as_str(), aggregate.aggregate_id.as_str(), command.creator().as_str(), command.owner().as_str()] {
                prop_assert!(!id.is_empty() && id.len() <= MAX_ID_LEN);
                prop_assert!(!id.chars().any(char::is_control));
            }
            // An empty string is the documented "no payload"; anything else accepted is JSON.
            prop_assert!(
                payload.is_empty() || serde_json::from_str::<serde_json::Value>(&payload).is_ok()
            );
        }
    }

    #[test]
    fn command_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = serde_json::from_slice::<Command>(&bytes);
    }

    #[test]
    fn command_json_round_trips(id in "[a-zA-Z0-9 '\";-]{1,30}", n in any::<u32>()) {
        let command = Command::builder(&id, "user", &id, "user.added")
            .creator(&id)
            .owner("org")
            .payload(&serde_json::json!({ "n": n, "id": id }))
            .build()
            .expect("valid");
        let json = serde_json::to_string(&command).expect("serialise");
        let back: Command = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(back, command);
    }

    #[test]
    fn payloads_never_panic(text in any_text()) {
        // What a payload accepts, every reader can decode: nothing fails later, on a read.
        if let Ok(payload) = Payload::from_json(text.clone()) {
            prop_assert!(payload.decode::<serde_json::Value>().is_ok(), "{text:?}");
        }
    }

    #[test]
    fn positions_never_panic(text in any_text()) {
        if let Ok(position) = text.parse::<Position>() {
            prop_assert!(position.as_decimal() >= rust_decimal::Decimal::ZERO);
            prop_assert_eq!(position.to_string().parse::<Position>().ok(), Some(position));
        }
        let _ = serde_json::from_str::<Position>(&text);
    }
}
