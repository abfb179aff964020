//! Translation of driver errors into Strata's typed storage errors, at the edge.

use std::sync::Arc;

use strata_store::Error;

/// Maps a sqlx error: connection-level failures are [`Error::Unavailable`] (retryable), values the
/// server refused as data (SQLSTATE class 22: out of range, malformed, untranslatable) are
/// [`Error::InvalidInput`], the rest [`Error::Backend`].
pub(crate) fn from_sqlx(context: &str, err: sqlx::Error) -> Error {
    if let Some(moved) = instance_moved(&err) {
        return moved;
    }
    // The builders refuse what they know PostgreSQL would; this catches whatever they missed, so a
    // bad value still reads as bad input rather than as a storage failure.
    if let sqlx::Error::Database(db) = &err
        && let Some(code) = db.code()
        && code.starts_with("22")
    {
        return Error::InvalidInput {
            reason: format!(
                "{context}: PostgreSQL refused a value: {} (SQLSTATE {code})",
                db.message()
            ),
        };
    }
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
            "{context}: {err} (the schema is missing or outdated: run `strata migrate` (or \
             `cargo xtask migrate`, or call `strata_postgres::migrate`) before using the store)"
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

/// The SQLSTATE of `eventstore.enter_instances`: a push touched an instance moved away from this
/// database.
const INSTANCE_MOVED: &str = "SM001";

/// [`Error::InstanceMoved`] for the moved-instance SQLSTATE, decoded from the error's detail
/// (`{"instance": …, "to": …}`). `None` for any other error, or a detail that does not decode,
/// which then reads as a backend error naming the server's message.
fn instance_moved(err: &sqlx::Error) -> Option<Error> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if db.code().as_deref() != Some(INSTANCE_MOVED) {
        return None;
    }
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .detail()?;
    let detail: serde_json::Value = serde_json::from_str(detail).ok()?;
    let field = |name: &str| detail.get(name)?.as_str().map(str::to_owned);
    Some(Error::InstanceMoved {
        instance_id: strata_event::InstanceId::from_stored(field("instance")?),
        to: field("to")?,
    })
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

/// What the database answered broke a promise of the schema (an index out of range, a value the
/// model refuses, a row missing): [`Error::Backend`] naming `source` (the function or table read)
/// and `what`. Usually the schema is older or newer than this code.
pub(crate) fn unexpected_answer(source: &str, what: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: format!("unexpected data from {source}: {what} (are the migrations current?)"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use strata_store::ErrorKind;

    use super::from_sqlx;

    /// A server error with a given SQLSTATE, as the driver would report it.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "the server's message"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn kind_of(code: &'static str) -> ErrorKind {
        from_sqlx(
            "testing",
            sqlx::Error::Database(Box::new(ServerError(code))),
        )
        .kind()
    }

    #[test]
    fn server_errors_map_to_kinds_by_sqlstate() {
        // Class 22, data exceptions: a value the server refused.
        for code in [
            "22P02", "22003", "22007", "22008", "22021", "22023", "22P05",
        ] {
            assert_eq!(kind_of(code), ErrorKind::InvalidInput, "{code}");
        }
        for code in ["08006", "57P01", "53300", "40001", "40P01"] {
            assert_eq!(kind_of(code), ErrorKind::Unavailable, "{code}");
        }
        for code in ["42P01", "XX000", "23505"] {
            assert_eq!(kind_of(code), ErrorKind::Backend, "{code}");
        }
        let err = from_sqlx(
            "reading",
            sqlx::Error::Database(Box::new(ServerError("22P02"))),
        );
        assert_eq!(
            err.to_string(),
            "invalid input: reading: PostgreSQL refused a value: the server's message (SQLSTATE 22P02)"
        );
    }
}
