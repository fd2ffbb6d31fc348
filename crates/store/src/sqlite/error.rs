//! The one place `rusqlite::Error` is translated into the port's error
//! types, so no driver error leaks past this crate.
//!
//! Inside the adapter every blocking function returns `Result<T, Error>` so
//! `?` works on both driver errors and our own decode failures; the async
//! methods convert at the boundary with `From`.

use domain::order::TransitionError;
use domain::ports::PortError;
use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A row that could not be decoded into a domain value.
    #[error("{0}")]
    Invalid(String),
    /// The database cannot be used right now (cannot create its folder...).
    #[error("{0}")]
    Unavailable(String),
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
            Error::Sqlite(e) => map_sqlite(e),
            Error::Invalid(m) => PortError::Invalid(m),
            Error::Unavailable(m) => PortError::Unavailable(m),
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

/// Whether a retry can help decides the variant: contention and IO are
/// `Unavailable`, constraint violations `Conflict`, unreadable data and
/// driver misuse (a bug, not a transient state) `Invalid`.
fn map_sqlite(e: rusqlite::Error) -> PortError {
    use rusqlite::Error as E;
    let msg = format!("sqlite: {e}");
    match &e {
        E::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => PortError::Conflict(msg),
            // Corrupt or foreign files, and SQL the engine refuses
            // (`Unknown` is SQLITE_ERROR: no such table, syntax...).
            ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::TypeMismatch
            | ErrorCode::TooBig
            | ErrorCode::Unknown
            | ErrorCode::ApiMisuse
            | ErrorCode::ParameterOutOfRange => PortError::Invalid(msg),
            // Busy, locked, IO, full disk, cannot open, interrupted, out of
            // memory...: the state of the machine, which may change.
            _ => PortError::Unavailable(msg),
        },
        // Conversion failures, type mismatches, bad SQL or parameters: the
        // data or the code is wrong, and the same call will fail again.
        _ => PortError::Invalid(msg),
    }
}

pub(crate) fn unavailable(what: impl Into<String>) -> PortError {
    PortError::Unavailable(what.into())
}
