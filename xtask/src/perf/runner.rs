//! Running an operation from C tasks: warm-up, then a fixed measured window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

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
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.measure;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let operation = Arc::clone(&operation);
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
                if began >= end {
                    break;
                }
                let outcome = operation(task, iteration).await;
                iteration += 1;
                let finished = Instant::now();
                if began < measure_from || finished > end {
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
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.merge(samples);
        }
    }
    (all, timing.measure)
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
