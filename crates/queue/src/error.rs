//! `QueueError`, the crate's one error type. Driver errors (rusqlite's and
//! sqlx's) are classified by `dbkit`'s one rule (`dbkit::error`), shared by
//! every adapter, so no driver type leaks past the crate and a given failure
//! means the same here as in the store. It converts into the port's
//! `PortError` with the same meaning: the variant says whether a retry can
//! help.

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

/// The way back, for what `dbkit` already classified. `NotFound` is not
/// something the database layer says (a missing row is an answer, not an
/// error); should it come, it means the caller asked for what is not there.
impl From<PortError> for QueueError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(m) => QueueError::Unavailable(m),
            PortError::Conflict(m) => QueueError::Conflict(m),
            PortError::Invalid(m) => QueueError::Invalid(m),
            PortError::NotFound => QueueError::Invalid("not found".into()),
        }
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        dbkit::sqlite_error(e).into()
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        dbkit::sqlx_error(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classification itself is `dbkit`'s (and tested there); this
    /// checks the queue keeps each variant on the way through.
    #[test]
    fn driver_errors_keep_their_variant_through_the_queue_error() {
        assert!(matches!(
            QueueError::from(sqlx::Error::PoolTimedOut),
            QueueError::Unavailable(_)
        ));
        assert!(matches!(
            QueueError::from(sqlx::Error::Decode("bad".into())),
            QueueError::Invalid(_)
        ));
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(matches!(QueueError::from(busy), QueueError::Unavailable(_)));
        let unique =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE), None);
        assert!(matches!(QueueError::from(unique), QueueError::Conflict(_)));
        assert_eq!(
            PortError::from(QueueError::Conflict("x".into())),
            PortError::Conflict("x".into())
        );
        assert_eq!(
            QueueError::from(PortError::Unavailable("y".into())),
            QueueError::Unavailable("y".into())
        );
    }
}
