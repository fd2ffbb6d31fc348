//! Connections: opening and configuring them, migrating the schema, the
//! single writer thread and the pool of read connections.
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
//! writer, so they get a pool.
//!
//! WAL checkpoints (copying the log back into the database file) run on a
//! third thread with its own connection. Left to SQLite's auto-checkpoint
//! they run inside whichever commit crosses the threshold, with two fsyncs,
//! so every thousand pages one batch or one barista's tap would stall for
//! the disk; measured on the dev VM, that was half the average commit time
//! of a small batch. A `PASSIVE` checkpoint from another connection runs
//! beside the writer without blocking it.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::ports::PortError;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::Synchronous;
use super::error::{Error, unavailable};

/// How long a statement waits for a lock held by another connection (the
/// CLI's `backup` or `optimize-db`, a checkpoint) before failing with
/// `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Write requests queued for the writer thread before callers wait. A batch
/// is one request, so this is plenty; it bounds memory, not throughput.
const WRITE_QUEUE: usize = 256;

/// The writer still checkpoints by itself past this many WAL pages (64 MiB):
/// a safety net should the background checkpointer fall behind.
const FALLBACK_AUTOCHECKPOINT: i64 = 16_384;

/// At most one background checkpoint per interval; writes in between only
/// grow the WAL a little, and fewer, larger checkpoints mean fewer fsyncs.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Prepared statements kept per connection; the hot paths use about twenty
/// and `list_orders` has eight filter shapes.
const STATEMENT_CACHE: usize = 64;

/// The schema, one embedded file per version, applied in order; the
/// database's `PRAGMA user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_operations.sql"),
];

/// Open (creating if needed) the database at `path` for writing, switch it
/// to WAL and bring the schema up to date.
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // `journal_mode` answers with the mode actually set; anything but WAL
    // (e.g. a filesystem without shared memory) would silently serialize
    // readers behind the writer, so refuse it.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unavailable(format!(
            "{} refused WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB of page cache: the order indexes' hot right edges stay resident.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Open a read connection on a database `open_writer` already prepared.
/// `query_only` makes an accidental write through it an error rather than a
/// second writer contending with the real one.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The connection the background checkpointer uses.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Apply the migrations the database has not seen yet, each in its own
/// transaction together with the `user_version` bump, so a crash leaves the
/// schema at a version boundary.
fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len();
    let Some(done) = usize::try_from(current).ok().filter(|&v| v <= known) else {
        return Err(Error::Invalid(format!(
            "database schema version {current} is not one this binary knows (0 to {known})"
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

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread. Dropping it closes the channel; the thread
/// finishes the queued jobs, closes the connection and exits.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer thread on `conn` and the checkpointer thread on
    /// `checkpoint`.
    pub(crate) fn spawn(mut conn: Connection, checkpoint: Connection) -> Result<Self, PortError> {
        // Capacity one: nudges sent while a checkpoint is pending coalesce.
        let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint, &nudged))
            .map_err(|e| unavailable(format!("cannot start the store checkpoint thread: {e}")))?;
        let (jobs, mut rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // A panicking job must not take every later write down
                    // with it. Its open transaction, if any, was rolled back
                    // by `Transaction`'s drop during unwinding, and its
                    // caller sees the reply channel close (`Unavailable`).
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!("a store write panicked; its transaction was rolled back");
                    }
                    // Full means a checkpoint is already due: nothing to add.
                    let _ = nudge.try_send(());
                }
                // Dropping `nudge` here stops the checkpointer.
            })
            .map_err(|e| unavailable(format!("cannot start the store writer thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Run `f` on the writer thread and wait for its result. If the caller
    /// is cancelled after the job was queued the job still runs to the end;
    /// every write the store makes is safe to have happened unobserved
    /// (batches are idempotent, transitions are what was asked for).
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| unavailable("the store writer has stopped"))?;
        rx.await.map_err(|_| unavailable("the store write failed unexpectedly"))
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }
}

/// Checkpoint after writes, at most once per `CHECKPOINT_INTERVAL`, until
/// the writer stops. `PASSIVE` copies what it can without waiting for
/// readers or the writer; frames it cannot copy yet are taken next time.
fn checkpoint_loop(conn: &Connection, nudged: &std::sync::mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((_, log, copied)) => tracing::trace!(log, copied, "store checkpoint"),
            Err(e) => tracing::warn!(error = %e, "store checkpoint failed; the writer's auto-checkpoint remains"),
        }
        // A rate limit, not a wait for work: nudges arriving meanwhile
        // coalesce into one checkpoint after the pause.
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
}

// ----------------------------------------------------------------- readers

/// A fixed set of read connections. The semaphore holds one permit per idle
/// connection, so a permit guarantees the stack has one to pop and waiting
/// for a connection is async (no blocking thread is parked on it).
pub(crate) struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(crate) fn new(conns: Vec<Connection>) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(conns.len())),
            idle: Mutex::new(conns),
        })
    }

    /// Run `f` with a read connection on the blocking pool.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| unavailable("the store read pool is closed"))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let lease = Lease::take(pool, permit)?;
            Ok(f(lease.conn()))
        })
        .await
        .map_err(|e| unavailable(format!("a store read failed unexpectedly: {e}")))?
    }
}

/// A borrowed read connection that goes back to the pool when dropped, also
/// when `f` panics, so a panic cannot shrink the pool.
struct Lease {
    conn: Option<Connection>,
    pool: Arc<Readers>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn take(pool: Arc<Readers>, permit: OwnedSemaphorePermit) -> Result<Self, PortError> {
        // Nothing is ever left half-done while the lock is held (a push or a
        // pop), so a poisoned lock still guards a consistent Vec.
        let conn = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match conn {
            Some(conn) => Ok(Self {
                conn: Some(conn),
                pool,
                _permit: permit,
            }),
            None => Err(unavailable("no idle read connection despite a permit")),
        }
    }

    fn conn(&self) -> &Connection {
        // Only `drop` takes it out.
        self.conn.as_ref().expect("lease holds a connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
        // `_permit` is released after this, once the connection is back.
    }
}
