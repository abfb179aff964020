//! Decoding with or without a vault: what every typed read path (aggregate loads, write models,
//! snapshots, keyed replays) calls, so each opens sealed fields the same way.

use strata_event::{Event, SubjectId};

use crate::envelope::{Envelope, UnknownEvents};
use crate::event::DomainEvent;
use crate::repository::DomainError;

/// The vault a read opens sealed fields with, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadKeys<'a> {
    #[cfg(feature = "personal-data")]
    pub(crate) vault: Option<&'a super::Vault>,
    #[cfg(not(feature = "personal-data"))]
    pub(crate) _none: std::marker::PhantomData<&'a ()>,
}

impl ReadKeys<'_> {
    /// Decodes `event` under `unknown`'s rule (`None`: an unknown type skipped), opening its
    /// sealed fields when there is a vault and adding the subjects whose data it opened to
    /// `subjects`.
    pub(crate) async fn decode<E: DomainEvent>(
        &self,
        event: Event,
        unknown: UnknownEvents,
        subjects: &mut Vec<SubjectId>,
    ) -> Result<Option<Envelope<E>>, DomainError> {
        #[cfg(feature = "personal-data")]
        if let Some(vault) = self.vault {
            return match vault.open_payload(&event, subjects).await {
                Ok(None) => Ok(Envelope::decode_with(event, unknown)?),
                Ok(Some(opened)) => Ok(Envelope::decode_opened(event, &opened, unknown)?),
                Err(super::OpenError::Keys(err)) => Err(err.into()),
                Err(super::OpenError::Failure(failure)) => {
                    Err(crate::DecodeError::new::<E>(&event, failure).into())
                }
            };
        }
        let _ = subjects;
        Ok(Envelope::decode_with(event, unknown)?)
    }
}
