//! Conformance cases of personal data: sealing, erasure and its consequences, key rotation. Listed
//! in `conformance_tests!` beside the other cases.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_cache::{Cache, CacheConfig};
use strata_event::{InstanceId, SubjectId};
use strata_projection::{MemoryProjections, ProjectionRuntime, ReduceError, SqlValue, Statement};
use strata_query::Query;
use strata_store::{ErrorKind, EventStore, SubjectKeyStore};

use crate::{
    Aggregate, Change, Context, DecodeFailure, DomainError, DomainEvent, EncodeError, Envelope,
    ErasureRecord, EventSpec, Keyring, MasterKey, Personal, Repository, Snapshots, Typed,
    TypedProjection, Vault,
};

const INSTANCE: &str = "acme";
const EMAIL: &str = "alice.secret@example.com";
const ADDRESS: &str = "12 Hidden Lane";

fn context() -> Context {
    Context::new("tester", "org-1")
}

/// A customer's events: name and e-mail are the customer's personal data; an order's address is
/// the data of the customer it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CustomerEvent {
    #[serde(rename = "customer.registered")]
    Registered {
        name: Personal<String>,
        email: Personal<String>,
        plan: String,
    },
    #[serde(rename = "customer.email_changed")]
    EmailChanged { email: Personal<String> },
    #[serde(rename = "order.placed")]
    OrderPlaced {
        customer: String,
        address: Personal<String>,
    },
}

impl DomainEvent for CustomerEvent {
    const AGGREGATE_TYPE: &'static str = "customer";
    const EVENTS: &'static [EventSpec] = &[
        EventSpec::new("customer.registered").personal(&["name", "email"]),
        EventSpec::new("customer.email_changed").personal(&["email"]),
        EventSpec::new("order.placed")
            .of_aggregate("order")
            .personal(&["address"])
            .subject_field("customer"),
    ];
}

fn registered(email: &str) -> CustomerEvent {
    CustomerEvent::Registered {
        name: Personal::Value("Alice".to_owned()),
        email: Personal::Value(email.to_owned()),
        plan: "gold".to_owned(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Customer {
    name: Option<Personal<String>>,
    email: Option<Personal<String>>,
    plan: Option<String>,
    changes: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Customer {
    type Event = CustomerEvent;
    type Command = String;
    type Error = Never;

    fn handle(&self, email: String) -> Result<Vec<CustomerEvent>, Never> {
        Ok(vec![match self.plan {
            None => registered(&email),
            Some(_) => CustomerEvent::EmailChanged {
                email: Personal::Value(email),
            },
        }])
    }

    fn apply(&mut self, event: Envelope<CustomerEvent>) {
        self.changes += 1;
        match event.payload {
            CustomerEvent::Registered { name, email, plan } => {
                self.name = Some(name);
                self.email = Some(email);
                self.plan = Some(plan);
            }
            CustomerEvent::EmailChanged { email } => self.email = Some(email),
            CustomerEvent::OrderPlaced { .. } => {}
        }
    }
}

fn new_keyring(id: &str) -> (Keyring, MasterKey) {
    let (master, _) = MasterKey::generate(id).unwrap();
    (Keyring::new(master.clone()), master)
}

/// Every read of a customer's e-mail through `repository`.
async fn email_of<S: EventStore + Clone + 'static>(
    repository: &Repository<S>,
    id: &str,
) -> Option<Personal<String>> {
    repository
        .load::<Customer>(INSTANCE, id)
        .await
        .unwrap()
        .state
        .email
}

/// Personal fields are stored sealed and read back in the clear through the vault; without one,
/// they neither encode nor decode, so they are never stored or shown in the clear by mistake.
pub async fn personal_fields_are_sealed_and_read_back<S>(store: &S)
where
    S: EventStore + SubjectKeyStore + Clone + 'static,
{
    let (keyring, _) = new_keyring("m1");
    let vault = Vault::new(store.clone(), keyring);
    let repository = Repository::new(store.clone()).with_vault(vault.clone());
    let stored = repository
        .execute::<Customer>(INSTANCE, "c-1", EMAIL.to_owned(), &context())
        .await
        .unwrap();
    assert_eq!(
        stored[0].payload,
        registered(EMAIL),
        "the caller gets its own event"
    );
    repository
        .push(
            &crate::Loaded::new(()),
            vec![Change::new(
                INSTANCE,
                "o-1",
                CustomerEvent::OrderPlaced {
                    customer: "c-1".to_owned(),
                    address: Personal::Value(ADDRESS.to_owned()),
                },
            )],
            &context(),
        )
        .await
        .unwrap();

    // The store holds ciphertext only; the plan (not personal) stays readable for queries.
    let raw = store
        .query(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    for event in &raw {
        let text = event.raw_payload.json().unwrap();
        assert!(
            !text.contains(EMAIL) && !text.contains("Alice") && !text.contains(ADDRESS),
            "{text}"
        );
        assert!(text.contains("strata.sealed"), "{text}");
    }
    assert_eq!(raw[0].raw_payload.to_value()["plan"], "gold");

    // Read back in the clear: aggregates, decoding a raw event through the vault.
    let customer = repository.load::<Customer>(INSTANCE, "c-1").await.unwrap();
    assert_eq!(
        customer.state.email,
        Some(Personal::Value(EMAIL.to_owned()))
    );
    let opened = vault.open(raw[1].clone()).await.unwrap();
    assert!(opened.raw_payload.json().unwrap().contains(ADDRESS));
    let order = Envelope::<CustomerEvent>::decode(opened).unwrap();
    assert_eq!(
        order.payload,
        CustomerEvent::OrderPlaced {
            customer: "c-1".to_owned(),
            address: Personal::Value(ADDRESS.to_owned())
        }
    );

    // Without a vault: typed errors, nothing stored.
    let plain = Repository::new(store.clone());
    let err = plain.load::<Customer>(INSTANCE, "c-1").await.unwrap_err();
    assert!(
        matches!(&err, DomainError::Decode(decode) if decode.failure == DecodeFailure::Sealed),
        "{err:?}"
    );
    let err = crate::command(&registered(EMAIL), INSTANCE, "c-2", &context()).unwrap_err();
    assert_eq!(
        err,
        EncodeError::NeedsVault {
            event_type: "customer.registered"
        }
    );
    let err = plain
        .execute::<Customer>(INSTANCE, "c-2", EMAIL.to_owned(), &context())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::Encode(EncodeError::NeedsVault { .. })),
        "{err:?}"
    );
    // A subject field that is not a string is a typed error too.
    #[derive(Serialize, Deserialize)]
    enum Bad {
        #[serde(rename = "order.placed")]
        OrderPlaced {
            customer: u32,
            address: Personal<String>,
        },
    }
    impl DomainEvent for Bad {
        const AGGREGATE_TYPE: &'static str = "order";
        const EVENTS: &'static [EventSpec] = &[EventSpec::new("order.placed")
            .personal(&["address"])
            .subject_field("customer")];
    }
    let bad = Bad::OrderPlaced {
        customer: 7,
        address: Personal::Value(ADDRESS.to_owned()),
    };
    let err = vault
        .command(&bad, INSTANCE, "o-2", &context())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DomainError::Encode(EncodeError::Subject { .. })),
        "{err:?}"
    );
    let count = store
        .count(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap();
    assert_eq!(count, 2, "refused pushes stored nothing");

    // Another process's vault, with the same master key, reads the same.
    let other = Vault::new(store.clone(), vault.keyring().clone());
    let again = Repository::new(store.clone()).with_vault(other);
    assert_eq!(
        email_of(&again, "c-1").await,
        Some(Personal::Value(EMAIL.to_owned()))
    );
    // One with another master key cannot, and says why.
    let (stranger, _) = new_keyring("m2");
    let foreign = Repository::new(store.clone()).with_vault(Vault::new(store.clone(), stranger));
    let err = foreign.load::<Customer>(INSTANCE, "c-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            DomainError::Keys(crate::KeyError::MasterKeyUnknown { .. })
        ),
        "{err:?}"
    );
}

/// Erasing a subject: one transaction deletes its keys and records the erasure; every read path
/// then returns `Personal::Erased` (aggregates, snapshots, projections, other processes), the
/// cache holds no plaintext, and the subject's data can no longer be written.
pub async fn erasing_a_subject_erases_every_read<S>(store: &S)
where
    S: EventStore + SubjectKeyStore + Clone + 'static,
{
    let (keyring, _) = new_keyring("m1");
    let vault = Vault::new(store.clone(), keyring.clone());
    let cache: Cache<crate::SnapshotEntry> =
        Cache::memory("personal_snapshots", CacheConfig::default()).unwrap();
    let repository = Repository::new(store.clone())
        .with_vault(vault.clone())
        .with_snapshots(Snapshots::new(cache.clone()).every(2));
    for round in 0..3 {
        for id in ["c-1", "c-2"] {
            repository
                .execute::<Customer>(INSTANCE, id, format!("{id}.{round}.{EMAIL}"), &context())
                .await
                .unwrap();
        }
    }
    // A snapshot now holds c-1's state: sealed, not in the clear.
    let loaded = repository.load::<Customer>(INSTANCE, "c-1").await.unwrap();
    assert!(loaded.events_read() < 3, "loaded from a snapshot");
    let key = snapshot_key_of(&cache, "c-1").await;
    let entry = cache
        .get(crate::SnapshotIndex::Aggregate, &key)
        .await
        .unwrap();
    assert!(
        !format!("{entry:?}").contains(EMAIL),
        "the snapshot is sealed"
    );

    // A projection holding the e-mails, and a second process's vault that knows the keys.
    let read_models = MemoryProjections::new();
    let projection = Emails {
        vault: vault.clone(),
    };
    let runtime = ProjectionRuntime::builder(store.clone(), read_models.clone())
        .register(Typed(projection))
        .unwrap()
        .start()
        .await
        .unwrap();
    let instance = InstanceId::new(INSTANCE).unwrap();
    let head = store
        .latest_position(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap()
        .unwrap();
    runtime
        .catch_up("customer_emails", &instance, head, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        email_row(&read_models, "c-1"),
        Some(SqlValue::from(format!("c-1.2.{EMAIL}")))
    );
    let other = Repository::new(store.clone())
        .with_vault(Vault::new(store.clone(), keyring.clone()).fresh_for(Duration::ZERO));
    // A vault that would keep its keys for an hour: only the store's erasure notice can make it
    // forget them.
    let patient = Repository::new(store.clone()).with_vault(
        Vault::new(store.clone(), keyring.clone()).fresh_for(Duration::from_secs(3600)),
    );
    assert!(matches!(
        email_of(&patient, "c-1").await,
        Some(Personal::Value(_))
    ));
    assert!(matches!(
        email_of(&other, "c-1").await,
        Some(Personal::Value(_))
    ));

    // Erase c-1.
    let erasure = vault.erase(INSTANCE, "c-1", &context()).await.unwrap();
    assert_eq!(erasure.keys_deleted, 1);
    let record = erasure.recorded.expect("the erasure is recorded");
    let parsed = ErasureRecord::from_event(&record).unwrap();
    assert_eq!(
        (parsed.subject_id.as_str(), parsed.erased_by.as_str()),
        ("c-1", "tester")
    );

    // Every read path: this process, another process, the snapshot, the projection.
    assert_eq!(email_of(&repository, "c-1").await, Some(Personal::Erased));
    assert_eq!(email_of(&other, "c-1").await, Some(Personal::Erased));
    let noticed = async {
        while email_of(&patient, "c-1").await != Some(Personal::Erased) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), noticed)
        .await
        .expect("a vault holding the keys forgets them on the store's erasure notice");
    let customer = repository.load::<Customer>(INSTANCE, "c-1").await.unwrap();
    assert_eq!(customer.state.name, Some(Personal::Erased));
    assert_eq!(
        customer.state.plan.as_deref(),
        Some("gold"),
        "what is not personal stays"
    );
    assert_eq!(customer.state.changes, 3, "the events are all still there");
    assert!(
        cache
            .get(crate::SnapshotIndex::Aggregate, &key)
            .await
            .is_none_or(|entry| !format!("{entry:?}").contains(EMAIL))
    );
    runtime
        .catch_up(
            "customer_emails",
            &instance,
            record.position,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        email_row(&read_models, "c-1"),
        Some(SqlValue::Null),
        "the hook masked the row"
    );
    assert_eq!(
        email_row(&read_models, "c-2"),
        Some(SqlValue::from(format!("c-2.2.{EMAIL}")))
    );
    // A rebuild writes the erased mark from the events themselves.
    runtime
        .rebuild("customer_emails", Some(&instance))
        .await
        .unwrap();
    let head = store
        .latest_position(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap()
        .unwrap();
    runtime
        .catch_up("customer_emails", &instance, head, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(email_row(&read_models, "c-1"), Some(SqlValue::Null));
    assert_eq!(
        email_row(&read_models, "c-2"),
        Some(SqlValue::from(format!("c-2.2.{EMAIL}")))
    );
    runtime.shutdown(Duration::from_secs(10)).await.unwrap();

    // c-2 is untouched; c-1's data can no longer be written; erasing again changes nothing.
    assert_eq!(
        email_of(&repository, "c-2").await,
        Some(Personal::Value(format!("c-2.2.{EMAIL}")))
    );
    let before = store
        .count(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap();
    let err = repository
        .execute::<Customer>(INSTANCE, "c-1", EMAIL.to_owned(), &context())
        .await
        .unwrap_err();
    assert_eq!(err.store_kind(), Some(ErrorKind::SubjectErased), "{err:?}");
    let again = vault.erase(INSTANCE, "c-1", &context()).await.unwrap();
    assert_eq!((again.keys_deleted, again.recorded.is_none()), (0, true));
    let after = store
        .count(&Query::builder().instance(INSTANCE).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "neither the refused push nor the second erasure stored anything"
    );
    let keys = store
        .subject_keys(&instance, &[SubjectId::new("c-1").unwrap()])
        .await
        .unwrap();
    assert!(keys[0].erased && keys[0].keys.is_empty());
}

/// A master key rotation rewraps every key while readers holding both keys read without a single
/// failure; afterwards the old master key is no longer needed.
pub async fn master_key_rotation_keeps_every_read<S>(store: &S)
where
    S: EventStore + SubjectKeyStore + Clone + 'static,
{
    let (old_ring, old) = new_keyring("old");
    let writer = Repository::new(store.clone()).with_vault(Vault::new(store.clone(), old_ring));
    for n in 0..40 {
        writer
            .execute::<Customer>(
                INSTANCE,
                &format!("c-{n}"),
                format!("{n}.{EMAIL}"),
                &context(),
            )
            .await
            .unwrap();
    }
    let (new, _) = MasterKey::generate("new").unwrap();
    let both = Keyring::new(new.clone()).with_previous(old.clone());
    let rotating = Vault::new(store.clone(), both.clone());
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in 0..4 {
        let repository = Repository::new(store.clone())
            .with_vault(Vault::new(store.clone(), both.clone()).fresh_for(Duration::ZERO));
        let (failures, reads, stop) = (failures.clone(), reads.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = reader;
            while !stop.load(Ordering::Relaxed) || reads.load(Ordering::Relaxed) < 40 {
                match repository
                    .load::<Customer>(INSTANCE, &format!("c-{}", n % 40))
                    .await
                {
                    Ok(loaded)
                        if loaded.state.email
                            == Some(Personal::Value(format!("{}.{EMAIL}", n % 40))) => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let rotation = rotating.rotate_master_key().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(rotation.rewrapped, 40);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no read failed during the rotation"
    );
    assert!(
        store
            .keys_not_wrapped_by("new", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The new key alone reads everything; rotating again has nothing to do.
    let only_new = Repository::new(store.clone())
        .with_vault(Vault::new(store.clone(), Keyring::new(new.clone())));
    assert_eq!(
        email_of(&only_new, "c-7").await,
        Some(Personal::Value(format!("7.{EMAIL}")))
    );
    assert_eq!(rotating.rotate_master_key().await.unwrap().rewrapped, 0);
    // The old key alone no longer does.
    let only_old =
        Repository::new(store.clone()).with_vault(Vault::new(store.clone(), Keyring::new(old)));
    assert!(only_old.load::<Customer>(INSTANCE, "c-7").await.is_err());

    // A subject key rotation: new data under version 2, old data still readable.
    let vault = Vault::new(store.clone(), Keyring::new(new));
    assert_eq!(vault.rotate_subject_key(INSTANCE, "c-7").await.unwrap(), 2);
    let repository = Repository::new(store.clone()).with_vault(vault);
    repository
        .execute::<Customer>(INSTANCE, "c-7", format!("v2.{EMAIL}"), &context())
        .await
        .unwrap();
    let events = store
        .query(
            &Query::builder()
                .instance(INSTANCE)
                .aggregate_ids(["c-7"])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let sealed = events[1].raw_payload.to_value()["email"]["strata.sealed"].clone();
    assert!(sealed.as_str().unwrap().starts_with("2:"), "{sealed}");
    let customer = repository.load::<Customer>(INSTANCE, "c-7").await.unwrap();
    assert_eq!(
        customer.state.email,
        Some(Personal::Value(format!("v2.{EMAIL}")))
    );
    assert_eq!(
        customer.state.name,
        Some(Personal::Value("Alice".to_owned()))
    );
}

/// The e-mails of customers, masked when a customer is erased.
struct Emails {
    vault: Vault,
}

impl TypedProjection for Emails {
    type Event = CustomerEvent;

    fn name(&self) -> &str {
        "customer_emails"
    }

    fn reduce(&self, event: &Envelope<CustomerEvent>) -> Result<Vec<Statement>, ReduceError> {
        let email = match &event.payload {
            CustomerEvent::Registered { email, .. } | CustomerEvent::EmailChanged { email } => {
                email
            }
            CustomerEvent::OrderPlaced { .. } => return Ok(Vec::new()),
        };
        let email = match email {
            Personal::Value(email) => SqlValue::from(email.as_str()),
            Personal::Erased => SqlValue::Null,
        };
        Ok(vec![Statement::upsert(
            "customer_emails",
            vec![
                ("instance_id", event.aggregate.instance_id.as_str().into()),
                ("id", event.aggregate.aggregate_id.as_str().into()),
            ],
            vec![("email", email)],
        )])
    }

    fn erased(&self, erasure: &ErasureRecord) -> Result<Vec<Statement>, ReduceError> {
        Ok(vec![Statement::upsert(
            "customer_emails",
            vec![
                ("instance_id", erasure.instance_id.as_str().into()),
                ("id", erasure.subject_id.as_str().into()),
            ],
            vec![("email", SqlValue::Null)],
        )])
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "customer_emails",
            vec![("instance_id", instance.as_str().into())],
        )]
    }

    fn vault(&self) -> Option<&Vault> {
        Some(&self.vault)
    }
}

fn email_row(read_models: &MemoryProjections, id: &str) -> Option<SqlValue> {
    read_models
        .rows("customer_emails")
        .into_iter()
        .find(|row| row.get("id") == Some(&SqlValue::from(id)))
        .and_then(|row| row.get("email").cloned())
}

/// The cache key of `id`'s snapshot (the format is private; find it by listing what was written).
async fn snapshot_key_of(cache: &Cache<crate::SnapshotEntry>, id: &str) -> String {
    let format = crate::snapshot::format_of::<Customer>();
    let key = format!("{format}|{INSTANCE}|customer|{id}");
    assert!(
        cache
            .get(crate::SnapshotIndex::Aggregate, &key)
            .await
            .is_some(),
        "a snapshot of {id}"
    );
    key
}

/// A typed subscription decodes each event through the repository's vault: personal fields in
/// the clear while the subject's keys exist, [`Personal::Erased`] once it was erased; event
/// types the enum does not list (the erasure record's) are passed over.
pub async fn typed_subscriptions_open_personal_data<S>(store: &S)
where
    S: EventStore + SubjectKeyStore + Clone + 'static,
{
    let (keyring, _) = new_keyring("m1");
    let vault = Vault::new(store.clone(), keyring);
    let repository = Repository::new(store.clone()).with_vault(vault.clone());
    let customers = Query::builder()
        .instance(INSTANCE)
        .aggregate_types(["customer"])
        .build()
        .unwrap();
    let mut live = repository
        .subscribe::<CustomerEvent>(&customers, strata_store::StartFrom::Beginning)
        .await
        .unwrap();
    for id in ["c-1", "c-2"] {
        repository
            .execute::<Customer>(INSTANCE, id, format!("{id}.{EMAIL}"), &context())
            .await
            .unwrap();
    }
    for id in ["c-1", "c-2"] {
        let envelope = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("delivered")
            .expect("live")
            .unwrap();
        assert_eq!(envelope.aggregate.aggregate_id.as_str(), id);
        let CustomerEvent::Registered { email, .. } = envelope.payload else {
            panic!("a registration");
        };
        assert_eq!(email, Personal::Value(format!("{id}.{EMAIL}")));
    }
    vault.erase(INSTANCE, "c-1", &context()).await.unwrap();
    let everything = Query::builder().instance(INSTANCE).build().unwrap();
    let mut replay = repository
        .subscribe::<CustomerEvent>(&everything, strata_store::StartFrom::Beginning)
        .await
        .unwrap();
    let mut emails = Vec::new();
    for _ in 0..2 {
        let envelope = tokio::time::timeout(Duration::from_secs(10), replay.next())
            .await
            .expect("delivered")
            .expect("live")
            .unwrap();
        if let CustomerEvent::Registered { email, .. } = envelope.payload {
            emails.push(email);
        }
    }
    assert_eq!(
        emails,
        [Personal::Erased, Personal::Value(format!("c-2.{EMAIL}"))]
    );
    // The erasure record is of another aggregate type: passed over, nothing more arrives.
    let more = tokio::time::timeout(Duration::from_millis(300), replay.next()).await;
    assert!(more.is_err(), "unexpected: {more:?}");
}
