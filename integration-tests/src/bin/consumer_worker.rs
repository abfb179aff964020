//! A consumer worker process for the multi-process consumer tests: runs the `courier` consumer
//! (`--partitions N`, default 2) against `DATABASE_URL` until killed.
//!
//! Each delivery is logged in `public.deliveries` when its handling starts and again when it
//! ends, with the process id and the database's clock, so a test can check afterwards that no
//! aggregate's events were handled out of order or by two processes at once.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::PgPool;
use strata_event::Event;
use strata_integration_tests::processes::{flag_value, worker_store};
use strata_projection::{
    Consumer, ConsumerConfig, HandleError, ProjectionRuntime, Reads, RuntimeConfig,
};

struct Courier {
    log: PgPool,
    partitions: u16,
    slow: bool,
}

impl Consumer for Courier {
    fn name(&self) -> &str {
        "courier"
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }

    fn handle<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            let failed = |err: sqlx::Error| HandleError::new(err.to_string());
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO public.deliveries (pid, instance_id, aggregate_id, sequence) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(std::process::id() as i32)
            .bind(event.aggregate.instance_id.as_str())
            .bind(event.aggregate.aggregate_id.as_str())
            .bind(event.sequence as i64)
            .fetch_one(&self.log)
            .await
            .map_err(failed)?;
            if self.slow {
                // Long handling makes a kill land mid-batch, between a start and its end.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            sqlx::query(
                "UPDATE public.deliveries SET finished_at = clock_timestamp() WHERE id = $1",
            )
            .bind(id)
            .execute(&self.log)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bulk_limit: 20,
            requeue_every: Duration::from_millis(500),
            partitions: self.partitions,
            ..ConsumerConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = std::env::var("DATABASE_URL")?;
    let partitions: u16 = flag_value(&args, "--partitions")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(2);
    let slow = args.iter().any(|arg| arg == "--slow");
    let (store, backend) = worker_store().await?;
    let log = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let courier = Courier {
        log,
        partitions,
        slow,
    };
    let _runtime = ProjectionRuntime::builder(store, backend)
        .config(RuntimeConfig {
            max_parallel_batches: 3,
            ..RuntimeConfig::default()
        })
        .consumer(courier)?
        .start()
        .await?;
    println!("ready");
    // Runs until killed; the runtime's tasks do the work.
    std::future::pending::<()>().await;
    Ok(())
}
