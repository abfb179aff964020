//! The directory: which shard each instance lives on.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use strata_event::InstanceId;
use strata_store::{Error, Result};

/// Longest shard name: short enough for log lines and error messages.
pub const MAX_SHARD_NAME_LEN: usize = 63;

/// A shard's name: 1 to [`MAX_SHARD_NAME_LEN`] ASCII lowercase letters, digits, `-` and `_`.
///
/// Names, not positions in a list, are what the directory records, so reordering the list of
/// shards a process starts with moves no explicitly assigned instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardName(String);

impl ShardName {
    /// Validates `name`; refuses ([`Error::InvalidInput`]) anything outside the grammar.
    pub fn new(name: impl Into<String>) -> Result<ShardName> {
        let name = name.into();
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c);
        if name.is_empty() || name.len() > MAX_SHARD_NAME_LEN || !name.chars().all(valid_char) {
            return Err(Error::invalid_input(format!(
                "invalid shard name {name:?}: 1 to {MAX_SHARD_NAME_LEN} of a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(ShardName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an instance the directory does not list lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// On shard number [`stable_hash`]`(instance) % shard count`, counting shards in the order the
    /// store was given them. Deterministic in every process and every version of Strata (the hash
    /// is fixed forever; a test pins its values), but it depends on the number and order of
    /// shards: **before adding a shard, assign every existing instance explicitly**, or the
    /// unassigned ones would silently change shard. The default.
    #[default]
    StableHash,
    /// Nowhere: an operation on an unassigned instance is refused ([`Error::InvalidInput`]), so
    /// every instance is placed by an explicit [`Directory::assign`].
    Refuse,
}

/// The hash [`Fallback::StableHash`] places instances by: the first eight bytes of the SHA-256 of
/// the instance id's UTF-8 bytes, read big-endian.
///
/// NOTE: never change this function. Every unassigned instance's placement depends on it, so a
/// change would make a store read and write instances on shards that do not hold them.
pub fn stable_hash(instance: &InstanceId) -> u64 {
    let digest = Sha256::digest(instance.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The placement of instances on named shards: explicit assignments, and a [`Fallback`] for the
/// rest. A plain value: a [`ShardedStore`](crate::ShardedStore) holds one and routes by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    shards: Vec<ShardName>,
    assignments: BTreeMap<InstanceId, usize>,
    fallback: Fallback,
}

impl Directory {
    /// A directory over `shards` (at least one, no name twice) with no assignment yet.
    pub fn new(shards: Vec<ShardName>, fallback: Fallback) -> Result<Directory> {
        if shards.is_empty() {
            return Err(Error::invalid_input(
                "a sharded store needs at least one shard",
            ));
        }
        for (index, name) in shards.iter().enumerate() {
            if shards[..index].contains(name) {
                return Err(Error::invalid_input(format!("shard {name} is named twice")));
            }
        }
        Ok(Directory {
            shards,
            assignments: BTreeMap::new(),
            fallback,
        })
    }

    /// The shards, in the order the hash fallback counts them.
    pub fn shards(&self) -> &[ShardName] {
        &self.shards
    }

    /// The fallback for unassigned instances.
    pub fn fallback(&self) -> Fallback {
        self.fallback
    }

    /// Places `instance` on `shard`, replacing any earlier assignment. Refuses an unknown shard.
    ///
    /// This only changes where the directory points: assigning an instance that already has
    /// events elsewhere hides them. [`ShardedStore::assign`](crate::ShardedStore::assign) checks
    /// that; moving an instance with its events is
    /// [`ShardedStore::move_instance`](crate::ShardedStore::move_instance) (feature `postgres`).
    pub fn assign(&mut self, instance: InstanceId, shard: &ShardName) -> Result<()> {
        let index = self.index_of(shard)?;
        self.assignments.insert(instance, index);
        Ok(())
    }

    /// The explicit assignments, sorted by instance.
    pub fn assignments(&self) -> impl Iterator<Item = (&InstanceId, &ShardName)> {
        self.assignments
            .iter()
            .map(|(instance, index)| (instance, &self.shards[*index]))
    }

    /// The shard `instance` lives on.
    pub fn shard_of(&self, instance: &InstanceId) -> Result<&ShardName> {
        Ok(&self.shards[self.index_for(instance)?])
    }

    /// The position in [`Directory::shards`] of the shard `instance` lives on.
    pub(crate) fn index_for(&self, instance: &InstanceId) -> Result<usize> {
        if let Some(index) = self.assignments.get(instance) {
            return Ok(*index);
        }
        match self.fallback {
            Fallback::StableHash => {
                // The count is at least one (checked by `new`) and far below u64::MAX.
                let count = self.shards.len() as u64;
                Ok((stable_hash(instance) % count) as usize)
            }
            Fallback::Refuse => Err(Error::invalid_input(format!(
                "instance {instance} is assigned to no shard"
            ))),
        }
    }

    pub(crate) fn index_of(&self, shard: &ShardName) -> Result<usize> {
        self.shards
            .iter()
            .position(|name| name == shard)
            .ok_or_else(|| Error::invalid_input(format!("no shard is named {shard}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A failed expectation here is a failed test.

    use super::*;

    fn id(text: &str) -> InstanceId {
        InstanceId::new(text).unwrap()
    }

    /// Pins the hash: if this fails, the fallback placement changed and every unassigned
    /// instance of every deployment would be looked for on the wrong shard.
    #[test]
    fn the_stable_hash_never_changes() {
        // SHA-256 of the id, first eight bytes big-endian (check: `printf acme | sha256sum`).
        assert_eq!(stable_hash(&id("acme")), 9_379_647_469_329_139_872);
        assert_eq!(stable_hash(&id("instance-a")), 7_603_605_321_003_462_063);
    }

    #[test]
    fn assignments_win_over_the_fallback_and_refusal_is_typed() {
        let names = vec![
            ShardName::new("one").unwrap(),
            ShardName::new("two").unwrap(),
        ];
        let mut directory = Directory::new(names.clone(), Fallback::Refuse).unwrap();
        let err = directory.shard_of(&id("acme")).unwrap_err();
        assert_eq!(err.kind(), strata_store::ErrorKind::InvalidInput);
        directory.assign(id("acme"), &names[1]).unwrap();
        assert_eq!(directory.shard_of(&id("acme")).unwrap(), &names[1]);
        let unknown = ShardName::new("three").unwrap();
        assert!(directory.assign(id("acme"), &unknown).is_err());
    }

    #[test]
    fn bad_names_and_lists_are_refused() {
        for bad in ["", "Upper", "with space", &"x".repeat(64)] {
            assert!(ShardName::new(bad).is_err(), "{bad:?}");
        }
        assert!(Directory::new(Vec::new(), Fallback::StableHash).is_err());
        let twice = vec![ShardName::new("a").unwrap(), ShardName::new("a").unwrap()];
        assert!(Directory::new(twice, Fallback::StableHash).is_err());
    }
}
