//! The last minutes of samples, reduced to what the charts draw: the push rate, the pairs in
//! each health, and each projection's lag.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::sample::Sample;

/// `(time, value)` points of one chart line, oldest first.
pub(super) type Timeline = Vec<(DateTime<Utc>, f64)>;

/// What one sample contributes to the charts.
#[derive(Debug, Clone)]
pub(super) struct Point {
    pub(super) at: DateTime<Utc>,
    /// Events stored per second since the previous point; `None` for the first point.
    pub(super) push_rate: Option<f64>,
    pub(super) events_behind: u64,
    pub(super) stalled: usize,
    pub(super) catching_up: usize,
    /// Each pair's events behind and seconds behind.
    pub(super) lag: HashMap<Arc<str>, (u64, f64)>,
}

/// Points of the last `keep` samples, oldest first.
#[derive(Debug, Clone)]
pub(super) struct History {
    points: VecDeque<Point>,
    keep: usize,
    /// Pair names shared by every point, so a thousand projections cost one string each.
    names: HashMap<String, Arc<str>>,
}

impl History {
    pub(super) fn new(keep: usize) -> Self {
        History {
            points: VecDeque::with_capacity(keep),
            keep: keep.max(2),
            names: HashMap::new(),
        }
    }

    /// Adds what `sample` shows.
    pub(super) fn record(&mut self, sample: &Sample) {
        let push_rate = self.points.back().and_then(|previous| {
            let seconds = (sample.taken_at - previous.at).num_milliseconds() as f64 / 1000.0;
            (seconds > 0.0).then(|| sample.events_stored as f64 / seconds)
        });
        let mut lag = HashMap::with_capacity(sample.projections.len());
        for summary in &sample.projections {
            let name = match self.names.get(&summary.name) {
                Some(name) => Arc::clone(name),
                None => {
                    let name: Arc<str> = Arc::from(summary.name.as_str());
                    self.names.insert(summary.name.clone(), Arc::clone(&name));
                    name
                }
            };
            lag.insert(
                name,
                (summary.counts.events_behind, summary.counts.seconds_behind),
            );
        }
        let (_, catching_up, stalled) = sample.health_counts();
        if self.points.len() == self.keep {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            at: sample.taken_at,
            push_rate,
            events_behind: sample
                .projections
                .iter()
                .map(|p| p.counts.events_behind)
                .sum(),
            stalled,
            catching_up,
            lag,
        });
    }

    pub(super) fn points(&self) -> impl ExactSizeIterator<Item = &Point> + Clone {
        self.points.iter()
    }

    /// `(time, value)` of one series, for a chart.
    pub(super) fn series(
        &self,
        value: impl Fn(&Point) -> Option<f64>,
    ) -> Vec<(DateTime<Utc>, f64)> {
        self.points
            .iter()
            .filter_map(|point| value(point).map(|v| (point.at, v)))
            .collect()
    }

    /// A pair's events behind and seconds behind over time.
    pub(super) fn lag_of(&self, name: &str) -> (Timeline, Timeline) {
        let events = self.series(|point| point.lag.get(name).map(|(events, _)| *events as f64));
        let seconds = self.series(|point| point.lag.get(name).map(|(_, seconds)| *seconds));
        (events, seconds)
    }
}
