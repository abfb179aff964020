//! Progress of long work on stderr: a bar for a person at a terminal, and for logs (cron,
//! Kubernetes, a pipe) a line every few seconds, so long work is never silent.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a line is printed when stderr is not a terminal, unless `STRATA_PROGRESS_EVERY`
/// gives another number of seconds.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Environment variable: seconds between progress lines when stderr is not a terminal.
const LINE_EVERY_ENV: &str = "STRATA_PROGRESS_EVERY";

/// Counts units of work (events, lines) and shows how far it got.
pub(crate) struct Progress {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    shown: Instant,
    every: Duration,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting `what` (a plural noun: "events"), out of `total` when known.
    pub(crate) fn start(what: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = match total {
                Some(_) => "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ({per_sec}, ETA {eta})",
                None => "{spinner} [{elapsed_precise}] {pos} {msg} ({per_sec})",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let every = std::env::var(LINE_EVERY_ENV)
            .ok()
            .and_then(|seconds| seconds.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map_or(LINE_EVERY, Duration::from_secs_f64);
        let now = Instant::now();
        Progress {
            what,
            total,
            done: 0,
            started: now,
            shown: now,
            every,
            bar,
        }
    }

    /// Counts `units` more.
    pub(crate) fn add(&mut self, units: u64) {
        self.done += units;
        match &self.bar {
            Some(bar) => bar.inc(units),
            None if self.shown.elapsed() >= self.every => {
                self.shown = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Ends the display: the bar is cleared, and a log gets a last line when it had any.
    pub(crate) fn finish(self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.shown != self.started => eprintln!("{}", self.line()),
            None => {}
        }
    }

    /// Ends the display where it stands, for an abrupt exit.
    pub(crate) fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let rate = self.done as f64 / elapsed.as_secs_f64().max(0.001);
        let of = self
            .total
            .map(|total| format!("/{total}"))
            .unwrap_or_default();
        format!(
            "progress: {}{of} {} in {:.0} s ({rate:.0}/s)",
            self.done,
            self.what,
            elapsed.as_secs_f64()
        )
    }
}
