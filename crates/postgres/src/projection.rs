//! [`PgProjections`]: read models, checkpoints and failed events in PostgreSQL, with a lease per
//! (projection, instance) that is a transaction holding an advisory lock.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgArguments, PgListener};
use sqlx::{Arguments, PgPool, Postgres, Transaction};
use strata_event::{AggregateId, AggregateRef, AggregateType, Cursor, InstanceId, Position};
use strata_projection::{
    BatchOutcome, Checkpoint, Column, CurrentState, FailedEvent, FailedEventKey, NextFailure,
    OperatorRequest, ProjectionBackend, ProjectionError, Reads, ReducedEvent, RuntimeHeartbeat,
    SqlValue, Statement, is_identifier,
};
use tokio::sync::mpsc;

use crate::error::from_sqlx;
use crate::store::PUSH_CHANNEL;

/// Projection storage on PostgreSQL. Give it the store's projection pool
/// (`store.pools().projection()`), so projection work can never take the connections pushes and
/// queries need. Cheap to clone.
///
/// # Commits
///
/// A batch commits without waiting for its WAL record to reach the disk
/// (`synchronous_commit = off` for that transaction only): a batch that waits for its flush
/// holds its pair, and the next batch, for that long, so under write load read models lag by
/// the disk's flush latency (P2 in `docs/benchmarks.md`: p99 97–167 ms durable, 19–37 ms
/// without, on a slow disk). Nothing is lost that matters: the read model and its checkpoint are one
/// transaction, so a crash loses both together (at most the last `3 × wal_writer_delay`, 0.6 s
/// by default) and the projection applies those events again, exactly once. Events themselves
/// always commit durably. Two cases ask for durable commits instead: projections that declare
/// [side effects](strata_projection::Projection::has_side_effects), whose
/// `after_commit` hook must not run for a batch a crash could undo, and every projection once
/// [`PgProjections::durable_commits`] is set.
#[derive(Debug, Clone)]
pub struct PgProjections {
    pool: PgPool,
    listen: bool,
    durable_commits: bool,
    /// Projections registered with side effects: their batches always commit durably.
    durable_projections: Arc<RwLock<HashSet<String>>>,
}

/// The lease of one (projection, instance): an open transaction holding a transaction-scoped
/// advisory lock. Committing or rolling back ends it; so does a crash, with the session.
#[derive(Debug)]
pub struct PgLease {
    tx: Transaction<'static, Postgres>,
    projection: String,
    instance: InstanceId,
    /// What [`ProjectionBackend::checkpoint`] read (the cursor and the next event's failure),
    /// so the fast path's fallback can tell whether another worker moved on meanwhile.
    checkpoint: Option<(Decimal, i32)>,
    next_failure: Option<(i32, DateTime<Utc>)>,
}

fn store_error(context: &str, err: sqlx::Error) -> ProjectionError {
    ProjectionError::Store(from_sqlx(context, err))
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Store(strata_store::Error::Backend {
        message: format!("projection bookkeeping holds an invalid {what}: {err}"),
        source: None,
    })
}

impl PgProjections {
    /// Projection storage on `pool`, listening for other processes' pushes.
    pub fn new(pool: PgPool) -> Self {
        PgProjections {
            pool,
            listen: true,
            durable_commits: false,
            durable_projections: Arc::default(),
        }
    }

    /// Every batch waits for its commit to be flushed to disk, as pushes do (see
    /// [Commits](PgProjections#commits) for why that is not the default).
    pub fn durable_commits(mut self) -> Self {
        self.durable_commits = true;
        self
    }

    fn commits_durably(&self, projection: &str) -> bool {
        self.durable_commits
            || self
                .durable_projections
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(projection)
    }

    /// Does not listen for other processes' pushes (projections then rely on local pushes and
    /// their tick).
    pub fn without_listening(mut self) -> Self {
        self.listen = false;
        self
    }
}

/// The SQL for one statement, with `NULL`s written inline (an untyped `NULL` fits any column,
/// a bound one would be typed `text`) and JSON cast to `jsonb`.
fn render(statement: &Statement) -> Result<(String, PgArguments), String> {
    // The same check, and message, as the in-memory read model's, before anything else.
    statement.check()?;
    let mut arguments = PgArguments::default();
    let mut count = 0;
    let mut value = |value: &SqlValue| -> Result<String, String> {
        let bound = match value {
            SqlValue::Null => return Ok("NULL".into()),
            SqlValue::Bool(v) => arguments.add(*v),
            SqlValue::BigInt(v) => arguments.add(*v),
            SqlValue::Numeric(v) => arguments.add(*v),
            SqlValue::Text(v) => arguments.add(v.clone()),
            SqlValue::Timestamp(v) => arguments.add(*v),
            SqlValue::Json(v) => {
                arguments.add(v.clone()).map_err(|err| err.to_string())?;
                count += 1;
                return Ok(format!("${count}::jsonb"));
            }
            other => return Err(format!("unsupported value {other:?}")),
        };
        bound.map_err(|err| err.to_string())?;
        count += 1;
        Ok(format!("${count}"))
    };
    let identifier = quoted_identifier;
    let conditions = |filter: &[(&'static str, SqlValue)],
                      value: &mut dyn FnMut(&SqlValue) -> Result<String, String>|
     -> Result<String, String> {
        let parts = filter
            .iter()
            .map(|(column, v)| match v {
                SqlValue::Null => Ok(format!("{} IS NULL", identifier(column)?)),
                v => Ok(format!("{} = {}", identifier(column)?, value(v)?)),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        })
    };
    let sql = match statement {
        Statement::Upsert { table, key, values } => {
            render_insert(table, key, &[], values, &mut value)?
        }
        Statement::Increment {
            table,
            key,
            amounts,
            values,
        } => render_insert(table, key, amounts, values, &mut value)?,
        Statement::Update {
            table,
            values,
            filter,
        } => {
            let sets = values
                .iter()
                .map(|(column, v)| Ok(format!("{} = {}", identifier(column)?, value(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            if sets.is_empty() {
                return Ok((String::new(), arguments));
            }
            let filter = conditions(filter, &mut value)?;
            format!(
                "UPDATE {} SET {}{filter}",
                identifier(table)?,
                sets.join(", ")
            )
        }
        Statement::Delete { table, filter } => {
            let filter = conditions(filter, &mut value)?;
            format!("DELETE FROM {}{filter}", identifier(table)?)
        }
        Statement::Sql { sql: raw, binds } => {
            for bind in binds {
                value(bind)?;
            }
            (*raw).to_owned()
        }
        other => return Err(format!("unsupported statement {other:?}")),
    };
    Ok((sql, arguments))
}

/// `INSERT INTO table AS existing (key…, amounts…, values…) VALUES (…) ON CONFLICT (key…) DO …`:
/// an upsert (no `amounts`) sets `values` on the existing row, an increment also adds its
/// `amounts` to the existing row's columns (`NULL` counting as zero).
fn render_insert(
    table: &str,
    key: &[Column],
    amounts: &[Column],
    values: &[Column],
    value: &mut dyn FnMut(&SqlValue) -> Result<String, String>,
) -> Result<String, String> {
    let all = || key.iter().chain(amounts).chain(values);
    let columns = all()
        .map(|(column, _)| quoted_identifier(column))
        .collect::<Result<Vec<_>, _>>()?;
    let placeholders = all()
        .map(|(_, v)| value(v))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = key
        .iter()
        .map(|(column, _)| quoted_identifier(column))
        .collect::<Result<Vec<_>, _>>()?;
    let additions = amounts.iter().map(|(column, _)| {
        quoted_identifier(column).map(|c| format!("{c} = COALESCE(existing.{c}, 0) + EXCLUDED.{c}"))
    });
    let sets = values
        .iter()
        .map(|(column, _)| quoted_identifier(column).map(|c| format!("{c} = EXCLUDED.{c}")));
    let actions = additions.chain(sets).collect::<Result<Vec<_>, _>>()?;
    let action = if actions.is_empty() {
        "NOTHING".to_owned()
    } else {
        format!("UPDATE SET {}", actions.join(", "))
    };
    Ok(format!(
        "INSERT INTO {} AS existing ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
        quoted_identifier(table)?,
        columns.join(", "),
        placeholders.join(", "),
        keys.join(", ")
    ))
}

/// `name` (a table, optionally `schema.table`, or a column) as a quoted SQL identifier, after the
/// same check as every backend's: quoting keeps reserved words such as `order` or `user` usable,
/// and the check (lowercase letters, digits, `_`) keeps quoting from changing what a name means.
fn quoted_identifier(name: &str) -> Result<String, String> {
    if !is_identifier(name) {
        return Err(format!("{name:?} is not a valid table or column name"));
    }
    Ok(name
        .split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// Most rows one merged upsert carries (PostgreSQL allows 65 535 bind parameters per statement).
const MAX_MERGED_BINDS: usize = 30_000;

/// Merges runs of consecutive upserts into the same table with the same columns into multi-row
/// upserts: one round trip instead of one per event, which is most of a catch-up's cost. Within a
/// run, a later upsert of the same key replaces an earlier one (the same columns are written, so
/// the last values win either way), because one statement may not touch a row twice.
///
/// It borrows the statements: the batch keeps them for the event-by-event path a failure takes,
/// and copying every value of every row was a large part of a batch's own CPU time.
fn merge_upserts<'a>(statements: impl IntoIterator<Item = &'a Statement>) -> Vec<Step<'a>> {
    let mut merged: Vec<Step<'a>> = Vec::new();
    let mut run: Vec<&'a Statement> = Vec::new();
    let flush = |run: &mut Vec<&'a Statement>, merged: &mut Vec<Step<'a>>| {
        if run.len() <= 1 {
            merged.extend(run.drain(..).map(Step::One));
            return;
        }
        // Keep the last upsert of each key, in the order of those last occurrences.
        let mut seen = std::collections::HashSet::with_capacity(run.len());
        let mut rows: Vec<&'a Statement> = Vec::with_capacity(run.len());
        for statement in run.drain(..).rev() {
            if let Statement::Upsert { key, .. } = statement
                && seen.insert(key)
            {
                rows.push(statement);
            }
        }
        rows.reverse();
        merged.push(Step::Rows(rows));
    };
    for statement in statements {
        let Statement::Upsert { key, values, .. } = statement else {
            flush(&mut run, &mut merged);
            merged.push(Step::One(statement));
            continue;
        };
        let fits = (run.len() + 1) * (key.len() + values.len()) < MAX_MERGED_BINDS;
        if !(fits
            && run
                .first()
                .is_some_and(|first| same_shape(first, statement)))
        {
            flush(&mut run, &mut merged);
        }
        run.push(statement);
    }
    flush(&mut run, &mut merged);
    merged
}

/// Whether two statements are upserts into the same table with the same key and value columns.
fn same_shape(a: &Statement, b: &Statement) -> bool {
    match (a, b) {
        (
            Statement::Upsert {
                table: table_a,
                key: key_a,
                values: values_a,
            },
            Statement::Upsert {
                table: table_b,
                key: key_b,
                values: values_b,
            },
        ) => {
            fn names(columns: &[Column]) -> impl Iterator<Item = &'static str> + '_ {
                columns.iter().map(|(name, _)| *name)
            }
            table_a == table_b
                && names(key_a).eq(names(key_b))
                && names(values_a).eq(names(values_b))
        }
        _ => false,
    }
}

/// A statement, or upserts of one shape to send as one multi-row statement.
enum Step<'a> {
    One(&'a Statement),
    Rows(Vec<&'a Statement>),
}

/// One column of a merged upsert as a typed array, for `UNNEST`.
enum ColumnArray<'a> {
    Bool(Vec<Option<bool>>),
    BigInt(Vec<Option<i64>>),
    Numeric(Vec<Option<Decimal>>),
    Text(Vec<Option<&'a str>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
}

impl<'a> ColumnArray<'a> {
    /// An empty array for values like `value`; `None` for `NULL` (no type to tell) and JSON.
    fn for_value(value: &SqlValue, capacity: usize) -> Option<ColumnArray<'a>> {
        Some(match value {
            SqlValue::Bool(_) => ColumnArray::Bool(Vec::with_capacity(capacity)),
            SqlValue::BigInt(_) => ColumnArray::BigInt(Vec::with_capacity(capacity)),
            SqlValue::Numeric(_) => ColumnArray::Numeric(Vec::with_capacity(capacity)),
            SqlValue::Text(_) => ColumnArray::Text(Vec::with_capacity(capacity)),
            SqlValue::Timestamp(_) => ColumnArray::Timestamp(Vec::with_capacity(capacity)),
            _ => return None,
        })
    }

    /// Appends `value`; `false` when its type differs from the column's.
    fn push(&mut self, value: &'a SqlValue) -> bool {
        match (self, value) {
            (ColumnArray::Bool(column), SqlValue::Null) => column.push(None),
            (ColumnArray::BigInt(column), SqlValue::Null) => column.push(None),
            (ColumnArray::Numeric(column), SqlValue::Null) => column.push(None),
            (ColumnArray::Text(column), SqlValue::Null) => column.push(None),
            (ColumnArray::Timestamp(column), SqlValue::Null) => column.push(None),
            (ColumnArray::Bool(column), SqlValue::Bool(v)) => column.push(Some(*v)),
            (ColumnArray::BigInt(column), SqlValue::BigInt(v)) => column.push(Some(*v)),
            (ColumnArray::Numeric(column), SqlValue::Numeric(v)) => column.push(Some(*v)),
            (ColumnArray::Text(column), SqlValue::Text(v)) => column.push(Some(v.as_str())),
            (ColumnArray::Timestamp(column), SqlValue::Timestamp(v)) => column.push(Some(*v)),
            _ => return false,
        }
        true
    }

    fn sql_type(&self) -> &'static str {
        match self {
            ColumnArray::Bool(_) => "bool[]",
            ColumnArray::BigInt(_) => "int8[]",
            ColumnArray::Numeric(_) => "numeric[]",
            ColumnArray::Text(_) => "text[]",
            ColumnArray::Timestamp(_) => "timestamptz[]",
        }
    }

    fn bind(self, arguments: &mut PgArguments) -> Result<(), String> {
        match self {
            ColumnArray::Bool(column) => arguments.add(column),
            ColumnArray::BigInt(column) => arguments.add(column),
            ColumnArray::Numeric(column) => arguments.add(column),
            ColumnArray::Text(column) => arguments.add(column),
            ColumnArray::Timestamp(column) => arguments.add(column),
        }
        .map_err(|err| err.to_string())
    }
}

/// Renders upserts of one shape (same table and columns, as [`merge_upserts`] groups them) as one
/// statement. When every column holds values of one type (or `NULL`), that is
/// `INSERT … SELECT * FROM UNNEST($1::type[], …) ON CONFLICT …`: one array per column, so the SQL
/// text is the same whatever the number of rows, and PostgreSQL parses and plans it once per
/// connection instead of once per batch (a batch of 800 rows is 2 400 parameters otherwise).
/// Otherwise (JSON, a column with values of mixed types, a column of only `NULL`s) it is the
/// multi-row `VALUES` form.
fn render_rows(rows: &[&Statement]) -> Result<(String, PgArguments), String> {
    // merge_upserts only runs statements of one shape together (same_shape): the first row's
    // names are every row's.
    if let Some(first) = rows.first() {
        first.check_names()?;
    }
    match render_rows_unnest(rows)? {
        Some(rendered) => Ok(rendered),
        None => render_rows_values(rows),
    }
}

/// The `UNNEST` form of [`render_rows`], or `None` when the values do not allow it.
fn render_rows_unnest(rows: &[&Statement]) -> Result<Option<(String, PgArguments)>, String> {
    let Some(Statement::Upsert { key, values, .. }) = rows.first().copied() else {
        return Err("no rows to upsert".into());
    };
    let width = key.len() + values.len();
    let mut columns: Vec<Option<ColumnArray<'_>>> = (0..width).map(|_| None).collect();
    // A column's type comes from its first non-NULL value; NULLs before it are remembered.
    let mut leading_nulls = vec![0usize; width];
    for row in rows {
        for (index, (_, value)) in upsert_columns(row)?.enumerate() {
            let (Some(slot), Some(nulls)) = (columns.get_mut(index), leading_nulls.get_mut(index))
            else {
                return Err("upserts of different widths in one run".into());
            };
            match slot {
                Some(column) => {
                    if !column.push(value) {
                        return Ok(None);
                    }
                }
                None if matches!(value, SqlValue::Null) => *nulls += 1,
                None => {
                    let Some(mut column) = ColumnArray::for_value(value, rows.len()) else {
                        return Ok(None);
                    };
                    for _ in 0..*nulls {
                        column.push(&SqlValue::Null);
                    }
                    column.push(value);
                    *slot = Some(column);
                }
            }
        }
    }
    let Some(columns) = columns
        .into_iter()
        .collect::<Option<Vec<ColumnArray<'_>>>>()
    else {
        return Ok(None); // A column of only NULLs: no type to give its array.
    };
    let (head, tail) = upsert_frame(rows[0])?;
    let mut arguments = PgArguments::default();
    let mut arrays = Vec::with_capacity(width);
    for (index, column) in columns.into_iter().enumerate() {
        arrays.push(format!("${}::{}", index + 1, column.sql_type()));
        column.bind(&mut arguments)?;
    }
    Ok(Some((
        format!("{head} SELECT * FROM UNNEST({}){tail}", arrays.join(", ")),
        arguments,
    )))
}

/// The columns of one row of a merged upsert run, key first.
fn upsert_columns(row: &Statement) -> Result<impl Iterator<Item = &Column>, String> {
    match row {
        Statement::Upsert { key, values, .. } => Ok(key.iter().chain(values)),
        _ => Err("mixed statements in an upsert run".into()),
    }
}

/// The parts of one upsert's SQL around its `VALUES (…)` tuple: `INSERT INTO t (columns)` and
/// ` ON CONFLICT … DO …`. They are the same for every row of a merged run, so the single-row
/// rendering (with its identifier checks) supplies them for both merged forms.
fn upsert_frame(first: &Statement) -> Result<(String, String), String> {
    let (sql, _) = render(first)?;
    let values_at = sql.find(" VALUES (").ok_or("unexpected upsert shape")?;
    let conflict_at = sql.find(") ON CONFLICT").ok_or("unexpected upsert shape")?;
    Ok((
        sql[..values_at].to_owned(),
        sql[conflict_at + 1..].to_owned(),
    ))
}

/// The multi-row `VALUES` form of [`render_rows`]:
/// `INSERT … VALUES (…), (…) ON CONFLICT … DO UPDATE`.
fn render_rows_values(rows: &[&Statement]) -> Result<(String, PgArguments), String> {
    let Some(first @ Statement::Upsert { key, values, .. }) = rows.first().copied() else {
        return Err("no rows to upsert".into());
    };
    let (head, tail) = upsert_frame(first)?;
    let mut arguments = PgArguments::default();
    let mut count = 0;
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let mut placeholders = Vec::with_capacity(key.len() + values.len());
        for (_, value) in upsert_columns(row)? {
            let bound = match value {
                SqlValue::Null => {
                    placeholders.push("NULL".to_owned());
                    continue;
                }
                SqlValue::Bool(v) => arguments.add(*v),
                SqlValue::BigInt(v) => arguments.add(*v),
                SqlValue::Numeric(v) => arguments.add(*v),
                SqlValue::Text(v) => arguments.add(v.clone()),
                SqlValue::Timestamp(v) => arguments.add(*v),
                SqlValue::Json(v) => arguments.add(v.clone()),
                other => return Err(format!("unsupported value {other:?}")),
            };
            bound.map_err(|err| err.to_string())?;
            count += 1;
            placeholders.push(if matches!(value, SqlValue::Json(_)) {
                format!("${count}::jsonb")
            } else {
                format!("${count}")
            });
        }
        tuples.push(format!("({})", placeholders.join(", ")));
    }
    Ok((
        format!("{head} VALUES {}{tail}", tuples.join(", ")),
        arguments,
    ))
}

async fn execute_merged(
    tx: &mut Transaction<'static, Postgres>,
    steps: Vec<Step<'_>>,
) -> Result<(), String> {
    for step in steps {
        match step {
            Step::One(statement) => execute(tx, std::slice::from_ref(statement)).await?,
            Step::Rows(rows) => {
                let (sql, arguments) = render_rows(&rows)?;
                sqlx::query_with(&sql, arguments)
                    .execute(&mut **tx)
                    .await
                    .map_err(|err| err.to_string())?;
            }
        }
    }
    Ok(())
}

/// Runs `statements` in `tx`; the first failure is returned as text (for the failed-events table).
async fn execute(
    tx: &mut Transaction<'static, Postgres>,
    statements: &[Statement],
) -> Result<(), String> {
    for statement in statements {
        let (sql, arguments) = render(statement)?;
        if sql.is_empty() {
            continue;
        }
        sqlx::query_with(&sql, arguments)
            .execute(&mut **tx)
            .await
            .map_err(|err| err.to_string())?;
    }
    Ok(())
}

async fn savepoint(
    tx: &mut Transaction<'static, Postgres>,
    sql: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(sql)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|err| store_error("managing a savepoint", err))
}

/// A row of `projections.current_states`.
#[derive(sqlx::FromRow)]
struct StateRow {
    instance_id: String,
    projection_name: String,
    position: Decimal,
    in_tx_order: i32,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    updated_at: DateTime<Utc>,
}

/// A row of `projections.failed_events`.
#[derive(sqlx::FromRow)]
struct FailedRow {
    instance_id: String,
    projection_name: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: Decimal,
    in_tx_order: i32,
    failure_count: i32,
    error: String,
    last_failed_at: DateTime<Utc>,
    skipped_by_operator: bool,
}

/// What [`ProjectionBackend::checkpoint`] reads in one round trip.
#[derive(sqlx::FromRow)]
struct CheckpointRow {
    position: Option<Decimal>,
    in_tx_order: Option<i32>,
    horizon: Decimal,
    next_failure_count: Option<i32>,
    next_failed_at: Option<DateTime<Utc>>,
}

fn aggregate_ref(
    instance_id: InstanceId,
    aggregate_type: String,
    aggregate_id: String,
) -> Result<AggregateRef, ProjectionError> {
    Ok(AggregateRef {
        instance_id,
        aggregate_type: AggregateType::new(aggregate_type)
            .map_err(|err| corrupt("aggregate type", err))?,
        aggregate_id: AggregateId::new(aggregate_id).map_err(|err| corrupt("aggregate id", err))?,
    })
}

fn decode_state(row: StateRow) -> Result<CurrentState, ProjectionError> {
    let instance_id =
        InstanceId::new(row.instance_id).map_err(|err| corrupt("instance id", err))?;
    Ok(CurrentState {
        projection: row.projection_name,
        aggregate: aggregate_ref(instance_id.clone(), row.aggregate_type, row.aggregate_id)?,
        instance_id,
        position: Position::new(row.position).map_err(|err| corrupt("position", err))?,
        in_tx_order: row.in_tx_order as u32,
        sequence: row.sequence as u64,
        updated_at: row.updated_at,
    })
}

fn decode_failed(row: FailedRow) -> Result<FailedEvent, ProjectionError> {
    let instance_id =
        InstanceId::new(row.instance_id).map_err(|err| corrupt("instance id", err))?;
    Ok(FailedEvent {
        projection: row.projection_name,
        aggregate: aggregate_ref(instance_id, row.aggregate_type, row.aggregate_id)?,
        sequence: row.sequence as u64,
        position: Position::new(row.position).map_err(|err| corrupt("position", err))?,
        in_tx_order: row.in_tx_order as u32,
        failure_count: row.failure_count.max(0) as u32,
        error: row.error,
        last_failed_at: row.last_failed_at,
        skipped_by_operator: row.skipped_by_operator,
    })
}

const STATE_COLUMNS: &str = "instance_id, projection_name, position, in_tx_order, aggregate_type, \
     aggregate_id, sequence, updated_at";
const FAILED_COLUMNS: &str = "instance_id, projection_name, aggregate_type, aggregate_id, sequence, \
     position, in_tx_order, failure_count, error, last_failed_at, skipped_by_operator";

impl ProjectionBackend for PgProjections {
    type Lease = PgLease;

    async fn try_lease(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<PgLease>, ProjectionError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|err| store_error("starting a projection batch", err))?;
        // The commit mode is set in the same round trip, for this transaction only. A durable
        // batch keeps the session's own setting (which may ask for more than a local flush, e.g.
        // `remote_apply` with a synchronous standby).
        let locked: bool = sqlx::query_scalar(if self.commits_durably(projection) {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key($1, $2))"
        } else {
            "SELECT pg_try_advisory_xact_lock(projections.lease_key($1, $2)) \
                    AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
        })
        .bind(projection)
        .bind(instance.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| store_error("taking a projection lease", err))?;
        if !locked {
            let _ = tx.rollback().await;
            return Ok(None);
        }
        Ok(Some(PgLease {
            tx,
            projection: projection.to_owned(),
            instance: instance.clone(),
            checkpoint: None,
            next_failure: None,
        }))
    }

    async fn checkpoint(&self, lease: &mut PgLease) -> Result<Checkpoint, ProjectionError> {
        // One round trip: the checkpoint, the failure recorded for the next event (failures with
        // attempts left sit right after the checkpoint), and the horizon, read after the lock and
        // before the events, which is all the runtime needs of it.
        let row: CheckpointRow = sqlx::query_as(
            "SELECT state.position, state.in_tx_order, eventstore.commit_horizon() AS horizon, \
                    next.failure_count AS next_failure_count, \
                    next.last_failed_at AS next_failed_at \
             FROM (SELECT) AS one \
             LEFT JOIN projections.current_states state \
                    ON state.instance_id = $1 AND state.projection_name = $2 \
             LEFT JOIN LATERAL ( \
                 SELECT failure_count, last_failed_at FROM projections.failed_events failed \
                 WHERE failed.instance_id = $1 AND failed.projection_name = $2 \
                   AND (state.position IS NULL \
                        OR (failed.position, failed.in_tx_order) \
                           > (state.position, state.in_tx_order)) \
                 ORDER BY failed.position, failed.in_tx_order LIMIT 1 \
             ) AS next ON true",
        )
        .bind(lease.instance.as_str())
        .bind(&lease.projection)
        .fetch_one(&mut *lease.tx)
        .await
        .map_err(|err| store_error("reading a checkpoint", err))?;
        let cursor = row.position.zip(row.in_tx_order);
        lease.checkpoint = cursor;
        lease.next_failure = row.next_failure_count.zip(row.next_failed_at);
        Ok(Checkpoint {
            cursor: cursor
                .map(|(position, order)| {
                    Position::new(position)
                        .map(|position| Cursor::new(position, order as u32))
                        .map_err(|err| corrupt("position", err))
                })
                .transpose()?,
            horizon: Some(Position::new(row.horizon).map_err(|err| corrupt("horizon", err))?),
            next_failure: row
                .next_failure_count
                .zip(row.next_failed_at)
                .map(|(count, at)| NextFailure {
                    failure_count: count.max(0) as u32,
                    last_failed_at: at,
                }),
        })
    }

    async fn apply(
        &self,
        mut lease: PgLease,
        batch: Vec<ReducedEvent>,
        max_failure_count: u32,
    ) -> Result<BatchOutcome, ProjectionError> {
        // Fast path: every statement of the batch (runs of upserts merged), then the checkpoint, in
        // as few round trips as possible and without savepoints. Only when something fails is the
        // batch redone event by event to find and record the culprit. A reducer that failed
        // leaves nothing to try: that batch goes event by event at once, on the same lease.
        if batch.iter().any(|reduced| reduced.statements.is_err()) {
            return apply_event_by_event(lease, batch, max_failure_count).await;
        }
        let statements = batch
            .iter()
            .filter_map(|reduced| reduced.statements.as_ref().ok())
            .flatten();
        if execute_merged(&mut lease.tx, merge_upserts(statements))
            .await
            .is_ok()
        {
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                // A batch starting at an event that failed before (with attempts left) has now
                // applied it: its failure record goes with the checkpoint move.
                move_checkpoint(&mut lease, &last.event, Some(&first.event)).await?;
            }
            lease
                .tx
                .commit()
                .await
                .map_err(|err| store_error("committing a projection batch", err))?;
            return Ok(BatchOutcome {
                processed: batch.len(),
                ..BatchOutcome::default()
            });
        }
        // The failed statement aborted the transaction, and with it the lease's lock. Take the
        // lease again; if someone else has it, or has meanwhile moved the checkpoint or recorded
        // another attempt at the next event, this batch is stale and the next run starts afresh
        // (so no attempt skips the retry schedule).
        let PgLease {
            tx,
            projection,
            instance,
            checkpoint,
            next_failure,
        } = lease;
        let _ = tx.rollback().await;
        let Some(mut lease) = self.try_lease(&projection, &instance).await? else {
            return Ok(BatchOutcome::default());
        };
        self.checkpoint(&mut lease).await?;
        if lease.checkpoint != checkpoint || lease.next_failure != next_failure {
            self.release(lease).await;
            return Ok(BatchOutcome::default());
        }
        apply_event_by_event(lease, batch, max_failure_count).await
    }

    async fn release(&self, lease: PgLease) {
        let _ = lease.tx.rollback().await;
    }

    async fn reset(
        &self,
        mut lease: PgLease,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        execute(&mut lease.tx, &statements)
            .await
            .map_err(ProjectionError::Statement)?;
        for table in ["projections.current_states", "projections.failed_events"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE instance_id = $1 AND projection_name = $2"
            ))
            .bind(lease.instance.as_str())
            .bind(&lease.projection)
            .execute(&mut *lease.tx)
            .await
            .map_err(|err| store_error("resetting a projection", err))?;
        }
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a projection reset", err))
    }

    async fn apply_retried(
        &self,
        mut lease: PgLease,
        failed: &FailedEvent,
        statements: Vec<Statement>,
    ) -> Result<(), ProjectionError> {
        execute(&mut lease.tx, &statements)
            .await
            .map_err(ProjectionError::Statement)?;
        sqlx::query(
            "DELETE FROM projections.failed_events WHERE instance_id = $1 AND projection_name = $2 \
             AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
        )
        .bind(failed.aggregate.instance_id.as_str())
        .bind(&failed.projection)
        .bind(failed.aggregate.aggregate_type.as_str())
        .bind(failed.aggregate.aggregate_id.as_str())
        .bind(failed.sequence as i64)
        .execute(&mut *lease.tx)
        .await
        .map_err(|err| store_error("forgetting a failed event", err))?;
        lease
            .tx
            .commit()
            .await
            .map_err(|err| store_error("committing a retried event", err))
    }

    async fn give_up(
        &self,
        failed: &FailedEvent,
        max_failure_count: u32,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "UPDATE projections.failed_events SET failure_count = GREATEST(failure_count, $6), \
             skipped_by_operator = true \
             WHERE instance_id = $1 AND projection_name = $2 AND aggregate_type = $3 \
             AND aggregate_id = $4 AND sequence = $5",
        )
        .bind(failed.aggregate.instance_id.as_str())
        .bind(&failed.projection)
        .bind(failed.aggregate.aggregate_type.as_str())
        .bind(failed.aggregate.aggregate_id.as_str())
        .bind(failed.sequence as i64)
        .bind(i32::try_from(max_failure_count).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| store_error("skipping a failed event", err))
    }

    async fn state(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Option<CurrentState>, ProjectionError> {
        let row: Option<StateRow> = sqlx::query_as(&format!(
            "SELECT {STATE_COLUMNS} FROM projections.current_states \
             WHERE instance_id = $1 AND projection_name = $2"
        ))
        .bind(instance.as_str())
        .bind(projection)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| store_error("reading a projection state", err))?;
        row.map(decode_state).transpose()
    }

    async fn states(&self) -> Result<Vec<CurrentState>, ProjectionError> {
        let rows: Vec<StateRow> = sqlx::query_as(&format!(
            "SELECT {STATE_COLUMNS} FROM projections.current_states"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|err| store_error("reading projection states", err))?;
        let mut states = rows
            .into_iter()
            .map(decode_state)
            .collect::<Result<Vec<_>, _>>()?;
        states
            .sort_by(|a, b| (&a.projection, &a.instance_id).cmp(&(&b.projection, &b.instance_id)));
        Ok(states)
    }

    async fn failed_events(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        let rows: Vec<FailedRow> = sqlx::query_as(&format!(
            "SELECT {FAILED_COLUMNS} FROM projections.failed_events \
             WHERE $1::text IS NULL OR projection_name = $1 \
             ORDER BY projection_name, position, in_tx_order"
        ))
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| store_error("reading failed events", err))?;
        rows.into_iter().map(decode_failed).collect()
    }

    async fn failed_events_in(
        &self,
        projection: &str,
        instance: &InstanceId,
    ) -> Result<Vec<FailedEvent>, ProjectionError> {
        let rows: Vec<FailedRow> = sqlx::query_as(&format!(
            "SELECT {FAILED_COLUMNS} FROM projections.failed_events \
             WHERE instance_id = $1 AND projection_name = $2 ORDER BY position, in_tx_order"
        ))
        .bind(instance.as_str())
        .bind(projection)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| store_error("reading failed events", err))?;
        rows.into_iter().map(decode_failed).collect()
    }

    async fn unregister(&self, projection: &str) -> Result<(), ProjectionError> {
        crate::admin::unregister_projection(&self.pool, projection)
            .await
            .map(drop)
            .map_err(ProjectionError::Store)
    }

    async fn heartbeat(&self, runtime: &RuntimeHeartbeat) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO projections.runtimes \
             (runtime_id, host, pid, projections, started_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, now()) \
             ON CONFLICT (runtime_id) DO UPDATE SET last_seen_at = now(), \
             projections = EXCLUDED.projections",
        )
        .bind(&runtime.runtime_id)
        .bind(&runtime.host)
        .bind(i32::try_from(runtime.pid).unwrap_or(i32::MAX))
        .bind(&runtime.projections)
        .bind(runtime.started_at)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| store_error("recording a runtime heartbeat", err))
    }

    async fn runtime_stopped(&self, runtime_id: &str) {
        let removed = sqlx::query("DELETE FROM projections.runtimes WHERE runtime_id = $1")
            .bind(runtime_id)
            .execute(&self.pool)
            .await;
        if let Err(err) = removed {
            tracing::warn!(error = %err, "could not remove the runtime's heartbeat");
        }
    }

    async fn register(
        &self,
        projection: &str,
        reads: &Reads,
        has_side_effects: bool,
    ) -> Result<(), ProjectionError> {
        if has_side_effects {
            self.durable_projections
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(projection.to_owned());
        }
        let reads = serde_json::to_string(reads.entries()).map_err(|err| corrupt("reads", err))?;
        sqlx::query(
            "INSERT INTO projections.registry (projection_name, reads, has_side_effects, registered_at) \
             VALUES ($1, $2::jsonb, $3, now()) ON CONFLICT (projection_name) DO UPDATE \
             SET reads = EXCLUDED.reads, has_side_effects = EXCLUDED.has_side_effects, \
             registered_at = now()",
        )
        .bind(projection)
        .bind(reads)
        .bind(has_side_effects)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| store_error("registering a projection", err))
    }

    async fn take_requests(
        &self,
        projections: &[String],
    ) -> Result<Vec<OperatorRequest>, ProjectionError> {
        type RequestRow = (
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let rows: Vec<RequestRow> = sqlx::query_as(
            "DELETE FROM projections.requests WHERE projection_name = ANY($1) \
             RETURNING instance_id, projection_name, kind, aggregate_type, aggregate_id, sequence",
        )
        .bind(projections)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| store_error("taking operator requests", err))?;
        let mut requests = Vec::new();
        for (instance, projection, kind, aggregate_type, aggregate_id, sequence) in rows {
            let instance_id =
                InstanceId::new(instance).map_err(|err| corrupt("instance id", err))?;
            let key = || -> Result<FailedEventKey, ProjectionError> {
                Ok(FailedEventKey {
                    projection: projection.clone(),
                    aggregate: AggregateRef {
                        instance_id: instance_id.clone(),
                        aggregate_type: AggregateType::new(
                            aggregate_type.clone().unwrap_or_default(),
                        )
                        .map_err(|err| corrupt("request", err))?,
                        aggregate_id: AggregateId::new(aggregate_id.clone().unwrap_or_default())
                            .map_err(|err| corrupt("request", err))?,
                    },
                    sequence: sequence.unwrap_or_default().max(0) as u64,
                })
            };
            requests.push(match kind.as_str() {
                "rebuild" => OperatorRequest::Rebuild {
                    projection: projection.clone(),
                    instance_id: instance_id.clone(),
                },
                "retry" => OperatorRequest::Retry(key()?),
                _ => OperatorRequest::Skip(key()?),
            });
        }
        Ok(requests)
    }

    fn remote_pushes(&self) -> Option<mpsc::Receiver<Vec<InstanceId>>> {
        if !self.listen {
            return None;
        }
        let (sender, receiver) = mpsc::channel(1024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut listener = loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen(PUSH_CHANNEL).await {
                        Ok(()) => break listener,
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot LISTEN for pushes; retrying")
                        }
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot connect to LISTEN for pushes; retrying")
                    }
                }
                if sender.is_closed() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            };
            loop {
                // Stops, and gives its connection back to the pool, as soon as the runtime is
                // gone, not at the next notice: on a quiet store that could be never.
                let received = tokio::select! {
                    received = listener.try_recv() => received,
                    () = sender.closed() => return,
                };
                let instances = match received {
                    Ok(Some(notification)) => notification
                        .payload()
                        .lines()
                        .filter_map(|line| InstanceId::new(line).ok())
                        .collect(),
                    // The connection dropped and notices may have been missed: an empty list asks
                    // the runtime to check everything. The listener reconnects on the next call.
                    Ok(None) => Vec::new(),
                    Err(err) => {
                        tracing::warn!(error = %err, "LISTEN connection failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        Vec::new()
                    }
                };
                if sender.send(instances).await.is_err() {
                    return;
                }
            }
        });
        Some(receiver)
    }
}

/// Moves the checkpoint to `last`, and forgets a failure recorded for `retried` (an event that
/// failed before with attempts left), in one statement.
async fn move_checkpoint(
    lease: &mut PgLease,
    last: &strata_event::Event,
    retried: Option<&strata_event::Event>,
) -> Result<(), ProjectionError> {
    let (retried_type, retried_id, retried_sequence) = match retried {
        Some(event) => (
            Some(event.aggregate.aggregate_type.as_str()),
            Some(event.aggregate.aggregate_id.as_str()),
            Some(event.sequence as i64),
        ),
        None => (None, None, None),
    };
    sqlx::query(
        "WITH forgotten AS (DELETE FROM projections.failed_events WHERE instance_id = $1 \
             AND projection_name = $2 AND aggregate_type = $8 AND aggregate_id = $9 AND sequence = $10) \
         INSERT INTO projections.current_states (instance_id, projection_name, position, \
         in_tx_order, aggregate_type, aggregate_id, sequence, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (instance_id, projection_name) DO UPDATE SET position = EXCLUDED.position, \
         in_tx_order = EXCLUDED.in_tx_order, aggregate_type = EXCLUDED.aggregate_type, \
         aggregate_id = EXCLUDED.aggregate_id, sequence = EXCLUDED.sequence, updated_at = now()",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(last.position.as_decimal())
    .bind(last.in_tx_order as i32)
    .bind(last.aggregate.aggregate_type.as_str())
    .bind(last.aggregate.aggregate_id.as_str())
    .bind(last.sequence as i64)
    .bind(retried_type)
    .bind(retried_id)
    .bind(retried_sequence)
    .execute(&mut *lease.tx)
    .await
    .map(drop)
    .map_err(|err| store_error("moving a checkpoint", err))
}

/// The slow path: each event behind its own savepoint, failures counted and recorded.
async fn apply_event_by_event(
    mut lease: PgLease,
    batch: Vec<ReducedEvent>,
    max_failure_count: u32,
) -> Result<BatchOutcome, ProjectionError> {
    let failed_before: Vec<(String, String, i64, i32)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, failure_count FROM projections.failed_events \
         WHERE instance_id = $1 AND projection_name = $2",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .fetch_all(&mut *lease.tx)
    .await
    .map_err(|err| store_error("reading failed events", err))?;
    let failures_of = |reduced: &ReducedEvent| {
        failed_before
            .iter()
            .find(|(t, a, s, _)| {
                t == reduced.event.aggregate.aggregate_type.as_str()
                    && a == reduced.event.aggregate.aggregate_id.as_str()
                    && *s as u64 == reduced.event.sequence
            })
            .map(|(_, _, _, count)| (*count).max(0) as u32)
    };
    let mut outcome = BatchOutcome::default();
    let mut last = None;
    for reduced in &batch {
        savepoint(&mut lease.tx, "SAVEPOINT strata_event").await?;
        let result = match &reduced.statements {
            Ok(statements) => execute(&mut lease.tx, statements).await,
            Err(err) => Err(err.clone()),
        };
        match result {
            Ok(()) => {
                savepoint(&mut lease.tx, "RELEASE SAVEPOINT strata_event").await?;
                if failures_of(reduced).is_some() {
                    forget_failure(&mut lease, reduced).await?;
                }
            }
            Err(error) => {
                savepoint(&mut lease.tx, "ROLLBACK TO SAVEPOINT strata_event").await?;
                let before = failures_of(reduced).unwrap_or(0);
                // A count already at the limit (given up by an operator) stays there.
                let count = if before >= max_failure_count {
                    before
                } else {
                    before + 1
                };
                record_failure(&mut lease, reduced, count, &error).await?;
                if count < max_failure_count {
                    outcome.stalled = true;
                    break;
                }
                outcome.skipped += 1;
            }
        }
        outcome.processed += 1;
        last = Some(reduced.event.clone());
    }
    if let Some(event) = last {
        move_checkpoint(&mut lease, &event, None).await?;
    }
    lease
        .tx
        .commit()
        .await
        .map_err(|err| store_error("committing a projection batch", err))?;
    Ok(outcome)
}

async fn forget_failure(
    lease: &mut PgLease,
    reduced: &ReducedEvent,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "DELETE FROM projections.failed_events WHERE instance_id = $1 AND projection_name = $2 \
         AND aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(reduced.event.aggregate.aggregate_type.as_str())
    .bind(reduced.event.aggregate.aggregate_id.as_str())
    .bind(reduced.event.sequence as i64)
    .execute(&mut *lease.tx)
    .await
    .map(drop)
    .map_err(|err| store_error("forgetting a failed event", err))
}

async fn record_failure(
    lease: &mut PgLease,
    reduced: &ReducedEvent,
    count: u32,
    error: &str,
) -> Result<(), ProjectionError> {
    let event = &reduced.event;
    sqlx::query(
        "INSERT INTO projections.failed_events (instance_id, projection_name, aggregate_type, \
         aggregate_id, sequence, position, in_tx_order, failure_count, error, last_failed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) \
         ON CONFLICT (instance_id, projection_name, aggregate_type, aggregate_id, sequence) \
         DO UPDATE SET failure_count = EXCLUDED.failure_count, error = EXCLUDED.error, \
         last_failed_at = now()",
    )
    .bind(lease.instance.as_str())
    .bind(&lease.projection)
    .bind(event.aggregate.aggregate_type.as_str())
    .bind(event.aggregate.aggregate_id.as_str())
    .bind(event.sequence as i64)
    .bind(event.position.as_decimal())
    .bind(event.in_tx_order as i32)
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .bind(error)
    .execute(&mut *lease.tx)
    .await
    .map(drop)
    .map_err(|err| store_error("recording a failed event", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: i64, name: &str) -> Statement {
        Statement::upsert(
            "users",
            vec![("id", id.into())],
            vec![("name", name.into())],
        )
    }

    #[test]
    fn runs_of_upserts_merge_and_the_last_write_of_a_key_wins() {
        let statements = vec![
            upsert(1, "a"),
            upsert(2, "b"),
            upsert(1, "c"),
            Statement::delete("users", vec![("id", 2i64.into())]),
            upsert(3, "d"),
            // Another shape (a different value column) ends a run as well.
            Statement::upsert(
                "users",
                vec![("id", 4i64.into())],
                vec![("email", "e".into())],
            ),
            Statement::upsert(
                "users",
                vec![("id", 5i64.into())],
                vec![("email", "f".into())],
            ),
        ];
        let steps = merge_upserts(&statements);
        assert_eq!(steps.len(), 4);
        let Step::Rows(rows) = &steps[0] else {
            panic!("the first three upserts form one run");
        };
        assert_eq!(rows, &vec![&upsert(2, "b"), &upsert(1, "c")]);
        assert!(matches!(&steps[1], Step::One(Statement::Delete { .. })));
        assert!(matches!(&steps[2], Step::One(Statement::Upsert { .. })));
        assert!(matches!(&steps[3], Step::Rows(rows) if rows.len() == 2));
        let (sql, _) = render_rows(rows).expect("render");
        assert_eq!(
            sql,
            r#"INSERT INTO "users" AS existing ("id", "name") SELECT * FROM UNNEST($1::int8[], $2::text[]) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#
        );
        let (sql, _) = render_rows_values(rows).expect("render");
        assert_eq!(
            sql,
            r#"INSERT INTO "users" AS existing ("id", "name") VALUES ($1, $2), ($3, $4) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#
        );
    }

    #[test]
    fn unnest_needs_one_type_per_column() {
        let with_null = |id: i64, name: SqlValue| {
            Statement::upsert("users", vec![("id", id.into())], vec![("name", name)])
        };
        // NULLs, also before the first typed value, fit a typed column.
        let rows = [with_null(1, SqlValue::Null), with_null(2, "b".into())];
        assert!(
            render_rows_unnest(&rows.each_ref())
                .expect("render")
                .is_some()
        );
        // A column of only NULLs has no type; mixed types and JSON have no single one.
        let rows = [with_null(1, SqlValue::Null), with_null(2, SqlValue::Null)];
        assert!(
            render_rows_unnest(&rows.each_ref())
                .expect("render")
                .is_none()
        );
        let rows = [with_null(1, "a".into()), with_null(2, 7i64.into())];
        assert!(
            render_rows_unnest(&rows.each_ref())
                .expect("render")
                .is_none()
        );
        let rows = [
            with_null(1, SqlValue::Json("{}".into())),
            with_null(2, SqlValue::Json("[]".into())),
        ];
        assert!(
            render_rows_unnest(&rows.each_ref())
                .expect("render")
                .is_none()
        );
        let (sql, _) = render_rows(&rows.each_ref()).expect("render");
        assert!(sql.contains(" VALUES ("), "{sql}");
    }
}
