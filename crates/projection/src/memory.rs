//! The in-memory projection backend: read models as tables of rows, for tests and embedded use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use strata_event::{AggregateRef, InstanceId, Position, Sequence};

use crate::backend::{BatchOutcome, CurrentState, FailedEvent, ProjectionBackend, ReducedEvent};
use crate::error::ProjectionError;
use crate::statement::{Column, SqlValue, Statement};

/// A read-model row: column name to value.
pub type Row = BTreeMap<String, SqlValue>;

type PairKey = (String, InstanceId);
type FailedKey = (String, AggregateRef, Sequence);

/// Read models, checkpoints and failed events held in memory. Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct MemoryProjections {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    leased: HashSet<PairKey>,
    checkpoints: HashMap<PairKey, CurrentState>,
    failed: BTreeMap<FailedKey, FailedEvent>,
    tables: HashMap<&'static str, Vec<Row>>,
}

/// The lease of one (projection, instance) in memory; dropping it releases it.
#[derive(Debug)]
pub struct MemoryLease {
    key: PairKey,
    state: Arc<Mutex<State>>,
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        lock(&self.state).leased.remove(&self.key);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every mutation is checked before it starts, so a poisoned lock holds consistent data.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn matches(row: &Row, filter: &[Column]) -> bool {
    filter
        .iter()
        .all(|(column, value)| row.get(*column) == Some(value))
}

impl State {
    fn execute(&mut self, statements: &[Statement]) -> Result<(), String> {
        if statements
            .iter()
            .any(|statement| matches!(statement, Statement::Sql { .. }))
        {
            return Err("raw SQL statements need the PostgreSQL backend".into());
        }
        // All checked before any is applied, so a refused batch changes nothing.
        for statement in statements {
            statement.check_names()?;
        }
        for statement in statements {
            match statement {
                Statement::Upsert { table, key, values } => {
                    let rows = self.tables.entry(table).or_default();
                    match rows.iter_mut().find(|row| matches(row, key)) {
                        Some(row) => {
                            for (column, value) in values {
                                row.insert((*column).to_owned(), value.clone());
                            }
                        }
                        None => rows.push(
                            key.iter()
                                .chain(values)
                                .map(|(column, value)| ((*column).to_owned(), value.clone()))
                                .collect(),
                        ),
                    }
                }
                Statement::Update {
                    table,
                    values,
                    filter,
                } => {
                    for row in self.tables.entry(table).or_default() {
                        if matches(row, filter) {
                            for (column, value) in values {
                                row.insert((*column).to_owned(), value.clone());
                            }
                        }
                    }
                }
                Statement::Delete { table, filter } => {
                    self.tables
                        .entry(table)
                        .or_default()
                        .retain(|row| !matches(row, filter));
                }
                Statement::Sql { .. } => {}
            }
        }
        Ok(())
    }
}

impl MemoryProjections {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rows of a read-model table, in insertion order.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        lock(&self.state)
            .tables
            .get(table)
            .cloned()
            .unwrap_or_default()
    }
}

impl ProjectionBackend for MemoryProjections {
    type Lease = MemoryLease;

    async fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<MemoryLease>, ProjectionError> {
        let key = (projection.to_owned(), instance.clone());
        let mut state = lock(&self.state);
        if !state.leased.insert(key.clone()) {
            return Ok(None);
        }
        Ok(Some(MemoryLease {
            key,
            state: Arc::clone(&self.state),
        }))
    }

    async fn checkpoint(
        &self,
        lease: &mut MemoryLease,
    ) -> Result<Option<(Position, u32)>, ProjectionError> {
        Ok(lock(&self.state)
            .checkpoints
            .get(&lease.key)
            .map(|state| (state.position, state.in_tx_order)))
    }

    async fn apply(
        &self,
        lease: MemoryLease,
        batch: Vec<ReducedEvent>,
        max_failure_count: u32,
    ) -> Result<BatchOutcome, ProjectionError> {
        let mut state = lock(&self.state);
        let mut outcome = BatchOutcome::default();
        let mut last = None;
        for reduced in batch {
            let event = &reduced.event;
            let failed_key = (lease.key.0.clone(), event.aggregate.clone(), event.sequence);
            let result = reduced
                .statements
                .and_then(|statements| state.execute(&statements));
            match result {
                Ok(()) => {
                    state.failed.remove(&failed_key);
                }
                Err(error) => {
                    let entry = state
                        .failed
                        .entry(failed_key)
                        .or_insert_with(|| FailedEvent {
                            projection: lease.key.0.clone(),
                            aggregate: event.aggregate.clone(),
                            sequence: event.sequence,
                            position: event.position,
                            in_tx_order: event.in_tx_order,
                            failure_count: 0,
                            error: String::new(),
                            last_failed_at: Utc::now(),
                        });
                    // A count already at the limit (given up by an operator) is left alone.
                    if entry.failure_count < max_failure_count {
                        entry.failure_count += 1;
                        entry.error = error;
                        entry.last_failed_at = Utc::now();
                    }
                    if entry.failure_count < max_failure_count {
                        outcome.stalled = true;
                        break;
                    }
                    outcome.skipped += 1;
                }
            }
            outcome.processed += 1;
            last = Some(reduced.event);
        }
        if let Some(event) = last {
            state.checkpoints.insert(
                lease.key.clone(),
                CurrentState {
                    projection: lease.key.0.clone(),
                    instance_id: lease.key.1.clone(),
                    position: event.position,
                    in_tx_order: event.in_tx_order,
                    aggregate: event.aggregate.clone(),
                    sequence: event.sequence,
                    updated_at: Utc::now(),
                },
            );
        }
        drop(state);
        drop(lease);
        Ok(outcome)
    }

    async fn release(&self, lease: MemoryLease) {
        drop(lease);
    }

    async fn reset(
        &self,
        lease: MemoryLease,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        let mut state = lock(&self.state);
        state
            .execute(&statements)
            .map_err(ProjectionError::Statement)?;
        state.checkpoints.remove(&lease.key);
        let (projection, instance) = &lease.key;
        state.failed.retain(|(name, aggregate, _), _| {
            !(name == projection && &aggregate.instance_id == instance)
        });
        Ok(())
    }

    async fn apply_retried(
        &self,
        lease: MemoryLease,
        failed: &FailedEvent,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        let mut state = lock(&self.state);
        state
            .execute(&statements)
            .map_err(ProjectionError::Statement)?;
        state.failed.remove(&(
            lease.key.0.clone(),
            failed.aggregate.clone(),
            failed.sequence,
        ));
        Ok(())
    }

    async fn give_up(
        &self,
        failed: &FailedEvent,
        max_failure_count: u32,
    ) -> Result<(), ProjectionError> {
        let mut state = lock(&self.state);
        let key = (
            failed.projection.clone(),
            failed.aggregate.clone(),
            failed.sequence,
        );
        if let Some(entry) = state.failed.get_mut(&key) {
            entry.failure_count = entry.failure_count.max(max_failure_count);
        }
        Ok(())
    }

    async fn state(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<CurrentState>, ProjectionError> {
        Ok(lock(&self.state)
            .checkpoints
            .get(&(projection.to_owned(), instance.clone()))
            .cloned())
    }

    async fn states(&self) -> Result<Vec<CurrentState>, ProjectionError> {
        let mut states: Vec<CurrentState> =
            lock(&self.state).checkpoints.values().cloned().collect();
        states
            .sort_by(|a, b| (&a.projection, &a.instance_id).cmp(&(&b.projection, &b.instance_id)));
        Ok(states)
    }

    async fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        Ok(lock(&self.state)
            .failed
            .values()
            .filter(|failed| projection.is_none_or(|name| failed.projection == name))
            .cloned()
            .collect())
    }
}
