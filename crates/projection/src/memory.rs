//! The in-memory projection backend: read models as tables of rows, for tests and embedded use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use strata_event::{AggregateRef, Cursor, Event, InstanceId, Sequence};

mod group;
mod versions;

use crate::backend::{
    BatchOutcome, Checkpoint, CurrentState, FailedEvent, FailurePolicy, NextFailure,
    ProjectionBackend, ReducedEvent, Unparked,
};
use crate::version::{ProjectionVersion, VersionSetup};

pub use self::group::MemoryGroupLease;
pub use self::versions::MemorySwitch;
use self::versions::SwitchLocks;
use crate::error::ProjectionError;
use crate::projection::OnFailure;
use crate::statement::{Column, SqlValue, Statement};

/// A read-model row: column name to value.
pub type Row = BTreeMap<String, SqlValue>;

/// Which (projection, instance) a lease or a checkpoint is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LeaseKey {
    projection: String,
    instance: InstanceId,
}

impl LeaseKey {
    fn new(projection: &str, instance: &InstanceId) -> LeaseKey {
        LeaseKey {
            projection: projection.to_owned(),
            instance: instance.clone(),
        }
    }
}

type FailedKey = (String, AggregateRef, Sequence);

/// Read models, checkpoints and failed events held in memory. Clones share everything.
#[derive(Debug, Clone, Default)]
pub struct MemoryProjections {
    state: Arc<Mutex<State>>,
    switch_locks: SwitchLocks,
}

#[derive(Debug, Default)]
struct State {
    leased: HashSet<LeaseKey>,
    checkpoints: HashMap<LeaseKey, CurrentState>,
    failed: BTreeMap<FailedKey, FailedEvent>,
    tables: HashMap<&'static str, Vec<Row>>,
    /// Versions of versioned projections, by projection and version.
    versions: BTreeMap<(String, u32), ProjectionVersion>,
    /// Stable names: a declared table → the live version's table.
    views: HashMap<String, &'static str>,
}

/// The lease of one (projection, instance) in memory; dropping it releases it.
#[derive(Debug)]
pub struct MemoryLease {
    key: LeaseKey,
    state: Arc<Mutex<State>>,
    /// The projection's switch lock, held shared for the lease's length.
    _switching: tokio::sync::OwnedRwLockReadGuard<()>,
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
        // All checked before any is applied, so a refused batch changes nothing. An increment can
        // still fail on the values it meets (overflow, a column of another type): then the
        // statements before it are undone.
        for statement in statements {
            statement.check()?;
        }
        let can_fail = statements
            .iter()
            .any(|statement| matches!(statement, Statement::Increment { .. }));
        if !can_fail {
            return self.apply(statements);
        }
        let before: Vec<(&'static str, Option<Vec<Row>>)> = statements
            .iter()
            .filter_map(Statement::table)
            .map(|table| (table, self.tables.get(table).cloned()))
            .collect();
        let applied = self.apply(statements);
        if applied.is_err() {
            for (table, rows) in before {
                match rows {
                    Some(rows) => self.tables.insert(table, rows),
                    None => self.tables.remove(table),
                };
            }
        }
        applied
    }

    /// Moves the pair's checkpoint to `event`.
    fn move_checkpoint(&mut self, key: &LeaseKey, event: &Event) {
        self.checkpoints.insert(
            key.clone(),
            CurrentState {
                projection: key.projection.clone(),
                instance_id: key.instance.clone(),
                position: event.position,
                in_tx_order: event.in_tx_order,
                aggregate: event.aggregate.clone(),
                sequence: event.sequence,
                updated_at: Utc::now(),
            },
        );
    }

    fn apply(&mut self, statements: &[Statement]) -> Result<(), String> {
        for statement in statements {
            match statement {
                Statement::Increment {
                    table,
                    key,
                    amounts,
                    values,
                } => {
                    let rows = self.tables.entry(table).or_default();
                    match rows.iter_mut().find(|row| matches(row, key)) {
                        Some(row) => {
                            for (column, amount) in amounts {
                                let sum = add(row.get(*column), amount).map_err(|reason| {
                                    format!("cannot add to {table}.{column}: {reason}")
                                })?;
                                row.insert((*column).to_owned(), sum);
                            }
                            for (column, value) in values {
                                row.insert((*column).to_owned(), value.clone());
                            }
                        }
                        None => rows.push(
                            key.iter()
                                .chain(amounts)
                                .chain(values)
                                .map(|(column, value)| ((*column).to_owned(), value.clone()))
                                .collect(),
                        ),
                    }
                }
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

/// `current + amount` as PostgreSQL computes `COALESCE(current, 0) + amount` for a column of the
/// amount's type: `NULL` (or no value) counts as zero, overflow is an error. A `numeric` amount on
/// a `bigint` value is refused: PostgreSQL would round the amount to the column's type, which the
/// in-memory read model, having no column types, cannot know.
fn add(current: Option<&SqlValue>, amount: &SqlValue) -> Result<SqlValue, String> {
    let overflow = || "the sum is out of range".to_owned();
    match (current, amount) {
        (None | Some(SqlValue::Null), amount) => Ok(amount.clone()),
        (Some(SqlValue::BigInt(a)), SqlValue::BigInt(b)) => {
            a.checked_add(*b).map(SqlValue::BigInt).ok_or_else(overflow)
        }
        (Some(SqlValue::Numeric(a)), SqlValue::Numeric(b)) => a
            .checked_add(*b)
            .map(SqlValue::Numeric)
            .ok_or_else(overflow),
        (Some(SqlValue::Numeric(a)), SqlValue::BigInt(b)) => a
            .checked_add(rust_decimal::Decimal::from(*b))
            .map(SqlValue::Numeric)
            .ok_or_else(overflow),
        (Some(current), amount) => Err(format!(
            "the column holds {current:?}, which {amount:?} cannot be added to"
        )),
    }
}

impl MemoryProjections {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many (projection, instance) leases are held right now, for tests and diagnostics.
    pub fn leases_held(&self) -> usize {
        lock(&self.state).leased.len()
    }

    /// The rows of a read-model table, in insertion order. A versioned projection's declared
    /// table reads as its live version's.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let state = lock(&self.state);
        let table = state.views.get(table).copied().unwrap_or(table);
        state.tables.get(table).cloned().unwrap_or_default()
    }
}

impl ProjectionBackend for MemoryProjections {
    type Lease = MemoryLease;
    type GroupLease = MemoryGroupLease;
    type Switch = MemorySwitch;

    async fn prepare_version(
        &self,
        setup: &VersionSetup,
    ) -> Result<ProjectionVersion, ProjectionError> {
        Ok(lock(&self.state).prepare_version(setup))
    }

    async fn versions(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<ProjectionVersion>, ProjectionError> {
        Ok(lock(&self.state)
            .versions
            .values()
            .filter(|version| projection.is_none_or(|name| version.projection == name))
            .cloned()
            .collect())
    }

    async fn begin_switch(&self, projection: &str) -> Result<MemorySwitch, ProjectionError> {
        Ok(self.switch_locks.exclusive(projection).await)
    }

    async fn switch_checkpoints(
        &self,
        _switch: &mut MemorySwitch,
        pair: &str,
    ) -> Result<Vec<CurrentState>, ProjectionError> {
        Ok(lock(&self.state)
            .checkpoints
            .values()
            .filter(|state| state.projection == pair)
            .cloned()
            .collect())
    }

    async fn commit_switch(
        &self,
        switch: MemorySwitch,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let switched = lock(&self.state).switch(&switch.projection, version);
        drop(switch);
        switched
    }

    async fn rebuild_version(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        lock(&self.state).rebuild_version(projection, version)
    }

    async fn drop_version(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<ProjectionVersion, ProjectionError> {
        let _switching = self.switch_locks.exclusive(projection).await;
        lock(&self.state).drop_version(projection, version)
    }

    async fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<MemoryLease>, ProjectionError> {
        let switching = self.switch_locks.shared(projection).await;
        let key = LeaseKey::new(projection, instance);
        let mut state = lock(&self.state);
        if !state.leased.insert(key.clone()) {
            return Ok(None);
        }
        Ok(Some(MemoryLease {
            key,
            state: Arc::clone(&self.state),
            _switching: switching,
        }))
    }

    async fn checkpoint(&self, lease: &mut MemoryLease) -> Result<Checkpoint, ProjectionError> {
        let state = lock(&self.state);
        let cursor = state.checkpoints.get(&lease.key).map(CurrentState::cursor);
        let LeaseKey {
            projection,
            instance,
        } = &lease.key;
        let next_failure = state
            .failed
            .values()
            .filter(|failed| {
                &failed.projection == projection
                    && &failed.aggregate.instance_id == instance
                    && cursor.is_none_or(|cursor| {
                        Cursor::new(failed.position, failed.in_tx_order) > cursor
                    })
            })
            .min_by_key(|failed| (failed.position, failed.in_tx_order))
            .map(|failed| NextFailure {
                failure_count: failed.failure_count,
                last_failed_at: failed.last_failed_at,
            });
        let parked = state
            .failed
            .values()
            .filter(|failed| {
                failed.parked
                    && &failed.projection == projection
                    && &failed.aggregate.instance_id == instance
            })
            .map(|failed| failed.aggregate.clone())
            .collect();
        Ok(Checkpoint {
            cursor,
            horizon: None,
            next_failure,
            parked,
            retired: state.is_retired(projection),
        })
    }

    async fn apply(
        &self,
        lease: MemoryLease,
        batch: Vec<ReducedEvent>,
        policy: FailurePolicy,
    ) -> Result<BatchOutcome, ProjectionError> {
        let max_failure_count = policy.max_failure_count;
        let mut state = lock(&self.state);
        let mut outcome = BatchOutcome::default();
        let mut last = None;
        let mut parked_now: HashSet<AggregateRef> = HashSet::new();
        for reduced in batch {
            let event = &reduced.event;
            if parked_now.contains(&event.aggregate) {
                // Owed to the aggregate parked earlier in this batch.
                outcome.processed += 1;
                last = Some(reduced.event);
                continue;
            }
            let failed_key = (
                lease.key.projection.clone(),
                event.aggregate.clone(),
                event.sequence,
            );
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
                            projection: lease.key.projection.clone(),
                            aggregate: event.aggregate.clone(),
                            sequence: event.sequence,
                            position: event.position,
                            in_tx_order: event.in_tx_order,
                            failure_count: 0,
                            error: String::new(),
                            last_failed_at: Utc::now(),
                            skipped_by_operator: false,
                            parked: false,
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
                    if policy.on_failure == OnFailure::Park && !entry.skipped_by_operator {
                        entry.parked = true;
                        parked_now.insert(event.aggregate.clone());
                        outcome.parked += 1;
                    } else {
                        outcome.skipped += 1;
                    }
                }
            }
            outcome.processed += 1;
            last = Some(reduced.event);
        }
        if let Some(event) = last {
            state.move_checkpoint(&lease.key, &event);
        }
        drop(state);
        drop(lease);
        Ok(outcome)
    }

    async fn try_lease_group(
        &self,
        projections: &[&str],
        instance: &InstanceId,
    ) -> Result<(MemoryGroupLease, Vec<bool>), ProjectionError> {
        let mut leases = Vec::with_capacity(projections.len());
        for projection in projections {
            leases.push(self.try_lease(projection, instance).await?);
        }
        let held = leases.iter().map(Option::is_some).collect();
        Ok((MemoryGroupLease { leases }, held))
    }

    async fn group_checkpoints(
        &self,
        lease: &mut MemoryGroupLease,
    ) -> Result<Vec<Option<Checkpoint>>, ProjectionError> {
        let mut checkpoints = Vec::with_capacity(lease.leases.len());
        for member in &mut lease.leases {
            checkpoints.push(match member {
                Some(member) => Some(self.checkpoint(member).await?),
                None => None,
            });
        }
        Ok(checkpoints)
    }

    async fn apply_group(
        &self,
        lease: MemoryGroupLease,
        batches: Vec<(usize, Vec<ReducedEvent>)>,
    ) -> Result<bool, ProjectionError> {
        Ok(lock(&self.state).apply_group(&lease, batches))
    }

    async fn release_group(&self, lease: MemoryGroupLease) {
        drop(lease);
    }

    async fn unpark(
        &self,
        lease: MemoryLease,
        parked: &FailedEvent,
        batch: Vec<ReducedEvent>,
        skip_parked: bool,
    ) -> Result<Unparked, ProjectionError> {
        let mut state = lock(&self.state);
        let projection = lease.key.projection.clone();
        let parked_key = (
            projection.clone(),
            parked.aggregate.clone(),
            parked.sequence,
        );
        if !state
            .failed
            .get(&parked_key)
            .is_some_and(|record| record.parked)
        {
            return Err(ProjectionError::UnknownFailedEvent {
                projection,
                aggregate: parked.aggregate.to_string(),
                sequence: parked.sequence,
            });
        }
        // One lock for all of it: nobody sees the events applied without the record updated.
        let mut unparked = Unparked::default();
        let mut failure = None;
        for reduced in &batch {
            let result = reduced
                .statements
                .clone()
                .and_then(|statements| state.execute(&statements));
            if let Err(error) = result {
                failure = Some((reduced.event.clone(), error));
                break;
            }
            unparked.applied += 1;
        }
        let previous = state.failed.remove(&parked_key);
        if let Some((event, error)) = failure {
            let same = event.aggregate == parked.aggregate && event.sequence == parked.sequence;
            let count = match (&previous, same) {
                (Some(previous), true) => previous.failure_count.saturating_add(1),
                _ => 1,
            };
            state.failed.insert(
                (projection.clone(), event.aggregate.clone(), event.sequence),
                FailedEvent {
                    projection,
                    aggregate: event.aggregate.clone(),
                    sequence: event.sequence,
                    position: event.position,
                    in_tx_order: event.in_tx_order,
                    failure_count: count,
                    error,
                    last_failed_at: Utc::now(),
                    skipped_by_operator: false,
                    parked: true,
                },
            );
            unparked.parked_at = Some(event.sequence);
        }
        // A skipped record stays, as the operator's skip, no longer parked.
        if skip_parked && let Some(mut previous) = previous {
            previous.parked = false;
            previous.skipped_by_operator = true;
            state.failed.insert(parked_key, previous);
        }
        drop(state);
        drop(lease);
        Ok(unparked)
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
        let LeaseKey {
            projection,
            instance,
        } = &lease.key;
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
            lease.key.projection.clone(),
            failed.aggregate.clone(),
            failed.sequence,
        ));
        Ok(())
    }

    async fn skip(
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
            entry.skipped_by_operator = true;
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
            .get(&LeaseKey::new(projection, instance))
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
        let mut failed: Vec<FailedEvent> = lock(&self.state)
            .failed
            .values()
            .filter(|failed| projection.is_none_or(|name| failed.projection == name))
            .cloned()
            .collect();
        failed.sort_by(|a, b| {
            (&a.projection, a.position, a.in_tx_order).cmp(&(
                &b.projection,
                b.position,
                b.in_tx_order,
            ))
        });
        Ok(failed)
    }

    async fn unregister(&self, projection: &str) -> Result<(), ProjectionError> {
        let mut state = lock(&self.state);
        state
            .checkpoints
            .retain(|key, _| key.projection != projection);
        state.failed.retain(|(name, _, _), _| name != projection);
        Ok(())
    }
}
