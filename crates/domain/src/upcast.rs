//! Upcasting: turning a payload stored at an old revision into the current one, step by step,
//! when it is read. Stored events are never rewritten.

use serde_json::Value;
use strata_event::Revision;

/// One step of an upcast chain: turns the payload of `event_type` at revision `from` into
/// revision `from + 1`. A stored revision 1 read by a build at revision 3 goes through the steps
/// from 1 and from 2, in that order.
///
/// ```
/// use serde_json::{Value, json};
/// use strata_domain::Upcaster;
///
/// // Revision 1 had `name`; revision 2 split it in two. A payload that is not an object is an
/// // error, not a panic (indexing a `Value` to assign panics on a non-object).
/// fn split_name(mut payload: Value) -> Result<Value, String> {
///     let fields = payload.as_object_mut().ok_or("not an object")?;
///     let name = fields.remove("name").and_then(|name| name.as_str().map(str::to_owned));
///     let name = name.ok_or("no name")?;
///     let (given, family) = name.split_once(' ').unwrap_or((name.as_str(), ""));
///     fields.insert("given_name".into(), json!(given));
///     fields.insert("family_name".into(), json!(family));
///     Ok(payload)
/// }
///
/// const UPCASTERS: &[Upcaster] = &[Upcaster::new("user.added", 1, split_name)];
/// # assert_eq!(UPCASTERS[0].from, 1);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The event type whose payload it changes.
    pub event_type: &'static str,
    /// The revision it reads; it writes `from + 1`.
    pub from: Revision,
    /// The step. An `Err` makes the event undecodable, with the message as the reason.
    pub upcast: fn(Value) -> Result<Value, String>,
}

impl Upcaster {
    /// The step from `from` to `from + 1` for `event_type`.
    pub const fn new(
        event_type: &'static str,
        from: Revision,
        upcast: fn(Value) -> Result<Value, String>,
    ) -> Self {
        Upcaster {
            event_type,
            from,
            upcast,
        }
    }
}

/// Why an upcast chain could not reach the current revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpcastFailure {
    /// No step from this revision is registered.
    Missing { from: Revision },
    /// A step returned an error.
    Step { from: Revision, reason: String },
}

/// Runs the steps from `stored` up to `current` over `payload`.
pub(crate) fn upcast(
    upcasters: &[Upcaster],
    event_type: &str,
    stored: Revision,
    current: Revision,
    mut payload: Value,
) -> Result<Value, UpcastFailure> {
    for from in stored..current {
        let step = upcasters
            .iter()
            .find(|step| step.event_type == event_type && step.from == from)
            .ok_or(UpcastFailure::Missing { from })?;
        payload = (step.upcast)(payload).map_err(|reason| UpcastFailure::Step { from, reason })?;
    }
    Ok(payload)
}
