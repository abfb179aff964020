//! The in-memory and PostgreSQL backends answer every query identically, row for row.
//!
//! Proptest generates a world (pushes over a few instances, aggregates, event types, owners,
//! creators, correlation ids and payloads) and a batch of queries using every filter, OR branches, the aggregate
//! exclusion, both orders, cursors, offsets and limits. Each world is pushed to a `MemoryStore` and
//! to a fresh PostgreSQL database; every query must return the same events in the same order, the
//! same latest position and the same instance ids.
//!
//! Positions and timestamps differ between backends, so queries name them by push ("after push 3")
//! and each backend resolves that to its own values.
//!
//! `STRATA_PROPTEST_CASES` sets the number of worlds (default 32; each runs 24 queries).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use strata_event::{Command, Event, Position};
use strata_integration_tests::TestDatabase;
use strata_query::{Order, Query, SubQuery};
use strata_store::{EventStore, MemoryStore};

const INSTANCES: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];
const AGGREGATE_TYPES: [&str; 2] = ["user", "org"];
const AGGREGATE_IDS: [&str; 4] = ["a1", "a2", "a3", "a4"];
const EVENT_TYPES: [&str; 4] = ["x.added", "x.changed", "x.removed", "x.notified"];
const OWNERS: [&str; 2] = ["owner-1", "owner-2"];
const CREATORS: [&str; 2] = ["creator-1", "creator-2"];
const CORRELATION_IDS: [&str; 2] = ["request-1", "request-2"];

#[derive(Debug, Clone)]
struct CommandSpec {
    instance: usize,
    aggregate_type: usize,
    aggregate_id: usize,
    event_type: usize,
    owner: usize,
    creator: usize,
    payload: Option<(u8, Vec<u8>)>,
    correlation: Option<usize>,
}

fn command_spec() -> impl Strategy<Value = CommandSpec> {
    (
        0..INSTANCES.len(),
        0..AGGREGATE_TYPES.len(),
        0..AGGREGATE_IDS.len(),
        0..EVENT_TYPES.len(),
        0..OWNERS.len(),
        0..CREATORS.len(),
        proptest::option::of((0u8..3, vec(0u8..4, 0..3))),
        proptest::option::of(0..CORRELATION_IDS.len()),
    )
        .prop_map(
            |(
                instance,
                aggregate_type,
                aggregate_id,
                event_type,
                owner,
                creator,
                payload,
                correlation,
            )| {
                CommandSpec {
                    instance,
                    aggregate_type,
                    aggregate_id,
                    event_type,
                    owner,
                    creator,
                    payload,
                    correlation,
                }
            },
        )
}

impl CommandSpec {
    fn command(&self) -> Command {
        let mut builder = Command::builder(
            INSTANCES[self.instance],
            AGGREGATE_TYPES[self.aggregate_type],
            AGGREGATE_IDS[self.aggregate_id],
            EVENT_TYPES[self.event_type],
        )
        .owner(OWNERS[self.owner])
        .creator(CREATORS[self.creator]);
        if let Some((kind, tags)) = &self.payload {
            builder =
                builder.payload(&json!({ "kind": kind, "tags": tags, "nested": { "kind": kind } }));
        }
        if let Some(correlation) = self.correlation {
            builder = builder.correlation_id(CORRELATION_IDS[correlation]);
        }
        builder.build().expect("valid command")
    }
}

/// A subset of a fixed list, as indexes.
fn subset(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..len).collect::<Vec<_>>(), 0..=len.min(2))
}

#[derive(Debug, Clone)]
struct SubQuerySpec {
    aggregate_types: Vec<usize>,
    aggregate_ids: Vec<usize>,
    event_types: Vec<usize>,
}

fn sub_query_spec() -> impl Strategy<Value = SubQuerySpec> {
    (
        subset(AGGREGATE_TYPES.len()),
        subset(AGGREGATE_IDS.len()),
        subset(EVENT_TYPES.len()),
    )
        .prop_map(
            |(aggregate_types, aggregate_ids, event_types)| SubQuerySpec {
                aggregate_types,
                aggregate_ids,
                event_types,
            },
        )
}

/// A query whose positions and instants are push indexes, resolved per backend.
#[derive(Debug, Clone)]
struct QuerySpec {
    instances: Vec<usize>,
    excluded_instances: Vec<usize>,
    owners: Vec<usize>,
    creators: Vec<usize>,
    correlation: Option<usize>,
    filter: SubQuerySpec,
    any_of: Vec<SubQuerySpec>,
    position_after: Option<usize>,
    position_at_or_before: Option<usize>,
    position_before: Option<usize>,
    sequence_greater_than: Option<u64>,
    created_after: Option<usize>,
    created_before: Option<usize>,
    payload: Option<serde_json::Value>,
    exclusion: Option<(Vec<usize>, Vec<usize>)>,
    resume_after: Option<(usize, u32)>,
    descending: bool,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn query_spec(pushes: usize) -> impl Strategy<Value = QuerySpec> {
    let push = move || proptest::option::weighted(0.25, 0..pushes);
    let payload = prop_oneof![
        Just(json!({})),
        (0u8..3).prop_map(|kind| json!({ "kind": kind })),
        (0u8..4).prop_map(|tag| json!({ "tags": [tag] })),
        (0u8..3).prop_map(|kind| json!({ "nested": { "kind": kind } })),
    ];
    (
        (
            subset(INSTANCES.len()),
            proptest::option::weighted(0.2, subset(INSTANCES.len())),
            proptest::option::weighted(0.2, subset(OWNERS.len())),
            proptest::option::weighted(0.2, subset(CREATORS.len())),
            sub_query_spec(),
            proptest::option::weighted(0.3, vec(sub_query_spec(), 1..3)),
            proptest::option::weighted(0.2, 0..CORRELATION_IDS.len()),
        ),
        (
            push(),
            push(),
            proptest::option::weighted(0.2, 0u64..4),
            push(),
            push(),
            proptest::option::weighted(0.2, payload),
            push(),
        ),
        (
            proptest::option::weighted(
                0.3,
                (
                    subset(AGGREGATE_TYPES.len()),
                    proptest::sample::subsequence(
                        (0..EVENT_TYPES.len()).collect::<Vec<_>>(),
                        1..=2,
                    ),
                ),
            ),
            // Cursor orders around the ends of i32 and u32 too: PostgreSQL's column is an
            // integer, and a cursor's order is any u32.
            proptest::option::weighted(
                0.2,
                (
                    0..pushes,
                    prop_oneof![
                        4 => 0u32..3,
                        1 => Just(i32::MAX as u32),
                        1 => Just(i32::MAX as u32 + 1),
                        1 => Just(u32::MAX),
                    ],
                ),
            ),
            any::<bool>(),
            proptest::option::weighted(0.4, 1u32..15),
            proptest::option::weighted(0.15, 0u32..6),
        ),
    )
        .prop_map(
            |(
                (instances, excluded_instances, owners, creators, filter, any_of, correlation),
                (
                    position_after,
                    position_at_or_before,
                    sequence_greater_than,
                    created_after,
                    created_before,
                    payload,
                    position_before,
                ),
                (exclusion, resume_after, descending, limit, offset),
            )| QuerySpec {
                instances,
                excluded_instances: excluded_instances.unwrap_or_default(),
                owners: owners.unwrap_or_default(),
                creators: creators.unwrap_or_default(),
                correlation,
                filter,
                any_of: any_of.unwrap_or_default(),
                position_after,
                position_at_or_before,
                position_before,
                sequence_greater_than,
                created_after,
                created_before,
                payload,
                exclusion,
                resume_after,
                descending,
                limit,
                offset,
            },
        )
}

fn names(indexes: &[usize], names: &[&'static str]) -> Vec<&'static str> {
    indexes.iter().map(|&index| names[index]).collect()
}

fn sub_query(spec: &SubQuerySpec) -> strata_query::SubQueryBuilder {
    SubQuery::builder()
        .aggregate_types(names(&spec.aggregate_types, &AGGREGATE_TYPES))
        .aggregate_ids(names(&spec.aggregate_ids, &AGGREGATE_IDS))
        .event_types(names(&spec.event_types, &EVENT_TYPES))
}

impl QuerySpec {
    /// The query for a backend whose pushes were stored as `pushes`.
    fn resolve(&self, pushes: &[Vec<Event>]) -> Query {
        let position = |push: usize| pushes[push][0].position;
        let created = |push: usize| pushes[push][0].created_at;
        let mut builder = if self.instances.is_empty() {
            Query::builder().all_instances()
        } else {
            Query::builder().instances(names(&self.instances, &INSTANCES))
        };
        builder = builder
            .exclude_instances(names(&self.excluded_instances, &INSTANCES))
            .aggregate_types(names(&self.filter.aggregate_types, &AGGREGATE_TYPES))
            .aggregate_ids(names(&self.filter.aggregate_ids, &AGGREGATE_IDS))
            .event_types(names(&self.filter.event_types, &EVENT_TYPES))
            .order(if self.descending {
                Order::Descending
            } else {
                Order::Ascending
            });
        for owner in names(&self.owners, &OWNERS) {
            builder = builder.owner(owner);
        }
        for creator in names(&self.creators, &CREATORS) {
            builder = builder.creator(creator);
        }
        if let Some(correlation) = self.correlation {
            builder = builder.correlation_id(CORRELATION_IDS[correlation]);
        }
        for branch in &self.any_of {
            builder = builder.or(sub_query(branch));
        }
        if let Some(push) = self.position_after {
            builder = builder.position_after(position(push));
        }
        if let Some(push) = self.position_at_or_before {
            builder = builder.position_at_or_before(position(push));
        }
        if let Some(push) = self.position_before {
            builder = builder.position_before(position(push));
        }
        if let Some(sequence) = self.sequence_greater_than {
            builder = builder.sequence_greater_than(sequence);
        }
        if let Some(push) = self.created_after {
            builder = builder.created_after(created(push));
        }
        if let Some(push) = self.created_before {
            builder = builder.created_before(created(push));
        }
        if let Some(payload) = &self.payload {
            builder = builder.payload_contains(payload.clone());
        }
        if let Some((aggregate_types, event_types)) = &self.exclusion {
            builder = builder.exclude_aggregates_with(
                names(aggregate_types, &AGGREGATE_TYPES),
                names(event_types, &EVENT_TYPES),
            );
        }
        if let Some((push, in_tx_order)) = self.resume_after {
            builder = builder.resume_after((position(push), in_tx_order));
        }
        if let Some(limit) = self.limit {
            builder = builder.limit(limit);
        }
        if let Some(offset) = self.offset {
            builder = builder.offset(offset);
        }
        builder.build().expect("generated queries are valid")
    }
}

/// What a backend answered, with positions translated back to push indexes.
#[derive(Debug, PartialEq)]
struct Answer {
    events: Vec<(String, String, String, u64, u32)>,
    latest_push: Option<usize>,
    instance_ids: Vec<String>,
}

async fn answer<S: EventStore>(store: &S, pushes: &[Vec<Event>], query: &Query) -> Answer {
    let push_of = |position: Position| {
        pushes
            .iter()
            .position(|push| push[0].position == position)
            .expect("every position belongs to a push")
    };
    let events = store.query(query).await.expect("query");
    let latest = store.latest_position(query).await.expect("latest position");
    let instance_ids = store.instance_ids(query).await.expect("instance ids");
    Answer {
        events: events
            .iter()
            .map(|event| {
                (
                    event.aggregate.instance_id.to_string(),
                    event.aggregate.aggregate_type.to_string(),
                    event.aggregate.aggregate_id.to_string(),
                    event.sequence,
                    event.in_tx_order,
                )
            })
            .collect(),
        latest_push: latest.map(push_of),
        instance_ids: instance_ids.iter().map(ToString::to_string).collect(),
    }
}

async fn push_world<S: EventStore>(store: &S, world: &[Vec<CommandSpec>]) -> Vec<Vec<Event>> {
    let mut stored = Vec::new();
    for push in world {
        let commands = push.iter().map(CommandSpec::command).collect();
        stored.push(store.push(commands).await.expect("push"));
        // Distinct timestamps per push in both backends, so "created after push k" means the same.
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    stored
}

fn world_and_queries() -> impl Strategy<Value = (Vec<Vec<CommandSpec>>, Vec<QuerySpec>)> {
    vec(vec(command_spec(), 1..4), 1..30).prop_flat_map(|world| {
        let pushes = world.len();
        (Just(world), vec(query_spec(pushes), 24))
    })
}

#[test]
fn memory_and_postgres_answer_every_query_alike() {
    let cases = std::env::var("STRATA_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 200,
        ..Config::default()
    });
    runner
        .run(&world_and_queries(), |(world, queries)| {
            runtime.block_on(async {
                let memory = MemoryStore::new();
                let postgres = TestDatabase::create().await.store();
                let memory_pushes = push_world(&memory, &world).await;
                let postgres_pushes = push_world(&postgres, &world).await;
                for spec in &queries {
                    let on_memory =
                        answer(&memory, &memory_pushes, &spec.resolve(&memory_pushes)).await;
                    let on_postgres =
                        answer(&postgres, &postgres_pushes, &spec.resolve(&postgres_pushes)).await;
                    prop_assert_eq!(on_memory, on_postgres, "query {:?}", spec);
                }
                Ok(())
            })
        })
        .map_err(|failure| failure.to_string())
        .expect("the backends disagree");
}
