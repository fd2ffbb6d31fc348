//! The one place `sqlx::Error` is translated into the port's error types,
//! so no driver type leaks past this crate.
//!
//! Inside the adapter every function returns `Result<T, Error>` so `?` works
//! on driver errors and on our own decode failures alike; the trait methods
//! convert at the boundary with `From`. The variant is chosen by whether a
//! retry can help, as `PortError` asks.

use domain::order::TransitionError;
use domain::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Pg(#[from] sqlx::Error),
    /// A row that could not be decoded into a domain value, or a setting
    /// that cannot be used (a malformed URL or schema name).
    #[error("{0}")]
    Invalid(String),
    /// A value that cannot be stored (e.g. an offset above `i64::MAX`).
    #[error("{0}")]
    OutOfRange(String),
    /// What the call writes to does not exist (a menu diff for an unknown
    /// store).
    #[error("not found")]
    NotFound,
    /// A lifecycle rule refused the change; passed through untouched.
    #[error(transparent)]
    Rule(TransitionError),
}

impl From<crate::decode::DecodeError> for Error {
    fn from(e: crate::decode::DecodeError) -> Self {
        match e {
            crate::decode::DecodeError::Invalid(m) => Error::Invalid(m),
            crate::decode::DecodeError::OutOfRange(m) => Error::OutOfRange(m),
        }
    }
}

impl From<Error> for PortError {
    fn from(e: Error) -> Self {
        match e {
            Error::Pg(e) => map_sqlx(e),
            Error::Invalid(m) => PortError::Invalid(m),
            Error::OutOfRange(m) => PortError::Conflict(m),
            Error::NotFound => PortError::NotFound,
            // Only `transition` produces rule errors, and it converts to
            // `TransitionError` instead; this arm keeps the mapping total.
            Error::Rule(r) => PortError::Conflict(r.to_string()),
        }
    }
}

impl From<Error> for TransitionError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rule(r) => r,
            other => TransitionError::Backend(other.into()),
        }
    }
}

/// Connection trouble, timeouts and contention are `Unavailable`; constraint
/// violations `Conflict`; rows we cannot decode and SQL the server refuses
/// (a bug or a schema from another binary, not a passing state) `Invalid`.
fn map_sqlx(e: sqlx::Error) -> PortError {
    use sqlx::Error as E;
    let msg = format!("postgres: {e}");
    match &e {
        E::Database(db) => match db.code().as_deref() {
            Some(code) => map_sqlstate(code, msg),
            None => PortError::Invalid(msg),
        },
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
            PortError::Unavailable(msg)
        }
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::Encode(_)
        | E::TypeNotFound { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::RowNotFound
        | E::Configuration(_)
        | E::InvalidArgument(_) => PortError::Invalid(msg),
        // Anything newer than this list: assume the state of the
        // connection, which a retry on another one may not share.
        _ => PortError::Unavailable(msg),
    }
}

/// By SQLSTATE class (the first two characters), with the exceptions that
/// matter named.
fn map_sqlstate(code: &str, msg: String) -> PortError {
    match code {
        // query_canceled: `statement_timeout` fired (or an admin cancelled).
        "57014" => PortError::Unavailable(msg),
        // serialization_failure, deadlock_detected: retry the transaction.
        "40001" | "40P01" => PortError::Unavailable(msg),
        // lock_not_available.
        "55P03" => PortError::Unavailable(msg),
        // Integrity constraint violations (unique, foreign key, not null...).
        c if c.starts_with("23") => PortError::Conflict(msg),
        // Connection exceptions, insufficient resources (too many
        // connections, disk full), operator intervention (shutdown,
        // failover), system errors.
        c if ["08", "53", "57", "58"].iter().any(|p| c.starts_with(p)) => PortError::Unavailable(msg),
        // Read-only transaction on a replica being promoted, and the like.
        "25006" => PortError::Unavailable(msg),
        _ => PortError::Invalid(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_by_whether_a_retry_helps() {
        let m = || "m".to_owned();
        assert!(matches!(map_sqlstate("57014", m()), PortError::Unavailable(_)));
        assert!(matches!(map_sqlstate("23505", m()), PortError::Conflict(_)));
        assert!(matches!(map_sqlstate("23503", m()), PortError::Conflict(_)));
        assert!(matches!(map_sqlstate("40P01", m()), PortError::Unavailable(_)));
        assert!(matches!(map_sqlstate("08006", m()), PortError::Unavailable(_)));
        assert!(matches!(map_sqlstate("53300", m()), PortError::Unavailable(_)));
        assert!(matches!(map_sqlstate("42P01", m()), PortError::Invalid(_)));
        assert!(matches!(map_sqlx(sqlx::Error::PoolTimedOut), PortError::Unavailable(_)));
        assert!(matches!(
            map_sqlx(sqlx::Error::Decode("bad".into())),
            PortError::Invalid(_)
        ));
    }
}
