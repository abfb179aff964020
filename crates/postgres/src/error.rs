//! Translation of driver errors into Strata's typed storage errors, at the edge.

use std::sync::Arc;

use strata_store::Error;

/// Maps a sqlx error: connection-level failures are [`Error::Unavailable`] (retryable), the rest
/// [`Error::Backend`].
pub(crate) fn from_sqlx(context: &str, err: sqlx::Error) -> Error {
    let unavailable = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_code(&code)),
        _ => false,
    };
    let missing_schema = matches!(&err, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| matches!(code.as_ref(), "3F000" | "42P01" | "42883")));
    let message = if missing_schema {
        format!(
            "{context}: {err} (the eventstore schema is missing or outdated: run `cargo xtask migrate` \
             or call `strata_postgres::migrate` before using the store)"
        )
    } else {
        format!("{context}: {err}")
    };
    let source = Some(Arc::new(err) as strata_store::BackendCause);
    if unavailable {
        Error::Unavailable { message, source }
    } else {
        Error::Backend { message, source }
    }
}

/// SQLSTATEs that mean "the server cannot serve you right now": connection exceptions (class 08),
/// shutdown and startup (57P01–57P03), too many connections (53300), and serialization or deadlock
/// failures (40001, 40P01), which a later attempt can pass.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
        )
}
