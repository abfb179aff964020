//! Durable consumers as the CLI sees them: the consumers in the projection registry with their
//! parts, their failed and parked events, and unregistering every part of one at once.
//!
//! A consumer runs as one pair per part and instance, named like a projection: its own name with
//! one part, `name#k/n` with several ([`strata_projection::partition_name`]). A runtime registers
//! each part in `projections.registry` with the consumer's name in `consumer_name`, and the
//! parts' checkpoints, failed events and requests live in the projections' tables under the part
//! names. So a consumer's operator requests are queued with
//! [`request_projection_work`](crate::admin::request_projection_work), keyed by the part.

use std::collections::BTreeSet;

use sqlx::PgPool;
use strata_event::AggregateRef;
use strata_projection::{FailedEvent, ProjectionError, split_partition_name};
use strata_store::{Error, Result};

use crate::admin::registry::{RegisteredProjection, registered_projections, unregister_in};
use crate::error::{from_sqlx, unexpected_answer};
use crate::projection::rows::{FAILED_COLUMNS, FailedRow, decode_failed};
use crate::store::PgStore;

/// A consumer some runtime registered, with its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredConsumer {
    /// The consumer's name.
    pub name: String,
    /// Its parts as registered, in part order: one named like the consumer, or `n` named
    /// `name#k/n`. Every part reads the same events (each handles its share of the aggregates).
    pub parts: Vec<RegisteredProjection>,
}

impl RegisteredConsumer {
    /// The number of parts each instance's events are split into.
    pub fn partitions(&self) -> u16 {
        self.parts
            .first()
            .and_then(|part| split_partition_name(&part.name).1)
            .map_or(1, |(_, count)| count)
    }
}

/// Every registered consumer, sorted by name.
///
/// When a consumer's part count changed (it was unregistered and started again with another),
/// parts of the old count may still be registered; only the parts of the count registered last
/// are listed, since they are the ones a runtime works on.
pub async fn registered_consumers(store: &PgStore) -> Result<Vec<RegisteredConsumer>> {
    let mut consumers: Vec<RegisteredConsumer> = Vec::new();
    for part in registered_projections(store).await? {
        let Some(consumer) = part.consumer.clone() else {
            continue;
        };
        match consumers.iter_mut().find(|known| known.name == consumer) {
            Some(known) => known.parts.push(part),
            None => consumers.push(RegisteredConsumer {
                name: consumer,
                parts: vec![part],
            }),
        }
    }
    for consumer in &mut consumers {
        let count = |part: &RegisteredProjection| split_partition_name(&part.name).1;
        let latest = consumer
            .parts
            .iter()
            .max_by_key(|part| part.registered_at)
            .map(|part| count(part).map(|(_, count)| count));
        consumer
            .parts
            .retain(|part| Some(count(part).map(|(_, count)| count)) == latest);
        consumer
            .parts
            .sort_by_key(|part| count(part).map(|(index, _)| index));
    }
    consumers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(consumers)
}

/// A failed event of a consumer's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFailure {
    /// The consumer.
    pub consumer: String,
    /// The failure, under the part's pair name ([`FailedEvent::projection`]). When
    /// [`FailedEvent::parked`], the aggregate's later events wait behind it in that part.
    pub failed: FailedEvent,
}

/// The failed events (parked or not) of every registered consumer, or of one, ordered by
/// consumer, part, instance and position.
pub async fn consumer_failures(
    store: &PgStore,
    consumer: Option<&str>,
) -> Result<Vec<ConsumerFailure>> {
    select_failures(store, consumer, None).await
}

/// The parked event of `aggregate` in `consumer`, if it is parked: the row a retry or skip
/// request names. An aggregate belongs to one part, and is parked at most once in it (its later
/// events wait rather than fail), so there is at most one.
pub async fn parked_event(
    store: &PgStore,
    consumer: &str,
    aggregate: &AggregateRef,
) -> Result<Option<ConsumerFailure>> {
    Ok(select_failures(store, Some(consumer), Some(aggregate))
        .await?
        .into_iter()
        .next())
}

async fn select_failures(
    store: &PgStore,
    consumer: Option<&str>,
    parked: Option<&AggregateRef>,
) -> Result<Vec<ConsumerFailure>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        consumer_name: String,
        #[sqlx(flatten)]
        failed: FailedRow,
    }
    // The registry tells a consumer's part from a projection of the same shape of name: a
    // one-part consumer's pair is named like the consumer.
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT registry.consumer_name, {FAILED_COLUMNS} \
         FROM projections.failed_events JOIN projections.registry USING (projection_name) \
         WHERE registry.consumer_name IS NOT NULL \
           AND ($1::text IS NULL OR registry.consumer_name = $1) \
           AND ($2::text IS NULL OR (parked AND instance_id = $2 AND aggregate_type = $3 \
                                     AND aggregate_id = $4)) \
         ORDER BY registry.consumer_name, projection_name, instance_id, position, in_tx_order"
    ))
    .bind(consumer)
    .bind(parked.map(|aggregate| aggregate.instance_id.as_str()))
    .bind(parked.map(|aggregate| aggregate.aggregate_type.as_str()))
    .bind(parked.map(|aggregate| aggregate.aggregate_id.as_str()))
    .fetch_all(store.pools().query())
    .await
    .map_err(|err| from_sqlx("reading consumers' failed events", err))?;
    rows.into_iter()
        .map(|row| {
            Ok(ConsumerFailure {
                consumer: row.consumer_name,
                failed: decode_failed(row.failed).map_err(store_error)?,
            })
        })
        .collect()
}

fn store_error(err: ProjectionError) -> Error {
    match err {
        ProjectionError::Store(err) => err,
        other => unexpected_answer("projections.failed_events", other),
    }
}

/// What [`unregister_consumer`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnregisteredConsumer {
    /// The parts found and removed, by pair name.
    pub parts: Vec<String>,
    /// How many of them were registered.
    pub registered_parts: u64,
    /// Checkpoints removed (one per part and instance).
    pub checkpoints: u64,
    /// Failed and parked events removed.
    pub failed_events: u64,
    /// Queued operator requests removed.
    pub requests: u64,
}

/// Forgets a consumer, in one transaction: the registration, checkpoints, failed events and
/// queued requests of every part ([`unregister_projection`](crate::admin::unregister_projection)
/// for each). The parts are those registered with this consumer's name, and any `name#k/n` pair
/// with a checkpoint, failed event or request left (a part of an older part count): after this, a
/// runtime may start the consumer with another count. A runtime that still runs the consumer
/// registers it again and starts from the first event: stop those runtimes first.
pub async fn unregister_consumer(pool: &PgPool, consumer: &str) -> Result<UnregisteredConsumer> {
    let failed = |err| from_sqlx("unregistering a consumer", err);
    let mut tx = pool.begin().await.map_err(failed)?;
    let registered: Vec<String> = sqlx::query_scalar(
        "SELECT projection_name FROM projections.registry WHERE consumer_name = $1",
    )
    .bind(consumer)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    // `#` appears in no projection's name, so these pairs are consumers' parts whatever the
    // registry says.
    let split: Vec<String> = sqlx::query_scalar(
        "SELECT projection_name FROM projections.current_states \
         WHERE strpos(projection_name, '#') > 0 \
         UNION SELECT projection_name FROM projections.failed_events \
         WHERE strpos(projection_name, '#') > 0 \
         UNION SELECT projection_name FROM projections.requests \
         WHERE strpos(projection_name, '#') > 0",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let parts: BTreeSet<String> =
        registered
            .into_iter()
            .chain(split.into_iter().filter(
                |name| matches!(split_partition_name(name), (of, Some(_)) if of == consumer),
            ))
            .collect();
    let mut parts: Vec<String> = parts.into_iter().collect();
    parts.sort_by_key(|name| {
        split_partition_name(name)
            .1
            .map(|(index, count)| (count, index))
    });
    let mut removed = UnregisteredConsumer::default();
    for part in &parts {
        let part_removed = unregister_in(&mut tx, part).await?;
        removed.registered_parts += u64::from(part_removed.registered);
        removed.checkpoints += part_removed.checkpoints;
        removed.failed_events += part_removed.failed_events;
        removed.requests += part_removed.requests;
    }
    tx.commit().await.map_err(failed)?;
    removed.parts = parts;
    Ok(removed)
}
