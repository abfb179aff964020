//! `strata cache prune|truncate`: administration of the PostgreSQL cache connector's tables.
//!
//! A cache's ages are configured in the application, not stored in the database, so `prune` takes
//! them as flags; without them it removes only what a crash mid-write can leave behind.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::CacheCommand;
use crate::connect::connect;
use crate::output::{confirm, report};

/// What `strata cache … --output json` prints.
#[derive(Debug, Serialize)]
struct CacheReport<'a> {
    cache: &'a str,
    /// `prune` or `truncate`.
    action: &'static str,
    /// Objects removed.
    removed: u64,
}

pub(crate) async fn run(command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Prune {
            name,
            max_age,
            last_use_age,
            database,
            output,
        } => {
            let store = connect(&database.database_url).await?;
            let removed =
                strata_cache::postgres::prune(store.pools().push(), &name, max_age, last_use_age)
                    .await
                    .with_context(|| format!("pruning cache {name:?}"))?;
            let outcome = CacheReport {
                cache: &name,
                action: "prune",
                removed,
            };
            report(output.output, &outcome, || {
                format!("cache {name:?}: pruned {removed} objects")
            })
        }
        CacheCommand::Truncate {
            name,
            yes,
            database,
            output,
        } => {
            let store = connect(&database.database_url).await?;
            confirm(
                &format!(
                    "empty cache {name:?} (every entry; the application refills it on misses)?"
                ),
                yes,
            )?;
            let held = strata_cache::postgres::truncate(store.pools().push(), &name)
                .await
                .with_context(|| format!("truncating cache {name:?}"))?;
            let outcome = CacheReport {
                cache: &name,
                action: "truncate",
                removed: held,
            };
            report(output.output, &outcome, || {
                format!("cache {name:?}: truncated ({held} objects removed)")
            })
        }
    }
}

/// Reads an age such as `90s`, `15m`, `12h` or `7d`.
pub(crate) fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not an age: use a number and a unit, e.g. 90s, 15m, 12h, 7d")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long an age"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_age("7").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("1.5h").is_err());
    }
}
