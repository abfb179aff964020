//! Who is acting, on whose behalf, in answer to what: what every command built by the typed layer
//! carries besides its event.

use std::sync::OnceLock;

use strata_event::{Event, IdempotencyKey, Metadata, ValidationError};

use crate::envelope::{Envelope, event_id};

/// The part of a command that is not the event: the creator and resource owner every stored event
/// records, the metadata (correlation and causation ids, headers) it carries, and optionally an
/// idempotency key that makes a retried call store its events once.
///
/// A service usually makes one per request (the authenticated user as creator, their
/// organisation as owner, the request id as correlation id) and passes it to every repository call
/// of that request. An idempotency key, though, names one call: give each keyed call its own
/// (`context.clone().idempotency_key(format!("{request_id}/signup"))`). A handler reacting to an event makes its context with
/// [`caused_by`](Context::caused_by): the new events inherit the event's correlation id and name
/// it as their cause, without the handler passing ids by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub(crate) creator: String,
    pub(crate) owner: String,
    pub(crate) metadata: Metadata,
    pub(crate) idempotency_key: Option<String>,
}

/// The header a context made under a current trace carries its trace id in.
pub const TRACE_ID_HEADER: &str = "trace_id";

static TRACE_ID_SOURCE: OnceLock<fn() -> Option<String>> = OnceLock::new();

/// Tells [`Context::new`] how to read the current trace id, once per process: Strata depends on no
/// tracer, so the service, which installed one, supplies the reading. With
/// `tracing-opentelemetry`:
///
/// ```ignore
/// use opentelemetry::trace::{TraceContextExt, TraceId};
/// use tracing_opentelemetry::OpenTelemetrySpanExt;
///
/// strata_domain::set_trace_id_source(|| {
///     let context = tracing::Span::current().context();
///     let trace_id = context.span().span_context().trace_id();
///     (trace_id != TraceId::INVALID).then(|| trace_id.to_string())
/// });
/// ```
///
/// Returns `false` (and changes nothing) when a source was installed before.
pub fn set_trace_id_source(source: fn() -> Option<String>) -> bool {
    TRACE_ID_SOURCE.set(source).is_ok()
}

impl Context {
    /// Commands made in this context record `creator` and `owner` (validated when a command is
    /// built: non-empty, at most 200 bytes).
    ///
    /// When the service installed a [trace id source](set_trace_id_source) and a trace is
    /// current, the context starts with that trace id as its correlation id and in the header
    /// [`TRACE_ID_HEADER`], so the events a request stores can be found from its trace.
    pub fn new(creator: impl Into<String>, owner: impl Into<String>) -> Self {
        let mut metadata = Metadata::default();
        if let Some(trace_id) = TRACE_ID_SOURCE.get().and_then(|source| source()) {
            metadata
                .headers
                .insert(TRACE_ID_HEADER.to_owned(), trace_id.clone());
            metadata.correlation_id = Some(trace_id);
        }
        Context {
            creator: creator.into(),
            owner: owner.into(),
            metadata,
            idempotency_key: None,
        }
    }

    /// Events pushed in this context carry `correlation_id` (the request or workflow they belong
    /// to; `QueryBuilder::correlation_id` finds them).
    #[must_use]
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(correlation_id.into());
        self
    }

    /// Events pushed in this context name `causation_id` as their direct cause.
    #[must_use]
    pub fn causation_id(mut self, causation_id: impl Into<String>) -> Self {
        self.metadata.causation_id = Some(causation_id.into());
        self
    }

    /// Events pushed in this context carry the header `name: value`.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.headers.insert(name.into(), value.into());
        self
    }

    /// This context, acting in answer to `event`: the event's correlation id (or, when it has
    /// none, the event itself, which then starts the correlation) and the event as the cause.
    #[must_use]
    pub fn caused_by<E>(&self, event: &Envelope<E>) -> Context {
        self.caused_by_parts(&event.metadata, event.id())
    }

    /// [`caused_by`](Context::caused_by) for an untyped event.
    #[must_use]
    pub fn caused_by_event(&self, event: &Event) -> Context {
        self.caused_by_parts(&event.metadata, event_id(&event.aggregate, event.sequence))
    }

    fn caused_by_parts(&self, cause: &Metadata, cause_id: String) -> Context {
        let mut context = self.clone();
        // The key named the call that stored the cause, not this reaction to it.
        context.idempotency_key = None;
        context.metadata.correlation_id = Some(
            cause
                .correlation_id
                .clone()
                .unwrap_or_else(|| cause_id.clone()),
        );
        context.metadata.causation_id = Some(cause_id);
        context
    }

    /// Calls in this context push under the idempotency key `key` (scoped to the instance pushed
    /// to): a call retried after its outcome was lost (a timeout, `Unavailable`) returns the
    /// events the first attempt stored and stores nothing again, even though the retry loads a
    /// state that already holds them. A key names one call: use a fresh one per logical operation
    /// (a request id plus what the call does); a key whose recorded events are on other
    /// aggregates than the call writes to is refused as reused. [`caused_by`](Context::caused_by)
    /// drops it.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The creator commands record.
    pub fn creator(&self) -> &str {
        &self.creator
    }

    /// The resource owner commands record.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The metadata commands carry.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The idempotency key calls in this context push under, if any.
    pub fn key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The idempotency key for a push to `instance_id`, when this context has one.
    pub(crate) fn key_for(
        &self,
        instance_id: &str,
    ) -> Result<Option<IdempotencyKey>, ValidationError> {
        self.idempotency_key
            .as_ref()
            .map(|key| IdempotencyKey::new(instance_id, key.as_str()))
            .transpose()
    }
}
