//! `QueueError`, the crate's one error type, and the translation of both
//! drivers' errors into it, so no driver type leaks past the crate. It
//! converts into the port's `PortError` with the same meaning: the variant
//! says whether a retry can help.

use domain::ports::PortError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The database cannot be reached or used right now (down, busy, a
    /// timeout, a full disk); retrying may help.
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the change (e.g. retrying a dead job whose
    /// unique key a live job holds); the same call will fail again.
    #[error("job queue conflict: {0}")]
    Conflict(String),
    /// Bad input or settings, SQL the database refuses, or stored data that
    /// cannot be read back (corrupt, or from a newer binary).
    #[error("job queue: {0}")]
    Invalid(String),
}

impl From<QueueError> for PortError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(m) => PortError::Unavailable(m),
            QueueError::Conflict(m) => PortError::Conflict(m),
            QueueError::Invalid(m) => PortError::Invalid(m),
        }
    }
}

/// Contention and IO are `Unavailable`, constraint violations `Conflict`,
/// unreadable data and driver misuse (a bug, not a passing state) `Invalid`.
impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let msg = format!("sqlite: {e}");
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::ConstraintViolation => QueueError::Conflict(msg),
                ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::TypeMismatch
                | ErrorCode::TooBig
                | ErrorCode::Unknown
                | ErrorCode::ApiMisuse
                | ErrorCode::ParameterOutOfRange => QueueError::Invalid(msg),
                // Busy, locked, IO, full disk, cannot open, out of memory...
                _ => QueueError::Unavailable(msg),
            },
            _ => QueueError::Invalid(msg),
        }
    }
}

/// Connection trouble, timeouts and contention are `Unavailable`;
/// constraint violations `Conflict`; undecodable rows and SQL the server
/// refuses `Invalid`.
impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let msg = format!("postgres: {e}");
        match &e {
            E::Database(db) => match db.code().as_deref() {
                Some(code) => map_sqlstate(code, msg),
                None => QueueError::Invalid(msg),
            },
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
                QueueError::Unavailable(msg)
            }
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::Encode(_)
            | E::TypeNotFound { .. }
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::RowNotFound
            | E::Configuration(_)
            | E::InvalidArgument(_) => QueueError::Invalid(msg),
            _ => QueueError::Unavailable(msg),
        }
    }
}

/// By SQLSTATE class, with the exceptions that matter named.
fn map_sqlstate(code: &str, msg: String) -> QueueError {
    match code {
        // query_canceled (statement_timeout), serialization failure,
        // deadlock, lock not available, read-only transaction (failover).
        "57014" | "40001" | "40P01" | "55P03" | "25006" => QueueError::Unavailable(msg),
        c if c.starts_with("23") => QueueError::Conflict(msg),
        // Connection exceptions, insufficient resources, operator
        // intervention, system errors.
        c if ["08", "53", "57", "58"].iter().any(|p| c.starts_with(p)) => QueueError::Unavailable(msg),
        _ => QueueError::Invalid(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_whether_a_retry_helps() {
        let m = || "m".to_owned();
        assert!(matches!(map_sqlstate("57014", m()), QueueError::Unavailable(_)));
        assert!(matches!(map_sqlstate("23505", m()), QueueError::Conflict(_)));
        assert!(matches!(map_sqlstate("40P01", m()), QueueError::Unavailable(_)));
        assert!(matches!(map_sqlstate("08006", m()), QueueError::Unavailable(_)));
        assert!(matches!(map_sqlstate("42P01", m()), QueueError::Invalid(_)));
        assert!(matches!(
            QueueError::from(sqlx::Error::PoolTimedOut),
            QueueError::Unavailable(_)
        ));
        assert_eq!(
            PortError::from(QueueError::Conflict("x".into())),
            PortError::Conflict("x".into())
        );
    }
}
