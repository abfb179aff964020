//! Connecting to a store, and naming databases without their credentials.

use anyhow::Context;
use strata_postgres::{GroupCommitConfig, PgConfig, PgStore, PoolConfig};

/// Connects to `url` with pools sized for one operator command, not for a service.
pub(crate) async fn connect(url: &str) -> anyhow::Result<PgStore> {
    // An operator waiting on an unreachable server wants to hear so soon, not after a service's
    // patient default.
    let pool = |max| PoolConfig {
        acquire_timeout: std::time::Duration::from_secs(5),
        ..PoolConfig::with_max(max)
    };
    let config = PgConfig {
        push_pool: pool(2),
        query_pool: pool(2),
        projection_pool: pool(1),
        group_commit: GroupCommitConfig::default(),
        // Running projection runtimes elsewhere then apply what `strata push` stores at once.
        notify_pushes: true,
        // `strata subscribe` is woken by other processes' pushes. The listening connection is
        // taken (from the projection pool, which no command of the CLI otherwise uses) only while
        // something subscribes, so other commands hold no more connections for it.
        listen_for_pushes: true,
        // Keys `strata push --idempotency-key` records count as long as a service's do.
        ..PgConfig::default()
    };
    PgStore::connect(url, config).await.with_context(|| {
        format!(
            "cannot connect to {}: check that PostgreSQL runs there and that --database-url \
             (or DATABASE_URL) is right",
            redact(url)
        )
    })
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

/// Names the database `url` points at as `host:port/database`, with no user, password or
/// parameters: stable across credential rotations, and safe to store in the destination.
pub(crate) fn database_key(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (host, database) = rest.split_once('/').unwrap_or((rest, ""));
    let host = if host.is_empty() { "localhost" } else { host };
    let host = if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let database = if database.is_empty() {
        "postgres"
    } else {
        database
    };
    format!("{host}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_redaction_never_show_passwords() {
        let url = "postgres://admin:s3cret@db.internal:6432/app?sslmode=require";
        assert_eq!(database_key(url), "db.internal:6432/app");
        assert_eq!(
            redact(url),
            "postgres://admin@db.internal:6432/app?sslmode=require"
        );
        assert_eq!(
            database_key("postgresql://postgres@127.0.0.1/strata"),
            "127.0.0.1:5432/strata"
        );
        assert_eq!(
            database_key("postgres://localhost"),
            "localhost:5432/postgres"
        );
    }
}
