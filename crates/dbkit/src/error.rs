//! The one translation of driver errors (rusqlite's and sqlx's) into the
//! port error, `domain::ports::PortError`, used by every adapter so the same
//! failure means the same thing whichever adapter met it.
//!
//! # The rule
//!
//! The variant says whether retrying the same call can help:
//!
//! - **`Unavailable`** (retry may help): the state of the machine or the
//!   server, which may change. SQLite: busy, locked, IO error, disk full,
//!   cannot open, out of memory, interrupted, schema changed under a
//!   prepared statement, read-only. PostgreSQL: connection and IO errors,
//!   TLS and protocol errors, pool timeout or closed pool, a crashed worker,
//!   and the SQLSTATEs of contention and timeouts (query cancelled by
//!   `statement_timeout`, serialization failure, deadlock, lock not
//!   available, read-only transaction during failover, and the classes of
//!   connection exceptions, insufficient resources, operator intervention
//!   and system errors).
//! - **`Conflict`** (the data refuses the change): constraint violations
//!   (SQLite `SQLITE_CONSTRAINT`, SQLSTATE class 23).
//! - **`Invalid`** (the data or the code is wrong; the same call fails
//!   again): corrupt files and files that are not databases, values that
//!   cannot be decoded or converted, type mismatches, too-big values, API
//!   misuse, bad parameters, and a schema newer than the binary (produced by
//!   the migration runners, not here). `SQLITE_ERROR` (`ErrorCode::Unknown`)
//!   is also `Invalid`: SQLite raises it for a syntax error or a missing
//!   table or column, which no retry fixes; the transient SQLite conditions
//!   have codes of their own (busy, locked, schema changed...). Likewise
//!   SQLSTATEs outside the classes named above (e.g. `42P01`, undefined
//!   table) and database errors without a code.
//!
//! Error kinds a driver adds later fall to `Unavailable` for SQLite result
//! codes (a state of the machine) and sqlx errors, and to `Invalid` for
//! rusqlite's own (non-SQLite) errors, which are all about values or usage.
//!
//! # Why one function and not a `From` impl
//!
//! `PortError` lives in `domain` and the driver types in their crates, so
//! the orphan rule forbids `impl From<rusqlite::Error> for PortError` here;
//! adapters call [`sqlite_error`] or [`sqlx_error`] at their boundary (or
//! from their own error type's conversion).
//!
//! Before this module the store mapped `SQLITE_ERROR` and conversion
//! failures to `Invalid` while the event log made them `Unavailable`, and
//! the Kafka log's claims made every sqlx error `Unavailable`; the rule
//! above is the store's, which was the one written down.

use domain::ports::PortError;
use rusqlite::ErrorCode;

/// Classify a rusqlite error by the rule in the module docs.
pub fn sqlite_error(e: rusqlite::Error) -> PortError {
    let msg = format!("sqlite: {e}");
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => PortError::Conflict(msg),
            ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::TypeMismatch
            | ErrorCode::TooBig
            | ErrorCode::Unknown
            | ErrorCode::ApiMisuse
            | ErrorCode::ParameterOutOfRange
            | ErrorCode::AuthorizationForStatementDenied => PortError::Invalid(msg),
            // Busy, locked, IO, full disk, cannot open, interrupted, out of
            // memory, schema changed, read-only...: the state of the
            // machine, which may change.
            _ => PortError::Unavailable(msg),
        },
        // Conversion failures, type mismatches, bad SQL or parameters, no
        // row where one was required: the data or the code is wrong.
        _ => PortError::Invalid(msg),
    }
}

/// Classify an sqlx error by the rule in the module docs.
#[cfg(feature = "postgres")]
pub fn sqlx_error(e: sqlx::Error) -> PortError {
    use sqlx::Error as E;
    let msg = format!("postgres: {e}");
    match &e {
        E::Database(db) => match db.code().as_deref() {
            Some(code) => sqlstate_error(code, msg),
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
#[cfg(feature = "postgres")]
fn sqlstate_error(code: &str, msg: String) -> PortError {
    match code {
        // query_canceled (`statement_timeout` fired, or an admin
        // cancelled), serialization_failure, deadlock_detected,
        // lock_not_available, read_only_sql_transaction (a replica being
        // promoted).
        "57014" | "40001" | "40P01" | "55P03" | "25006" => PortError::Unavailable(msg),
        // Integrity constraint violations (unique, foreign key, not null...).
        c if c.starts_with("23") => PortError::Conflict(msg),
        // Connection exceptions, insufficient resources (too many
        // connections, disk full), operator intervention (shutdown,
        // failover), system errors.
        c if ["08", "53", "57", "58"].iter().any(|p| c.starts_with(p)) => PortError::Unavailable(msg),
        _ => PortError::Invalid(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;
    use rusqlite::types::Type;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Unavailable,
        Conflict,
        Invalid,
    }

    fn kind(e: &PortError) -> Kind {
        match e {
            PortError::Unavailable(_) => Kind::Unavailable,
            PortError::Conflict(_) => Kind::Conflict,
            PortError::Invalid(_) => Kind::Invalid,
            PortError::NotFound => panic!("no driver error maps to NotFound: {e:?}"),
        }
    }

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    /// One row per kind of rusqlite error.
    #[test]
    fn sqlite_errors_map_by_whether_a_retry_helps() {
        use Kind::*;
        let table: Vec<(&str, rusqlite::Error, Kind)> = vec![
            ("busy", failure(ffi::SQLITE_BUSY), Unavailable),
            ("locked", failure(ffi::SQLITE_LOCKED), Unavailable),
            ("io error", failure(ffi::SQLITE_IOERR), Unavailable),
            ("disk full", failure(ffi::SQLITE_FULL), Unavailable),
            ("cannot open", failure(ffi::SQLITE_CANTOPEN), Unavailable),
            ("out of memory", failure(ffi::SQLITE_NOMEM), Unavailable),
            ("interrupted", failure(ffi::SQLITE_INTERRUPT), Unavailable),
            ("schema changed", failure(ffi::SQLITE_SCHEMA), Unavailable),
            ("read-only", failure(ffi::SQLITE_READONLY), Unavailable),
            ("constraint", failure(ffi::SQLITE_CONSTRAINT), Conflict),
            ("unique constraint", failure(ffi::SQLITE_CONSTRAINT_UNIQUE), Conflict),
            ("corrupt", failure(ffi::SQLITE_CORRUPT), Invalid),
            ("not a database", failure(ffi::SQLITE_NOTADB), Invalid),
            (
                "SQLITE_ERROR (syntax, missing table)",
                failure(ffi::SQLITE_ERROR),
                Invalid,
            ),
            ("type mismatch", failure(ffi::SQLITE_MISMATCH), Invalid),
            ("too big", failure(ffi::SQLITE_TOOBIG), Invalid),
            ("api misuse", failure(ffi::SQLITE_MISUSE), Invalid),
            ("parameter out of range", failure(ffi::SQLITE_RANGE), Invalid),
            (
                "conversion from SQL",
                rusqlite::Error::FromSqlConversionFailure(0, Type::Text, "bad".into()),
                Invalid,
            ),
            (
                "integer out of range",
                rusqlite::Error::IntegralValueOutOfRange(0, 300),
                Invalid,
            ),
            (
                "column type",
                rusqlite::Error::InvalidColumnType(0, "c".into(), Type::Null),
                Invalid,
            ),
            ("no rows", rusqlite::Error::QueryReturnedNoRows, Invalid),
            ("column name", rusqlite::Error::InvalidColumnName("c".into()), Invalid),
        ];
        for (what, err, want) in table {
            assert_eq!(kind(&sqlite_error(err)), want, "{what}");
        }
    }

    /// The same rule on errors SQLite really raises, not only built ones.
    #[test]
    fn real_sqlite_errors_follow_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        let run = |sql: &str| kind(&sqlite_error(conn.execute_batch(sql).unwrap_err()));
        assert_eq!(run("SELEC 1"), Kind::Invalid, "syntax error");
        assert_eq!(run("SELECT * FROM missing"), Kind::Invalid, "missing table");
        assert_eq!(run("INSERT INTO t VALUES (1, NULL)"), Kind::Conflict, "not null");
        conn.execute_batch("INSERT INTO t VALUES (1, 'a')").unwrap();
        assert_eq!(run("INSERT INTO t VALUES (1, 'b')"), Kind::Conflict, "primary key");
        let decode = conn
            .query_row("SELECT v FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert_eq!(kind(&sqlite_error(decode)), Kind::Invalid, "decode");

        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let junk = rusqlite::Connection::open(&junk).unwrap();
        let e = junk.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
        assert_eq!(kind(&sqlite_error(e.unwrap_err())), Kind::Invalid, "not a database");

        let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = other.execute_batch("BEGIN IMMEDIATE").unwrap_err();
        assert_eq!(kind(&sqlite_error(busy)), Kind::Unavailable, "busy");
    }

    /// One row per kind of sqlx error, and per SQLSTATE class.
    #[cfg(feature = "postgres")]
    #[test]
    fn sqlx_errors_map_by_whether_a_retry_helps() {
        use Kind::*;
        let table: Vec<(&str, sqlx::Error, Kind)> = vec![
            ("pool timed out", sqlx::Error::PoolTimedOut, Unavailable),
            ("pool closed", sqlx::Error::PoolClosed, Unavailable),
            ("worker crashed", sqlx::Error::WorkerCrashed, Unavailable),
            ("io", sqlx::Error::Io(std::io::Error::other("reset")), Unavailable),
            ("protocol", sqlx::Error::Protocol("bad frame".into()), Unavailable),
            ("tls", sqlx::Error::Tls("handshake".into()), Unavailable),
            ("decode", sqlx::Error::Decode("bad".into()), Invalid),
            ("encode", sqlx::Error::Encode("bad".into()), Invalid),
            ("row not found", sqlx::Error::RowNotFound, Invalid),
            ("column not found", sqlx::Error::ColumnNotFound("c".into()), Invalid),
            ("configuration", sqlx::Error::Configuration("bad url".into()), Invalid),
        ];
        for (what, err, want) in table {
            assert_eq!(kind(&sqlx_error(err)), want, "{what}");
        }
        let states: &[(&str, Kind)] = &[
            ("57014", Unavailable), // statement_timeout
            ("40001", Unavailable), // serialization failure
            ("40P01", Unavailable), // deadlock
            ("55P03", Unavailable), // lock not available
            ("25006", Unavailable), // read-only transaction
            ("08006", Unavailable), // connection failure
            ("53300", Unavailable), // too many connections
            ("57P01", Unavailable), // admin shutdown
            ("58030", Unavailable), // io error
            ("23505", Conflict),    // unique violation
            ("23503", Conflict),    // foreign key violation
            ("42P01", Invalid),     // undefined table
            ("42601", Invalid),     // syntax error
            ("22P02", Invalid),     // invalid text representation
        ];
        for (code, want) in states {
            assert_eq!(kind(&sqlstate_error(code, String::new())), *want, "SQLSTATE {code}");
        }
    }
}
