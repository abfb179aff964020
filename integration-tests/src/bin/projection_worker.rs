//! A projection worker process for the multi-process tests: runs `--projections N` counting
//! projections against `DATABASE_URL` until killed.
//!
//! Each projection records every event it applies in `public.applied` and counts repeats, so a
//! test can check afterwards that every event was applied exactly once.

use std::time::Duration;

use strata_event::{Event, InstanceId};
use strata_integration_tests::processes::{flag_value, worker_store};
use strata_projection::{
    Projection, ProjectionConfig, ProjectionRuntime, Reads, ReduceError, RuntimeConfig, SqlValue,
    Statement,
};

struct Counting {
    name: String,
    slow: bool,
}

impl Projection for Counting {
    fn name(&self) -> &str {
        &self.name
    }

    fn reads(&self) -> Reads {
        Reads::new().aggregate("user")
    }

    fn reduce(&self, event: &Event) -> Result<Vec<Statement>, ReduceError> {
        let mut statements = vec![Statement::sql(
            "INSERT INTO public.applied (projection, instance_id, aggregate_id, sequence, times) \
             VALUES ($1, $2, $3, $4, 1) ON CONFLICT (projection, instance_id, aggregate_id, sequence) \
             DO UPDATE SET times = applied.times + 1",
            vec![
                SqlValue::from(self.name.as_str()),
                event.aggregate.instance_id.as_str().into(),
                event.aggregate.aggregate_id.as_str().into(),
                event.sequence.into(),
            ],
        )];
        if self.slow {
            // Long batches make a kill land mid-batch.
            statements.push(Statement::sql("SELECT pg_sleep(0.002)", vec![]));
        }
        Ok(statements)
    }

    fn reset(&self, instance: &InstanceId) -> Vec<Statement> {
        vec![Statement::delete(
            "public.applied",
            vec![
                ("projection", self.name.as_str().into()),
                ("instance_id", instance.as_str().into()),
            ],
        )]
    }

    fn config(&self) -> ProjectionConfig {
        ProjectionConfig {
            bulk_limit: 50,
            requeue_every: Duration::from_millis(500),
            ..ProjectionConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let projections: usize = flag_value(&args, "--projections")
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(3);
    let slow = args.iter().any(|arg| arg == "--slow");
    let (store, backend) = worker_store().await?;
    let mut builder = ProjectionRuntime::builder(store, backend).config(RuntimeConfig {
        max_parallel_batches: 3,
        ..RuntimeConfig::default()
    });
    for n in 0..projections {
        builder = builder.register(Counting {
            name: format!("counting_{n}"),
            slow,
        })?;
    }
    let _runtime = builder.start().await?;
    println!("ready");
    // Runs until killed; the runtime's tasks do the work.
    std::future::pending::<()>().await;
    Ok(())
}
