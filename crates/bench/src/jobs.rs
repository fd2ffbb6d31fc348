//! `rushhour bench jobs`: how fast the job runner burns down a backlog of
//! no-op jobs, on the embedded (SQLite) or the scale (PostgreSQL) queue.
//!
//! It exists to measure the job-queue goal of docs/adr/0006-job-queue.md
//! (at least 2× Sidekiq on the same machine); scripts/bench-jobs.sh runs it
//! side by side with the Sidekiq and apalis peers in one go.
//!
//! One run: a fresh queue (a temp dir for SQLite, a throwaway schema for
//! PostgreSQL, dropped at the end), N `noop` jobs enqueued through
//! `JobQueue::enqueue` in chunks of 1000 (timed on its own: the enqueue
//! rate), then `worker::spawn_runner` with one no-op handler on the
//! `default` queue (`--prefetch` sets its buffer). The drain is timed from the runner's start until the
//! queue's `counts()` shows nothing queued or running. Until every handler
//! ran, the end is watched through an in-process counter (polled every
//! 20 ms) rather than `counts()`, whose `GROUP BY` over the whole table would
//! otherwise compete for the CPU it measures; after that, `counts()` is
//! polled every 20 ms, so the last completions are committed before the
//! clock stops. Besides the rate it reports the queue calls the runner made
//! (`worker::RunnerStats`): claims and jobs per claim, completes, heartbeats.

use anyhow::Context;
use domain::Clock;
use domain::jobs::{JobQueue, QueueCounts};
use indicatif::{ProgressBar, ProgressStyle};
use queue::{PgQueue, PgQueueOptions, SqliteQueue, SqliteQueueOptions, Synchronous};
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::{JobError, JobKind, Registry, RunnerConfig, TokioClock, handler_fn};

const QUEUE: &str = "default";
const KIND: &str = domain::jobs::NOOP;
const ENQUEUE_CHUNK: usize = 1000;
const POLL: Duration = Duration::from_millis(20);
/// Give up when the backlog has not moved for this long.
const STALL: Duration = Duration::from_secs(60);

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// fsync every commit (the embedded queue's default).
    Full,
    /// fsync at checkpoints only.
    Normal,
}

#[derive(clap::Args, Debug, Clone)]
pub struct JobsBenchArgs {
    /// Queue backend to measure.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// PostgreSQL to use with `--backend postgres` (a throwaway schema is
    /// created and dropped).
    #[arg(
        long,
        env = "RUSHHOUR_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres_url: String,
    /// PostgreSQL pool size.
    #[arg(long, default_value_t = 16)]
    pub pg_connections: u32,
    /// SQLite `synchronous` for the queue file.
    #[arg(long, value_enum, default_value = "full")]
    pub sqlite_sync: SqliteSync,
    /// No-op jobs in the backlog.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Jobs in flight on the `default` queue.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Most jobs claimed per call [default: the runner's default].
    #[arg(long)]
    pub claim_batch: Option<usize>,
    /// Prefetch buffer of the `default` queue: jobs claimed ahead of free
    /// slots; 0 turns it off [default: `worker::default_prefetch`].
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Print one JSON line instead of text (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct JobsReport {
    pub peer: &'static str,
    pub backend: &'static str,
    pub jobs: usize,
    pub concurrency: usize,
    pub claim_batch: usize,
    /// The `default` queue's prefetch buffer (0: off).
    pub prefetch: usize,
    /// Queue calls the runner made during the drain: claims (and jobs per
    /// claim), completes, heartbeats.
    pub claims: u64,
    pub jobs_per_claim: f64,
    pub completes: u64,
    pub heartbeats: u64,
    /// Runner start until `counts()` showed 0 queued + 0 running.
    pub seconds: f64,
    pub jobs_per_sec: f64,
    /// Runner start until the last handler returned.
    pub handlers_seconds: f64,
    pub enqueue_seconds: f64,
    pub enqueue_per_sec: f64,
    pub done: u64,
    pub dead: u64,
    /// SQLite only: `full` or `normal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_sync: Option<&'static str>,
}

pub async fn run(args: &JobsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs > 0, "--jobs must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    if args.claim_batch == Some(0) {
        anyhow::bail!("--claim-batch must be at least 1");
    }
    let report = tokio::select! {
        r = measure(args) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

async fn measure(args: &JobsBenchArgs) -> anyhow::Result<JobsReport> {
    match args.backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().context("creating a temp dir for the queue")?;
            let path = dir.path().join("jobs.db");
            let synchronous = match args.sqlite_sync {
                SqliteSync::Full => Synchronous::Full,
                SqliteSync::Normal => Synchronous::Normal,
            };
            let opts = SqliteQueueOptions {
                synchronous,
                ..SqliteQueueOptions::default()
            };
            let q = tokio::task::spawn_blocking(move || SqliteQueue::open(&path, opts))
                .await?
                .context("opening the SQLite queue")?;
            let mut report = drain(Arc::new(q), args).await?;
            report.sqlite_sync = Some(match args.sqlite_sync {
                SqliteSync::Full => "full",
                SqliteSync::Normal => "normal",
            });
            Ok(report)
        }
        Backend::Postgres => {
            let schema = format!("bench_jobs_{}_{}", std::process::id(), domain::ports::system_now_ms());
            let opts = PgQueueOptions {
                max_connections: args.pg_connections,
                schema: Some(schema.clone()),
                ..PgQueueOptions::default()
            };
            // The schema is dropped whatever happened in between, Ctrl-C
            // aside (it drops this future before the cleanup runs).
            let res = async {
                let q = PgQueue::connect(&args.postgres_url, opts)
                    .await
                    .with_context(|| format!("connecting to {}", args.postgres_url))?;
                q.migrate().await.context("migrating the PostgreSQL queue")?;
                drain(Arc::new(q), args).await
            }
            .await;
            crate::baseline_pg::drop_schema(&args.postgres_url, &schema)
                .await
                .with_context(|| format!("dropping schema {schema}"))?;
            res
        }
    }
}

async fn drain(q: Arc<dyn JobQueue>, args: &JobsBenchArgs) -> anyhow::Result<JobsReport> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let ran = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    let counter = ran.clone();
    // The job does nothing; the counter only tells `watch` when to look.
    let noop = handler_fn(move |_job| {
        counter.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok::<(), JobError>(()))
    });
    registry.register(JobKind::new(KIND, QUEUE, noop).attempts(1));
    let registry = Arc::new(registry);

    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(args.jobs as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:8} [{bar:30}] {pos}/{len} {per_sec}")
                .expect("static template is valid")
                .progress_chars("=> "),
        );
        bar
    });

    // Enqueue.
    if let Some(b) = &bar {
        b.set_prefix("enqueue");
    }
    let started = Instant::now();
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(ENQUEUE_CHUNK);
        let now = clock.now_ms();
        let batch: Vec<_> = (0..n)
            .map(|_| registry.new_job(KIND, serde_json::json!({}), now))
            .collect();
        let answers = q.enqueue(&batch, now).await.context("enqueueing")?;
        anyhow::ensure!(answers.len() == n, "enqueue answered {} of {n} jobs", answers.len());
        left -= n;
        if let Some(b) = &bar {
            b.set_position((args.jobs - left) as u64);
        }
    }
    let enqueue_seconds = started.elapsed().as_secs_f64();
    let before = default_counts(&*q, clock.now_ms()).await?;
    anyhow::ensure!(
        before.queued == args.jobs as u64 && before.running == 0,
        "expected {} queued jobs before the drain, found {before:?}",
        args.jobs
    );

    // Drain.
    let defaults = RunnerConfig::default();
    let mut config = RunnerConfig {
        concurrency: [(QUEUE.to_string(), args.concurrency)].into_iter().collect(),
        claim_batch: args.claim_batch.unwrap_or(defaults.claim_batch),
        ..defaults
    };
    if let Some(n) = args.prefetch {
        config.prefetch.insert(QUEUE.to_string(), n);
    }
    let claim_batch = config.claim_batch;
    let prefetch = config.prefetch_of(QUEUE);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    if let Some(b) = &bar {
        b.set_prefix("drain");
        b.set_position(0);
        b.reset_eta();
    }
    let started = Instant::now();
    let runner = worker::spawn_runner(q.clone(), registry, clock.clone(), config, &tracker, shutdown.clone());
    let outcome = watch(&*q, &*clock, &ran, args.jobs as u64, started, bar.as_ref()).await;
    let stats = runner.stats();
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let (handlers, seconds, after) = outcome?;

    Ok(JobsReport {
        peer: "rushhour",
        backend: args.backend.name(),
        jobs: args.jobs,
        concurrency: args.concurrency,
        claim_batch,
        prefetch,
        claims: stats.claims,
        jobs_per_claim: round1(stats.jobs_per_claim()),
        completes: stats.completes,
        heartbeats: stats.heartbeats,
        seconds: round3(seconds),
        jobs_per_sec: round1(args.jobs as f64 / seconds),
        handlers_seconds: round3(handlers),
        enqueue_seconds: round3(enqueue_seconds),
        enqueue_per_sec: round1(args.jobs as f64 / enqueue_seconds),
        done: after.done,
        dead: after.dead,
        sqlite_sync: None,
    })
}

/// Waits for every handler to run (the counter), then for `counts()` to
/// show nothing queued or running. Returns both times since `started` and
/// the final counts.
async fn watch(
    q: &dyn JobQueue,
    clock: &dyn Clock,
    ran: &AtomicU64,
    total: u64,
    started: Instant,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<(f64, f64, QueueCounts)> {
    let mut last = (0, Instant::now());
    loop {
        let n = ran.load(Ordering::Relaxed);
        if let Some(b) = bar {
            b.set_position(n);
        }
        if n >= total {
            break;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > STALL {
            let c = default_counts(q, clock.now_ms()).await?;
            anyhow::bail!("no progress for {STALL:?} after {n} of {total} jobs: {c:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let handlers = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + STALL;
    loop {
        let c = default_counts(q, clock.now_ms()).await?;
        if c.queued == 0 && c.running == 0 {
            return Ok((handlers, started.elapsed().as_secs_f64(), c));
        }
        if Instant::now() > deadline {
            anyhow::bail!("every handler ran but the queue still shows {c:?} after {STALL:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn default_counts(q: &dyn JobQueue, now: i64) -> anyhow::Result<QueueCounts> {
    let counts = q.counts(now).await.context("reading queue counts")?;
    Ok(counts.into_iter().find(|c| c.queue == QUEUE).unwrap_or_default())
}

fn render(r: &JobsReport) -> String {
    let sync = r.sqlite_sync.map(|s| format!(", synchronous={s}")).unwrap_or_default();
    format!(
        "rushhour jobs on {}{sync}: {} no-op jobs, concurrency {}, claim batch {}, prefetch {}\n\
         \x20 enqueue  {:>9.1} jobs/s  ({:.2} s, chunks of {ENQUEUE_CHUNK})\n\
         \x20 drain    {:>9.1} jobs/s  ({:.2} s; last handler at {:.2} s)\n\
         \x20 calls    {} claims ({:.1} jobs each), {} completes, {} heartbeats\n\
         \x20 result   {} done, {} dead\n",
        r.backend,
        r.jobs,
        r.concurrency,
        r.claim_batch,
        r.prefetch,
        r.enqueue_per_sec,
        r.enqueue_seconds,
        r.jobs_per_sec,
        r.seconds,
        r.handlers_seconds,
        r.claims,
        r.jobs_per_claim,
        r.completes,
        r.heartbeats,
        r.done,
        r.dead,
    )
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
