//! Read-model statements as SQL: each statement alone, and runs of upserts of one shape merged
//! into one multi-row statement. Identifiers are checked and quoted; every value is a bind
//! parameter.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, Postgres, Transaction};
use strata_projection::{Column, SqlValue, Statement, is_identifier};

/// Runs `statements` in `tx`, runs of upserts of one shape merged into one statement each; the
/// first failure is returned as text (for the failed-events table).
pub(crate) async fn execute_merged(
    tx: &mut Transaction<'static, Postgres>,
    statements: &[&Statement],
) -> Result<(), String> {
    for step in merge_upserts(statements.iter().copied()) {
        let rendered = match step {
            Step::One(statement) => render(statement)?,
            Step::Rows(rows) => render_rows(&rows)?,
        };
        run(tx, rendered).await?;
    }
    Ok(())
}

/// Runs `statements` in `tx` one by one; the first failure is returned as text.
pub(crate) async fn execute(
    tx: &mut Transaction<'static, Postgres>,
    statements: &[Statement],
) -> Result<(), String> {
    for statement in statements {
        run(tx, render(statement)?).await?;
    }
    Ok(())
}

/// The SQL for one statement and its bind parameters.
pub(crate) fn render(statement: &Statement) -> Result<(String, PgArguments), String> {
    // The same check, and message, as the in-memory read model's, before anything else.
    statement.check()?;
    let mut binds = Binds::new();
    let sql = match statement {
        Statement::Upsert { table, key, values } => {
            let frame = InsertFrame::new(table, key, &[], values)?;
            frame.with_values(&row_tuple(key.iter().chain(values), &mut binds)?)
        }
        Statement::Increment {
            table,
            key,
            amounts,
            values,
        } => {
            let frame = InsertFrame::new(table, key, amounts, values)?;
            frame.with_values(&row_tuple(
                key.iter().chain(amounts).chain(values),
                &mut binds,
            )?)
        }
        Statement::Update {
            table,
            values,
            filter,
        } => {
            if values.is_empty() {
                return Ok((String::new(), binds.arguments));
            }
            let sets = values
                .iter()
                .map(|(column, v)| {
                    Ok(format!(
                        "{} = {}",
                        quoted_identifier(column)?,
                        binds.add(v)?
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            format!(
                "UPDATE {} SET {}{}",
                quoted_identifier(table)?,
                sets.join(", "),
                conditions(filter, &mut binds)?
            )
        }
        Statement::Delete { table, filter } => format!(
            "DELETE FROM {}{}",
            quoted_identifier(table)?,
            conditions(filter, &mut binds)?
        ),
        Statement::Sql {
            sql: raw,
            binds: values,
        } => {
            for value in values {
                binds.add(value)?;
            }
            (*raw).to_owned()
        }
        other => return Err(format!("unsupported statement {other:?}")),
    };
    Ok((sql, binds.arguments))
}

/// Runs one rendered statement (nothing for an empty one); a failure as text.
async fn run(
    tx: &mut Transaction<'static, Postgres>,
    (sql, arguments): (String, PgArguments),
) -> Result<(), String> {
    if sql.is_empty() {
        return Ok(());
    }
    sqlx::query_with(&sql, arguments)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|err| err.to_string())
}

/// Bind parameters as they are added to a statement: `$1`, `$2`…
struct Binds {
    arguments: PgArguments,
    count: usize,
}

impl Binds {
    fn new() -> Self {
        Binds {
            arguments: PgArguments::default(),
            count: 0,
        }
    }

    /// Binds `value` and returns its placeholder: `NULL` written inline (an untyped `NULL` fits
    /// any column, a bound one would be typed `text`), JSON cast to `jsonb`.
    fn add(&mut self, value: &SqlValue) -> Result<String, String> {
        let bound = match value {
            SqlValue::Null => return Ok("NULL".into()),
            SqlValue::Bool(v) => self.arguments.add(*v),
            SqlValue::BigInt(v) => self.arguments.add(*v),
            SqlValue::Numeric(v) => self.arguments.add(*v),
            SqlValue::Text(v) => self.arguments.add(v.clone()),
            SqlValue::Timestamp(v) => self.arguments.add(*v),
            SqlValue::Json(v) => self.arguments.add(v.clone()),
            other => return Err(format!("unsupported value {other:?}")),
        };
        bound.map_err(|err| err.to_string())?;
        self.count += 1;
        Ok(match value {
            SqlValue::Json(_) => format!("${}::jsonb", self.count),
            _ => format!("${}", self.count),
        })
    }
}

/// ` WHERE a = $1 AND b IS NULL`, or nothing for no conditions.
fn conditions(filter: &[Column], binds: &mut Binds) -> Result<String, String> {
    let parts = filter
        .iter()
        .map(|(column, v)| match v {
            SqlValue::Null => Ok(format!("{} IS NULL", quoted_identifier(column)?)),
            v => Ok(format!(
                "{} = {}",
                quoted_identifier(column)?,
                binds.add(v)?
            )),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    })
}

/// `($1, $2, NULL, …)` for one row's values.
fn row_tuple<'a>(
    columns: impl Iterator<Item = &'a Column>,
    binds: &mut Binds,
) -> Result<String, String> {
    let placeholders = columns
        .map(|(_, value)| binds.add(value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("({})", placeholders.join(", ")))
}

/// What surrounds the rows of an upsert or increment:
/// `INSERT INTO table AS existing (key…, amounts…, values…)` and
/// ` ON CONFLICT (key…) DO …`. An upsert (no `amounts`) sets `values` on the existing row; an
/// increment also adds its `amounts` to the existing row's columns (`NULL` counting as zero).
/// Built from the column names alone, so one frame serves every row of a merged run.
struct InsertFrame {
    head: String,
    tail: String,
}

impl InsertFrame {
    fn new(
        table: &str,
        key: &[Column],
        amounts: &[Column],
        values: &[Column],
    ) -> Result<Self, String> {
        let quoted = |columns: &[Column]| {
            columns
                .iter()
                .map(|(column, _)| quoted_identifier(column))
                .collect::<Result<Vec<_>, _>>()
        };
        let (key, amounts, values) = (quoted(key)?, quoted(amounts)?, quoted(values)?);
        let columns: Vec<&str> = key
            .iter()
            .chain(&amounts)
            .chain(&values)
            .map(String::as_str)
            .collect();
        let actions: Vec<String> = amounts
            .iter()
            .map(|c| format!("{c} = COALESCE(existing.{c}, 0) + EXCLUDED.{c}"))
            .chain(values.iter().map(|c| format!("{c} = EXCLUDED.{c}")))
            .collect();
        let action = if actions.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", actions.join(", "))
        };
        Ok(InsertFrame {
            head: format!(
                "INSERT INTO {} AS existing ({})",
                quoted_identifier(table)?,
                columns.join(", ")
            ),
            tail: format!(" ON CONFLICT ({}) DO {action}", key.join(", ")),
        })
    }

    /// The statement with `VALUES` and the given tuples.
    fn with_values(&self, tuples: &str) -> String {
        format!("{} VALUES {tuples}{}", self.head, self.tail)
    }
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
/// and copying every value of every row would cost a batch CPU time for nothing.
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
    let Some(Statement::Upsert { table, key, values }) = rows.first().copied() else {
        return Err("no rows to upsert".into());
    };
    // merge_upserts only runs statements of one shape together (same_shape): the first row's
    // names are every row's.
    let first = rows[0];
    first.check_names()?;
    let frame = InsertFrame::new(table, key, &[], values)?;
    match render_rows_unnest(&frame, rows)? {
        Some(rendered) => Ok(rendered),
        None => render_rows_values(&frame, rows),
    }
}

/// The `UNNEST` form of [`render_rows`], or `None` when the values do not allow it.
fn render_rows_unnest(
    frame: &InsertFrame,
    rows: &[&Statement],
) -> Result<Option<(String, PgArguments)>, String> {
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
    let mut arguments = PgArguments::default();
    let mut arrays = Vec::with_capacity(width);
    for (index, column) in columns.into_iter().enumerate() {
        arrays.push(format!("${}::{}", index + 1, column.sql_type()));
        column.bind(&mut arguments)?;
    }
    Ok(Some((
        format!(
            "{} SELECT * FROM UNNEST({}){}",
            frame.head,
            arrays.join(", "),
            frame.tail
        ),
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

/// The multi-row `VALUES` form of [`render_rows`]:
/// `INSERT … VALUES (…), (…) ON CONFLICT … DO UPDATE`.
fn render_rows_values(
    frame: &InsertFrame,
    rows: &[&Statement],
) -> Result<(String, PgArguments), String> {
    let mut binds = Binds::new();
    let tuples = rows
        .iter()
        .map(|row| row_tuple(upsert_columns(row)?, &mut binds))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((frame.with_values(&tuples.join(", ")), binds.arguments))
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn upsert(id: i64, name: &str) -> Statement {
        Statement::upsert(
            "users",
            vec![("id", id.into())],
            vec![("name", name.into())],
        )
    }

    /// The SQL of `statement`, or its error.
    fn sql(statement: &Statement) -> String {
        render(statement).map_or_else(|err| format!("error: {err}"), |(sql, _)| sql)
    }

    fn check(statement: &Statement, expected: Expect) {
        expected.assert_eq(&sql(statement));
    }

    #[test]
    fn each_statement_renders_with_quoted_names_and_placeholders() {
        check(
            &upsert(1, "a"),
            expect![[
                r#"INSERT INTO "users" AS existing ("id", "name") VALUES ($1, $2) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#
            ]],
        );
        check(
            &Statement::upsert("projections.seen", vec![("id", 1i64.into())], vec![]),
            expect![[
                r#"INSERT INTO "projections"."seen" AS existing ("id") VALUES ($1) ON CONFLICT ("id") DO NOTHING"#
            ]],
        );
        check(
            &Statement::Increment {
                table: "order",
                key: vec![("user", "u".into())],
                amounts: vec![("count", 1i64.into())],
                values: vec![
                    ("note", SqlValue::Null),
                    ("data", SqlValue::Json("{}".into())),
                ],
            },
            expect![[
                r#"INSERT INTO "order" AS existing ("user", "count", "note", "data") VALUES ($1, $2, NULL, $3::jsonb) ON CONFLICT ("user") DO UPDATE SET "count" = COALESCE(existing."count", 0) + EXCLUDED."count", "note" = EXCLUDED."note", "data" = EXCLUDED."data""#
            ]],
        );
        check(
            &Statement::update(
                "users",
                vec![("name", "b".into())],
                vec![("id", 1i64.into()), ("deleted_at", SqlValue::Null)],
            ),
            expect![[r#"UPDATE "users" SET "name" = $1 WHERE "id" = $2 AND "deleted_at" IS NULL"#]],
        );
        check(
            &Statement::delete("users", vec![("id", 1i64.into())]),
            expect![[r#"DELETE FROM "users" WHERE "id" = $1"#]],
        );
        check(
            &Statement::delete("users", vec![]),
            expect![[r#"DELETE FROM "users""#]],
        );
        check(
            &Statement::update("users", vec![], vec![("id", 1i64.into())]),
            expect![[r#""#]],
        );
        check(
            &Statement::sql("SELECT $1", vec![1i64.into()]),
            expect![[r#"SELECT $1"#]],
        );
        // Refused before anything is rendered, with the in-memory backend's message.
        check(
            &Statement::delete("users; drop", vec![]),
            expect![[r#"error: "users; drop" is not a valid table or column name"#]],
        );
        check(
            &Statement::increment(
                "users",
                vec![("id", 1i64.into())],
                vec![("n", "one".into())],
            ),
            expect![[
                r#"error: cannot add Text("one") to "n": increments take BigInt or Numeric amounts"#
            ]],
        );
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
        expect![[r#"INSERT INTO "users" AS existing ("id", "name") SELECT * FROM UNNEST($1::int8[], $2::text[]) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#]].assert_eq(&sql);
        let frame = InsertFrame::new(
            "users",
            &[("id", SqlValue::Null)],
            &[],
            &[("name", SqlValue::Null)],
        )
        .expect("frame");
        let (sql, _) = render_rows_values(&frame, rows).expect("render");
        expect![[r#"INSERT INTO "users" AS existing ("id", "name") VALUES ($1, $2), ($3, $4) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#]].assert_eq(&sql);
    }

    #[test]
    fn unnest_needs_one_type_per_column() {
        let with_null = |id: i64, name: SqlValue| {
            Statement::upsert("users", vec![("id", id.into())], vec![("name", name)])
        };
        let frame = InsertFrame::new(
            "users",
            &[("id", SqlValue::Null)],
            &[],
            &[("name", SqlValue::Null)],
        )
        .expect("frame");
        let unnest = |rows: &[Statement]| {
            render_rows_unnest(&frame, &rows.iter().collect::<Vec<_>>())
                .expect("render")
                .is_some()
        };
        // NULLs, also before the first typed value, fit a typed column.
        assert!(unnest(&[
            with_null(1, SqlValue::Null),
            with_null(2, "b".into())
        ]));
        // A column of only NULLs has no type; mixed types and JSON have no single one.
        assert!(!unnest(&[
            with_null(1, SqlValue::Null),
            with_null(2, SqlValue::Null)
        ]));
        assert!(!unnest(&[
            with_null(1, "a".into()),
            with_null(2, 7i64.into())
        ]));
        let json = [
            with_null(1, SqlValue::Json("{}".into())),
            with_null(2, SqlValue::Json("[]".into())),
        ];
        assert!(!unnest(&json));
        let (sql, _) = render_rows(&json.iter().collect::<Vec<_>>()).expect("render");
        expect![[r#"INSERT INTO "users" AS existing ("id", "name") VALUES ($1, $2::jsonb), ($3, $4::jsonb) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#]].assert_eq(&sql);
    }
}
