//! What a typed event is: a serde enum whose variants are event types, and the table that maps
//! stored events onto it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_event::Revision;

use crate::upcast::Upcaster;

/// A user's event type: usually one enum per aggregate type, one variant per event type.
///
/// The variants' serde names are the stored event types, and a variant's content is the stored
/// payload (a struct variant's fields become a JSON object; a unit variant has no payload). The
/// [`EVENTS`](DomainEvent::EVENTS) table says which aggregate type each event type belongs to and
/// at which revision this build writes it; reading is driven by it, like ZITADEL's event mappers.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use strata_domain::{DomainEvent, EventSpec};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// enum UserEvent {
///     #[serde(rename = "user.added")]
///     Added { username: String, email: String },
///     #[serde(rename = "user.email_changed")]
///     EmailChanged { email: String },
///     #[serde(rename = "user.removed")]
///     Removed,
/// }
///
/// impl DomainEvent for UserEvent {
///     const AGGREGATE_TYPE: &'static str = "user";
///     const EVENTS: &'static [EventSpec] = &[
///         EventSpec::new("user.added").revision(2),
///         EventSpec::new("user.email_changed"),
///         EventSpec::new("user.removed"),
///     ];
/// }
///
/// let context = strata_domain::Context::new("admin", "org-1");
/// let command = strata_domain::command(&UserEvent::Removed, "acme", "u-1", &context)?;
/// assert_eq!((command.event_type().as_str(), command.revision()), ("user.removed", 1));
/// # Ok::<(), strata_domain::EncodeError>(())
/// ```
///
/// The table, not serde, decides which stored types an enum reads, so serde's `#[serde(other)]`
/// (a catch-all variant) and `#[serde(alias)]` (a second name) have no effect on decoding: read
/// an unknown type with [`UnknownEvents::Skip`](crate::UnknownEvents::Skip), and a renamed type
/// by keeping the old name as the variant's serde name (the stored type never changes).
///
/// Every variant must have an entry, and every entry a variant: a variant without one fails to
/// encode ([`EncodeError::NotInTable`](crate::EncodeError::NotInTable)), an entry without one fails
/// to decode. [`check_table`](crate::check_table) checks both in one line of a test.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type of the events in [`EVENTS`](DomainEvent::EVENTS) that do not name one.
    const AGGREGATE_TYPE: &'static str;

    /// Every event type this enum reads and writes, with its current revision.
    const EVENTS: &'static [EventSpec];

    /// Turn payloads of older revisions into the current one. Empty by default.
    const UPCASTERS: &'static [Upcaster] = &[];

    /// Unique-constraint changes that travel with this event when it is pushed (a username taken
    /// by `user.added`, released by `user.removed`). None by default.
    fn unique_constraints(&self) -> Vec<Unique> {
        Vec::new()
    }

    /// The table entry for `(aggregate_type, event_type)`, if this enum knows that event.
    fn spec(aggregate_type: &str, event_type: &str) -> Option<&'static EventSpec> {
        Self::EVENTS.iter().find(|spec| {
            spec.event_type == event_type
                && spec.aggregate_type_or(Self::AGGREGATE_TYPE) == aggregate_type
        })
    }
}

/// One row of a [`DomainEvent::EVENTS`] table: an event type, the aggregate type it belongs to and
/// the revision this build writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The stored event type: the variant's serde name.
    pub event_type: &'static str,
    /// The aggregate type, when it differs from [`DomainEvent::AGGREGATE_TYPE`].
    pub aggregate_type: Option<&'static str>,
    /// The revision this build writes and decodes into. Older stored revisions go through the
    /// [`DomainEvent::UPCASTERS`] first.
    pub revision: Revision,
    /// The payload fields that are personal data (dot-separated paths into the payload object):
    /// sealed per subject when pushed through a `Vault`, erasable (see
    /// [`personal`](EventSpec::personal)).
    pub personal: &'static [&'static str],
    /// Whose personal data those fields are.
    pub subject: SubjectOf,
}

/// Whose personal data an event's [`personal`](EventSpec::personal) fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectOf {
    /// The subject is the event's aggregate (a user's own events): the default.
    AggregateId,
    /// The subject's id is this (string) field of the payload, e.g. the user an order is for.
    /// The field itself is not sealed: it names whose key to use.
    Field(&'static str),
}

impl EventSpec {
    /// `event_type` at revision 1, of the enum's [`DomainEvent::AGGREGATE_TYPE`].
    pub const fn new(event_type: &'static str) -> Self {
        EventSpec {
            event_type,
            aggregate_type: None,
            revision: 1,
            personal: &[],
            subject: SubjectOf::AggregateId,
        }
    }

    /// The revision this build writes.
    #[must_use]
    pub const fn revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// The event belongs to `aggregate_type` rather than the enum's default: for write models
    /// that fold events of several aggregate types.
    #[must_use]
    pub const fn of_aggregate(mut self, aggregate_type: &'static str) -> Self {
        self.aggregate_type = Some(aggregate_type);
        self
    }

    /// These payload fields are personal data of the event's subject (the aggregate unless
    /// [`subject_field`](EventSpec::subject_field) says otherwise). Through a `Vault` (feature
    /// `personal-data`) each is stored encrypted with the subject's key and read back in the
    /// clear, until the subject is erased; then it reads as the erased mark, which a
    /// [`Personal<T>`](crate::Personal) field decodes as `Personal::Erased`. Without a vault,
    /// such an event refuses to encode ([`EncodeError::NeedsVault`](crate::EncodeError)), so
    /// personal data is never stored in the clear by mistake.
    ///
    /// A path names a field of the payload object, `.` descending into nested objects
    /// (`"address.street"`). An absent or `null` field is left as it is.
    #[must_use]
    pub const fn personal(mut self, fields: &'static [&'static str]) -> Self {
        self.personal = fields;
        self
    }

    /// The subject whose data the personal fields are is named by this payload field (a string),
    /// not by the aggregate id.
    #[must_use]
    pub const fn subject_field(mut self, field: &'static str) -> Self {
        self.subject = SubjectOf::Field(field);
        self
    }

    /// The aggregate type, `default` when the spec names none.
    pub fn aggregate_type_or(&self, default: &'static str) -> &'static str {
        self.aggregate_type.unwrap_or(default)
    }
}

/// A unique-constraint change that travels with a typed event (see
/// [`DomainEvent::unique_constraints`]). Validated when the event becomes a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unique {
    /// Claim `(unique_type, value)` in the event's instance; a clash fails the push with
    /// `error_message_id`.
    Add {
        /// The kind of constraint, e.g. `username`.
        unique_type: String,
        /// The value that must be unique.
        value: String,
        /// The message id the caller shows on a clash.
        error_message_id: String,
    },
    /// Release `(unique_type, value)` in the event's instance.
    Remove {
        /// The kind of constraint.
        unique_type: String,
        /// The value to release.
        value: String,
    },
}

impl Unique {
    /// Claims `(unique_type, value)`.
    pub fn add(
        unique_type: impl Into<String>,
        value: impl Into<String>,
        error_message_id: impl Into<String>,
    ) -> Self {
        Unique::Add {
            unique_type: unique_type.into(),
            value: value.into(),
            error_message_id: error_message_id.into(),
        }
    }

    /// Releases `(unique_type, value)`.
    pub fn remove(unique_type: impl Into<String>, value: impl Into<String>) -> Self {
        Unique::Remove {
            unique_type: unique_type.into(),
            value: value.into(),
        }
    }
}
