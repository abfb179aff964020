//! W1-encrypted and R1-encrypted: pushes and typed reads of events with one personal field,
//! sealed per subject through a `Vault`, beside the same work in the clear from the same run.
//!
//! - `W1-encrypted` (C = 8): W1's push of one event to one of 10 000 aggregates, as a typed event
//!   whose `email` is personal data of the aggregate (its subject), sealed with the subject's key.
//!   Every subject has its key before the run (a service's users exist before they change), so
//!   the row measures sealing, not key creation. Rounds alternate with plain W1 (the
//!   `strata-plain` reference row) so the ratio does not depend on which side met a slower disk.
//! - `R1-encrypted` (C = 1): R1-typed's load of a 1 000-event aggregate whose events each carry
//!   one sealed field, opened through the vault (its keys fetched once per `fresh_for`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use strata_domain::{
    Aggregate, Context, DomainEvent, Envelope, EventSpec, Keyring, MasterKey, Personal, Repository,
    Vault,
};
use strata_postgres::PgStore;
use strata_store::EventStore;

use crate::perf::runner::{Operation, Timing, run};
use crate::perf::stats::{Row, Samples};
use crate::perf::writes::{self, AGGREGATES, w1_pick};

/// The aggregate R1-encrypted loads.
const R1_ENCRYPTED: &str = "r1-encrypted";

/// W1's payload with its e-mail as personal data.
#[derive(Debug, Serialize, Deserialize)]
enum SealedUserEvent {
    #[serde(rename = "user.changed")]
    Changed(SealedChange),
}

#[derive(Debug, Serialize, Deserialize)]
struct SealedChange {
    user_id: String,
    email: Personal<String>,
    display_name: String,
    locale: String,
    flags: Vec<String>,
    plan: String,
    counter: u64,
}

impl DomainEvent for SealedUserEvent {
    const AGGREGATE_TYPE: &'static str = "user";
    const EVENTS: &'static [EventSpec] = &[EventSpec::new("user.changed").personal(&["email"])];
}

fn change(n: u64) -> SealedUserEvent {
    SealedUserEvent::Changed(SealedChange {
        user_id: format!("user-{n:08}"),
        email: Personal::Value(format!("someone-{n}@example.com")),
        display_name: "A reasonably ordinary display name".to_owned(),
        locale: "en-GB".to_owned(),
        flags: vec!["verified".to_owned(), "mfa".to_owned()],
        plan: "pro".to_owned(),
        counter: n,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SealedUser {
    email: Option<Personal<String>>,
    display_name: String,
    changes: u64,
}

impl Aggregate for SealedUser {
    type Event = SealedUserEvent;
    type Command = ();
    type Error = std::convert::Infallible;

    fn handle(&self, (): ()) -> Result<Vec<SealedUserEvent>, Self::Error> {
        Ok(Vec::new())
    }

    fn apply(&mut self, event: Envelope<SealedUserEvent>) {
        let SealedUserEvent::Changed(change) = event.payload;
        self.email = Some(change.email);
        self.display_name = change.display_name;
        self.changes += 1;
    }
}

/// A vault with the bench's fixed master key: the loading and the measuring vaults share it.
fn vault(store: &PgStore) -> Result<Vault> {
    let master = MasterKey::new("bench", &[7u8; 32])?;
    Ok(Vault::new(store.clone(), Keyring::new(master)))
}

fn context() -> Context {
    Context::new("bench", "org")
}

fn encrypted_push(store: &PgStore, vault: &Vault) -> Operation {
    let (store, vault) = (store.clone(), vault.clone());
    Arc::new(move |task, iteration| {
        let (store, vault) = (store.clone(), vault.clone());
        async move {
            let (aggregate_id, _) = w1_pick(task, iteration);
            let command = vault
                .command(&change(iteration), "bench", &aggregate_id, &context())
                .await?;
            Ok(store.push(vec![command]).await?.len() as u64)
        }
        .boxed()
    })
}

/// W1-encrypted and its plain reference, in rounds alternating with W1.
pub(crate) async fn run_w1_encrypted(
    store: &PgStore,
    timing: Timing,
    rounds: u32,
) -> Result<Vec<Row>> {
    let vault = vault(store)?;
    // Every subject gets its key first, as existing users have theirs.
    for slot in 0..AGGREGATES {
        let command = vault
            .command(&change(slot), "bench", &format!("agg-{slot}"), &context())
            .await?;
        drop(command);
    }
    let round = Timing {
        warmup: timing.warmup / 2,
        measure: timing.measure / rounds,
    };
    let (mut sealed, mut plain) = (Samples::default(), Samples::default());
    let (mut sealed_time, mut plain_time) = (Duration::ZERO, Duration::ZERO);
    for n in 0..rounds {
        for sealed_side in [n % 2 == 0, n % 2 != 0] {
            if sealed_side {
                let (samples, took) = run(8, round, encrypted_push(store, &vault)).await;
                sealed.merge(samples);
                sealed_time += took;
            } else {
                let (samples, took) = writes::w1_samples(store, 8, round).await;
                plain.merge(samples);
                plain_time += took;
            }
        }
    }
    Ok(vec![
        sealed.events_row("strata", "W1-encrypted", 8, sealed_time),
        plain.events_row("strata-plain", "W1-encrypted", 8, plain_time),
    ])
}

/// Adds R1-encrypted's aggregate: 1 000 events with a sealed e-mail each.
pub(crate) async fn load(store: &PgStore) -> Result<()> {
    let vault = vault(store)?;
    for push in 0..10u64 {
        let mut commands = Vec::with_capacity(100);
        for i in 0..100u64 {
            commands.push(
                vault
                    .command(&change(push * 100 + i), "bench", R1_ENCRYPTED, &context())
                    .await?,
            );
        }
        store.push(commands).await?;
    }
    Ok(())
}

/// R1-encrypted: the typed load of the 1 000 sealed events; and, as a second reference, the
/// untyped query of the same events (what fetching the larger sealed payloads costs alone).
pub(crate) async fn run_r1_encrypted(store: &PgStore, timing: Timing) -> Result<Vec<Row>> {
    let untyped: Operation = {
        let store = store.clone();
        let query = Arc::new(strata_query::Query::aggregate(
            &strata_event::AggregateRef::new("bench", "user", R1_ENCRYPTED)?,
        ));
        Arc::new(move |_, _| {
            let (store, query) = (store.clone(), Arc::clone(&query));
            async move { Ok(store.query(&query).await?.len() as u64) }.boxed()
        })
    };
    let (samples, elapsed) = run(1, timing, untyped).await;
    let untyped = samples.events_row("strata-untyped", "R1-encrypted", 1, elapsed);
    let repository = Repository::new(store.clone()).with_vault(vault(store)?);
    let operation: Operation = Arc::new(move |_, _| {
        let repository = repository.clone();
        async move {
            let loaded = repository.load::<SealedUser>("bench", R1_ENCRYPTED).await?;
            Ok(loaded.state.changes.max(loaded.sequence()))
        }
        .boxed()
    });
    let (samples, elapsed) = run(1, timing, operation).await;
    Ok(vec![
        samples.events_row("strata", "R1-encrypted", 1, elapsed),
        untyped,
    ])
}
