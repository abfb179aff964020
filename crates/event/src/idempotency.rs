//! Idempotency keys: the name a caller gives a push so that retrying it cannot store it twice.

use std::fmt;

use crate::error::ValidationError;
use crate::ids::{InstanceId, check_text};

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Names one logical push within an instance, so that a retry after an unknown outcome (a push
/// that failed with `Unavailable` may have committed) is recognised and stored at most once.
///
/// Keys are scoped per instance: the same key in two instances is two keys. The key is 1..=
/// [`MAX_IDEMPOTENCY_KEY_LEN`] bytes of UTF-8 without control characters; the instance follows
/// [`InstanceId`]'s grammar.
///
/// ```
/// use strata_event::IdempotencyKey;
///
/// let key = IdempotencyKey::new("instance-1", "order-42-submit")?;
/// assert_eq!(key.instance_id(), "instance-1");
/// assert_eq!(key.key(), "order-42-submit");
/// assert!(IdempotencyKey::new("instance-1", "").is_err());
/// # Ok::<(), strata_event::ValidationError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    instance_id: InstanceId,
    key: String,
}

impl IdempotencyKey {
    /// Validates the instance and the key.
    pub fn new(
        instance_id: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<Self, ValidationError> {
        let instance_id = InstanceId::new(instance_id)?;
        let key = key.into();
        check_text("idempotency key", &key, MAX_IDEMPOTENCY_KEY_LEN)?;
        Ok(IdempotencyKey { instance_id, key })
    }

    /// The instance the key belongs to.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// The key itself.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.instance_id.as_str(), self.key)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in instance {}", self.key, self.instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_keys_and_instances() {
        for (instance, key, field) in [
            ("", "k", "instance id"),
            ("i", "", "idempotency key"),
            ("i", "a\nb", "idempotency key"),
        ] {
            let Err(err) = IdempotencyKey::new(instance, key) else {
                panic!("{instance:?}/{key:?} should be refused");
            };
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        assert!(IdempotencyKey::new("i", long).is_err());
        assert!(IdempotencyKey::new("i", "k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).is_ok());
    }
}
