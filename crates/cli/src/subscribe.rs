//! `strata subscribe`: the events a query selects as a live stream of JSON lines, the stored ones
//! first and then each as it commits, through `EventStore::subscribe`.
//!
//! The store's subscription reads only below the commit horizon and is woken by `LISTEN`, so the
//! stream skips no event whose push commits late and needs no polling here. The command adds the
//! output: one line per event, flushed at once so a pipe sees each event when it arrives, and a
//! quiet exit when the reader closes the pipe.

use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use strata_store::{ErrorKind, EventStore, StartFrom};

use crate::Database;
use crate::connect::connect;
use crate::filters::{QueryFilters, build};
use crate::output::ends_at_closed_pipe;
use crate::query::write_event_line;
use crate::usage;

/// `strata subscribe`.
#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    #[command(flatten)]
    filters: QueryFilters,
    /// Start with the first event that matches (the default)
    #[arg(long, conflicts_with_all = ["after", "from_now"])]
    from_beginning: bool,
    /// Start with the events that commit from now on: what is stored already is passed over
    #[arg(long, conflicts_with = "after")]
    from_now: bool,
    /// Exit (code 0) after printing N events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    stop_after: Option<u64>,
    /// Output format: a stream is printed as JSON lines only [default: json]
    #[arg(long, value_enum, default_value_t = StreamFormat::Json, hide_default_value = true)]
    output: StreamFormat,
    // What `strata query` takes and a stream cannot honour: accepted here only to be refused
    // with a reason, rather than with clap's bare "unexpected argument".
    #[arg(long, hide = true)]
    descending: bool,
    #[arg(long, hide = true, allow_negative_numbers = true)]
    limit: Option<String>,
    #[arg(long, hide = true, allow_negative_numbers = true)]
    offset: Option<String>,
    #[arg(long, hide = true)]
    include_archive: bool,
    #[arg(long, hide = true)]
    follow: bool,
    #[command(flatten)]
    database: Database,
}

/// How a stream is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StreamFormat {
    /// One JSON object per event and line, as `strata query --output json` prints it.
    Json,
}

pub(crate) async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    // Bad usage is reported as such before connecting, with or without a server.
    refuse_what_a_stream_cannot_do(&args)?;
    let query = build(args.filters.builder())?;
    let from = match (args.filters.after, args.from_now) {
        (Some(after), _) => StartFrom::After(after.cursor()),
        (None, true) => StartFrom::Now,
        (None, false) => StartFrom::Beginning,
    };
    let store = connect(&args.database.database_url).await?;
    let subscription = store.subscribe(&query, from).await.map_err(|err| {
        if err.kind() == ErrorKind::InvalidInput {
            usage(err.to_string())
        } else {
            anyhow::Error::new(err).context("starting the subscription")
        }
    })?;
    // A reader that stopped (`| head -n 5`) got what it wanted.
    ends_at_closed_pipe(print(subscription, args.stop_after).await)
}

fn refuse_what_a_stream_cannot_do(args: &SubscribeArgs) -> anyhow::Result<()> {
    let refused = [
        (
            args.descending,
            "--descending: a subscription streams oldest first, as events commit",
        ),
        (
            args.limit.is_some(),
            "--limit: a subscription has no end of its own; use --stop-after N",
        ),
        (
            args.offset.is_some(),
            "--offset: a subscription skips nothing; start it with --after CURSOR or --from-now",
        ),
        (
            args.include_archive,
            "--include-archive: archived events are closed aggregates' history; read them with \
             `strata query --include-archive`",
        ),
        (args.follow, "--follow: `strata subscribe` always follows"),
        (
            args.filters.excludes_aggregates(),
            "--exclude-aggregates-with-event: an exclusion can drop events already printed once \
             a later event arrives; use `strata query` with it",
        ),
    ];
    match refused.iter().find(|(given, _)| *given) {
        Some((_, why)) => Err(usage(format!("cannot subscribe with {why}"))),
        None => Ok(()),
    }
}

/// Prints the subscription's events until it ends (an upper bound such as --at-or-before was
/// passed), `stop_after` events were printed, or writing fails.
async fn print(
    mut subscription: strata_store::Subscription,
    stop_after: Option<u64>,
) -> anyhow::Result<()> {
    let mut printed: u64 = 0;
    while let Some(item) = subscription.next().await {
        let event = match item {
            Ok(event) => event,
            Err(err) => {
                // The subscription tries again from the last event it delivered, so nothing is
                // lost or printed twice: say so and keep streaming, as `tail -F` does.
                eprintln!(
                    "warning: reading events failed; the subscription tries again from the last \
                     event printed: {err}"
                );
                continue;
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        write_event_line(&mut out, &event)?;
        // Each event reaches the reader at once, not when a buffer fills.
        out.flush().context("writing to stdout")?;
        printed += 1;
        if stop_after.is_some_and(|stop| stop <= printed) {
            break;
        }
    }
    Ok(())
}
