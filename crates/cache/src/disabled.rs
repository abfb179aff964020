//! Stand-ins for the connectors whose feature is off: types that have no values.
//!
//! [`Cache`](crate::Cache) dispatches over every connector the same way whatever the features; a
//! stand-in makes its connector's arms compile and, since no value of it can exist, unreachable by
//! construction. The constructors that would make one ([`Cache::postgres`](crate::Cache),
//! [`Cache::redis`](crate::Cache), [`Cache::memory`](crate::Cache)) exist only with their feature.

#![allow(dead_code, unused_imports)] // Each stand-in is used only when its feature is off.

use std::convert::Infallible;

/// The memory connector without the `memory` feature.
#[cfg(not(feature = "memory"))]
pub(crate) struct MemoryConnector<V>(Infallible, std::marker::PhantomData<fn() -> V>);

#[cfg(not(feature = "memory"))]
impl<V> MemoryConnector<V> {
    pub(crate) fn get(&self, _index: usize, _key: &str) -> Option<V> {
        match self.0 {}
    }
    pub(crate) fn set(&self, _keys: Vec<(usize, String)>, _value: V) {
        match self.0 {}
    }
    pub(crate) fn invalidate(&self, _index: usize, _keys: &[String]) {
        match self.0 {}
    }
    pub(crate) fn delete(&self, _index: usize, _keys: &[String]) {
        match self.0 {}
    }
    pub(crate) fn truncate(&self) {
        match self.0 {}
    }
    pub(crate) fn prune(&self) {
        match self.0 {}
    }
}

/// The PostgreSQL connector without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
#[derive(Debug)]
pub(crate) struct PgConnector(Infallible);

#[cfg(not(feature = "postgres"))]
impl PgConnector {
    pub(crate) async fn get(
        &self,
        _index: &str,
        _key: &str,
    ) -> Result<Option<Vec<u8>>, Infallible> {
        match self.0 {}
    }
    pub(crate) async fn set(
        &self,
        _index_names: Vec<&'static str>,
        _index_keys: Vec<String>,
        _payload: Vec<u8>,
    ) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn invalidate(
        &self,
        _index: &str,
        _keys: &[String],
    ) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn delete(&self, _index: &str, _keys: &[String]) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn truncate(&self) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn prune(&self) -> Result<i64, Infallible> {
        match self.0 {}
    }
}

/// The Redis connector without the `redis` feature.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub(crate) struct RedisConnector(Infallible);

#[cfg(not(feature = "redis"))]
impl RedisConnector {
    pub(crate) async fn get(
        &self,
        _index: &str,
        _key: &str,
    ) -> Result<Option<Vec<u8>>, Infallible> {
        match self.0 {}
    }
    pub(crate) async fn set(
        &self,
        _keys: impl Iterator<Item = (&str, &str)>,
        _payload: Vec<u8>,
    ) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn invalidate(
        &self,
        _index: &str,
        _keys: &[String],
    ) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn delete(&self, _index: &str, _keys: &[String]) -> Result<(), Infallible> {
        match self.0 {}
    }
    pub(crate) async fn truncate(&self) -> Result<(), Infallible> {
        match self.0 {}
    }
}
