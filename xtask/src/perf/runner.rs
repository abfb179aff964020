//! Running an operation from C tasks: warm-up, then a measured window that closes at a fixed
//! instant ([`run`]) or when the caller closes it ([`start_open`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::perf::stats::Samples;

/// One operation: given the task index and its iteration, returns how many events it handled, or
/// an error (counted, never retried).
pub(crate) type Operation =
    Arc<dyn Fn(usize, u64) -> BoxFuture<'static, anyhow::Result<u64>> + Send + Sync>;

/// How many operations a task runs between two voluntary yields.
const YIELD_EVERY: u64 = 64;

/// Warm-up and measured durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// Runs `operation` from `concurrency` tasks for `timing.warmup + timing.measure` and returns what
/// completed inside the measured window, and the window's length.
pub(crate) async fn run(
    concurrency: usize,
    timing: Timing,
    operation: Operation,
) -> (Samples, Duration) {
    let measure_from = Instant::now() + timing.warmup;
    let end = End::At(measure_from + timing.measure);
    let tasks = spawn(concurrency, operation, measure_from, &end);
    (gather(tasks).await, timing.measure)
}

/// A run whose measured window lasts until [`OpenRun::close`]: for a window as long as something
/// else takes (W1 for as long as a projection version builds).
pub(crate) struct OpenRun {
    tasks: Vec<JoinHandle<Samples>>,
    measure_from: Instant,
    end: Arc<Mutex<Option<Instant>>>,
}

/// Starts `operation` from `concurrency` tasks; the measured window opens after `warmup`.
pub(crate) fn start_open(concurrency: usize, warmup: Duration, operation: Operation) -> OpenRun {
    let measure_from = Instant::now() + warmup;
    let end = Arc::new(Mutex::new(None));
    let tasks = spawn(
        concurrency,
        operation,
        measure_from,
        &End::Signalled(Arc::clone(&end)),
    );
    OpenRun {
        tasks,
        measure_from,
        end,
    }
}

impl OpenRun {
    /// When the measured window opens (the warm-up ends).
    pub(crate) fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// Closes the window now and returns what completed inside it, and its length. Operations
    /// in flight finish, uncounted.
    pub(crate) async fn close(self) -> (Samples, Duration) {
        // Read under the lock: an operation a task finds unclosed finished before this instant.
        let end = {
            let mut end = self.end.lock().unwrap_or_else(PoisonError::into_inner);
            *end.insert(Instant::now())
        };
        let samples = gather(self.tasks).await;
        (samples, end.saturating_duration_since(self.measure_from))
    }
}

/// A JSON payload of about 200 bytes, different per call.
pub(crate) fn payload(n: u64) -> serde_json::Value {
    serde_json::json!({
        "user_id": format!("user-{n:08}"),
        "email": format!("someone-{n}@example.com"),
        "display_name": "A reasonably ordinary display name",
        "locale": "en-GB",
        "flags": ["verified", "mfa"],
        "plan": "pro",
        "counter": n,
    })
}

/// When a run's measured window closes.
#[derive(Clone)]
enum End {
    At(Instant),
    /// `None` until the caller closes it.
    Signalled(Arc<Mutex<Option<Instant>>>),
}

impl End {
    fn get(&self) -> Option<Instant> {
        match self {
            End::At(end) => Some(*end),
            End::Signalled(end) => *end.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// Starts the tasks; each counts what it completed between `measure_from` and the end.
fn spawn(
    concurrency: usize,
    operation: Operation,
    measure_from: Instant,
    end: &End,
) -> Vec<JoinHandle<Samples>> {
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let operation = Arc::clone(&operation);
        let end = end.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut iteration = 0u64;
            loop {
                // An operation that never suspends (a memory-cache hit) would otherwise keep its
                // worker thread until the end, and the other tasks would never run: yield now and
                // then, outside the timed part.
                if iteration % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
                let began = Instant::now();
                if end.get().is_some_and(|end| began >= end) {
                    break;
                }
                let outcome = operation(task, iteration).await;
                iteration += 1;
                let finished = Instant::now();
                let outside = began < measure_from || end.get().is_some_and(|end| finished > end);
                if outside {
                    continue;
                }
                match outcome {
                    Ok(events) => {
                        samples.latencies.record(finished - began);
                        samples.events += events;
                    }
                    Err(_) => samples.errors += 1,
                }
            }
            samples
        }));
    }
    tasks
}

async fn gather(tasks: Vec<JoinHandle<Samples>>) -> Samples {
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.merge(samples);
        }
    }
    all
}
