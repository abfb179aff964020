//! What operators ask for: rebuilds and failed events, from the API or queued by the CLI.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use strata_event::{AggregateRef, Event, InstanceId};
use strata_query::Query;
use strata_store::EventStore;

use crate::backend::{FailedEvent, FailedEventKey, OperatorRequest, ProjectionBackend};
use crate::consumer::split_partition_name;
use crate::error::ProjectionError;

use crate::runtime::batch::{handle_guarded, handle_window, reduce_guarded, reduce_window};
use crate::runtime::{PairKey, ProjectionRuntime, lock};

impl<S, B> ProjectionRuntime<S, B>
where
    S: EventStore + Clone + 'static,
    B: ProjectionBackend + Clone,
{
    /// Resets `projection` (in one instance, or in all) and replays it from the first event, while
    /// every other projection keeps running.
    ///
    /// For a consumer, `projection` may name the consumer: each of its parts is reset, so every
    /// event is delivered again.
    pub async fn rebuild(
        &self,
        projection: &str,
        instance: Option<&InstanceId>,
    ) -> Result<(), ProjectionError> {
        let parts: Vec<usize> = match self.index(projection) {
            Ok(index) => vec![index],
            Err(ProjectionError::UnknownProjection(_)) => self.parts_of(projection),
            Err(err) => return Err(err),
        };
        if parts.is_empty() {
            return Err(ProjectionError::UnknownProjection(projection.to_owned()));
        }
        for index in parts {
            self.rebuild_pair(index, instance).await?;
        }
        Ok(())
    }

    /// The pairs of a consumer's parts.
    fn parts_of(&self, consumer: &str) -> Vec<usize> {
        self.inner
            .projections
            .iter()
            .enumerate()
            .filter(|(_, registered)| {
                registered.part.is_some()
                    && split_partition_name(registered.projection.name()).0 == consumer
            })
            .map(|(index, _)| index)
            .collect()
    }

    async fn rebuild_pair(
        &self,
        index: usize,
        instance: Option<&InstanceId>,
    ) -> Result<(), ProjectionError> {
        let registered = &self.inner.projections[index];
        let projection = registered.projection.name();
        let instances: Vec<InstanceId> = match instance {
            Some(instance) => vec![instance.clone()],
            None => {
                let query = registered.reads.query_all_instances().build()?;
                let mut all: HashSet<InstanceId> = self
                    .inner
                    .store
                    .instance_ids(&query)
                    .await?
                    .into_iter()
                    .collect();
                all.extend(
                    self.inner
                        .backend
                        .states()
                        .await?
                        .into_iter()
                        .filter(|state| state.projection == projection)
                        .map(|state| state.instance_id),
                );
                all.into_iter().collect()
            }
        };
        for instance in instances {
            let lease = self.wait_for_lease(projection, &instance).await?;
            self.inner
                .backend
                .reset(lease, registered.projection.reset(&instance))
                .await?;
            // The checkpoint went back: what was complete is not any more.
            lock(&self.inner.complete_below).remove(&PairKey::new(index, &instance));
            self.schedule(PairKey { index, instance });
        }
        Ok(())
    }

    /// Failed events, of one projection or all.
    pub async fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        if let Some(name) = projection {
            self.index(name)?;
        }
        self.inner.backend.failed_events(projection).await
    }

    /// The parked aggregates (their parked events), of one projection or consumer (all its
    /// parts) or of every pair this runtime runs, in `(position, in_tx_order)` order per pair.
    /// Hand one to [`retry_failed`](Self::retry_failed) or [`skip_failed`](Self::skip_failed).
    pub async fn parked(&self, name: Option<&str>) -> Result<Vec<FailedEvent>, ProjectionError> {
        let pairs: Vec<&str> = self
            .inner
            .projections
            .iter()
            .map(|registered| registered.projection.name())
            .filter(|pair| name.is_none_or(|name| split_partition_name(pair).0 == name))
            .collect();
        if let Some(name) = name
            && pairs.is_empty()
        {
            return Err(ProjectionError::UnknownProjection(name.to_owned()));
        }
        let mut parked = Vec::new();
        for pair in pairs {
            let failed = self.inner.backend.failed_events(Some(pair)).await?;
            parked.extend(failed.into_iter().filter(|failed| failed.parked));
        }
        Ok(parked)
    }

    /// Re-reduces and applies a failed event now (after a fix), and forgets the failure. The
    /// projection has moved on meanwhile, so the event is applied out of order, as in ZITADEL.
    ///
    /// A parked event ([`FailedEvent::parked`]) is retried in order instead: it and every event
    /// its aggregate received meanwhile, then the aggregate flows again. If one of them fails, the
    /// aggregate stays parked at that one.
    pub async fn retry_failed(&self, failed: &FailedEvent) -> Result<(), ProjectionError> {
        if failed.parked {
            return self.unpark(failed, false).await;
        }
        let index = self.index(&failed.projection)?;
        let registered = &self.inner.projections[index];
        let query = Query::builder()
            .instance(failed.aggregate.instance_id.as_str())
            .aggregate_types([failed.aggregate.aggregate_type.as_str()])
            .aggregate_ids([failed.aggregate.aggregate_id.as_str()])
            .sequence_greater_than(failed.sequence.saturating_sub(1))
            .limit(1)
            .build()?;
        let unknown = || ProjectionError::UnknownFailedEvent {
            projection: failed.projection.clone(),
            aggregate: failed.aggregate.to_string(),
            sequence: failed.sequence,
        };
        let event = self
            .inner
            .store
            .query(&query)
            .await?
            .into_iter()
            .find(|event| event.sequence == failed.sequence)
            .ok_or_else(unknown)?;
        let event = std::sync::Arc::new(event);
        let statements = match &registered.part {
            // A consumer's event is handled again, not reduced: only an acknowledgement
            // forgets the failure.
            Some(part) => {
                let handled = handle_guarded(part, std::slice::from_ref(&event)).await;
                if handled.acknowledged == 0 {
                    let message = handled.failure.map_or_else(
                        || "the consumer did not acknowledge the event".to_owned(),
                        |failure| failure.to_string(),
                    );
                    return Err(ProjectionError::Reducer {
                        projection: failed.projection.clone(),
                        message,
                    });
                }
                Vec::new()
            }
            None => {
                registered
                    .projection
                    .prepare(std::slice::from_ref(&event))
                    .await;
                reduce_guarded(registered.projection.as_ref(), &event).map_err(|err| {
                    ProjectionError::Reducer {
                        projection: failed.projection.clone(),
                        message: err.to_string(),
                    }
                })?
            }
        };
        let lease = self
            .wait_for_lease(&failed.projection, &failed.aggregate.instance_id)
            .await?;
        self.inner
            .backend
            .apply_retried(lease, failed, statements)
            .await?;
        // The hook is the caller's code: a panic in it must not end the task serving operator
        // requests, so it is reported like a panic during a batch.
        let hook = registered
            .projection
            .after_commit(std::slice::from_ref(&event.aggregate));
        std::panic::AssertUnwindSafe(hook)
            .catch_unwind()
            .await
            .map_err(|_| ProjectionError::Panicked {
                projection: failed.projection.clone(),
            })
    }

    /// Gives up on a failed event now: its projection passes it without further attempts.
    ///
    /// For a parked event, the aggregate flows again without it: the events it received meanwhile
    /// are applied (handled) in order first.
    pub async fn skip_failed(&self, failed: &FailedEvent) -> Result<(), ProjectionError> {
        if failed.parked {
            return self.unpark(failed, true).await;
        }
        let index = self.index(&failed.projection)?;
        let max = self.inner.projections[index].config.max_failure_count;
        self.inner.backend.skip(failed, max).await?;
        self.schedule(PairKey {
            index,
            instance: failed.aggregate.instance_id.clone(),
        });
        Ok(())
    }

    /// Lets a parked aggregate flow again: under the pair's lease, the events it is owed (from
    /// the parked one, or the one after it when `skip_parked`, up to the checkpoint) are reduced
    /// or handled in order and handed to the backend with the park record.
    async fn unpark(&self, failed: &FailedEvent, skip_parked: bool) -> Result<(), ProjectionError> {
        let index = self.index(&failed.projection)?;
        let registered = &self.inner.projections[index];
        let instance = &failed.aggregate.instance_id;
        // Read before the lease: the lease holds one of the backend's connections, and a small
        // pool may have no other. The backend checks, under the lease, that it is still parked.
        let current = self
            .inner
            .backend
            .failed_events_in(&failed.projection, instance)
            .await?
            .into_iter()
            .find(|record| {
                record.parked
                    && record.aggregate == failed.aggregate
                    && record.sequence == failed.sequence
            });
        let unknown = || ProjectionError::UnknownFailedEvent {
            projection: failed.projection.clone(),
            aggregate: failed.aggregate.to_string(),
            sequence: failed.sequence,
        };
        let current = current.ok_or_else(unknown)?;
        let mut lease = self.wait_for_lease(&failed.projection, instance).await?;
        let checkpoint = match self.inner.backend.checkpoint(&mut lease).await {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                self.inner.backend.release(lease).await;
                return Err(err);
            }
        };
        let Some(checkpoint_cursor) = checkpoint.cursor else {
            self.inner.backend.release(lease).await;
            return Err(unknown());
        };
        let first = if skip_parked {
            current.sequence
        } else {
            current.sequence.saturating_sub(1)
        };
        let query = registered
            .reads
            .query(instance)
            .aggregate_types([current.aggregate.aggregate_type.as_str()])
            .aggregate_ids([current.aggregate.aggregate_id.as_str()])
            .sequence_greater_than(first)
            .position_at_or_before(checkpoint_cursor.position)
            .build();
        let owed = match query {
            Ok(query) => self.inner.store.query(&query).await.map_err(Into::into),
            Err(err) => Err(err.into()),
        };
        let owed: Vec<Arc<Event>> = match owed {
            Ok(events) => events
                .into_iter()
                .filter(|event| event.cursor() <= checkpoint_cursor)
                .map(Arc::new)
                .collect(),
            Err(err) => {
                self.inner.backend.release(lease).await;
                return Err(err);
            }
        };
        let none_parked = HashSet::new();
        let batch = match &registered.part {
            Some(part) => handle_window(part, owed, &none_parked).await,
            None => reduce_window(registered.projection.as_ref(), owed, &none_parked).await,
        };
        let touched: Vec<AggregateRef> = batch
            .first()
            .map(|reduced| reduced.event.aggregate.clone())
            .into_iter()
            .collect();
        let unparked = self
            .inner
            .backend
            .unpark(lease, &current, batch, skip_parked)
            .await?;
        if unparked.applied > 0 && registered.part.is_none() {
            let hook = registered.projection.after_commit(&touched);
            std::panic::AssertUnwindSafe(hook)
                .catch_unwind()
                .await
                .map_err(|_| ProjectionError::Panicked {
                    projection: failed.projection.clone(),
                })?;
        }
        if let Some(sequence) = unparked.parked_at {
            tracing::warn!(projection = %failed.projection, aggregate = %failed.aggregate, sequence, "the aggregate failed again and stays parked");
        }
        self.schedule(PairKey {
            index,
            instance: instance.clone(),
        });
        Ok(())
    }

    pub(super) async fn serve_operator_requests(&self) {
        let names: Vec<String> = self.inner.by_name.keys().cloned().collect();
        let requests = match self.inner.backend.take_requests(&names).await {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(error = %err, "could not read operator requests");
                return;
            }
        };
        for request in requests {
            // A rebuild runs the projection's `reset`, a retry its reducer and hook: the caller's
            // code, whose panic must end this request, not the task serving them all.
            let outcome = std::panic::AssertUnwindSafe(self.carry_out(&request))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(ProjectionError::Panicked {
                        projection: request.projection().to_owned(),
                    })
                });
            match outcome {
                Ok(()) => tracing::info!(?request, "operator request carried out"),
                Err(err) => tracing::warn!(?request, error = %err, "operator request failed"),
            }
        }
    }

    async fn carry_out(&self, request: &OperatorRequest) -> Result<(), ProjectionError> {
        match request {
            OperatorRequest::Rebuild {
                projection,
                instance_id,
            } => self.rebuild(projection, Some(instance_id)).await,
            OperatorRequest::Retry(key) => {
                let failed = self.find_failed(key).await?;
                self.retry_failed(&failed).await
            }
            OperatorRequest::Skip(key) => {
                let failed = self.find_failed(key).await?;
                self.skip_failed(&failed).await
            }
        }
    }

    pub(super) async fn find_failed(
        &self,
        key: &FailedEventKey,
    ) -> Result<FailedEvent, ProjectionError> {
        self.inner
            .backend
            .failed_events(Some(&key.projection))
            .await?
            .into_iter()
            .find(|failed| failed.aggregate == key.aggregate && failed.sequence == key.sequence)
            .ok_or_else(|| ProjectionError::UnknownFailedEvent {
                projection: key.projection.clone(),
                aggregate: key.aggregate.to_string(),
                sequence: key.sequence,
            })
    }

    pub(super) async fn wait_for_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<B::Lease, ProjectionError> {
        let deadline = Instant::now() + self.inner.config.lease_wait;
        loop {
            if let Some(lease) = self.inner.backend.try_lease(projection, instance).await? {
                return Ok(lease);
            }
            if Instant::now() >= deadline {
                return Err(ProjectionError::Timeout {
                    projection: projection.to_owned(),
                    timeout: self.inner.config.lease_wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
