//! Subscriptions: the events a query selects as one live stream, the stored ones first and then
//! each as it commits, without ever skipping an event whose push commits late.
//!
//! A subscription reads only **below the commit horizon** ([`EventStore::commit_horizon`]): every
//! event positioned there is already visible and no other can still appear, so once the stream
//! passed a position nothing is left behind it. (A reader that pages with `resumed_after` alone
//! skips a push that took its position before an earlier one committed.) Each round is one
//! streamed query from the last delivered event up to the horizon, so catching up on a million
//! events is one query whose rows are decoded as they arrive, not a page per thousand.
//!
//! Between rounds it waits for a push notice ([`EventStore::subscribe_pushes`]: this process's
//! pushes, and on PostgreSQL other processes' through `LISTEN`), or for
//! [`SubscribeOptions::poll_every`] as the fallback when a notice is lost.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use strata_event::{Cursor, Event, Position};
use strata_query::{Order, Query};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::store::{EventStore, Pushed};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// With the first event the query selects.
    Beginning,
    /// Right after the event at this cursor (the last one a reader handled): the stream resumes
    /// where an earlier one stopped.
    After(Cursor),
    /// With the events that commit from now on: everything already visible is passed over.
    Now,
}

/// How a subscription runs; [`SubscribeOptions::default`] suits most readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Events read ahead of the consumer (at least 1), handed over in runs of up to 64. A
    /// consumer slower than the store makes the reading wait once this many are buffered: memory
    /// stays bounded whatever its speed. Default: 256.
    pub buffer: usize,
    /// The longest a live subscription waits for a push notice before it looks anyway: the bound
    /// on its latency when notices are lost (a listener reconnecting, a store that cannot hear
    /// other processes). Default: 1 s.
    pub poll_every: Duration,
    /// After a failed read (the error is delivered as an item), the pause before the
    /// subscription tries again from where it stopped. Default: 1 s.
    pub retry_after: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            buffer: 256,
            poll_every: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// A live stream of the events a query selects, in `(position, in_tx_order)` order, each once:
/// see [`EventStore::subscribe`].
///
/// An `Err` item reports a failed read (the database went away, say) without ending the stream:
/// the subscription tries again from the event after the last one it delivered. Dropping the
/// stream stops it and releases what it holds (a connection while a read is in flight). A
/// subscription whose query has an upper position bound ends once it delivered everything below
/// that bound; any other never ends on its own.
pub struct Subscription {
    receiver: mpsc::Receiver<Vec<Result<Event>>>,
    /// The rest of the last run received, handed out before the next is awaited.
    received: std::vec::IntoIter<Result<Event>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The task may be waiting for a notice rather than sending: aborting it stops it now
        // instead of at its next event.
        self.task.abort();
    }
}

impl Stream for Subscription {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.received.next() {
                return Poll::Ready(Some(item));
            }
            match this.receiver.poll_recv(cx) {
                Poll::Ready(Some(run)) => this.received = run.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Subscription {
    /// Starts a subscription of `query` on `store` (see [`EventStore::subscribe`]).
    pub(crate) async fn start<S>(
        store: S,
        query: Query,
        from: StartFrom,
        options: SubscribeOptions,
    ) -> Result<Subscription>
    where
        S: EventStore + Clone + 'static,
    {
        validate(&query, &options)?;
        // The span covers the start (where the subscription begins reading); each later read
        // has its own `strata.query` span, not a child of one that would last for ever.
        let span = crate::telemetry::subscribe_span(&query);
        // Subscribed before the start is fixed: a push that commits after it sends a notice this
        // subscription hears.
        let notices = store.subscribe_pushes();
        let cursor = start_cursor(&store, &query, from).instrument(span).await?;
        // Runs of up to `run` events, as many as fit in `buffer` (at least one).
        let run = options.buffer.min(MAX_RUN);
        let (sender, receiver) = mpsc::channel(options.buffer / run);
        let reader = Reader {
            notices,
            store,
            query,
            options,
            run,
            sender,
        };
        let task = tokio::spawn(reader.run(cursor));
        Ok(Subscription {
            receiver,
            received: Vec::new().into_iter(),
            task,
        })
    }
}

/// What a subscription cannot follow: a query whose order, limit, offset, cursor or exclusion
/// would make "the next events" ill-defined.
fn validate(query: &Query, options: &SubscribeOptions) -> Result<()> {
    let refuse = |why: &str| Err(Error::invalid_input(format!("cannot subscribe: {why}")));
    if query.order() == Order::Descending {
        return refuse("a subscription reads oldest first; the query is descending");
    }
    if query.limit().is_some() || query.offset() > 0 {
        return refuse("a subscription has no limit or offset; stop reading instead");
    }
    if query.resume_after().is_some() {
        return refuse("give the cursor as StartFrom::After, not as the query's resume_after");
    }
    if query.exclusion().is_some() {
        return refuse(
            "an aggregate exclusion can drop events already delivered once a later event \
             arrives; query with it instead",
        );
    }
    if options.buffer == 0 {
        return refuse("the buffer must hold at least one event");
    }
    Ok(())
}

/// The cursor to read after, `None` for the beginning.
async fn start_cursor<S: EventStore>(
    store: &S,
    query: &Query,
    from: StartFrom,
) -> Result<Option<Cursor>> {
    match from {
        StartFrom::Beginning => Ok(None),
        StartFrom::After(cursor) => Ok(Some(cursor)),
        StartFrom::Now => {
            // Past the last event below the horizon: every later event of the query is
            // positioned at or above the horizon, so after the highest order at that position.
            let horizon = store.commit_horizon().await?;
            let latest = store.latest_position(&query.below(horizon)).await?;
            Ok(latest.map(|position| Cursor::new(position, u32::MAX)))
        }
    }
}

/// Most events the reading task hands over at once. Events travel in runs of what the store
/// already has, so a consumer that keeps up is woken once per run rather than once per event: a
/// wake-up across threads cost more than decoding the event.
const MAX_RUN: usize = 64;

/// The task behind a [`Subscription`].
struct Reader<S> {
    store: S,
    query: Query,
    options: SubscribeOptions,
    /// Most events sent at once.
    run: usize,
    sender: mpsc::Sender<Vec<Result<Event>>>,
    notices: Option<broadcast::Receiver<Pushed>>,
}

/// How a round of reading ended.
enum Round {
    /// It delivered events: there may be more already.
    Delivered,
    /// Nothing new below the horizon.
    Empty,
    /// Everything below the query's own upper bound was delivered.
    Finished,
    /// The reader is gone.
    Closed,
}

impl<S> Reader<S>
where
    S: EventStore + Clone + 'static,
{
    async fn run(mut self, mut cursor: Option<Cursor>) {
        loop {
            // Notices that arrived so far are for pushes the horizon read next covers (or will
            // cover when an older push commits, which sends its own notice): dropping them here
            // loses no wake-up, and keeps a burst from causing a round each.
            self.drain_notices();
            match self.round(&mut cursor).await {
                Ok(Round::Delivered) => {}
                Ok(Round::Empty) => {
                    if !self.wait_for_news().await {
                        return;
                    }
                }
                Ok(Round::Finished | Round::Closed) => return,
                Err(err) => {
                    if !self.report(err).await {
                        return;
                    }
                }
            }
        }
    }

    /// Streams the events after `cursor` below the horizon, moving `cursor` past each delivered.
    async fn round(&self, cursor: &mut Option<Cursor>) -> Result<Round> {
        let horizon = self.store.commit_horizon().await?;
        let page = match cursor {
            Some(after) => self.query.resumed_after(*after),
            None => self.query.clone(),
        }
        .below(horizon);
        let mut delivered = false;
        // Whatever the store has ready, up to a run, goes over at once.
        let mut events = self.store.stream(&page).ready_chunks(self.run);
        while let Some(mut run) = events.next().await {
            // The events before a failure are delivered; the error follows them.
            let failure = match run.iter().position(Result::is_err) {
                Some(failed) => run.drain(failed..).next().and_then(Result::err),
                None => None,
            };
            if let Some(Ok(last)) = run.last() {
                let at = last.cursor();
                if self.sender.send(run).await.is_err() {
                    return Ok(Round::Closed);
                }
                *cursor = Some(at);
                delivered = true;
            }
            if let Some(err) = failure {
                return Err(err);
            }
        }
        if self.bounded_below(horizon) {
            return Ok(Round::Finished);
        }
        Ok(if delivered {
            Round::Delivered
        } else {
            Round::Empty
        })
    }

    /// Whether the query's own upper bound lies below `horizon`, so a round up to it saw every
    /// event the query can ever select.
    fn bounded_below(&self, horizon: Position) -> bool {
        self.query
            .position_before()
            .is_some_and(|bound| bound <= horizon)
            || self
                .query
                .position_at_or_before()
                .is_some_and(|bound| bound < horizon)
    }

    fn drain_notices(&mut self) {
        let Some(notices) = &mut self.notices else {
            return;
        };
        loop {
            match notices.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(broadcast::error::TryRecvError::Empty) => return,
                Err(broadcast::error::TryRecvError::Closed) => {
                    self.notices = None;
                    return;
                }
            }
        }
    }

    /// Waits for a notice of a push this query may select, the poll interval, or the reader
    /// leaving; `false` when it left.
    async fn wait_for_news(&mut self) -> bool {
        let poll = tokio::time::sleep(self.options.poll_every);
        tokio::pin!(poll);
        loop {
            let notice = async {
                match &mut self.notices {
                    Some(notices) => Some(notices.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.sender.closed() => return false,
                () = &mut poll => return true,
                notice = notice => match notice {
                    Some(Ok(pushed)) if !self.may_select(&pushed) => {}
                    Some(Err(broadcast::error::RecvError::Closed)) => self.notices = None,
                    // A relevant notice, or some were lost: look.
                    _ => return true,
                },
            }
        }
    }

    /// Whether a push to these instances can hold events of the query.
    fn may_select(&self, pushed: &Pushed) -> bool {
        let named = self.query.instance_ids();
        pushed.instance_ids.is_empty()
            || pushed.instance_ids.iter().any(|instance| {
                (named.is_empty() || named.contains(instance))
                    && !self.query.excluded_instance_ids().contains(instance)
            })
    }

    /// Hands `err` to the reader and pauses before the next attempt; `false` when the reader
    /// is gone.
    async fn report(&self, err: Error) -> bool {
        if self.sender.send(vec![Err(err)]).await.is_err() {
            return false;
        }
        tokio::select! {
            () = self.sender.closed() => false,
            () = tokio::time::sleep(self.options.retry_after) => true,
        }
    }
}
