//! The notification handler of `examples/notifications` (its very module, included below) in a
//! process of its own, for the test that kills it halfway: it runs against `DATABASE_URL` until
//! killed, sending through a provider simulated by a table.
//!
//! `notification_sends` logs every send; `notification_deliveries` holds each message id once
//! (the provider's deduplication).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::PgPool;
use strata::ProjectionRuntime;
use strata_integration_tests::processes::worker_store;

#[allow(dead_code)] // The example's module; this process uses what the consumer needs.
#[path = "../../../crates/strata/examples/notifications/notifier.rs"]
mod notifier;

use notifier::{Channel, Notifier, SendError};

struct TableProvider {
    pool: PgPool,
}

impl Channel for TableProvider {
    fn send<'a>(
        &'a self,
        message_id: &'a str,
        address: &'a str,
        _text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let failed = |err: sqlx::Error| SendError::Transient(err.to_string());
            sqlx::query("INSERT INTO notification_sends (message_id, pid) VALUES ($1, $2)")
                .bind(message_id)
                .bind(std::process::id() as i32)
                .execute(&self.pool)
                .await
                .map_err(failed)?;
            // A provider takes its time: kills land between a send and its outcome.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if address.ends_with("@bounce.invalid") {
                return Err(SendError::Permanent(format!("{address} does not exist")));
            }
            sqlx::query(
                "INSERT INTO notification_deliveries (message_id, address) VALUES ($1, $2) \
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(message_id)
            .bind(address)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let (store, backend) = worker_store().await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?;
    let notifier = Notifier {
        store: store.clone(),
        channel: Arc::new(TableProvider { pool }),
    };
    let _runtime = ProjectionRuntime::builder(store, backend)
        .consumer(notifier)?
        .start()
        .await?;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}
