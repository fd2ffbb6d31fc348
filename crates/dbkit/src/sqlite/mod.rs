//! SQLite plumbing shared by the store, the job queue and the event log:
//! opening and configuring connections, migrating the schema, the single
//! writer thread ([`Writer`]), the pool of read connections ([`Readers`])
//! and the background checkpointer ([`spawn_checkpointer`]).
//!
//! rusqlite is synchronous, so no rusqlite call may run on an async worker
//! thread. Writes go to one dedicated thread that owns the only write
//! connection and is fed by a bounded channel; reads run on tokio's blocking
//! pool with a connection borrowed from a small pool.
//!
//! Why a writer thread rather than `spawn_blocking` around a
//! `Mutex<Connection>`: SQLite executes one write transaction at a time
//! whatever we do, so during a rush every extra writer would be a
//! blocking-pool thread parked on the mutex (up to 512 of them), each
//! holding a copy of its request. A thread fed by a bounded channel keeps
//! exactly one thread busy, serves writers in arrival order, and pushes back
//! on callers when the queue is full instead of growing without bound.
//! Reads are different: WAL lets any number of readers run beside the
//! writer, so they get a pool. (The event log keeps its own writer loop,
//! which gathers concurrent appends into one transaction, but uses the rest
//! of this module.)
//!
//! WAL checkpoints (copying the log back into the database file) run on a
//! third thread with its own connection. Left to SQLite's auto-checkpoint
//! they run inside whichever commit crosses the threshold, with two fsyncs,
//! so every thousand pages one batch or one barista's tap would stall for
//! the disk; measured on the dev VM, that was half the average commit time
//! of a small batch. A `PASSIVE` checkpoint from another connection runs
//! beside the writer without blocking it.
//!
//! Schemas are versioned by `PRAGMA user_version`, which counts the
//! embedded migration files applied so far (see [`migrate`]).

mod checkpoint;
mod database;
mod readers;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use domain::ports::PortError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use checkpoint::{Nudge, spawn_checkpointer};
pub use database::Database;
pub use readers::Readers;
pub use writer::Writer;

use crate::error::sqlite_error;

/// How hard a commit waits for the disk (SQLite's `synchronous`), for every
/// embedded database. Serialized as `full` / `normal`, so configuration can
/// name it directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync on every commit: nothing committed is lost on power loss.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: survives a process crash (`kill -9`),
    /// but a power loss may drop the last commits.
    Normal,
}

impl Synchronous {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// What sets one embedded database apart from the others: its name, its
/// schema and its cache sizes. Adapters keep theirs in a `const`, built with
/// [`Profile::new`] and the `with_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// What the database is called in messages ("store", "job queue").
    pub label: &'static str,
    /// Prefix of its threads' names (`store` gives `store-writer` and
    /// `store-checkpoint`); short, as Linux keeps 15 bytes of a name.
    pub thread_prefix: &'static str,
    /// The schema, one embedded file per version, applied in order.
    pub migrations: &'static [&'static str],
    /// Page cache of the write connection, in KiB.
    pub cache_kib: u32,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
    /// Whether the write connection enforces foreign keys.
    pub foreign_keys: bool,
}

impl Profile {
    /// A database called `label`, its threads named after `thread_prefix`,
    /// with the schema `migrations`; 8 MiB of page cache, 16 cached
    /// statements per connection, foreign keys off until asked for.
    pub const fn new(label: &'static str, thread_prefix: &'static str, migrations: &'static [&'static str]) -> Self {
        Self {
            label,
            thread_prefix,
            migrations,
            cache_kib: 8_192,
            statement_cache: 16,
            foreign_keys: false,
        }
    }

    /// Page cache of the write connection, in KiB.
    pub const fn with_cache_kib(self, cache_kib: u32) -> Self {
        Self { cache_kib, ..self }
    }

    /// Prepared statements kept per connection.
    pub const fn with_statement_cache(self, statement_cache: usize) -> Self {
        Self {
            statement_cache,
            ..self
        }
    }

    /// Enforce foreign keys on the write connection.
    pub const fn with_foreign_keys(self) -> Self {
        Self {
            foreign_keys: true,
            ..self
        }
    }
}

/// How long a statement waits for a lock held by another connection (an
/// operator's `backup` or `optimize-db`, a checkpoint, another process)
/// before failing with `Unavailable`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer still checkpoints by itself past this many WAL pages (64 MiB):
/// a safety net should the background checkpointer fall behind.
pub(crate) const FALLBACK_AUTOCHECKPOINT: i64 = 16_384;

/// Open the database at `path` for an adapter: the write connection
/// (migrated), `read_connections` read connections (at least one) and the
/// writer and checkpointer threads. Blocking: call it at startup (or from
/// `spawn_blocking`).
pub(crate) fn open(
    path: &Path,
    profile: &Profile,
    synchronous: Synchronous,
    read_connections: usize,
) -> Result<(Writer, Arc<Readers>), PortError> {
    let writer = open_writer(path, profile, synchronous)?;
    let readers = (0..read_connections.max(1))
        .map(|_| open_reader(path, profile))
        .collect::<Result<Vec<_>, _>>()?;
    let writer = Writer::spawn(writer, open_checkpointer(path)?, profile)?;
    Ok((writer, Readers::new(readers, profile.label)))
}

/// Open (creating if needed, with its folder) the database at `path` for
/// writing, switch it to WAL and bring the schema up to date.
pub fn open_writer(path: &Path, profile: &Profile, synchronous: Synchronous) -> Result<Connection, PortError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| PortError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path).map_err(sqlite_error)?;
    configure_writer(&conn, profile, synchronous).map_err(|e| match e {
        Refused::Sqlite(e) => sqlite_error(e),
        Refused::Wal(mode) => PortError::Unavailable(format!("{} refused WAL mode (got {mode})", path.display())),
    })?;
    migrate(&mut conn, profile.label, profile.migrations)?;
    Ok(conn)
}

enum Refused {
    Sqlite(rusqlite::Error),
    Wal(String),
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        Refused::Sqlite(e)
    }
}

fn configure_writer(conn: &Connection, profile: &Profile, sync: Synchronous) -> Result<(), Refused> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // `journal_mode` answers with the mode actually set; anything but WAL
    // (e.g. a filesystem without shared memory) would silently serialize
    // readers behind the writer, so refuse it.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Refused::Wal(mode));
    }
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    if profile.foreign_keys {
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    conn.pragma_update(None, "cache_size", -i64::from(profile.cache_kib))?;
    conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT)?;
    conn.set_prepared_statement_cache_capacity(profile.statement_cache);
    crate::observe::watch_sqlite(conn);
    Ok(())
}

/// Open a read connection on a database `open_writer` already prepared.
/// `query_only` makes an accidental write through it an error rather than a
/// second writer contending with the real one.
pub fn open_reader(path: &Path, profile: &Profile) -> Result<Connection, PortError> {
    let conn = open_existing(path)?;
    conn.pragma_update(None, "query_only", "ON").map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(profile.statement_cache);
    crate::observe::watch_sqlite(&conn);
    Ok(conn)
}

/// The connection the background checkpointer uses.
pub fn open_checkpointer(path: &Path) -> Result<Connection, PortError> {
    open_existing(path)
}

fn open_existing(path: &Path) -> Result<Connection, PortError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    Ok(conn)
}

/// The schema version of the database: how many migrations have run.
pub(crate) fn schema_version(conn: &Connection) -> Result<i64, PortError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite_error)
}

/// Apply the migrations the database has not seen yet, each in its own
/// `IMMEDIATE` transaction together with the `user_version` bump, so a
/// crash leaves the schema at a version boundary. The version is read
/// inside that transaction, so two processes opening one file at once take
/// turns and the second finds nothing left to do. A version above
/// `migrations.len()` (a file from a newer binary) is refused as `Invalid`
/// and nothing is changed.
///
/// A migration must also be correct on the schema its predecessor left:
/// version 1 of a database that existed before versioning (the event log)
/// is written with `IF NOT EXISTS`, so it adopts the old file as it is.
pub(crate) fn migrate(conn: &mut Connection, label: &str, migrations: &[&str]) -> Result<(), PortError> {
    let known = migrations.len();
    // The common open finds the schema current: a plain read answers that
    // without taking the write lock (which could wait behind a backup).
    if usize::try_from(schema_version(conn)?).is_ok_and(|v| v == known) {
        return Ok(());
    }
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let current = schema_version(&tx)?;
        let Some(done) = usize::try_from(current).ok().filter(|&v| v <= known) else {
            return Err(PortError::Invalid(format!(
                "{label} schema version {current} is not one this binary knows (0 to {known})"
            )));
        };
        let Some(sql) = migrations.get(done) else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(sqlite_error)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)
            .map_err(sqlite_error)?;
        tx.commit().map_err(sqlite_error)?;
    }
}

#[cfg(test)]
mod tests;
