//! `strata erase`, `strata keys` and what `strata mirror` does with personal data, through the
//! real binary: erasures recorded and final, rotations by compare-and-swap, copies that keep an
//! erased subject erased.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use serde::{Deserialize, Serialize};
use strata_domain::{
    Context, DomainError, DomainEvent, Envelope, EventSpec, Keyring, MasterKey, Personal, Vault,
};
use strata_integration_tests::TestDatabase;
use strata_postgres::PgStore;
use strata_query::Query;
use strata_store::EventStore;
use support::{assert_success, stderr, stdout, strata, strata_with_env};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CustomerEvent {
    #[serde(rename = "customer.registered")]
    Registered { email: Personal<String> },
}

impl DomainEvent for CustomerEvent {
    const AGGREGATE_TYPE: &'static str = "customer";
    const EVENTS: &'static [EventSpec] =
        &[EventSpec::new("customer.registered").personal(&["email"])];
}

fn email(id: &str) -> String {
    format!("{id}.secret@example.com")
}

/// Registers `ids` in tenant-a through a vault with `master`.
async fn register(store: &PgStore, master: &MasterKey, ids: &[&str]) {
    let vault = Vault::new(store.clone(), Keyring::new(master.clone()));
    for id in ids {
        let event = CustomerEvent::Registered {
            email: Personal::Value(email(id)),
        };
        let command = vault
            .command(&event, "tenant-a", id, &Context::new("test", "org-1"))
            .await
            .unwrap();
        store.push(vec![command]).await.unwrap();
    }
}

/// The e-mail of `id` as a vault with `keyring` reads it.
async fn read_email(
    store: &PgStore,
    keyring: Keyring,
    id: &str,
) -> Result<Personal<String>, DomainError> {
    let vault = Vault::new(store.clone(), keyring);
    let query = Query::builder()
        .instance("tenant-a")
        .aggregate_types(["customer"])
        .aggregate_ids([id])
        .build()
        .unwrap();
    let event = store.query(&query).await.unwrap().remove(0);
    let opened = vault.open(event).await?;
    let CustomerEvent::Registered { email } = Envelope::<CustomerEvent>::decode(opened)?.payload;
    Ok(email)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("{err}: {text}"))
}

#[tokio::test]
async fn erase_records_the_erasure_and_is_final() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let (master, _) = MasterKey::generate("k1").unwrap();
    register(&store, &master, &["u-1", "u-2"]).await;
    let url = support::url(&database);

    let status = strata(&url, &["keys", "status", "--output", "json"], None);
    assert_success(&status);
    let status = json(&stdout(&status));
    assert_eq!(
        (
            status["subjects"].as_u64(),
            status["erased_subjects"].as_u64()
        ),
        (Some(2), Some(0))
    );
    assert_eq!(status["by_master_key"][0]["master_key_id"], "k1");

    // Without --yes and without a terminal: refused, nothing done.
    let refused = strata(
        &url,
        &["erase", "--instance", "tenant-a", "--subject", "u-1"],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-1")
            .await
            .unwrap(),
        Personal::Value(email("u-1"))
    );

    let erased = strata(
        &url,
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-1",
            "--actor",
            "dpo",
            "--yes",
            "--output",
            "json",
        ],
        None,
    );
    assert_success(&erased);
    let erased = json(&stdout(&erased));
    assert_eq!(
        (erased["action"].as_str(), erased["keys_deleted"].as_u64()),
        (Some("erased"), Some(1))
    );
    assert!(erased["recorded"].is_string());
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-1")
            .await
            .unwrap(),
        Personal::Erased
    );
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-2")
            .await
            .unwrap(),
        Personal::Value(email("u-2"))
    );
    let record = store
        .query(
            &Query::builder()
                .instance("tenant-a")
                .aggregate_types(["strata.subject"])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((record.len(), record[0].creator.as_str()), (1, "dpo"));

    // Twice: nothing more happens.
    let again = strata(
        &url,
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-1",
            "--yes",
            "--output",
            "json",
        ],
        None,
    );
    assert_success(&again);
    assert!(json(&stdout(&again))["recorded"].is_null());

    // Bad input: a usage error, nothing changed.
    for args in [
        &["erase", "--instance", "tenant-a", "--yes"][..],
        &["erase", "--instance", "", "--subject", "u-2", "--yes"][..],
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-2",
            "--actor",
            " ",
            "--yes",
        ][..],
    ] {
        let output = strata(&url, args, None);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-2")
            .await
            .unwrap(),
        Personal::Value(email("u-2"))
    );

    let keys: Vec<String> = sqlx::query_scalar("SELECT subject_id FROM eventstore.subject_keys")
        .fetch_all(&database.pool(1))
        .await
        .unwrap();
    assert_eq!(keys, ["u-2"], "only u-2 has a key left");
}

#[tokio::test]
async fn reapply_erases_what_a_restore_brought_back() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let (master, _) = MasterKey::generate("k1").unwrap();
    register(&store, &master, &["u-1"]).await;
    let url = support::url(&database);
    let pool = database.pool(1);
    // The keys table as an older backup holds it.
    let backup: (String, String, i32, String, Vec<u8>) = sqlx::query_as(
        "SELECT instance_id, subject_id, key_version, master_key_id, wrapped_key FROM eventstore.subject_keys",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let erased = strata(
        &url,
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-1",
            "--yes",
        ],
        None,
    );
    assert_success(&erased);
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-1")
            .await
            .unwrap(),
        Personal::Erased
    );

    // Restoring the keys tables from the backup undoes the erasure...
    sqlx::query("DELETE FROM eventstore.erased_subjects")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO eventstore.subject_keys (instance_id, subject_id, key_version, master_key_id, wrapped_key) VALUES ($1, $2, $3, $4, $5)")
        .bind(&backup.0).bind(&backup.1).bind(backup.2).bind(&backup.3).bind(&backup.4)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-1")
            .await
            .unwrap(),
        Personal::Value(email("u-1"))
    );
    // ...until the recorded erasures are replayed.
    let reapplied = strata(
        &url,
        &["erase", "--reapply", "--yes", "--output", "json"],
        None,
    );
    assert_success(&reapplied);
    assert_eq!(json(&stdout(&reapplied))["keys_deleted"].as_u64(), Some(1));
    assert_eq!(
        read_email(&store, Keyring::new(master.clone()), "u-1")
            .await
            .unwrap(),
        Personal::Erased
    );
    let again = strata(
        &url,
        &["erase", "--reapply", "--yes", "--output", "json"],
        None,
    );
    assert_eq!(json(&stdout(&again))["keys_deleted"].as_u64(), Some(0));
}

#[tokio::test]
async fn keys_rotate_rewraps_every_key_and_generate_makes_usable_keys() {
    let database = TestDatabase::create().await;
    let store = database.store();
    let url = support::url(&database);
    let generated = strata(
        &url,
        &["keys", "generate", "--id", "k1", "--output", "json"],
        None,
    );
    assert_success(&generated);
    let old_spelled = json(&stdout(&generated))["master_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = MasterKey::parse(&old_spelled).unwrap();
    register(&store, &old, &["u-1", "u-2", "u-3"]).await;
    let (_, new_spelled) = MasterKey::generate("k2").unwrap();
    let new = MasterKey::parse(&new_spelled).unwrap();

    // Without the new key in the environment: a usage error; with a malformed one too.
    let missing = strata(&url, &["keys", "rotate", "--yes"], None);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    let malformed = strata_with_env(
        &url,
        &["keys", "rotate", "--yes"],
        None,
        &[("STRATA_MASTER_KEY", "k2:not-base64!")],
    );
    assert_eq!(malformed.status.code(), Some(2), "{}", stderr(&malformed));
    // Without the old key as a previous one: refused with the reason, nothing rewrapped.
    let unknown = strata_with_env(
        &url,
        &["keys", "rotate", "--yes"],
        None,
        &[("STRATA_MASTER_KEY", &new_spelled)],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("\"k1\""), "{}", stderr(&unknown));

    let rotated = strata_with_env(
        &url,
        &["keys", "rotate", "--yes", "--output", "json"],
        None,
        &[
            ("STRATA_MASTER_KEY", &new_spelled),
            ("STRATA_PREVIOUS_MASTER_KEYS", &old_spelled),
        ],
    );
    assert_success(&rotated);
    assert_eq!(json(&stdout(&rotated))["rewrapped"].as_u64(), Some(3));
    let status = json(&stdout(&strata(
        &url,
        &["keys", "status", "--output", "json"],
        None,
    )));
    assert_eq!(
        status["by_master_key"],
        serde_json::json!([{"master_key_id": "k2", "keys": 3}])
    );
    // The new key alone reads; the old alone no longer does.
    assert_eq!(
        read_email(&store, Keyring::new(new), "u-3").await.unwrap(),
        Personal::Value(email("u-3"))
    );
    assert!(read_email(&store, Keyring::new(old), "u-3").await.is_err());
}

#[tokio::test]
async fn a_mirror_copies_keys_and_keeps_erased_subjects_erased() {
    let source = TestDatabase::create().await;
    let destination = TestDatabase::create().await;
    let (master, _) = MasterKey::generate("k1").unwrap();
    register(&source.store(), &master, &["u-1", "u-2"]).await;
    let (from, to) = (support::url(&source), support::url(&destination));
    let erased = strata(
        &from,
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-1",
            "--yes",
        ],
        None,
    );
    assert_success(&erased);

    let mirrored = strata(
        &to,
        &["mirror", "--from", &from, "--to", &to, "--output", "json"],
        None,
    );
    assert_success(&mirrored);
    let report = json(&stdout(&mirrored));
    assert_eq!(
        (
            report["subject_keys"].as_u64(),
            report["erased_subjects"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let copy = destination.store();
    let keyring = Keyring::new(master.clone());
    assert_eq!(
        read_email(&copy, keyring.clone(), "u-2").await.unwrap(),
        Personal::Value(email("u-2"))
    );
    assert_eq!(
        read_email(&copy, keyring.clone(), "u-1").await.unwrap(),
        Personal::Erased
    );

    // An erasure in the source after the copy reaches the copy with the next mirror run.
    let later = strata(
        &from,
        &[
            "erase",
            "--instance",
            "tenant-a",
            "--subject",
            "u-2",
            "--yes",
        ],
        None,
    );
    assert_success(&later);
    assert_success(&strata(
        &to,
        &["mirror", "--from", &from, "--to", &to],
        None,
    ));
    assert_eq!(
        read_email(&copy, keyring, "u-2").await.unwrap(),
        Personal::Erased
    );
}
