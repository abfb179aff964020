//! What the multi-process tests share: worker processes killed when dropped, the URL of the
//! test's own database for them, and writers whose pushes commit late.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use strata_event::Command;
use strata_postgres::{PgConfig, PgProjections, PgStore, PoolConfig};
use strata_store::EventStore;

use crate::{TestDatabase, push_held_open};

/// A worker process (a test's `src/bin` binary); dropping it kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct WorkerProcess(pub Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URL of the test's own database, for the worker processes it starts.
pub fn database_url(database: &TestDatabase) -> String {
    let admin = crate::admin_url();
    // Swap the database name at the end of the admin URL for the test's own.
    match admin.rfind('/') {
        Some(slash) if admin[..slash].contains("://") && admin[slash..].len() > 1 => {
            let (base, rest) = admin.split_at(slash);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{}{query}", database.name)
        }
        _ => format!("{admin}/{}", database.name),
    }
}

/// What [`write_with_late_commits`] pushes.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Pushes of each of the four ordinary writers.
    pub pushes_per_writer: u64,
    /// Instances the pushes spread over (`tenant-0`, `tenant-1`, …).
    pub instances: u64,
    /// The aggregate id of a writer's `n`th push: shared ids make hot aggregates.
    pub aggregate_id: fn(writer: u64, n: u64) -> String,
}

/// Four writers pushing one `user.touched` event at a time, and two more whose pushes hold their
/// transaction open for a while, so later pushes commit first (the late commits a reader must
/// not skip). Returns how many events were pushed.
pub async fn write_with_late_commits(database: &TestDatabase, load: Load) -> u64 {
    let store = Arc::new(database.store());
    let pool = database.pool(4);
    let mut writers = Vec::new();
    for writer in 0..4u64 {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for n in 0..load.pushes_per_writer {
                let command = Command::builder(
                    format!("tenant-{}", (writer + n) % load.instances),
                    "user",
                    (load.aggregate_id)(writer, n),
                    "user.touched",
                )
                .creator("writer")
                .owner("org")
                .build()
                .expect("valid command");
                store.push(vec![command]).await.expect("push");
            }
        }));
    }
    let slow_pushes = (load.pushes_per_writer / 10).max(3);
    for writer in 0..2u64 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..slow_pushes {
                let pause = Duration::from_millis(10 + (n * 13 + writer * 7) % 60);
                push_held_open(
                    &pool,
                    &format!("tenant-{}", n % load.instances),
                    "user",
                    &format!("slow-{writer}-{n}"),
                    pause,
                )
                .await
                .expect("held-open push");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    4 * load.pushes_per_writer + 2 * slow_pushes
}

/// Starts `count` workers with `spawn`, then, every `every` for `rounds` rounds, SIGKILLs one of
/// them in turn (mid-batch more often than not with slow workers) and starts a fresh one in its
/// place, while the others keep running. Await the handle, then drop it to stop the last ones.
pub fn kill_in_turn(
    count: usize,
    rounds: usize,
    every: Duration,
    spawn: impl Fn() -> WorkerProcess + Send + 'static,
) -> tokio::task::JoinHandle<Vec<WorkerProcess>> {
    let mut workers: Vec<WorkerProcess> = (0..count).map(|_| spawn()).collect();
    tokio::spawn(async move {
        for round in 0..rounds {
            tokio::time::sleep(every).await;
            drop(workers.remove(round % workers.len()));
            workers.push(spawn());
        }
        workers
    })
}

/// The value after `flag` in a worker's arguments.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|arg| arg == flag)
        .and_then(|index| args.get(index + 1))
        .cloned()
}

/// What a worker process runs on: a store on `DATABASE_URL` with small pools (several workers
/// share one server), and projection storage on its projection pool.
pub async fn worker_store() -> Result<(PgStore, PgProjections), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let config = PgConfig {
        projection_pool: PoolConfig::with_max(4),
        query_pool: PoolConfig::with_max(4),
        push_pool: PoolConfig::with_max(2),
        ..PgConfig::default()
    };
    let store = PgStore::connect(&url, config).await?;
    let backend = PgProjections::new(store.pools().projection().clone());
    Ok((store, backend))
}
