//! What a cache holds: values that name their own keys, per index, and the names that must be safe
//! to use as identifiers.

use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The longest key accepted, in bytes. PostgreSQL's B-tree refuses entries above roughly 2.7 kB,
/// and a key that long is almost certainly a mistake.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest cache name accepted. Names become PostgreSQL partition names (`string_keys_<name>`
/// must fit in 63 bytes) and Redis key prefixes.
pub const MAX_CACHE_NAME_LEN: usize = 48;

/// The indices a value can be found by, e.g. an instance by id and by domain.
///
/// Usually a field-less enum. [`Index::name`] is stored (PostgreSQL rows, Redis keys), so it must be
/// stable across releases; the order of [`Index::ALL`] is not stored and may change.
///
/// ```
/// # #![allow(dead_code)] // Shows the impl only.
/// #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// enum InstanceIndex {
///     Id,
///     Domain,
/// }
///
/// impl strata_cache::Index for InstanceIndex {
///     const ALL: &'static [Self] = &[InstanceIndex::Id, InstanceIndex::Domain];
///
///     fn name(self) -> &'static str {
///         match self {
///             InstanceIndex::Id => "id",
///             InstanceIndex::Domain => "domain",
///         }
///     }
/// }
/// ```
pub trait Index: Copy + Eq + Hash + Send + Sync + fmt::Debug + 'static {
    /// Every index, each once.
    const ALL: &'static [Self];

    /// The stable name: 1 to 32 characters of `[a-z0-9_]`, unique among the indices.
    fn name(self) -> &'static str;
}

/// A value the cache can hold: it says which keys find it, for each index of its [`Entry::Index`].
///
/// The persistent connectors store values with bincode 2 through serde. bincode is not
/// self-describing: when the value's shape changes, give the cache a new name (or truncate it on
/// deploy), or old entries may decode into wrong values instead of failing.
///
/// Values are cloned on every hit of the memory connector; wrap large ones in an `Arc`.
pub trait Entry: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The indices this value is found by.
    type Index: Index;

    /// The keys of this value for `index`: none, one or several (an instance has several domains).
    fn keys(&self, index: Self::Index) -> Vec<String>;
}

/// The keys of a value for every index, checked: `(position in Index::ALL, key)`, without
/// duplicates.
pub(crate) fn keys_of<V: Entry>(value: &V) -> Result<Vec<(usize, String)>> {
    let mut all = Vec::new();
    for (position, index) in V::Index::ALL.iter().enumerate() {
        for key in value.keys(*index) {
            check_key(index.name(), &key)?;
            let entry = (position, key);
            if !all.contains(&entry) {
                all.push(entry);
            }
        }
    }
    if all.is_empty() {
        return Err(Error::NoKeys);
    }
    Ok(all)
}

/// Whether `key` could ever have been stored: a lookup with another key is a certain miss.
pub(crate) fn key_is_storable(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && !key.contains('\0')
}

fn check_key(index: &'static str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::EmptyKey { index });
    }
    if MAX_KEY_LEN < key.len() {
        return Err(Error::KeyTooLong {
            index,
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    // PostgreSQL text cannot hold NUL; refusing it everywhere keeps the connectors alike.
    if key.contains('\0') {
        return Err(Error::KeyWithNul { index });
    }
    Ok(())
}

/// The position of `index` in [`Index::ALL`]. An index missing from `ALL` (a bug in the caller's
/// `Index` impl) gets `None`, and the caller treats it as a miss.
pub(crate) fn position_of<I: Index>(index: I) -> Option<usize> {
    I::ALL.iter().position(|candidate| *candidate == index)
}

/// Checks the index names of `I`: each `[a-z0-9_]{1,32}` and distinct.
pub(crate) fn check_indices<I: Index>() -> Result<()> {
    if I::ALL.is_empty() {
        return Err(Error::InvalidIndexName {
            name: String::new(),
            reason: "the index type declares no index",
        });
    }
    for (position, index) in I::ALL.iter().enumerate() {
        let name = index.name();
        let invalid = |reason| Error::InvalidIndexName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || 32 < name.len() {
            return Err(invalid("must be 1 to 32 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid("may contain only a-z, 0-9 and _"));
        }
        let clash = I::ALL[..position]
            .iter()
            .any(|earlier| earlier.name() == name || earlier == index);
        if clash {
            return Err(invalid("is declared twice"));
        }
    }
    Ok(())
}

/// Checks a cache name against `[a-z][a-z0-9_]{0,47}`.
///
/// The grammar is strict because the name becomes a PostgreSQL identifier and a Redis key prefix;
/// nothing outside it ever reaches SQL text.
pub fn validate_cache_name(name: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidCacheName {
        name: name.to_owned(),
        reason,
    };
    let Some(first) = name.bytes().next() else {
        return Err(invalid("must not be empty"));
    };
    if MAX_CACHE_NAME_LEN < name.len() {
        return Err(invalid("must be at most 48 characters"));
    }
    if !first.is_ascii_lowercase() {
        return Err(invalid("must start with a letter a-z"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid("may contain only a-z, 0-9 and _"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_follow_the_grammar() {
        for good in ["a", "instances", "org_by_domain_2", &"a".repeat(48)] {
            assert!(validate_cache_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "_abc",
            "Abc",
            "a-b",
            "a b",
            "a\"; DROP TABLE x; --",
            "ä",
            &"a".repeat(49),
        ] {
            let err = validate_cache_name(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidCacheName { .. }),
                "{bad}: {err}"
            );
        }
    }
}
