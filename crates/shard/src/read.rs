//! Reads over shards: which shards a query touches, and how a read spanning several is merged
//! (instance by instance, in id order) or refused (anything that compares positions).

use std::collections::{BTreeMap, VecDeque};

use futures::StreamExt;
use futures::stream::BoxStream;
use strata_event::{Cursor, Event, InstanceId, Position};
use strata_query::{Order, Query};
use strata_store::{Error, EventStore, Result};

use crate::store::ShardedStore;

/// How many events a merged read fetches from one instance at a time.
const PAGE: u64 = 1_000;

/// The shards a query reads.
pub(crate) enum Scope {
    /// Every instance it names lives on this shard: the shard answers it as it is.
    One(usize),
    /// Only these instances (sorted), all on this shard, hold events it selects: the shard
    /// answers it confined to them, so it never reads a copy a move left on another shard.
    Confined(usize, Vec<InstanceId>),
    /// The instances holding events it selects live on several shards: each such shard with its
    /// instances, sorted, in shard order. Empty when nothing matches anywhere.
    Spanning(Vec<(usize, Vec<InstanceId>)>),
}

impl<S: EventStore + Clone> ShardedStore<S> {
    /// The one shard the directory places every instance `query` can read on, if there is one:
    /// a query naming instances of one shard, or any query when there is one shard.
    pub(crate) fn placed_on_one(&self, query: &Query) -> Result<Option<usize>> {
        if query.spans_all_instances() {
            return Ok((self.shard_count() == 1).then_some(0));
        }
        let mut shards = query.instance_ids().iter().map(|i| self.place(i));
        let Some(first) = shards.next().transpose()? else {
            return Ok(None);
        };
        for shard in shards {
            if shard? != first {
                return Ok(None);
            }
        }
        Ok(Some(first))
    }

    /// Where `query` reads. A query whose instances the directory places on one shard is that
    /// shard's. Otherwise each shard is asked which of its instances hold events the query
    /// selects *wherever positions are* (an instance counts only on the shard the directory
    /// places it on, so a copy a move left behind, or one it is still writing, is never read),
    /// and the read is confined to one shard when only one holds any: it is then answered
    /// exactly as a single store answers it, its cursor and position bounds read as positions of
    /// that shard (the only one the caller can have had them from, reading this query). A query
    /// with a cursor or a position bound whose events lie on several shards is refused.
    pub(crate) async fn scope(&self, query: &Query) -> Result<Scope> {
        if let Some(shard) = self.placed_on_one(query)? {
            return Ok(Scope::One(shard));
        }
        let mut groups = Vec::new();
        let anywhere = query.without_positions();
        if query.spans_all_instances() {
            for (shard, store) in self.inner.stores.iter().enumerate() {
                let mut own = store.instance_ids(&anywhere).await?;
                own.retain(|instance| self.place(instance).ok() == Some(shard));
                groups.push((shard, own));
            }
        } else {
            let mut by_shard: BTreeMap<usize, Vec<InstanceId>> = BTreeMap::new();
            for instance in query.instance_ids() {
                by_shard
                    .entry(self.place(instance)?)
                    .or_default()
                    .push(instance.clone());
            }
            for (shard, named) in by_shard {
                let own = anywhere.for_instances(named)?;
                groups.push((shard, self.inner.stores[shard].instance_ids(&own).await?));
            }
        }
        groups.retain(|(_, instances)| !instances.is_empty());
        if groups.len() == 1 {
            let (shard, instances) = groups.remove(0);
            return Ok(Scope::Confined(shard, instances));
        }
        let compares_positions = query.resume_after().is_some()
            || query.position_after().is_some()
            || query.position_before().is_some()
            || query.position_at_or_before().is_some();
        if compares_positions && !groups.is_empty() {
            return Err(self.spanning_refusal("a cursor or position bound", &groups));
        }
        Ok(Scope::Spanning(groups))
    }

    /// The refusal of `what` for a query spanning `groups`, naming the shards.
    pub(crate) fn spanning_refusal(
        &self,
        what: &str,
        groups: &[(usize, Vec<InstanceId>)],
    ) -> Error {
        let described: Vec<String> = groups
            .iter()
            .map(|(shard, instances)| {
                let names: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
                format!("shard {} ({})", self.shard_name(*shard), names.join(", "))
            })
            .collect();
        Error::invalid_input(format!(
            "{what} cannot span shards, whose positions are not comparable: the query reads {}; \
             ask per shard or per instance",
            described.join(" and ")
        ))
    }

    /// `latest_position` over several shards: the one shard holding matching events answers;
    /// when several do, there is no "highest" position among them, and the call is refused.
    pub(crate) async fn latest_across(
        &self,
        query: &Query,
        groups: Vec<(usize, Vec<InstanceId>)>,
    ) -> Result<Option<Position>> {
        let mut found: Vec<(usize, Vec<InstanceId>, Position)> = Vec::new();
        for (shard, instances) in groups {
            let own = query.for_instances(instances.clone())?;
            if let Some(position) = self.inner.stores[shard].latest_position(&own).await? {
                found.push((shard, instances, position));
            }
        }
        match found.as_slice() {
            [] => Ok(None),
            [(_, _, position)] => Ok(Some(*position)),
            _ => {
                let groups: Vec<(usize, Vec<InstanceId>)> = found
                    .into_iter()
                    .map(|(shard, instances, _)| (shard, instances))
                    .collect();
                Err(self
                    .spanning_refusal("the latest position of events on several shards", &groups))
            }
        }
    }

    /// A read confined to `instances` of one shard: the shard's order, cursors and bounds,
    /// read page by page (the confined query is a value of this call, which a stream borrowed
    /// from the shard could not outlive).
    pub(crate) fn confined<'a>(
        &'a self,
        query: &'a Query,
        shard: usize,
        instances: Vec<InstanceId>,
    ) -> BoxStream<'a, Result<Event>> {
        match query.for_instances(instances) {
            Ok(own) => self.paged(query, vec![(own, shard)]),
            Err(err) => futures::stream::once(async move { Err(err.into()) }).boxed(),
        }
    }

    /// A read spanning shards: each instance's events in its own `(position, in_tx_order)`
    /// order, instances in id order (both reversed when descending), the caller's offset and
    /// limit counted over that sequence. ([`ShardedStore::scope`] refused cursors and position
    /// bounds: they compare positions.)
    pub(crate) fn merged<'a>(
        &'a self,
        query: &'a Query,
        groups: Vec<(usize, Vec<InstanceId>)>,
    ) -> BoxStream<'a, Result<Event>> {
        let mut instances: Vec<(InstanceId, usize)> = groups
            .into_iter()
            .flat_map(|(shard, instances)| instances.into_iter().map(move |i| (i, shard)))
            .collect();
        instances.sort();
        if query.order() == Order::Descending {
            instances.reverse();
        }
        let parts: Result<Vec<(Query, usize)>> = instances
            .into_iter()
            .map(|(instance, shard)| Ok((query.for_instances(vec![instance])?, shard)))
            .collect();
        match parts {
            Ok(parts) => self.paged(query, parts),
            Err(err) => futures::stream::once(async move { Err(err) }).boxed(),
        }
    }

    /// Reads `parts` (queries with their shard) one after the other, each page by page by
    /// cursor on its own shard, with `query`'s offset and limit counted over them all.
    fn paged<'a>(
        &'a self,
        query: &'a Query,
        parts: Vec<(Query, usize)>,
    ) -> BoxStream<'a, Result<Event>> {
        let state = Merge {
            parts: parts.into(),
            cursor: None,
            buffer: VecDeque::new(),
            to_skip: query.offset(),
            left: query.limit(),
        };
        futures::stream::try_unfold(state, move |mut state| async move {
            let event = self.next_merged(&mut state).await?;
            Ok(event.map(|event| (event, state)))
        })
        .boxed()
    }

    async fn next_merged(&self, state: &mut Merge) -> Result<Option<Event>> {
        loop {
            if state.left == Some(0) {
                return Ok(None);
            }
            if let Some(event) = state.buffer.pop_front() {
                if state.to_skip > 0 {
                    state.to_skip -= 1;
                    continue;
                }
                state.left = state.left.map(|left| left - 1);
                return Ok(Some(event));
            }
            let Some((part, shard)) = state.parts.front() else {
                return Ok(None);
            };
            // Each part is paged by cursor on its own shard, where its positions mean something
            // (the first page keeps the part's own cursor, if any); a page never reads further
            // than the caller's limit needs. The caller's offset is skipped here, over all parts.
            let wanted = state.left.map_or(PAGE, |left| {
                (left.saturating_add(state.to_skip)).clamp(1, PAGE)
            });
            let mut page = part.with_paging(Some(wanted), 0)?;
            if let Some(cursor) = state.cursor {
                page = page.resumed_after(cursor);
            }
            let events = self.inner.stores[*shard].query(&page).await?;
            let finished = (events.len() as u64) < wanted;
            state.cursor = events.last().map(Event::cursor);
            state.buffer.extend(events);
            if finished {
                state.parts.pop_front();
                state.cursor = None;
            }
        }
    }
}

/// Where a merged read stands.
struct Merge {
    /// The parts still to read with their shard, the current one first.
    parts: VecDeque<(Query, usize)>,
    /// The current part's last event read, on its shard.
    cursor: Option<Cursor>,
    /// Events read and not yet returned.
    buffer: VecDeque<Event>,
    /// Events still to skip for the caller's offset.
    to_skip: u64,
    /// Events still to return for the caller's limit.
    left: Option<u64>,
}
