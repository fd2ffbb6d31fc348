//! [`Watched`], a PostgreSQL pool that reports itself in the `db_pool_*`
//! metrics: connections in use, idle and allowed (sampled by
//! `observe::sample_pools`), callers waiting for a connection, and the
//! time each caller waited (`db_pool_acquire_seconds{pool}`).
//!
//! Why a wrapper the adapters hold instead of `PgPool`: sqlx reports the
//! pool's size and idle count but neither who is waiting nor how long an
//! acquire took, so the acquire has to pass through us. `Watched` has its
//! own `begin` and `acquire`, and `&Watched` is itself an sqlx executor
//! (acquire, measured, then run on that connection), so every way an
//! adapter can take a connection is counted — transactions, explicit
//! connections and autocommit statements alike. The rejected alternative,
//! a helper called at each `.begin()` site, misses every autocommit
//! statement (most reads) and every site someone adds later.
//!
//! Why the registry holds a `Weak`: a global list of `PgPool` clones kept a
//! dropped adapter's pool, and its connections, open for the life of the
//! process. Here the adapter's `Watched` clones share one `Arc` of the
//! gauge, which owns the pool handle; `observe::watch_pool` keeps only a
//! `Weak`, so when the adapter drops, the gauge and its pool handle go too,
//! the connections close, and the next sample forgets the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, Postgres, SqlStr, Transaction};

use crate::observe::{PoolGauge, PoolStats};

/// A PostgreSQL pool whose connections are counted and whose acquires are
/// timed under the `pool` label it was given. Cheap to clone (one `Arc`);
/// all clones are one pool in the metrics.
#[derive(Clone)]
pub struct Watched {
    gauge: Arc<Gauge>,
}

/// What the registry samples; owned by the adapter's `Watched` clones only.
struct Gauge {
    pool: PgPool,
    name: &'static str,
    /// Callers in an acquire that found no idle connection (`db_pool_waiting`).
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("pool", &self.gauge.name)
            .field("size", &self.gauge.pool.size())
            .field("idle", &self.gauge.pool.num_idle())
            .finish()
    }
}

/// Counts a caller as waiting until dropped, so a caller cancelled while
/// waiting stops counting too.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Watched {
    /// Watch `pool` under the label `name` (`store`, `job queue`, …: the
    /// same names as the embedded reader pools, so one dashboard panel
    /// serves both modes) for as long as a clone of the result lives.
    pub fn new(pool: PgPool, name: &'static str) -> Self {
        let gauge = Arc::new(Gauge {
            pool,
            name,
            waiting: AtomicUsize::new(0),
        });
        let weak: std::sync::Weak<dyn PoolGauge> = Arc::downgrade(&gauge) as _;
        crate::observe::watch_pool(weak);
        Self { gauge }
    }

    /// The `pool` label.
    pub fn name(&self) -> &'static str {
        self.gauge.name
    }

    /// The sqlx pool itself, for what is not worth measuring (migrations
    /// at start-up) or needs the pool's own API. Statements run through it
    /// are not in `db_pool_acquire_seconds`.
    pub fn raw(&self) -> &PgPool {
        &self.gauge.pool
    }

    fn record(&self, started: Instant) {
        metrics::histogram!(telemetry::names::DB_POOL_ACQUIRE, "pool" => self.gauge.name)
            .record(started.elapsed().as_secs_f64());
    }

    /// A connection of the pool, timed, and counted as waiting while none
    /// is idle.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let started = Instant::now();
        let conn = match self.gauge.pool.try_acquire() {
            Some(conn) => conn,
            None => {
                let _waiting = Waiting::start(&self.gauge.waiting);
                self.gauge.pool.acquire().await?
            }
        };
        self.record(started);
        Ok(conn)
    }

    /// A transaction on a connection of the pool. The time recorded
    /// includes the `BEGIN` round trip: sqlx starts a `'static`
    /// transaction only through its pool (`Pool::begin`), not on a
    /// connection already taken, and one round trip on top of a wait is
    /// what the caller waited for anyway.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let started = Instant::now();
        let tx = match self.gauge.pool.try_begin().await? {
            Some(tx) => tx,
            None => {
                let _waiting = Waiting::start(&self.gauge.waiting);
                self.gauge.pool.begin().await?
            }
        };
        self.record(started);
        Ok(tx)
    }

    /// [`begin`](Self::begin) with a `BEGIN` of the caller's (an isolation
    /// level, `READ ONLY`).
    pub async fn begin_with(&self, statement: &'static str) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let started = Instant::now();
        let tx = match self.gauge.pool.try_begin_with(statement).await? {
            Some(tx) => tx,
            None => {
                let _waiting = Waiting::start(&self.gauge.waiting);
                self.gauge.pool.begin_with(statement).await?
            }
        };
        self.record(started);
        Ok(tx)
    }
}

impl PoolGauge for Gauge {
    fn pool_name(&self) -> &'static str {
        self.name
    }

    fn stats(&self) -> PoolStats {
        let size = self.pool.size() as usize;
        let idle = self.pool.num_idle();
        PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections() as usize,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// `&Watched` runs statements as `&PgPool` does (take a connection, run,
/// give it back), with the take going through [`Watched::acquire`]. Under
/// `observe::observed`, a statement's `db_query_duration_seconds` includes
/// that acquire, as it always did with `&PgPool`.
impl<'p> Executor<'p> for &'_ Watched {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        // The rows borrow the connection, so they are produced by a future
        // that owns it and handed over through a one-slot channel (what
        // sqlx's own pool does with a private stream macro): rows stream,
        // nothing is buffered beyond one.
        let pool = self.clone();
        let (mut tx, rx) = futures::channel::mpsc::channel(1);
        let produce = async move {
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut steps = conn.fetch_many(query);
            while let Some(step) = steps.next().await {
                if tx.send(step).await.is_err() {
                    // The caller dropped the stream.
                    return;
                }
            }
        };
        // The receiver ends when `produce` has finished and dropped `tx`;
        // `select` polls both and ends when both have.
        let produce = futures::stream::once(produce).filter_map(|()| std::future::ready(None));
        Box::pin(futures::stream::select(rx, produce))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move { pool.acquire().await?.fetch_optional(query).await })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move { pool.acquire().await?.prepare_with(sql, parameters).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgPoolOptions;

    fn lazy(max: u32) -> PgPool {
        // No server needed: a lazy pool connects on first use only.
        PgPoolOptions::new()
            .max_connections(max)
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a valid URL")
    }

    #[tokio::test]
    async fn a_watched_pool_is_sampled_while_it_lives_and_forgotten_once_dropped() {
        let pool = Watched::new(lazy(7), "test_watched_drop");
        let clone = pool.clone();
        let seen = crate::observe::pool_stats();
        assert_eq!(
            seen.get("test_watched_drop"),
            Some(&PoolStats {
                in_use: 0,
                idle: 0,
                max: 7,
                waiting: 0
            })
        );
        drop(pool);
        assert!(
            crate::observe::pool_stats().contains_key("test_watched_drop"),
            "a clone still holds it"
        );
        drop(clone);
        // Only the registry's `Weak` was left: the gauge, and with it the
        // adapter's pool handle, is gone.
        assert!(!crate::observe::pool_stats().contains_key("test_watched_drop"));
    }
}
