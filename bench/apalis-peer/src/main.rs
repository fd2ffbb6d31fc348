//! apalis 1.0 peer for `rushhour bench jobs` (docs/adr/0006-job-queue.md):
//! burn down N no-op jobs on apalis' SQLite or PostgreSQL backend and print
//! one JSON line in the shape the other peers print.
//!
//!   apalis-peer --backend sqlite|postgres [--jobs N] [--concurrency C]
//!               [--batch-size B] [--postgres-url URL]
//!
//! Enqueue is timed apart (`push_bulk` in chunks of 1000). The drain runs
//! one worker with `concurrency(C)` and the storage's `batch_size(B)` and is
//! timed from the worker's start until every job's row says `Done` (apalis
//! acknowledges in batches after the handler returns, so the handlers
//! finishing is not the end: both times are reported).
//!
//! `--max-seconds S` (default 600) caps the drain: a run that has not
//! finished by then stops and reports the jobs its handlers ran so far
//! (`"completed": false`, `jobs_per_sec` = handled / S).
//!
//! SQLite: a fresh file in a temp dir, WAL, `synchronous=NORMAL` on every
//! connection (what rushhour's embedded queue uses). PostgreSQL: apalis keeps
//! its tables in a fixed `apalis` schema, so the peer creates a throwaway
//! database next to the one in the URL and drops it at the end.

use std::{
    str::FromStr,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};

static HANDLED: AtomicUsize = AtomicUsize::new(0);

async fn noop(_job: u64) -> Result<(), BoxDynError> {
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

struct Args {
    backend: String,
    jobs: usize,
    concurrency: usize,
    batch_size: usize,
    postgres_url: String,
    max_seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backend: "sqlite".into(),
        jobs: 100_000,
        concurrency: 64,
        batch_size: 10,
        postgres_url: std::env::var("RUSHHOUR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        max_seconds: 600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => a.backend = val()?,
            "--jobs" => a.jobs = val()?.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--concurrency" => a.concurrency = val()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--batch-size" => a.batch_size = val()?.parse().map_err(|e| format!("--batch-size: {e}"))?,
            "--postgres-url" => a.postgres_url = val()?,
            "--max-seconds" => a.max_seconds = val()?.parse().map_err(|e| format!("--max-seconds: {e}"))?,
            "--json" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

struct Measured {
    enqueue: Duration,
    handlers: Duration,
    drained: Duration,
    /// Handlers run when the drain ended (all of them unless capped).
    handled: usize,
    completed: bool,
}

struct Drain {
    handlers: Duration,
    drained: Duration,
    handled: usize,
    completed: bool,
}

/// Polls the handler counter every 20 ms, then `left()` every 20 ms once
/// every handler ran, until it reports 0 or `cap` has passed.
async fn wait_drained<F, Fut>(jobs: usize, start: Instant, cap: Duration, left: F) -> Result<Drain, BoxDynError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<i64, BoxDynError>>,
{
    let capped = |handlers| Drain {
        handlers,
        drained: start.elapsed(),
        handled: HANDLED.load(Ordering::Relaxed),
        completed: false,
    };
    while HANDLED.load(Ordering::Relaxed) < jobs {
        if start.elapsed() > cap {
            return Ok(capped(start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handlers = start.elapsed();
    loop {
        let n = left().await?;
        if n == 0 {
            return Ok(Drain {
                handlers,
                drained: start.elapsed(),
                handled: jobs,
                completed: true,
            });
        }
        if start.elapsed() > cap {
            return Ok(capped(handlers));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_sqlite(a: &Args) -> Result<Measured, BoxDynError> {
    let dir = std::env::temp_dir().join(format!("apalis-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("jobs.db");
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let pool: SqlitePool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await?;
    SqliteStorage::setup(&pool).await?;
    let config = apalis_sqlite::Config::default().queue("noop").batch_size(a.batch_size);
    let mut storage = SqliteStorage::<u64>::new(&pool).with_config(config);

    let t = Instant::now();
    for chunk in (0..a.jobs as u64).collect::<Vec<_>>().chunks(1000) {
        storage.push_bulk(chunk.to_vec()).await?;
    }
    let enqueue = t.elapsed();

    let worker = WorkerBuilder::new("apalis-peer")
        .backend(storage)
        .concurrency(a.concurrency)
        .build(noop);
    let start = Instant::now();
    let handle = tokio::spawn(worker.run());
    let left = || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM Jobs WHERE status <> 'Done'")
                .fetch_one(&pool)
                .await?;
            Ok::<_, BoxDynError>(n)
        }
    };
    let res = wait_drained(a.jobs, start, Duration::from_secs(a.max_seconds), left).await;
    handle.abort();
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    let d = res?;
    Ok(Measured {
        enqueue,
        handlers: d.handlers,
        drained: d.drained,
        handled: d.handled,
        completed: d.completed,
    })
}

async fn run_postgres(a: &Args) -> Result<Measured, BoxDynError> {
    let admin = PgPool::connect(&a.postgres_url).await?;
    let db = format!("apalis_peer_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await?;
    let url = match a.postgres_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => return Err("--postgres-url needs a database path".into()),
    };
    let res = async {
        let pool = apalis_postgres::PgPool::connect_with(apalis_postgres::PgConnectOptions::from_str(&url)?).await?;
        PostgresStorage::setup(&pool).await?;
        let config = apalis_postgres::Config::default()
            .queue("noop")
            .batch_size(a.batch_size);
        let mut storage = PostgresStorage::<u64>::new(&pool).with_config(config);

        let t = Instant::now();
        for chunk in (0..a.jobs as u64).collect::<Vec<_>>().chunks(1000) {
            storage.push_bulk(chunk.to_vec()).await?;
        }
        let enqueue = t.elapsed();
        // apalis claims jobs with `run_at < now()`: let the last ones come due.
        tokio::time::sleep(Duration::from_millis(20)).await;

        let worker = WorkerBuilder::new("apalis-peer")
            .backend(storage)
            .concurrency(a.concurrency)
            .build(noop);
        let start = Instant::now();
        let handle = tokio::spawn(worker.run());
        let left = || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done'")
                    .fetch_one(&pool)
                    .await?;
                Ok::<_, BoxDynError>(n)
            }
        };
        let res = wait_drained(a.jobs, start, Duration::from_secs(a.max_seconds), left).await;
        handle.abort();
        pool.close().await;
        let d = res?;
        Ok::<_, BoxDynError>(Measured {
            enqueue,
            handlers: d.handlers,
            drained: d.drained,
            handled: d.handled,
            completed: d.completed,
        })
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    res
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let a = parse_args()?;
    let m = match a.backend.as_str() {
        "sqlite" => run_sqlite(&a).await?,
        "postgres" => run_postgres(&a).await?,
        other => return Err(format!("unknown backend {other}").into()),
    };
    let secs = m.drained.as_secs_f64();
    let line = serde_json::json!({
        "peer": "apalis",
        "version": "1.0.0",
        "backend": a.backend,
        "jobs": a.jobs,
        "concurrency": a.concurrency,
        "batch_size": a.batch_size,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "jobs_per_sec": (m.handled as f64 / secs * 10.0).round() / 10.0,
        "completed": m.completed,
        "handled": m.handled,
        "handlers_seconds": (m.handlers.as_secs_f64() * 1000.0).round() / 1000.0,
        "enqueue_per_sec": (a.jobs as f64 / m.enqueue.as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{line}");
    Ok(())
}
