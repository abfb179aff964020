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

/// A decoded event (`None`: an unknown type skipped) and the subjects whose data it opened.
pub(crate) type Decoded<E> = (Option<Envelope<E>>, Vec<SubjectId>);

impl ReadKeys<'_> {
    /// Decodes `event` under `unknown`'s rule, opening its sealed fields when there is a vault.
    pub(crate) async fn decode<E: DomainEvent>(
        &self,
        event: Event,
        unknown: UnknownEvents,
    ) -> Result<Decoded<E>, DomainError> {
        #[cfg(feature = "personal-data")]
        if let Some(vault) = self.vault {
            return match vault.open_payload(&event).await {
                Ok(None) => Ok((Envelope::decode_with(event, unknown)?, Vec::new())),
                Ok(Some(opened)) => Ok((
                    Envelope::decode_opened(event, &opened.payload, unknown)?,
                    opened.subjects,
                )),
                Err(super::OpenError::Keys(err)) => Err(err.into()),
                Err(super::OpenError::Failure(failure)) => {
                    Err(crate::DecodeError::new::<E>(&event, failure).into())
                }
            };
        }
        Ok((Envelope::decode_with(event, unknown)?, Vec::new()))
    }
}
