//! What a reducer asks of a read model: upserts, updates and deletes by columns, or raw SQL.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// A value written to or matched in a read-model column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `bigint`.
    BigInt(i64),
    /// `numeric` (positions, money).
    Numeric(Decimal),
    /// `text`.
    Text(String),
    /// `timestamptz`.
    Timestamp(DateTime<Utc>),
    /// `jsonb`, as JSON text.
    Json(String),
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}
impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::BigInt(value)
    }
}
impl From<u64> for SqlValue {
    fn from(value: u64) -> Self {
        // Sequences and counters: far below i64::MAX in practice; saturate rather than wrap.
        SqlValue::BigInt(i64::try_from(value).unwrap_or(i64::MAX))
    }
}
impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        SqlValue::Bool(value)
    }
}
impl From<Decimal> for SqlValue {
    fn from(value: Decimal) -> Self {
        SqlValue::Numeric(value)
    }
}
impl From<DateTime<Utc>> for SqlValue {
    fn from(value: DateTime<Utc>) -> Self {
        SqlValue::Timestamp(value)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// A column and its value.
pub type Column = (&'static str, SqlValue);

/// One change to a read model. Table and column names are `&'static str` on purpose: they come from
/// the projection's code, never from event data, and are checked against `[a-z_][a-z0-9_]*`
/// (optionally `schema.table`) before use. Values always travel as bind parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Statement {
    /// Insert the row, or update `values` where a row with the same `key` exists (PostgreSQL:
    /// `ON CONFLICT (key columns) DO UPDATE`, so the key columns need a unique index).
    Upsert {
        /// The table.
        table: &'static str,
        /// The columns identifying the row.
        key: Vec<Column>,
        /// The other columns.
        values: Vec<Column>,
    },
    /// Add `amounts` to numeric columns of the row identified by `key`, inserting the row (with
    /// the amounts as its values) when there is none, and set `values` as an upsert would: a
    /// counter. A column that is `NULL` counts as zero. A negative amount decrements. Amounts are
    /// [`SqlValue::BigInt`] for `bigint` (or `integer`) columns and [`SqlValue::Numeric`] for
    /// `numeric` ones; PostgreSQL raises on overflow, and so does the in-memory read model.
    /// PostgreSQL: `INSERT … ON CONFLICT (key columns) DO UPDATE SET c = COALESCE(c, 0) +
    /// EXCLUDED.c`, so the key columns need a unique index, as for an upsert.
    Increment {
        /// The table.
        table: &'static str,
        /// The columns identifying the row.
        key: Vec<Column>,
        /// The numeric columns to add to, and by how much.
        amounts: Vec<Column>,
        /// Other columns to set.
        values: Vec<Column>,
    },
    /// Set `values` on every row matching all of `filter`.
    Update {
        /// The table.
        table: &'static str,
        /// The columns to set.
        values: Vec<Column>,
        /// Equality conditions, ANDed.
        filter: Vec<Column>,
    },
    /// Delete every row matching all of `filter`.
    Delete {
        /// The table.
        table: &'static str,
        /// Equality conditions, ANDed.
        filter: Vec<Column>,
    },
    /// Raw SQL with `$1`, `$2`… bound to `binds`. PostgreSQL only; the in-memory read model refuses
    /// it.
    Sql {
        /// The statement.
        sql: &'static str,
        /// Its parameters.
        binds: Vec<SqlValue>,
    },
}

impl Statement {
    /// An upsert of `key` + `values` into `table`.
    pub fn upsert(table: &'static str, key: Vec<Column>, values: Vec<Column>) -> Statement {
        Statement::Upsert { table, key, values }
    }
    /// Adds `amounts` to the row of `table` identified by `key`, inserting it when missing (see
    /// [`Statement::Increment`]; build the variant itself to set other columns too):
    ///
    /// ```
    /// use strata_projection::Statement;
    ///
    /// let signed_up = Statement::increment(
    ///     "signups_per_org",
    ///     vec![("org_id", "org-1".into())],
    ///     vec![("signups", 1i64.into())],
    /// );
    /// # let _ = signed_up;
    /// ```
    pub fn increment(table: &'static str, key: Vec<Column>, amounts: Vec<Column>) -> Statement {
        Statement::Increment {
            table,
            key,
            amounts,
            values: Vec::new(),
        }
    }
    /// An update of `values` on the rows of `table` matching `filter`.
    pub fn update(table: &'static str, values: Vec<Column>, filter: Vec<Column>) -> Statement {
        Statement::Update {
            table,
            values,
            filter,
        }
    }
    /// A delete of the rows of `table` matching `filter`.
    pub fn delete(table: &'static str, filter: Vec<Column>) -> Statement {
        Statement::Delete { table, filter }
    }
    /// Raw SQL with bind parameters (PostgreSQL only).
    pub fn sql(sql: &'static str, binds: Vec<SqlValue>) -> Statement {
        Statement::Sql { sql, binds }
    }

    /// The table this statement touches, when it is not raw SQL.
    pub fn table(&self) -> Option<&'static str> {
        match self {
            Statement::Upsert { table, .. }
            | Statement::Increment { table, .. }
            | Statement::Update { table, .. }
            | Statement::Delete { table, .. } => Some(table),
            Statement::Sql { .. } => None,
        }
    }

    /// Checks what every backend checks before applying a statement, so what PostgreSQL would
    /// refuse is refused in memory too: the names ([`Statement::check_names`]), and that an
    /// increment's amounts are numbers.
    pub fn check(&self) -> Result<(), String> {
        self.check_names()?;
        if let Statement::Increment { amounts, .. } = self
            && let Some((column, value)) = amounts
                .iter()
                .find(|(_, value)| !matches!(value, SqlValue::BigInt(_) | SqlValue::Numeric(_)))
        {
            return Err(format!(
                "cannot add {value:?} to {column:?}: increments take BigInt or Numeric amounts"
            ));
        }
        Ok(())
    }

    /// Checks the table and column names against [`is_identifier`].
    pub fn check_names(&self) -> Result<(), String> {
        let (table, columns): (&str, Vec<&Column>) = match self {
            Statement::Upsert { table, key, values } => (table, key.iter().chain(values).collect()),
            Statement::Increment {
                table,
                key,
                amounts,
                values,
            } => (table, key.iter().chain(amounts).chain(values).collect()),
            Statement::Update {
                table,
                values,
                filter,
            } => (table, values.iter().chain(filter).collect()),
            Statement::Delete { table, filter } => (table, filter.iter().collect()),
            Statement::Sql { .. } => return Ok(()),
        };
        // A table may be schema-qualified; a dotted column would name a field of another column.
        let bad_table = (!is_identifier(table)).then_some(table);
        let bad_column = columns
            .into_iter()
            .map(|(column, _)| *column)
            .find(|column| !is_identifier(column) || column.contains('.'));
        bad_table.or(bad_column).map_or(Ok(()), |name| {
            Err(format!("{name:?} is not a valid table or column name"))
        })
    }
}

/// Whether `name` is a safe identifier: `[a-z_][a-z0-9_]*`, optionally `schema.name`.
pub fn is_identifier(name: &str) -> bool {
    let part = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && part.len() <= 63
    };
    match name.split_once('.') {
        Some((schema, table)) => part(schema) && part(table),
        None => part(name),
    }
}

#[cfg(test)]
mod tests {
    use super::is_identifier;

    #[test]
    fn identifiers_are_checked() {
        for good in ["users", "projections.users", "_x1"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "Users", "users; drop", "a.b.c", "1x", "x-y", "\"q\""] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
