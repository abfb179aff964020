//! Writers whose pushes commit out of position order: the load every gap-freedom test runs.

use sqlx::PgPool;
use strata_event::Command;
use strata_store::EventStore;
use tokio::task::JoinHandle;

use crate::push_held_open;

/// Starts three writers whose pushes hold their transaction open 5–45 ms after taking its id
/// (through `pool`, see [`push_held_open`]), `slow` pushes each, and three pushing `fast` events
/// each at once through `store`: aggregates `slow-W-N` and `fast-W-N` of type `user` in
/// `instance`, one event each. The held-open pushes get early positions and commit late, while
/// the fast ones commit around them. Returns the writers and how many events they push in all.
pub fn spawn_late_commit_writers<S>(
    pool: &PgPool,
    store: &S,
    instance: &str,
    slow: u64,
    fast: u64,
) -> (Vec<JoinHandle<()>>, usize)
where
    S: EventStore + Clone + 'static,
{
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let pool = pool.clone();
        let instance = instance.to_owned();
        writers.push(tokio::spawn(async move {
            for n in 0..slow {
                let pause = std::time::Duration::from_millis(5 + (n * 7 + writer * 13) % 40);
                let id = format!("slow-{writer}-{n}");
                push_held_open(&pool, &instance, "user", &id, pause)
                    .await
                    .expect("held-open push");
            }
        }));
    }
    for writer in 0..3u64 {
        let store = store.clone();
        let instance = instance.to_owned();
        writers.push(tokio::spawn(async move {
            for n in 0..fast {
                let command = Command::builder(
                    &instance,
                    "user",
                    format!("fast-{writer}-{n}"),
                    "user.added",
                )
                .creator("tester")
                .owner("org")
                .build()
                .expect("valid command");
                store.push(vec![command]).await.expect("push");
            }
        }));
    }
    (writers, (3 * (slow + fast)) as usize)
}
