//! Moving an instance between PostgreSQL shards online: copy, catch up, freeze the instance's
//! writes briefly (in this process, and on the source for every process), catch up a last time,
//! verify, switch the directory, release the writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use strata_event::{AggregateRef, Cursor, Event, InstanceId, Sequence};
use strata_postgres::PgStore;
use strata_postgres::mirror::{self, MirrorKey};
use strata_postgres::moved_instances;
use strata_query::Query;
use strata_store::{Error, EventStore, Result};

use crate::directory::ShardName;
use crate::store::ShardedStore;

/// How [`ShardedStore::move_instance`] copies.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// Events per copied batch (one destination transaction each). By default, 1 000.
    pub batch: u32,
    /// Catch-up rounds before the freeze stop once a round copies at most this many events, so
    /// the final round, run while the instance's writes wait, is short. By default, 100.
    pub freeze_below: u64,
    /// At most this many catch-up rounds before freezing anyway (writers faster than the copy
    /// would otherwise keep it from ever freezing). By default, 20.
    pub max_rounds: u32,
    /// The designated database of a persisted directory ([`crate::persisted`]): the new
    /// assignment is written there before this process switches, and the move fails, switching
    /// nothing, if it cannot be. By default, none.
    pub directory: Option<PgStore>,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            batch: 1_000,
            freeze_below: 100,
            max_rounds: 20,
            directory: None,
        }
    }
}

/// What a completed move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The shard the instance left. Its copy there is left in place (see
    /// [`ShardedStore::move_instance`]).
    pub from: ShardName,
    /// The shard it lives on now.
    pub to: ShardName,
    /// Events the destination holds for it, all verified.
    pub events: u64,
    /// Aggregates verified (each gap-free, with equal digests on both sides).
    pub aggregates: u64,
    /// How long pushes to the instance waited.
    pub frozen_for: Duration,
}

impl ShardedStore<PgStore> {
    /// Moves `instance` with its events, unique constraints and personal-data keys to the shard
    /// `to`, while it keeps taking writes:
    ///
    /// 1. copies its events with the mirror's copy (original sequences, idempotent, resumable)
    ///    below the source's commit horizon, in rounds, until a round copies few events;
    /// 2. freezes the instance: pushes to it through this store wait (pushes to every other
    ///    instance go on), once those already running have finished; then it marks the instance
    ///    as moving on the source (`strata_postgres::moved_instances`), which waits for every
    ///    process's running pushes to it and from then on refuses them
    ///    ([`Error::InstanceMoved`]);
    /// 3. copies what remains, then its unique constraints and personal-data keys;
    /// 4. verifies every aggregate: gap-free on the destination, and the same count, last
    ///    sequence and digest of its events on both sides;
    /// 5. switches the directory ([`MoveOptions::directory`] first, then this store), marks the
    ///    instance as moved on the source (still refused there, naming the new shard) and lets
    ///    the waiting pushes go, to the new shard.
    ///
    /// A failure before the switch leaves the instance where it was, taking pushes again (its
    /// partial copy on the destination is never read, and a later move resumes it). The source
    /// keeps its copy: remove it with `PgStore::remove_instance` once every process routes by
    /// the new directory; the mark stays, so a process that still routes there is refused.
    ///
    /// Every process's pushes to the instance are either on the destination or refused: a
    /// process with a stale directory gets [`Error::InstanceMoved`] from the old shard, reloads
    /// its directory ([`crate::persisted::reload`]) and pushes again. The move needs the rights to
    /// write the source's `eventstore.moved_instances` and the destination's events (the
    /// migrator's role).
    pub async fn move_instance(
        &self,
        instance: &InstanceId,
        to: &ShardName,
        options: MoveOptions,
    ) -> Result<Moved> {
        if options.batch == 0 {
            return Err(Error::invalid_input(
                "a move copies batches of at least one event",
            ));
        }
        let target = self.directory().index_of(to)?;
        let source_index = self.place(instance)?;
        if source_index == target {
            return Err(Error::invalid_input(format!(
                "instance {instance} already lives on shard {to}"
            )));
        }
        let from = self.shard_name(source_index);
        // Every read of the move on the primaries: a standby could be behind the source's last
        // pushes, and the copy and its verification would agree on missing them.
        let (source, destination) = (
            &self.inner.stores[source_index].on_primary(),
            &self.inner.stores[target].on_primary(),
        );
        if moved_instances::has_archived_events(source, instance).await? {
            return Err(Error::invalid_input(format!(
                "instance {instance} has archived events on shard {from}, and a move copies the \
                 hot table only: restore them (`strata archive restore`) before moving it"
            )));
        }
        let key = MirrorKey {
            source: format!("shard:{from}"),
            instances: instance.to_string(),
        };
        let mut cursor = mirror::progress(destination, &key)
            .await?
            .map(|progress| progress.cursor);
        for _ in 0..options.max_rounds {
            let copied =
                copy_round(source, destination, &key, instance, &mut cursor, &options).await?;
            if copied <= options.freeze_below {
                break;
            }
        }

        // This process's pushes wait at the gate; every other process's are refused by the source
        // from the mark on, and those that passed its check before have committed.
        let frozen = self.inner.gates.freeze(instance).await;
        // Another move of this process may have moved it while this one copied.
        if self.place(instance)? != source_index {
            drop(frozen);
            return Err(Error::invalid_input(format!(
                "instance {instance} moved away from shard {from} during this move"
            )));
        }
        let frozen_at = Instant::now();
        let leg = Leg {
            instance,
            to,
            source,
            destination,
            key: &key,
        };
        // A freeze that failed may still have committed (a connection lost at the commit), so
        // its failure is unfrozen like any later one.
        let finished = match moved_instances::freeze(source, instance, to.as_str()).await {
            Ok(()) => self.finish_move(&leg, &mut cursor, &options).await,
            Err(err) => Err(err),
        };
        let verified = match finished {
            Ok(verified) => verified,
            Err(err) => {
                // Nothing switched: the source takes the instance's pushes again.
                if let Err(unfreezing) = moved_instances::unfreeze(source, instance).await {
                    tracing::error!(
                        instance = %instance, from = %from, error = %unfreezing,
                        "a failed move could not unfreeze the instance on its source, which \
                         refuses its pushes until eventstore.moved_instances loses the row"
                    );
                }
                return Err(err);
            }
        };
        if let Err(err) = moved_instances::settle(source, instance).await {
            // The row still says 'moving', which refuses pushes just the same.
            tracing::warn!(instance = %instance, error = %err, "could not mark a move as settled");
        }
        drop(frozen);
        let frozen_for = frozen_at.elapsed();
        tracing::info!(
            instance = %instance, from = %from, to = %to, events = verified.events,
            frozen_ms = frozen_for.as_millis() as u64, "moved an instance between shards"
        );
        Ok(Moved {
            from,
            to: to.clone(),
            events: verified.events,
            aggregates: verified.aggregates,
            frozen_for,
        })
    }
}

/// What a move works on, once placed.
#[derive(Clone, Copy)]
struct Leg<'a> {
    instance: &'a InstanceId,
    to: &'a ShardName,
    source: &'a PgStore,
    destination: &'a PgStore,
    key: &'a MirrorKey,
}

impl ShardedStore<PgStore> {
    /// The part of a move after the freeze: the last catch-up, unique constraints and keys, the
    /// verification, and the switch. An error switches nothing.
    async fn finish_move(
        &self,
        leg: &Leg<'_>,
        cursor: &mut Option<Cursor>,
        options: &MoveOptions,
    ) -> Result<Verified> {
        let Leg {
            instance,
            to,
            source,
            destination,
            key,
        } = *leg;
        copy_round(source, destination, key, instance, cursor, options).await?;
        let scope = [instance.clone()];
        let constraints = mirror::unique_constraints(source, Some(&scope)).await?;
        mirror::replace_unique_constraints(destination, &scope, &constraints).await?;
        let keys = mirror::subject_key_rows(source, Some(&scope)).await?;
        mirror::replace_subject_keys(destination, &scope, &keys).await?;
        let verified = verify(source, destination, instance).await?;
        // An instance moving back to where it once lived must not be refused there.
        moved_instances::welcome(destination, instance).await?;
        if let Some(directory) = &options.directory {
            strata_postgres::shard_directory::save(directory, instance, to.as_str()).await?;
        }
        self.write_directory(|directory| directory.assign(instance.clone(), to))?;
        Ok(verified)
    }
}

/// Copies the instance's events below the source's commit horizon after `cursor`, batch by
/// batch, moving `cursor` on. Returns how many events the destination did not have yet.
async fn copy_round(
    source: &PgStore,
    destination: &PgStore,
    key: &MirrorKey,
    instance: &InstanceId,
    cursor: &mut Option<Cursor>,
    options: &MoveOptions,
) -> Result<u64> {
    // Below the horizon, no event can commit later with a lower position, so the cursor never
    // passes one the copy would then miss.
    let horizon = source.commit_horizon().await?;
    let mut inserted = 0;
    loop {
        let mut page = Query::builder()
            .instance(instance.as_str())
            .position_before(horizon)
            .limit(options.batch);
        if let Some(cursor) = cursor {
            page = page.resume_after(*cursor);
        }
        let events = source.query(&page.build()?).await?;
        let Some(last) = events.last() else {
            return Ok(inserted);
        };
        *cursor = Some(last.cursor());
        inserted += mirror::copy_batch(destination, key, &events, &[]).await?;
    }
}

/// What [`verify`] checked.
struct Verified {
    events: u64,
    aggregates: u64,
}

/// One aggregate's events as seen on one side.
#[derive(Default)]
struct AggregateDigest {
    count: u64,
    last: Sequence,
    gap_free: bool,
    digest: [u8; 32],
    hasher: Sha256,
}

impl std::fmt::Debug for AggregateDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} events up to {}", self.count, self.last)
    }
}

/// Compares every aggregate of `instance` on both sides: the same events (count, last sequence,
/// a digest of every field the copy keeps), and gap-free sequences on the destination.
async fn verify(
    source: &PgStore,
    destination: &PgStore,
    instance: &InstanceId,
) -> Result<Verified> {
    let mine = Query::builder().instance(instance.as_str()).build()?;
    let before = digests(source, &mine).await?;
    let after = digests(destination, &mine).await?;
    let mut differing: Vec<String> = Vec::new();
    for (aggregate, digest) in &after {
        if !digest.gap_free {
            differing.push(format!("{aggregate} has a gap on the destination"));
        }
    }
    for aggregate in before.keys().chain(after.keys()) {
        let same = match (before.get(aggregate), after.get(aggregate)) {
            (Some(a), Some(b)) => a.count == b.count && a.last == b.last && a.digest == b.digest,
            _ => false,
        };
        if !same && differing.len() < 10 {
            differing.push(format!(
                "{aggregate}: {:?} on the source, {:?} on the destination",
                before.get(aggregate),
                after.get(aggregate)
            ));
        }
    }
    if !differing.is_empty() {
        return Err(Error::Backend {
            message: format!(
                "the copy of instance {instance} differs from its source, so it was not \
                 switched: {}",
                differing.join("; ")
            ),
            source: None,
        });
    }
    Ok(Verified {
        events: after.values().map(|digest| digest.count).sum(),
        aggregates: after.len() as u64,
    })
}

/// Each aggregate's digest over `query`'s events, read in position order, which on both sides
/// is each aggregate's sequence order.
async fn digests(
    store: &PgStore,
    query: &Query,
) -> Result<BTreeMap<AggregateRef, AggregateDigest>> {
    let mut digests: BTreeMap<AggregateRef, AggregateDigest> = BTreeMap::new();
    let mut events = store.stream(query);
    while let Some(event) = events.try_next().await? {
        let entry = digests
            .entry(event.aggregate.clone())
            .or_insert_with(|| AggregateDigest {
                gap_free: true,
                ..AggregateDigest::default()
            });
        entry.gap_free &= event.sequence == entry.last + 1;
        entry.count += 1;
        entry.last = event.sequence;
        feed(&mut entry.hasher, &event);
    }
    for digest in digests.values_mut() {
        digest.digest = std::mem::take(&mut digest.hasher).finalize().into();
    }
    Ok(digests)
}

/// Every field the copy keeps, each followed by a separator no field holds unescaped.
fn feed(hasher: &mut Sha256, event: &Event) {
    let metadata = format!("{:?}", event.metadata);
    let created_at = event.created_at.timestamp_micros().to_string();
    for field in [
        event.sequence.to_string().as_str(),
        event.event_type.as_str(),
        event.revision.to_string().as_str(),
        created_at.as_str(),
        event.creator.as_str(),
        event.owner.as_str(),
        event.raw_payload.json().unwrap_or(""),
        metadata.as_str(),
    ] {
        hasher.update(field.len().to_be_bytes());
        hasher.update(field.as_bytes());
    }
}
