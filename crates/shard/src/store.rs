//! `ShardedStore`: the shards, the directory, and the `EventStore` implementation that routes
//! each operation by instance.

use std::sync::{Arc, PoisonError, RwLock};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use strata_event::{AggregateRef, Command, Event, IdempotencyKey, InstanceId, Position, Sequence};
use strata_query::Query;
use strata_store::{
    Error, EventStore, Pushed, Result, StartFrom, SubscribeOptions, Subscription, validate_push,
};
use tokio::sync::broadcast;

use crate::directory::{Directory, Fallback, ShardName};
use crate::gate::{Frozen, Gates};
use crate::read::Scope;

/// One [`EventStore`] over several shards, each a complete store of its own, routing every
/// operation by instance through a [`Directory`]. See the crate docs for what crosses shards and
/// what is refused.
///
/// Cheap to clone: clones share the shards, the directory and the write gates.
#[derive(Debug)]
pub struct ShardedStore<S> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S> Clone for ShardedStore<S> {
    fn clone(&self) -> Self {
        ShardedStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner<S> {
    pub(crate) stores: Vec<S>,
    directory: RwLock<Directory>,
    pub(crate) gates: Gates,
}

impl<S: EventStore + Clone> ShardedStore<S> {
    /// A store over `shards` (at least one, names distinct), placing unassigned instances by
    /// `fallback`. The order of `shards` matters to [`Fallback::StableHash`]: keep it.
    pub fn new(shards: Vec<(ShardName, S)>, fallback: Fallback) -> Result<ShardedStore<S>> {
        let (names, stores): (Vec<ShardName>, Vec<S>) = shards.into_iter().unzip();
        let directory = Directory::new(names, fallback)?;
        Ok(ShardedStore {
            inner: Arc::new(Inner {
                stores,
                directory: RwLock::new(directory),
                gates: Gates::default(),
            }),
        })
    }

    /// A copy of the directory as it is now.
    pub fn directory(&self) -> Directory {
        self.read_directory(Directory::clone)
    }

    /// Every shard with its store, in the directory's order: run one projection runtime per
    /// shard store (see the crate docs).
    pub fn shards(&self) -> Vec<(ShardName, S)> {
        let names = self.read_directory(|directory| directory.shards().to_vec());
        names.into_iter().zip(self.inner.stores.clone()).collect()
    }

    /// The shard `instance` lives on now, with its store.
    pub fn shard_for(&self, instance: &InstanceId) -> Result<(ShardName, S)> {
        let index = self.place(instance)?;
        let name = self.shard_name(index);
        Ok((name, self.inner.stores[index].clone()))
    }

    /// Places `instance` on `shard`. Refuses ([`Error::InvalidInput`]) when the instance has
    /// events on the shard it lives on now and that is another one: its events would be hidden.
    /// Moving an instance with its events is `move_instance` (feature `postgres`). Pushes to the
    /// instance through this store wait while the check runs.
    pub async fn assign(&self, instance: InstanceId, shard: &ShardName) -> Result<()> {
        let target = self.read_directory(|directory| directory.index_of(shard))?;
        let _frozen: Frozen = self.inner.gates.freeze(&instance).await;
        // Under `Fallback::Refuse` an unassigned instance lives nowhere yet, so has no events.
        if let Ok(current) = self.place(&instance)
            && current != target
        {
            let only = Query::builder().instance(instance.as_str()).build()?;
            let count = self.inner.stores[current].count(&only).await?;
            if count > 0 {
                return Err(Error::invalid_input(format!(
                    "instance {instance} has {count} events on shard {}; move it instead of \
                     assigning it to shard {shard}",
                    self.shard_name(current)
                )));
            }
        }
        self.write_directory(|directory| directory.assign(instance, shard))
    }

    /// Replaces every explicit assignment with `assignments` (as a process reloads a persisted
    /// directory), all or none. Unlike [`ShardedStore::assign`] it checks no events: the list is
    /// trusted to be the directory other processes route by.
    pub fn load_assignments(&self, assignments: Vec<(InstanceId, ShardName)>) -> Result<()> {
        let mut fresh = self.read_directory(|directory| {
            Directory::new(directory.shards().to_vec(), directory.fallback())
        })?;
        for (instance, shard) in assignments {
            fresh.assign(instance, &shard)?;
        }
        self.write_directory(|directory| {
            *directory = fresh;
            Ok(())
        })
    }

    pub(crate) fn place(&self, instance: &InstanceId) -> Result<usize> {
        self.read_directory(|directory| directory.index_for(instance))
    }

    pub(crate) fn shard_name(&self, index: usize) -> ShardName {
        self.read_directory(|directory| directory.shards()[index].clone())
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.inner.stores.len()
    }

    fn read_directory<T>(&self, read: impl FnOnce(&Directory) -> T) -> T {
        // A panic elsewhere cannot leave a directory half-written: every write replaces a value
        // or inserts one entry, so a poisoned lock still holds a consistent directory.
        read(
            &self
                .inner
                .directory
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    pub(crate) fn write_directory<T>(
        &self,
        write: impl FnOnce(&mut Directory) -> Result<T>,
    ) -> Result<T> {
        write(
            &mut self
                .inner
                .directory
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The one shard a write to `instances` (sorted, distinct) goes to, or a refusal naming the
    /// shards when they differ: one push is one transaction, and a transaction has one server.
    fn route_write(&self, instances: &[InstanceId]) -> Result<usize> {
        let mut placed: Vec<(usize, &InstanceId)> = Vec::with_capacity(instances.len());
        for instance in instances {
            placed.push((self.place(instance)?, instance));
        }
        let Some(&(first, _)) = placed.first() else {
            return Err(Error::invalid_input("a write names no instance"));
        };
        if placed.iter().all(|(shard, _)| *shard == first) {
            return Ok(first);
        }
        let described: Vec<String> = placed
            .iter()
            .map(|(shard, instance)| format!("{instance} on shard {}", self.shard_name(*shard)))
            .collect();
        Err(Error::invalid_input(format!(
            "a push cannot be atomic across shards, and nothing was written: it touches {}; \
             push to each shard separately",
            described.join(", ")
        )))
    }

    /// Pushes `commands` (with `key`'s instance, if any) on their one shard, inside their
    /// instances' gates.
    async fn routed_push(
        &self,
        key: Option<&IdempotencyKey>,
        commands: Vec<Command>,
    ) -> Result<Vec<Event>> {
        validate_push(&commands)?;
        let mut instances: Vec<InstanceId> = commands
            .iter()
            .map(|command| command.aggregate().instance_id.clone())
            .chain(key.map(|key| key.instance_id().clone()))
            .collect();
        if instances.is_empty() {
            // An empty push without a key stores nothing anywhere.
            return Ok(Vec::new());
        }
        instances.sort();
        instances.dedup();
        // Routed inside the gates, so a push that waited for a move goes to the new shard.
        let _entered = self.inner.gates.enter(&instances).await;
        let index = self.route_write(&instances)?;
        let shard = &self.inner.stores[index];
        let pushed = match key {
            Some(key) => shard.push_idempotent(key, commands).await,
            None => shard.push(commands).await,
        };
        if let Err(Error::InstanceMoved { instance_id, to }) = &pushed {
            // This store routed by a directory older than a move another process made: the
            // caller reloads it (`persisted::reload`) and pushes again. Not retried here, which
            // would need a copy of every push's commands for a rare case.
            tracing::warn!(
                instance = %instance_id, shard = %self.shard_name(index), moved_to = %to,
                "a push went to the shard an instance moved away from; reload the directory"
            );
        }
        pushed
    }
}

impl<S: EventStore + Clone + 'static> EventStore for ShardedStore<S> {
    /// Pushed on the shard the directory places the instances on. A shard the instance moved
    /// away from (a move by another process this directory has not heard of) refuses it with
    /// [`Error::InstanceMoved`], writing nothing: reload the directory and push again.
    async fn push(&self, commands: Vec<Command>) -> Result<Vec<Event>> {
        self.routed_push(None, commands).await
    }

    /// The key is recorded on the shard of its instance, in the push's transaction, so the
    /// commands must live on that shard too (otherwise refused, nothing written).
    async fn push_idempotent(
        &self,
        key: &IdempotencyKey,
        commands: Vec<Command>,
    ) -> Result<Vec<Event>> {
        self.routed_push(Some(key), commands).await
    }

    async fn recorded_push(&self, key: &IdempotencyKey) -> Result<Option<Vec<Event>>> {
        let shard = self.place(key.instance_id())?;
        self.inner.stores[shard].recorded_push(key).await
    }

    fn stream<'a>(&'a self, query: &'a Query) -> BoxStream<'a, Result<Event>> {
        self.scope(query)
            .map(move |scope| match scope {
                Ok(Scope::One(shard)) => self.inner.stores[shard].stream(query),
                Ok(Scope::Confined(shard, instances)) => self.confined(query, shard, instances),
                Ok(Scope::Spanning(groups)) => self.merged(query, groups),
                Err(err) => futures::stream::once(async move { Err(err) }).boxed(),
            })
            .flatten_stream()
            .boxed()
    }

    async fn latest_position(&self, query: &Query) -> Result<Option<Position>> {
        match self.scope(query).await? {
            Scope::One(shard) => self.inner.stores[shard].latest_position(query).await,
            Scope::Confined(shard, instances) => {
                let own = query.for_instances(instances)?;
                self.inner.stores[shard].latest_position(&own).await
            }
            Scope::Spanning(groups) => self.latest_across(query, groups).await,
        }
    }

    async fn instance_ids(&self, query: &Query) -> Result<Vec<InstanceId>> {
        match self.scope(query).await? {
            Scope::One(shard) => self.inner.stores[shard].instance_ids(query).await,
            // The scope listed the instances without the query's position bounds: ask again.
            Scope::Confined(shard, instances) => {
                let own = query.for_instances(instances)?;
                self.inner.stores[shard].instance_ids(&own).await
            }
            Scope::Spanning(groups) => {
                let mut all = Vec::new();
                for (shard, instances) in groups {
                    let own = query.for_instances(instances)?;
                    all.extend(self.inner.stores[shard].instance_ids(&own).await?);
                }
                all.sort();
                Ok(all)
            }
        }
    }

    async fn instance_heads(&self) -> Result<Vec<(InstanceId, Position)>> {
        if self.shard_count() == 1 {
            return self.inner.stores[0].instance_heads().await;
        }
        let mut heads = Vec::new();
        for (shard, store) in self.inner.stores.iter().enumerate() {
            for (instance, head) in store.instance_heads().await? {
                // A copy left behind by a move (or one a move is still writing) is not the
                // instance: only the shard the directory names answers for it.
                if self.place(&instance).ok() == Some(shard) {
                    heads.push((instance, head));
                }
            }
        }
        heads.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(heads)
    }

    async fn count(&self, query: &Query) -> Result<u64> {
        match self.scope(query).await? {
            Scope::One(shard) => self.inner.stores[shard].count(query).await,
            Scope::Confined(shard, instances) => {
                let own = query.for_instances(instances)?;
                self.inner.stores[shard].count(&own).await
            }
            Scope::Spanning(groups) => {
                let mut total = 0;
                for (shard, instances) in groups {
                    let own = query.for_instances(instances)?;
                    total += self.inner.stores[shard].count(&own).await?;
                }
                Ok(total)
            }
        }
    }

    /// One shard's notices when there is one shard; `None` otherwise (positions of several
    /// servers in one channel would read as comparable). Runtimes run per shard store anyway.
    fn subscribe_pushes(&self) -> Option<broadcast::Receiver<Pushed>> {
        match self.inner.stores.as_slice() {
            [only] => only.subscribe_pushes(),
            _ => None,
        }
    }

    /// Subscribes on the one shard the query's instances live on; a query spanning shards is
    /// refused, since a subscription follows one server's commit horizon.
    async fn subscribe_with(
        &self,
        query: &Query,
        from: StartFrom,
        options: SubscribeOptions,
    ) -> Result<Subscription>
    where
        Self: Clone + Sized + 'static,
    {
        // By placement, not by the events there now: a subscription follows instances that
        // may get their first events later, so it must see every shard it could ever read.
        match self.placed_on_one(query)? {
            Some(shard) => {
                self.inner.stores[shard]
                    .subscribe_with(query, from, options)
                    .await
            }
            None => Err(Error::invalid_input(
                "a subscription cannot span shards, whose commit horizons differ: subscribe \
                 per shard (ShardedStore::shards) or per instance",
            )),
        }
    }

    async fn current_sequence(&self, aggregate: &AggregateRef) -> Result<Sequence> {
        let shard = self.place(&aggregate.instance_id)?;
        self.inner.stores[shard].current_sequence(aggregate).await
    }

    /// The one shard's horizon; refused with several shards: each server has its own, and no one
    /// position bounds them all (ask a shard's store, [`ShardedStore::shard_for`]).
    async fn commit_horizon(&self) -> Result<Position> {
        match self.inner.stores.as_slice() {
            [only] => only.commit_horizon().await,
            _ => Err(Error::invalid_input(
                "a sharded store has one commit horizon per shard: ask the store of the \
                 instance's shard (ShardedStore::shard_for)",
            )),
        }
    }
}
