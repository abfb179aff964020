//! `check_table` finds each way an enum and its table can disagree.

use serde::{Deserialize, Serialize};
use strata_domain::{DomainEvent, EventSpec, TableMismatch, check_table};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Event {
    #[serde(rename = "thing.made")]
    Made { size: u32 },
    #[serde(rename = "thing.lost")]
    Lost(#[serde(skip)] u32),
    #[serde(rename = "thing.unlisted")]
    Unlisted,
}

impl DomainEvent for Event {
    const AGGREGATE_TYPE: &'static str = "thing";
    const EVENTS: &'static [EventSpec] = &[
        EventSpec::new("thing.made"),
        EventSpec::new("thing.lost"),
        EventSpec::new("thing.gone"),
    ];
}

#[test]
fn a_matching_sample_passes_and_each_mismatch_is_named() {
    assert!(matches!(
        check_table(&[Event::Made { size: 1 }]),
        Err(TableMismatch::NoSample {
            event_type: "thing.lost",
            ..
        })
    ));
    assert!(matches!(
        check_table(&[Event::Unlisted]),
        Err(TableMismatch::NotInTable {
            event_type: "thing.unlisted",
            ..
        })
    ));
    // A skipped field does not survive the store.
    assert!(matches!(
        check_table(&[Event::Lost(7)]),
        Err(TableMismatch::RoundTrip {
            event_type: "thing.lost",
            ..
        })
    ));
    assert!(matches!(
        check_table(&[Event::Made { size: 1 }, Event::Lost(0)]),
        Err(TableMismatch::NoSample {
            event_type: "thing.gone",
            ..
        })
    ));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Customer {
    #[serde(rename = "customer.registered")]
    Registered {
        email: strata_domain::Personal<String>,
        name: String,
    },
}

impl DomainEvent for Customer {
    const AGGREGATE_TYPE: &'static str = "customer";
    const EVENTS: &'static [EventSpec] =
        &[EventSpec::new("customer.registered").personal(&["email"])];
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Careless {
    #[serde(rename = "customer.registered")]
    Registered { email: String },
}

impl DomainEvent for Careless {
    const AGGREGATE_TYPE: &'static str = "customer";
    const EVENTS: &'static [EventSpec] =
        &[EventSpec::new("customer.registered").personal(&["email", "phone"])];
}

#[test]
fn personal_fields_must_read_as_erased() {
    let registered = Customer::Registered {
        email: strata_domain::Personal::Value("a@example.com".into()),
        name: "a".into(),
    };
    assert_eq!(check_table(&[registered]), Ok(()));
    // A plain String cannot hold the erased mark: an erased subject would stop every reader.
    assert!(matches!(
        check_table(&[Careless::Registered {
            email: "a@example.com".into()
        }]),
        Err(TableMismatch::NotErasable { field: "email", .. })
    ));
}
