//! The Redis connector: objects as hashes and index keys as strings pointing at object ids, under
//! one namespace per cache, expired natively by Redis.
//!
//! Layout, for cache `instances` (the `{…}` hash tag keeps a cache on one cluster slot):
//!
//! - `strata:cache:{instances}:k:<index>:<key>` → object id, with the object's expiry;
//! - `strata:cache:{instances}:o:<id>` → hash `p` (payload), `c` (created, ms), `u` (last used,
//!   ms), `k` (JSON list of the object's key names);
//! - `strata:cache:{instances}:seq` → the id counter (never removed, so ids are never reused).
//!
//! Every operation that touches more than one key is one Lua script, so Redis runs it atomically:
//! the ghost rule (a key moving to a new object drops the old object) holds under concurrency
//! without locks.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};

use crate::config::CacheConfig;
use crate::error::{Error, Result};

/// Shared by the scripts that drop objects.
const DROP_OBJECT: &str = r#"
local function drop_object(ns, id)
  local okey = ns .. ':o:' .. id
  local list = redis.call('HGET', okey, 'k')
  if list then
    for _, k in ipairs(cjson.decode(list)) do
      if redis.call('GET', k) == id then redis.call('DEL', k) end
    end
  end
  redis.call('DEL', okey)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: the key names. ARGV: namespace, payload, max_age ms, last_use_age ms (0 = none).
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{DROP_OBJECT}{}",
        r#"
local ns = ARGV[1]
for _, k in ipairs(KEYS) do
  local old = redis.call('GET', k)
  if old then drop_object(ns, old) end
end
local id = tostring(redis.call('INCR', ns .. ':seq'))
local okey = ns .. ':o:' .. id
local now = string.format('%d', now_ms())
redis.call('HSET', okey, 'p', ARGV[2], 'c', now, 'u', now, 'k', cjson.encode(KEYS))
for _, k in ipairs(KEYS) do redis.call('SET', k, id) end
local max_age, idle = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = 0
if max_age > 0 then ttl = max_age end
if idle > 0 and (ttl == 0 or idle < ttl) then ttl = idle end
if ttl > 0 then
  redis.call('PEXPIRE', okey, ttl)
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
end
return id
"#
    ))
});

/// KEYS: the key name. ARGV: namespace, max_age ms, last_use_age ms, touch-after ms (0 = none).
///
/// Returns the payload, or nil. Writes only when the recorded last use is older than touch-after:
/// then it records the use and pushes the object's and its keys' expiry out.
static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{DROP_OBJECT}{}",
        r#"
local id = redis.call('GET', KEYS[1])
if not id then return false end
local okey = ARGV[1] .. ':o:' .. id
local v = redis.call('HMGET', okey, 'p', 'c', 'u')
if not v[1] then
  redis.call('DEL', KEYS[1])
  return false
end
local max_age, idle, touch = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if max_age == 0 and idle == 0 then return v[1] end
local now = now_ms()
local created, used = tonumber(v[2]), tonumber(v[3])
if (max_age > 0 and created + max_age <= now) or (idle > 0 and used + idle <= now) then
  return false
end
if idle > 0 and used + touch <= now then
  local ttl = idle
  if max_age > 0 and created + max_age - now < ttl then ttl = created + max_age - now end
  redis.call('HSET', okey, 'u', string.format('%d', now))
  redis.call('PEXPIRE', okey, ttl)
  for _, k in ipairs(cjson.decode(redis.call('HGET', okey, 'k'))) do
    if redis.call('GET', k) == id then redis.call('PEXPIRE', k, ttl) end
  end
end
return v[1]
"#
    ))
});

/// KEYS: the key names. ARGV: namespace.
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{DROP_OBJECT}{}",
        r#"
for _, k in ipairs(KEYS) do
  local id = redis.call('GET', k)
  if id then
    drop_object(ARGV[1], id)
    redis.call('DEL', k)
  end
end
return 0
"#
    ))
});

/// KEYS: the key names. ARGV: namespace. Drops an object once no key points at it.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, k in ipairs(KEYS) do
  local id = redis.call('GET', k)
  if id then
    redis.call('DEL', k)
    local okey = ARGV[1] .. ':o:' .. id
    local list = redis.call('HGET', okey, 'k')
    if list then
      local rest = {}
      for _, other in ipairs(cjson.decode(list)) do
        if other ~= k and redis.call('GET', other) == id then table.insert(rest, other) end
      end
      if #rest == 0 then
        redis.call('DEL', okey)
      else
        redis.call('HSET', okey, 'k', cjson.encode(rest))
      end
    end
  end
end
return 0
"#,
    )
});

/// A lazily made, self-healing connection to one Redis server, shared by every cache on it.
#[derive(Clone)]
pub(crate) struct RedisConnection {
    manager: ConnectionManager,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection").finish_non_exhaustive()
    }
}

impl RedisConnection {
    pub(crate) fn open(url: &str) -> Result<Self> {
        Self::with_client(Client::open(url).map_err(Error::InvalidRedisUrl)?)
    }

    /// A `rediss://` connection that trusts the certificate authority `root_ca_pem` (PEM).
    #[cfg(feature = "tls")]
    pub(crate) fn open_tls(url: &str, root_ca_pem: &[u8]) -> Result<Self> {
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_ca_pem.to_vec()),
        };
        Self::with_client(
            Client::build_with_tls(url, certificates).map_err(Error::InvalidRedisUrl)?,
        )
    }

    fn with_client(client: Client) -> Result<Self> {
        // Short timeouts and few retries: a cache that waits seconds for a dead Redis is worse
        // than one that misses at once. The manager reconnects in the background after a failure.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(Error::InvalidRedisUrl)?;
        Ok(RedisConnection { manager })
    }
}

#[derive(Debug)]
pub(crate) struct RedisConnector {
    connection: RedisConnection,
    /// `strata:cache:{<name>}`.
    namespace: String,
    max_age_ms: u64,
    last_use_age_ms: u64,
    touch_after_ms: u64,
}

fn millis(age: Option<Duration>) -> u64 {
    age.map_or(0, |age| {
        u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

impl RedisConnector {
    pub(crate) fn new(connection: RedisConnection, name: &str, config: &CacheConfig) -> Self {
        RedisConnector {
            connection,
            namespace: format!("strata:cache:{{{name}}}"),
            max_age_ms: millis(config.max_age),
            last_use_age_ms: millis(config.last_use_age),
            touch_after_ms: millis(config.touch_after()),
        }
    }

    fn key_name(&self, index: &str, key: &str) -> String {
        format!("{}:k:{index}:{key}", self.namespace)
    }

    pub(crate) async fn get(&self, index: &str, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        let mut connection = self.connection.manager.clone();
        GET.key(self.key_name(index, key))
            .arg(&self.namespace)
            .arg(self.max_age_ms)
            .arg(self.last_use_age_ms)
            .arg(self.touch_after_ms)
            .invoke_async(&mut connection)
            .await
    }

    pub(crate) async fn set(
        &self,
        keys: impl Iterator<Item = (&str, &str)>,
        payload: Vec<u8>,
    ) -> Result<(), RedisError> {
        let mut connection = self.connection.manager.clone();
        let mut invocation = SET.prepare_invoke();
        for (index, key) in keys {
            invocation.key(self.key_name(index, key));
        }
        invocation
            .arg(&self.namespace)
            .arg(payload)
            .arg(self.max_age_ms)
            .arg(self.last_use_age_ms)
            .invoke_async::<String>(&mut connection)
            .await
            .map(drop)
    }

    pub(crate) async fn invalidate(&self, index: &str, keys: &[String]) -> Result<(), RedisError> {
        self.keyed(&INVALIDATE, index, keys).await
    }

    pub(crate) async fn delete(&self, index: &str, keys: &[String]) -> Result<(), RedisError> {
        self.keyed(&DELETE, index, keys).await
    }

    async fn keyed(&self, script: &Script, index: &str, keys: &[String]) -> Result<(), RedisError> {
        let mut connection = self.connection.manager.clone();
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(self.key_name(index, key));
        }
        invocation
            .arg(&self.namespace)
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
    }

    /// Removes this cache's objects and keys (and nothing else: never `FLUSHDB` on a database that
    /// may be shared) with `SCAN` over the namespace and `UNLINK` per batch. Not atomic: an entry
    /// written while it runs may survive, as if written just after.
    pub(crate) async fn truncate(&self) -> Result<(), RedisError> {
        let mut connection = self.connection.manager.clone();
        let pattern = format!("{}:*", self.namespace);
        let counter = format!("{}:seq", self.namespace);
        let mut cursor: u64 = 0;
        loop {
            let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await?;
            // The id counter stays, so an id is never reused by an object written meanwhile.
            let doomed: Vec<Vec<u8>> = names
                .into_iter()
                .filter(|name| name.as_slice() != counter.as_bytes())
                .collect();
            if !doomed.is_empty() {
                redis::cmd("UNLINK")
                    .arg(doomed)
                    .query_async::<i64>(&mut connection)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
