//! Who is acting and on whose behalf: what every command built by the typed layer carries
//! besides its event.

/// The part of a command that is not the event: the creator and resource owner every stored event
/// records.
///
/// A service usually makes one per request (the authenticated user as creator, their
/// organisation as owner) and passes it to every repository call of that request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub(crate) creator: String,
    pub(crate) owner: String,
}

impl Context {
    /// Commands made in this context record `creator` and `owner` (validated when a command is
    /// built: non-empty, at most 200 bytes).
    pub fn new(creator: impl Into<String>, owner: impl Into<String>) -> Self {
        Context {
            creator: creator.into(),
            owner: owner.into(),
        }
    }

    /// The creator commands record.
    pub fn creator(&self) -> &str {
        &self.creator
    }

    /// The resource owner commands record.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}
