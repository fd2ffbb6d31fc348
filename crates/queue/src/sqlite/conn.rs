//! Connections of the embedded queue: opening and migrating the file, the
//! single writer thread, a small pool of read connections and the
//! background WAL checkpointer.
//!
//! rusqlite is synchronous, so no rusqlite call runs on an async worker
//! thread. Every write (enqueue, claim, complete...) goes to one dedicated
//! thread that owns the only write connection, fed by a bounded channel:
//! SQLite runs one write transaction at a time anyway, so one thread in
//! arrival order is as fast as it gets, and callers wait asynchronously
//! when the channel is full. Operator reads (`get`, `list`, `counts`) run
//! on tokio's blocking pool with a read connection, beside the writer (WAL).
//!
//! Checkpoints run on a third thread with a `PASSIVE` checkpoint after
//! writes, at most every `CHECKPOINT_INTERVAL`, so no claim or complete has
//! to copy the WAL back into the database inside its own commit.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::Synchronous;
use crate::QueueError;

/// How long a statement waits for a lock held by another connection (an
/// operator's CLI, a checkpoint) before failing with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Write requests queued before callers wait.
const WRITE_QUEUE: usize = 256;

/// The writer still checkpoints by itself past this many WAL pages, should
/// the background checkpointer fall behind.
const FALLBACK_AUTOCHECKPOINT: i64 = 16_384;

const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Prepared statements kept per connection (`list` alone has a few shapes).
const STATEMENT_CACHE: usize = 48;

/// One embedded file per schema version; `PRAGMA user_version` counts how
/// many have run.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_init.sql")];

fn unavailable(what: impl Into<String>) -> QueueError {
    QueueError::Unavailable(what.into())
}

/// Open (creating if needed) the queue file for writing, in WAL mode, and
/// bring its schema up to date.
pub(super) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, QueueError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unavailable(format!("{} refused WAL mode (got {mode})", path.display())));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.pragma_update(None, "cache_size", -8_192)?;
    conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut conn)?;
    Ok(conn)
}

/// A read connection; `query_only` turns an accidental write into an error
/// instead of a second writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

pub(super) fn open_checkpointer(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Each pending migration in its own transaction with the `user_version`
/// bump; a schema newer than this binary is refused.
fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len();
    let Some(done) = usize::try_from(current).ok().filter(|&v| v <= known) else {
        return Err(QueueError::Invalid(format!(
            "job queue schema version {current} is not one this binary knows (0 to {known})"
        )));
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

// ------------------------------------------------------------------ writer

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread. Dropping it closes the channel: the thread
/// finishes what is queued, closes the connection and exits.
pub(super) struct Writer {
    tasks: mpsc::Sender<Task>,
}

impl Writer {
    pub(super) fn spawn(mut conn: Connection, checkpoint: Connection) -> Result<Self, QueueError> {
        // Capacity one: nudges sent while a checkpoint is pending coalesce.
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("queue-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint, &nudged))
            .map_err(|e| unavailable(format!("cannot start the job queue checkpoint thread: {e}")))?;
        let (tasks, mut rx) = mpsc::channel::<Task>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || {
                while let Some(task) = rx.blocking_recv() {
                    // A panicking task must not stop every later write; its
                    // transaction was rolled back by `Transaction`'s drop and
                    // its caller sees the reply channel close.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| task(&mut conn))).is_err() {
                        tracing::error!("a job queue write panicked; its transaction was rolled back");
                    }
                    let _ = nudge.try_send(());
                }
            })
            .map_err(|e| unavailable(format!("cannot start the job queue writer thread: {e}")))?;
        Ok(Self { tasks })
    }

    /// Run `f` on the writer thread and wait for its result. A caller
    /// cancelled after queueing does not stop the write: a claim made for a
    /// caller that went away is recovered by its lease expiring.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.tasks
            .send(task)
            .await
            .map_err(|_| unavailable("the job queue writer has stopped"))?;
        rx.await
            .map_err(|_| unavailable("a job queue write failed unexpectedly"))?
    }

    pub(super) fn is_running(&self) -> bool {
        !self.tasks.is_closed()
    }
}

fn checkpoint_loop(conn: &Connection, nudged: &std::sync::mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "job queue checkpoint failed; the writer's auto-checkpoint remains");
        }
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}

// ----------------------------------------------------------------- readers

/// A fixed set of read connections; the semaphore holds one permit per idle
/// connection, so waiting for one is async.
pub(super) struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(super) fn new(conns: Vec<Connection>) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Mutex::new(conns),
        })
    }

    /// Run `f` with a read connection on the blocking pool.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("the job queue read pool is closed"))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let lease = Lease::take(pool, permit)?;
            match &lease.conn {
                Some(conn) => f(conn),
                None => Err(unavailable("no idle job queue read connection")),
            }
        })
        .await
        .map_err(|e| unavailable(format!("a job queue read failed unexpectedly: {e}")))?
    }
}

/// A borrowed read connection, back in the pool when dropped (also when
/// `f` panics).
struct Lease {
    conn: Option<Connection>,
    pool: Arc<Readers>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn take(pool: Arc<Readers>, permit: OwnedSemaphorePermit) -> Result<Self, QueueError> {
        // Only pushes and pops happen under the lock, so a poisoned lock
        // still guards a consistent Vec.
        let conn = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match conn {
            Some(conn) => Ok(Self {
                conn: Some(conn),
                pool,
                _permit: permit,
            }),
            None => Err(unavailable("no idle job queue read connection despite a permit")),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }
}
