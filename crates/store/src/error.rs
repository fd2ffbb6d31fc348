//! `Error`, the store's internal error type, shared by both backends, and
//! its conversion into the port's error types, so no driver error leaks past
//! this crate.
//!
//! Inside the adapters every function returns `Result<T, Error>` so `?`
//! works on driver errors and on our own decode failures alike; the trait
//! methods convert at the boundary with `From`. Driver errors are classified
//! by `dbkit`'s one rule (`dbkit::error`), the same for every adapter: the
//! variant says whether a retry can help, as `PortError` asks.

use domain::order::TransitionError;
use domain::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Pg(#[from] sqlx::Error),
    /// Already classified (by `dbkit` while opening, connecting or
    /// migrating).
    #[error(transparent)]
    Port(#[from] PortError),
    /// A row that could not be decoded into a domain value, or a setting
    /// that cannot be used.
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
            Error::Sqlite(e) => dbkit::sqlite_error(e),
            Error::Pg(e) => dbkit::sqlx_error(e),
            Error::Port(e) => e,
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
