//! The projection conformance suite on PostgreSQL: the same cases the in-memory backend passes,
//! each on a fresh database.

use sqlx::PgPool;
use strata_integration_tests::TestDatabase;
use strata_postgres::{PgProjections, PgStore};
use strata_projection::conformance::{Harness, TextRow};

struct Postgres {
    store: PgStore,
    backend: PgProjections,
    pool: PgPool,
}

async fn fresh() -> Postgres {
    let database = TestDatabase::create().await;
    let store = database.store();
    Postgres {
        backend: PgProjections::new(store.pools().projection().clone()),
        pool: database.pool(2),
        store,
    }
}

impl Harness for Postgres {
    type Store = PgStore;
    type Backend = PgProjections;

    fn store(&self) -> PgStore {
        self.store.clone()
    }

    fn backend(&self) -> PgProjections {
        self.backend.clone()
    }

    async fn create_table(&self, ddl: &'static str) {
        sqlx::raw_sql(ddl)
            .execute(&self.pool)
            .await
            .expect("create the read-model table");
    }

    async fn rows(&self, table: &'static str) -> Vec<TextRow> {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!(r#"SELECT to_jsonb(t)::text FROM "{table}" t"#))
                .fetch_all(&self.pool)
                .await
                .expect("read the read model");
        let mut rows: Vec<TextRow> = rows
            .iter()
            .map(|row| {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(row).expect("a JSON object");
                object
                    .into_iter()
                    .map(|(column, value)| {
                        let text = match value {
                            serde_json::Value::Null => "NULL".to_owned(),
                            serde_json::Value::String(text) => text,
                            other => other.to_string(),
                        };
                        (column, text)
                    })
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    }

    async fn leases_held(&self) -> usize {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&self.pool)
        .await
        .expect("read the locks");
        held as usize
    }
}

strata_projection::projection_conformance_tests!(fresh());
