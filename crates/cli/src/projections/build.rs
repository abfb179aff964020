//! `strata projections build`: how far the version being built is, refreshed with `--watch` until
//! it has caught up, and setting a retired or dropped version building again.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use strata_projection::{ProjectionBackend, ProjectionVersion, VersionLag, VersionState};

use crate::output::{OutputFormat, report};
use crate::projections::WATCH_EVERY;
use crate::projections::versions::{BuildArgs, Versioned};

/// One refresh of `projections build`.
#[derive(Debug, Serialize)]
struct BuildLine {
    projection: String,
    version: u32,
    /// The name its checkpoints and status lines are kept under: `users@v2`.
    pair_name: String,
    /// `building`, `live`, `retired` or `dropped`.
    state: &'static str,
    /// When this command set the version building again, the state it came from: `retired` or
    /// `dropped`.
    set_building_from: Option<&'static str>,
    /// Events it reads and has processed, in every instance. This and the other counts are
    /// `None` when no runtime has registered what the version reads, and for a version that is
    /// not applied (retired or dropped).
    events_applied: Option<u64>,
    /// Events it reads and has yet to process.
    events_behind: Option<u64>,
    /// Instances it reads events in.
    instances: Option<u64>,
    /// Of those, instances where it has events left.
    instances_behind: Option<u64>,
    /// Events applied per second since the previous refresh (`--watch`); `None` on the first.
    events_per_second: Option<f64>,
    /// Seconds until it catches up, at the pace its events behind fell since the previous
    /// refresh (so events pushed meanwhile count); 0 once caught up, `None` on the first refresh
    /// or while it does not gain.
    seconds_to_catch_up: Option<f64>,
    /// Whether it has nothing left to apply.
    caught_up: bool,
    /// Live runtimes that run its code (they build it).
    runtimes_alive: usize,
}

/// A refresh's lag and when it was measured, for the rate of the next.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    lag: VersionLag,
}

pub(super) async fn run(args: BuildArgs) -> anyhow::Result<()> {
    let format = args.output.output;
    let mut versioned = Versioned::open(&args.database, &args.name).await?;
    let chosen = match args.version {
        Some(version) => versioned.version(version)?,
        None => versioned.building("--version")?,
    };
    let set_building_from = match chosen.state {
        VersionState::Retired | VersionState::Dropped => {
            versioned
                .backend
                .rebuild_version(&chosen.projection, chosen.version)
                .await
                .with_context(|| {
                    format!(
                        "setting version {} of {:?} building again",
                        chosen.version, chosen.projection
                    )
                })?;
            if format == OutputFormat::Table {
                println!(
                    "{}",
                    building_again(&chosen, versioned.runtimes(&chosen).await?)
                );
            }
            versioned.refresh().await?;
            Some(chosen.state.as_str())
        }
        VersionState::Building | VersionState::Live => None,
    };
    let mut previous: Option<Sample> = None;
    loop {
        let record = versioned.version(chosen.version)?;
        let lag = match record.state.is_applied() {
            true => versioned.lag(&record).await?,
            false => None,
        };
        let at = Instant::now();
        let line = BuildLine {
            projection: record.projection.clone(),
            version: record.version,
            pair_name: record.pair_name(),
            state: record.state.as_str(),
            set_building_from,
            events_applied: lag.map(|lag| lag.events_applied),
            events_behind: lag.map(|lag| lag.events_behind),
            instances: lag.map(|lag| lag.instances),
            instances_behind: lag.map(|lag| lag.instances_behind),
            events_per_second: lag.zip(previous).map(|(lag, previous)| {
                let applied = lag
                    .events_applied
                    .saturating_sub(previous.lag.events_applied);
                applied as f64 / seconds_between(previous.at, at)
            }),
            seconds_to_catch_up: lag.and_then(|lag| time_to_catch_up(lag, previous, at)),
            caught_up: lag.is_some_and(|lag| lag.events_behind == 0),
            runtimes_alive: versioned.runtimes(&record).await?,
        };
        report(format, &line, || progress_sentence(&line))?;
        if !args.watch || line.caught_up {
            return Ok(());
        }
        if !record.state.is_applied() {
            anyhow::bail!(
                "version {} of {:?} was {} meanwhile: it is not built any more",
                record.version,
                record.projection,
                record.state
            );
        }
        previous = lag.map(|lag| Sample { at, lag });
        tokio::time::sleep(WATCH_EVERY).await;
        versioned.refresh().await?;
    }
}

/// Seconds from `from` to `to`, never zero (a rate divides by it).
fn seconds_between(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64().max(0.001)
}

/// How long `lag` takes to reach zero at the pace it fell since `previous`.
fn time_to_catch_up(lag: VersionLag, previous: Option<Sample>, at: Instant) -> Option<f64> {
    if lag.events_behind == 0 {
        return Some(0.0);
    }
    let previous = previous?;
    let gained = previous.lag.events_behind.checked_sub(lag.events_behind)?;
    if gained == 0 {
        return None;
    }
    let per_second = gained as f64 / seconds_between(previous.at, at);
    Some(lag.events_behind as f64 / per_second)
}

/// What setting `record` (retired or dropped) building again means, for a person.
fn building_again(record: &ProjectionVersion, runtimes: usize) -> String {
    let from = match record.state {
        VersionState::Dropped => "from the first event, its tables created again",
        _ => "from where it stopped",
    };
    let who = match runtimes {
        0 => format!(
            "no live runtime runs {} now: it is built once one that runs version {}'s code starts",
            record.pair_name(),
            record.version
        ),
        alive => format!("{alive} live runtime(s) run it and pick it up within about a second"),
    };
    format!(
        "version {} of {:?} is building again (it was {}): a runtime that runs that version's \
         code resumes it {from}; {who}",
        record.version, record.projection, record.state
    )
}

/// One refresh of `projections build`, for a person.
fn progress_sentence(line: &BuildLine) -> String {
    let pair = &line.pair_name;
    let state = line.state;
    let (Some(applied), Some(behind), Some(instances), Some(instances_behind)) = (
        line.events_applied,
        line.events_behind,
        line.instances,
        line.instances_behind,
    ) else {
        return match line.state {
            "retired" | "dropped" => format!("{pair} is {state}: it is not applied"),
            _ => format!(
                "{pair} ({state}): its progress is unknown: no runtime has registered what it \
                 reads (a runtime registers its projections when it starts)"
            ),
        };
    };
    if line.caught_up {
        let mut sentence = format!(
            "{pair} ({state}) has caught up: {applied} event(s) applied in {instances} \
             instance(s)"
        );
        if state == "building" {
            sentence.push_str(&format!(
                "; unless its runtime switches it in by itself, `strata projections switch {} \
                 --to {}` makes it live",
                line.projection, line.version
            ));
        }
        return sentence;
    }
    let mut sentence = format!(
        "{pair} ({state}): {applied} event(s) applied, {behind} behind in {instances_behind} of \
         {instances} instance(s)"
    );
    if let Some(rate) = line.events_per_second {
        sentence.push_str(&format!("; {rate:.0} events/s"));
        match line.seconds_to_catch_up {
            Some(seconds) => sentence.push_str(&format!(", caught up in {}", about(seconds))),
            None => sentence.push_str(", not gaining on new events"),
        }
    }
    if line.runtimes_alive == 0 {
        sentence.push_str(&format!(
            "; no live runtime runs {pair}: nothing builds it until one starts"
        ));
    }
    sentence
}

/// A duration in a person's words: `about 40 s`, `about 3 min`, `about 2.5 h`.
fn about(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("about {:.0} s", seconds.max(1.0))
    } else if seconds < 90.0 * 60.0 {
        format!("about {:.0} min", seconds / 60.0)
    } else {
        format!("about {:.1} h", seconds / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn behind(events_behind: u64) -> VersionLag {
        VersionLag {
            events_behind,
            ..VersionLag::default()
        }
    }

    #[test]
    fn the_time_to_catch_up_follows_the_pace_the_lag_falls_at() {
        let start = Instant::now();
        let previous = Some(Sample {
            at: start,
            lag: behind(1_000),
        });
        let two_seconds_later = start + Duration::from_secs(2);
        // 400 fewer in 2 s: 200/s, so 600 take 3 s.
        let eta = time_to_catch_up(behind(600), previous, two_seconds_later).unwrap();
        assert!((eta - 3.0).abs() < 1e-9, "{eta}");
        assert_eq!(
            time_to_catch_up(behind(0), previous, two_seconds_later),
            Some(0.0)
        );
        // Not gaining (new events come as fast as it applies them), or no earlier refresh.
        assert_eq!(
            time_to_catch_up(behind(1_000), previous, two_seconds_later),
            None
        );
        assert_eq!(
            time_to_catch_up(behind(1_200), previous, two_seconds_later),
            None
        );
        assert_eq!(time_to_catch_up(behind(600), None, two_seconds_later), None);
    }

    #[test]
    fn durations_read_in_a_persons_units() {
        assert_eq!(about(0.2), "about 1 s");
        assert_eq!(about(42.0), "about 42 s");
        assert_eq!(about(600.0), "about 10 min");
        assert_eq!(about(9_000.0), "about 2.5 h");
    }
}
