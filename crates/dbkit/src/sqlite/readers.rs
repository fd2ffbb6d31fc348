//! The pool of read connections: a fixed set, lent out one per read on
//! tokio's blocking pool. WAL lets them read beside the writer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use domain::ports::PortError;
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A fixed set of read connections. The semaphore holds one permit per idle
/// connection, so a permit guarantees the stack has one to pop and waiting
/// for a connection is async (no blocking thread is parked on it).
pub struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    label: &'static str,
    /// Connections the pool was opened with.
    size: usize,
    /// Callers waiting for a permit now (`db_pool_waiting`).
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("label", &self.label)
            .field("idle", &self.permits.available_permits())
            .finish()
    }
}

impl Readers {
    /// A pool of `conns` (see `open_reader`); `label` names the database in
    /// errors.
    /// The database's name in messages.
    pub(crate) fn label(&self) -> &'static str {
        self.label
    }

    pub fn new(conns: Vec<Connection>, label: &'static str) -> Arc<Self> {
        let pool = Arc::new(Self {
            permits: Arc::new(Semaphore::new(conns.len())),
            size: conns.len(),
            idle: Mutex::new(conns),
            label,
            waiting: AtomicUsize::new(0),
        });
        let weak: std::sync::Weak<dyn crate::observe::PoolGauge> = Arc::downgrade(&pool) as _;
        crate::observe::watch_pool(weak);
        pool
    }

    /// Run `f` with a read connection on the blocking pool, its statements
    /// counted in the caller's query scope (`observe::carry`).
    #[track_caller]
    pub fn run<T, F>(self: &Arc<Self>, f: F) -> impl Future<Output = Result<T, PortError>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        let carry = crate::observe::carry();
        let pool = self.clone();
        async move { pool.run_carried(carry, f).await }
    }

    async fn run_carried<T, F>(self: Arc<Self>, carry: crate::observe::Carry, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        let label = self.label;
        let started = Instant::now();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // A guard, so a caller cancelled while waiting stops counting.
                struct Waiting<'a>(&'a AtomicUsize);
                impl Drop for Waiting<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let _waiting = Waiting(&self.waiting);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| PortError::Unavailable(format!("the {label} read pool is closed")))?
            }
        };
        metrics::histogram!(telemetry::names::DB_POOL_ACQUIRE, "pool" => label).record(started.elapsed().as_secs_f64());
        let pool = self;
        tokio::task::spawn_blocking(move || {
            let lease = Lease::take(pool, permit)?;
            Ok(carry.run(|| f(lease.conn())))
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("a {label} read failed unexpectedly: {e}")))?
    }
}

impl crate::observe::PoolGauge for Readers {
    fn pool_name(&self) -> &'static str {
        self.label
    }

    fn stats(&self) -> crate::observe::PoolStats {
        let idle = self.permits.available_permits();
        crate::observe::PoolStats {
            in_use: self.size.saturating_sub(idle),
            idle,
            max: self.size,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
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
            None => Err(PortError::Unavailable(format!(
                "no idle {} read connection despite a permit",
                pool.label
            ))),
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
