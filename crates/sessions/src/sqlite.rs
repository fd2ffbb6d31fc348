//! `SqliteSessions`: sessions and login attempts in a SQLite file of their
//! own (`<data_dir>/sessions.db`), opened through `dbkit::sqlite` like the
//! job queue (one writer thread, a small reader pool, `PASSIVE` checkpoints
//! off the commit path).
//!
//! Every write is one statement, so each runs in SQLite's implicit
//! transaction on the writer thread with no `BEGIN` of its own. The file is
//! `synchronous=NORMAL`: a power cut may lose the last touches or a fresh
//! login, which costs a user one more login, while `FULL` would put an
//! fsync on every staff request (each one slides its session).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use dbkit::Synchronous;
use dbkit::sqlite::{Database, Profile};
use domain::identity::{Attempts, Role, Session};
use domain::ports::{LoginAttempts, PortError, PortResult, SessionStore};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

/// The session file: small (a few thousand rows at most), so 2 MiB of page
/// cache; no foreign keys (nothing refers to anything).
const PROFILE: Profile = Profile::new("session store", "session", MIGRATIONS).with_cache_kib(2_048);

/// One embedded file per schema version; `PRAGMA user_version` counts how
/// many have run.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_init.sql")];

/// Readers for `session` and `attempts` (the login path and every staff
/// request); two let a slow reader not hold up the others.
const READ_CONNECTIONS: usize = 2;

/// How long `health()` waits for a read connection and `SELECT 1`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

const SESSION_COLUMNS: &str =
    "token_hash, user_id, username, role, csrf, created_at, last_seen_at, expires_at, absolute_expiry";

pub struct SqliteSessions {
    db: Database,
}

impl std::fmt::Debug for SqliteSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSessions")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SqliteSessions {
    /// Open the file at `path`, creating it and its folder if needed,
    /// switching to WAL and applying pending migrations. Blocking: call it
    /// at startup (or from `spawn_blocking`).
    pub fn open(path: &Path) -> PortResult<Self> {
        let db = Database::open(path, &PROFILE, Synchronous::Normal, READ_CONNECTIONS)?;
        Ok(Self { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// `f` on the writer thread, its rusqlite error classified by `dbkit`.
    async fn write<T, F>(&self, f: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.db
            .writer()
            .run(move |conn| f(conn).map_err(dbkit::sqlite_error))
            .await?
    }
}

/// A read's failure: the driver's, or a row the domain cannot hold.
enum ReadError {
    Sqlite(rusqlite::Error),
    Port(PortError),
}

impl From<rusqlite::Error> for ReadError {
    fn from(e: rusqlite::Error) -> Self {
        ReadError::Sqlite(e)
    }
}

impl From<ReadError> for PortError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Sqlite(e) => dbkit::sqlite_error(e),
            ReadError::Port(e) => e,
        }
    }
}

fn session_row(r: &Row<'_>) -> Result<Session, ReadError> {
    let token_hash: String = r.get(0)?;
    let user: String = r.get(1)?;
    let role: String = r.get(3)?;
    let invalid = |what: String| ReadError::Port(PortError::Invalid(what));
    Ok(Session {
        user_id: Uuid::parse_str(&user).map_err(|e| invalid(format!("session user id {user:?}: {e}")))?,
        username: r.get(2)?,
        role: Role::parse(&role).ok_or_else(|| invalid(format!("session role {role:?} is unknown")))?,
        csrf: r.get(4)?,
        created_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        expires_at: r.get(7)?,
        absolute_expiry: r.get(8)?,
        token_hash,
    })
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn create_session(&self, session: &Session) -> PortResult<()> {
        let s = session.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?
            .execute(params![
                s.token_hash,
                s.user_id.to_string(),
                s.username,
                s.role.as_str(),
                s.csrf,
                s.created_at,
                s.last_seen_at,
                s.expires_at,
                s.absolute_expiry
            ])
            .map(drop)
        })
        .await
    }

    async fn session(&self, token_hash: &str, now: i64) -> PortResult<Option<Session>> {
        let hash = token_hash.to_owned();
        self.db
            .read(move |c| -> Result<Option<Session>, ReadError> {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1 AND expires_at > ?2"
                ))?;
                let mut rows = stmt.query(params![hash, now])?;
                rows.next()?.map(session_row).transpose()
            })
            .await
    }

    async fn touch_session(&self, token_hash: &str, now: i64, expires_at: i64) -> PortResult<()> {
        let hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE sessions SET last_seen_at = ?2, expires_at = MIN(?3, absolute_expiry) \
                 WHERE token_hash = ?1 AND expires_at > ?2",
            )?
            .execute(params![hash, now, expires_at])
            .map(drop)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> PortResult<()> {
        let hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute(params![hash])
                .map(drop)
        })
        .await
    }

    async fn delete_user_sessions(&self, user: Uuid) -> PortResult<u64> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                .execute(params![user.to_string()])
                .map(count)
        })
        .await
    }

    /// Also drops login-attempt counters whose window has passed (they are
    /// not counted): the port has no purge of its own for them, and this is
    /// the same file's nightly cleanup.
    async fn purge_sessions(&self, now: i64) -> PortResult<u64> {
        self.write(move |c| {
            let purged = c
                .prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
                .execute(params![now])?;
            c.prepare_cached("DELETE FROM login_attempts WHERE expires_at <= ?1")?
                .execute(params![now])?;
            Ok(count(purged))
        })
        .await
    }

    async fn health(&self) -> PortResult<()> {
        self.db.health(HEALTH_TIMEOUT).await
    }
}

#[async_trait]
impl LoginAttempts for SqliteSessions {
    async fn record_failure(&self, key: &str, now: i64, window_ms: i64) -> PortResult<Attempts> {
        let key = key.to_owned();
        let expires_at = now.saturating_add(window_ms);
        let (n, last_at): (i64, i64) = self
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO login_attempts (key, count, last_at, expires_at) VALUES (?1, 1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET \
                     count = CASE WHEN login_attempts.expires_at > ?2 THEN login_attempts.count + 1 ELSE 1 END, \
                     last_at = ?2, expires_at = ?3 \
                     RETURNING count, last_at",
                )?
                .query_row(params![key, now, expires_at], |r| Ok((r.get(0)?, r.get(1)?)))
            })
            .await?;
        Ok(Attempts {
            count: attempt_count(n)?,
            last_at,
        })
    }

    async fn attempts(&self, key: &str, now: i64) -> PortResult<Attempts> {
        let key = key.to_owned();
        let row: Option<(i64, i64)> = self
            .db
            .read(move |c| -> Result<_, ReadError> {
                Ok(
                    c.prepare_cached("SELECT count, last_at FROM login_attempts WHERE key = ?1 AND expires_at > ?2")?
                        .query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?,
                )
            })
            .await?;
        match row {
            Some((n, last_at)) => Ok(Attempts {
                count: attempt_count(n)?,
                last_at,
            }),
            None => Ok(Attempts::default()),
        }
    }

    async fn clear_attempts(&self, key: &str) -> PortResult<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM login_attempts WHERE key = ?1")?
                .execute(params![key])
                .map(drop)
        })
        .await
    }
}

fn attempt_count(n: i64) -> PortResult<u32> {
    u32::try_from(n).map_err(|_| PortError::Invalid(format!("login attempt count {n}")))
}
