//! Counting and timing every database statement (issue 12's N+1 guard).
//!
//! Why here: the store, the job queue and the event log all run their
//! statements through `dbkit` (the SQLite writer thread and reader pool,
//! the PostgreSQL pools), so one hook per driver sees every statement
//! without touching the adapters' SQL.
//!
//! A [`Scope`] (`telemetry::queries`, re-exported here) is a counter
//! opened by whoever does a unit of work — the API per request, the job
//! runner per job — and made current for the task with [`within`] (a tokio
//! task-local). SQLite statements run on other
//! threads (the writer, the blocking pool), so the caller's scope is
//! captured with [`carry`] when the work is queued and installed on the
//! thread for the closure's run ([`Carry::run`]); the statements then
//! reach [`Carry::record`] through SQLite's trace hook ([`sqlite_trace`]), which
//! finds the scope in a thread-local. On PostgreSQL the statements run in
//! the caller's task, through `Observed` (feature `postgres`).
//!
//! The slow-query warning names the statement's kind, the adapter's call
//! site (file and line, captured with `#[track_caller]`) and the duration,
//! never the SQL text with its values.

use std::cell::RefCell;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use telemetry::names;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{Observed, observed};

pub use telemetry::queries::{Scope, current, within};

thread_local! {
    /// The scope (and call site) of the closure this thread runs now.
    static ON_THREAD: RefCell<Option<Carry>> = const { RefCell::new(None) };
}

/// What a statement run elsewhere needs of its caller: the caller's scope
/// and the adapter's call site.
#[derive(Debug, Clone)]
pub struct Carry {
    scope: Option<Arc<Scope>>,
    site: &'static Location<'static>,
}

/// Capture the caller's scope and call site, to hand to the thread that
/// will run the statements.
#[track_caller]
pub fn carry() -> Carry {
    Carry {
        scope: current(),
        site: Location::caller(),
    }
}

impl Carry {
    /// Run `f` with this scope and site installed on the current thread.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> T {
        struct Reset(Option<Carry>);
        impl Drop for Reset {
            fn drop(&mut self) {
                let previous = self.0.take();
                ON_THREAD.with(|t| *t.borrow_mut() = previous);
            }
        }
        let previous = ON_THREAD.with(|t| t.borrow_mut().replace(self));
        let _reset = Reset(previous);
        f()
    }

    /// Count and time one statement of this caller.
    pub fn record(&self, backend: Backend, kind: Kind, elapsed: Duration) {
        if let Some(scope) = &self.scope {
            scope.count();
        }
        measure(backend, kind, elapsed, Some(self.site));
    }
}

/// Which driver ran a statement (the `backend` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A statement's kind (the `kind` label): its first keyword, so the label
/// set stays small whatever the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Select,
    Insert,
    Update,
    Delete,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints.
    Transaction,
    Pragma,
    Other,
}

impl Kind {
    /// The kind of `sql`, by its first keyword (`WITH` counts as a select;
    /// a CTE in front of a write is rare enough here not to matter).
    pub fn of(sql: &str) -> Kind {
        let word = sql
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("");
        let is = |k: &str| word.eq_ignore_ascii_case(k);
        if is("select") || is("with") || is("values") {
            Kind::Select
        } else if is("insert") || is("replace") {
            Kind::Insert
        } else if is("update") {
            Kind::Update
        } else if is("delete") {
            Kind::Delete
        } else if is("begin") || is("commit") || is("rollback") || is("savepoint") || is("release") || is("end") {
            Kind::Transaction
        } else if is("pragma") {
            Kind::Pragma
        } else {
            Kind::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Transaction => "transaction",
            Kind::Pragma => "pragma",
            Kind::Other => "other",
        }
    }
}

/// Statements slower than this are logged and counted; `u64::MAX`
/// (the default) turns the warning off.
static SLOW_QUERY_MICROS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether statements are counted and timed at all (on by default;
/// `observability.count_queries = false` turns the hooks off, for the
/// benchmark that prices them).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Log statements slower than `threshold` (process-wide; set by wiring
/// from `observability.slow_query_ms`).
pub fn set_slow_query(threshold: Duration) {
    let micros = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
    SLOW_QUERY_MICROS.store(micros, Ordering::Relaxed);
}

/// Turn statement counting and timing on or off (process-wide, read when a
/// connection is opened and at each PostgreSQL call).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether statement counting is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `site` is the adapter's call site when the statement ran inside a
/// [`Carry`]; `None` for a statement no caller handed over (a connection's
/// own setup, a background checkpoint), logged as `unattributed` rather
/// than with a line of this file, which would point nowhere useful.
fn measure(backend: Backend, kind: Kind, elapsed: Duration, site: Option<&'static Location<'static>>) {
    let (b, k) = (backend.as_str(), kind.as_str());
    metrics::histogram!(names::DB_QUERY_DURATION, "backend" => b, "kind" => k).record(elapsed.as_secs_f64());
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if micros >= SLOW_QUERY_MICROS.load(Ordering::Relaxed) {
        metrics::counter!(names::DB_SLOW_QUERIES, "backend" => b, "kind" => k).increment(1);
        tracing::warn!(
            backend = b,
            kind = k,
            site = %site.map_or_else(|| "unattributed".to_owned(), ToString::to_string),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "slow database statement"
        );
    }
}

/// A connection pool's state now, for the `db_pool_*` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub in_use: usize,
    pub idle: usize,
    pub max: usize,
    pub waiting: usize,
}

/// A pool [`sample_pools`] reports on.
pub trait PoolGauge: Send + Sync {
    /// The `pool` label.
    fn pool_name(&self) -> &'static str;
    fn stats(&self) -> PoolStats;
}

/// Pools registered with [`watch_pool`]; weak, so a dropped pool is
/// forgotten at the next sample rather than kept open.
static POOLS: std::sync::Mutex<Vec<std::sync::Weak<dyn PoolGauge>>> = std::sync::Mutex::new(Vec::new());

/// Report on `pool` in [`sample_pools`] for as long as it lives.
pub fn watch_pool(pool: std::sync::Weak<dyn PoolGauge>) {
    POOLS.lock().unwrap_or_else(|p| p.into_inner()).push(pool);
}

/// Every live registered pool's state now, by `pool` label (pools of one
/// name summed); dropped pools are forgotten here.
pub fn pool_stats() -> std::collections::BTreeMap<&'static str, PoolStats> {
    let mut by_name: std::collections::BTreeMap<&'static str, PoolStats> = std::collections::BTreeMap::new();
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|w| match w.upgrade() {
        Some(pool) => {
            let s = pool.stats();
            let sum = by_name.entry(pool.pool_name()).or_default();
            sum.in_use += s.in_use;
            sum.idle += s.idle;
            sum.max += s.max;
            sum.waiting += s.waiting;
            true
        }
        None => false,
    });
    by_name
}

/// Labels [`sample_pools`] set last time, so a pool that has gone since is
/// set to zero rather than left showing its last connections.
static SAMPLED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Set the `db_pool_*` gauges from every live registered pool (pools of
/// one name are summed); called once a second by the binary's sampler.
pub fn sample_pools() {
    let by_name = pool_stats();
    let mut sampled = SAMPLED.lock().unwrap_or_else(|p| p.into_inner());
    for gone in sampled.iter().filter(|n| !by_name.contains_key(*n)) {
        let pool = *gone;
        metrics::gauge!(names::DB_POOL_IN_USE, "pool" => pool).set(0.0);
        metrics::gauge!(names::DB_POOL_IDLE, "pool" => pool).set(0.0);
        metrics::gauge!(names::DB_POOL_MAX, "pool" => pool).set(0.0);
        metrics::gauge!(names::DB_POOL_WAITING, "pool" => pool).set(0.0);
    }
    sampled.clear();
    for (pool, s) in by_name {
        sampled.push(pool);
        metrics::gauge!(names::DB_POOL_IN_USE, "pool" => pool).set(s.in_use as f64);
        metrics::gauge!(names::DB_POOL_IDLE, "pool" => pool).set(s.idle as f64);
        metrics::gauge!(names::DB_POOL_MAX, "pool" => pool).set(s.max as f64);
        metrics::gauge!(names::DB_POOL_WAITING, "pool" => pool).set(s.waiting as f64);
    }
}

/// SQLite's trace hook (`Connection::trace_v2` with `SQLITE_TRACE_PROFILE`),
/// installed on every writer and reader connection `dbkit` opens: one call
/// per finished statement, on the thread that ran it.
pub fn sqlite_trace(event: rusqlite::trace::TraceEvent<'_>) {
    if let rusqlite::trace::TraceEvent::Profile(stmt, elapsed) = event {
        let kind = Kind::of(&stmt.sql());
        ON_THREAD.with(|t| match &*t.borrow() {
            Some(carry) => carry.record(Backend::Sqlite, kind, elapsed),
            None => measure(Backend::Sqlite, kind, elapsed, None),
        });
    }
}

/// Install [`sqlite_trace`] on `conn` when counting is on.
pub fn watch_sqlite(conn: &rusqlite::Connection) {
    if enabled() {
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_PROFILE,
            Some(sqlite_trace as fn(rusqlite::trace::TraceEvent<'_>)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_first_keyword() {
        assert_eq!(Kind::of("SELECT 1"), Kind::Select);
        assert_eq!(Kind::of("  with x as (select 1) select * from x"), Kind::Select);
        assert_eq!(Kind::of("INSERT INTO t VALUES (?1)"), Kind::Insert);
        assert_eq!(Kind::of("update t set a = 1"), Kind::Update);
        assert_eq!(Kind::of("DELETE FROM t"), Kind::Delete);
        assert_eq!(Kind::of("BEGIN IMMEDIATE"), Kind::Transaction);
        assert_eq!(Kind::of("PRAGMA optimize"), Kind::Pragma);
        assert_eq!(Kind::of("ANALYZE"), Kind::Other);
        assert_eq!(Kind::of(""), Kind::Other);
    }

    #[tokio::test]
    async fn statements_on_other_threads_count_in_the_callers_scope() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        watch_sqlite(&conn);
        let conn = std::sync::Mutex::new(conn);
        let scope = Scope::new();
        let carry = within(scope.clone(), async { carry() }).await;
        std::thread::scope(|s| {
            s.spawn(|| {
                carry.run(|| {
                    let c = conn.lock().unwrap();
                    c.execute_batch("CREATE TABLE t (a); INSERT INTO t VALUES (1);")
                        .unwrap();
                    let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
                    assert_eq!(n, 1);
                })
            });
        });
        assert_eq!(scope.queries(), 3);
        // Outside the carry nothing is counted in the scope.
        conn.lock().unwrap().execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert_eq!(scope.queries(), 3);
    }
}
