//! The in-memory projection backend runs the same conformance suite as PostgreSQL.

use strata_projection::conformance::{Harness, TextRow};
use strata_projection::{MemoryProjections, SqlValue};
use strata_store::MemoryStore;

struct Memory {
    store: MemoryStore,
    backend: MemoryProjections,
}

impl Harness for Memory {
    type Store = MemoryStore;
    type Backend = MemoryProjections;

    fn store(&self) -> MemoryStore {
        self.store.clone()
    }

    fn backend(&self) -> MemoryProjections {
        self.backend.clone()
    }

    async fn create_table(&self, _ddl: &'static str) {}

    async fn rows(&self, table: &'static str) -> Vec<TextRow> {
        let mut rows: Vec<TextRow> = self
            .backend
            .rows(table)
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(column, value)| (column, text(&value)))
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    }

    async fn leases_held(&self) -> usize {
        self.backend.leases_held()
    }
}

/// A value as PostgreSQL prints it.
fn text(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        SqlValue::Bool(value) => value.to_string(),
        SqlValue::BigInt(value) => value.to_string(),
        SqlValue::Numeric(value) => value.to_string(),
        SqlValue::Text(value) | SqlValue::Json(value) => value.clone(),
        SqlValue::Timestamp(value) => value.to_rfc3339(),
        other => format!("{other:?}"),
    }
}

strata_projection::projection_conformance_tests!(async {
    Memory {
        store: MemoryStore::new(),
        backend: MemoryProjections::new(),
    }
});
