//! The job runner: runs the handlers of background jobs claimed from a
//! [`JobQueue`], on every process that shares the queue.
//!
//! What lives here is the public face (handlers, the kind registry, the
//! runner's settings, [`backoff`], and [`Runner::run_once`], one round of
//! claim/run/settle for tests); the loops themselves are in
//! `jobs/runner.rs`.
//!
//! Shape of a running runner, per process:
//! - one **claim loop per queue**, keeping up to that queue's concurrency
//!   jobs in flight, each as its own tokio task, fed from a bounded
//!   **prefetch buffer** of jobs claimed but not started yet (their leases
//!   are held and renewed like the running ones'). The claim runs beside
//!   the handlers (the loop keeps reaping finished jobs and starting
//!   buffered ones while a claim is out), at most one claim at a time.
//!   It asks for `buffer + concurrency - held` jobs (at most `claim_batch`),
//!   but only once that is at least half of `buffer + concurrency`, or
//!   when it holds nothing at all: claims stay large whatever the
//!   concurrency, and a lone job enqueued into an idle queue (with
//!   [`RunnerHandle::notify`]) starts at once. It claims again as soon as
//!   that holds while claims come back full, and otherwise waits
//!   `idle_poll` (or for a notify).
//!
//!   Why a buffer: before it, a claim asked for the free slots only, so at
//!   concurrency 8 every round trip carried at most 8 jobs and the runner
//!   was bound by claim latency, not by the queue (docs/adr/0006-job-queue.md
//!   has the figures). The rejected alternative, claiming as soon as one
//!   slot frees (a buffer "topped up" job by job), makes claims tiny and
//!   was slower than no buffer at all.
//! - one **finisher** that buffers outcomes and marks finished jobs done with
//!   ONE `complete` call per small batch. A call per job would cap a no-op
//!   job at one query's worth of throughput; batching makes the per-job cost
//!   a fraction of a query.
//! - one **heartbeat** that extends every held lease with one call every
//!   `lease / 3`, and logs jobs whose lease was lost (another worker may be
//!   running them now: delivery is at least once).
//!
//! - on shutdown, buffered jobs are **given back at once** (`release`: no
//!   attempt counted, their place in the claim order kept), while running
//!   ones get `shutdown_grace`.
//!
//! Throughput (`rushhour bench jobs`, release build, 100k no-op jobs, two
//! shared cores; docs/benchmarks.md has the run): with the default buffer,
//! 51k jobs/s on SQLite and 14k/s on PostgreSQL at concurrency 8 (4.6× and
//! 2.9× the runner without a buffer that came before), 84k/s and 26k/s at
//! 64. On PostgreSQL the claim and complete statements, not the runner,
//! are the limit.
//!
//! Failure policy: a handler's [`JobError::Retry`] (or a panic) queues the
//! job again after [`backoff`] until its attempts are used up, then keeps it
//! dead with the last error; [`JobError::RetryAfter`] does the same but no
//! sooner than the delay it names; [`JobError::Fatal`] and unknown kinds
//! go dead at once.
//!
//! Time: the queue's timestamps (leases, `retry_at`) come from the injected
//! [`Clock`], so tests can move them; the runner's own pacing (idle polls,
//! heartbeat interval, shutdown grace) is real tokio time, because it only
//! decides how often to ask, not what is due.

mod runner;

use async_trait::async_trait;
use domain::Clock;
use domain::jobs::{Job, JobQueue, NewJob};
use domain::ports::PortError;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a handler did not finish its job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again later (with backoff) while attempts remain.
    #[error("{0}")]
    Retry(String),
    /// No retry can help: the job goes dead now.
    #[error("{0}")]
    Fatal(String),
    /// Try again, but no sooner than this from now (a dependency said when
    /// it may be back: the upstream's open circuit), while attempts remain.
    /// The backoff applies too; the later of the two wins.
    #[error("{0}")]
    RetryAfter(String, Duration),
}

impl JobError {
    pub fn retry(e: impl fmt::Display) -> Self {
        JobError::Retry(e.to_string())
    }

    pub fn fatal(e: impl fmt::Display) -> Self {
        JobError::Fatal(e.to_string())
    }
}

/// Port errors keep their meaning: an unavailable backend is worth another
/// attempt, bad data or a conflict is not.
impl From<PortError> for JobError {
    fn from(e: PortError) -> Self {
        if e.is_retryable() {
            JobError::Retry(e.to_string())
        } else {
            JobError::Fatal(e.to_string())
        }
    }
}

/// The code that runs jobs of one kind. Delivery is at least once, so
/// handlers must be idempotent (a job can run again after a crash or a lost
/// lease).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), JobError>;
}

/// A handler from a closure taking the job by value (convenient for small
/// handlers and tests).
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn JobHandler>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> JobHandler for FnHandler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        (self.0)(job.clone()).await
    }
}

/// A kind of job: its name (the `kind` column), where it runs, and its
/// defaults for new jobs.
#[derive(Clone)]
pub struct JobKind {
    pub name: &'static str,
    pub queue: &'static str,
    pub max_attempts: u32,
    /// Higher runs first.
    pub priority: i16,
    pub handler: Arc<dyn JobHandler>,
}

impl JobKind {
    /// A kind with 5 attempts and priority 0.
    pub fn new(name: &'static str, queue: &'static str, handler: Arc<dyn JobHandler>) -> Self {
        Self {
            name,
            queue,
            max_attempts: 5,
            priority: 0,
            handler,
        }
    }

    pub fn attempts(mut self, max: u32) -> Self {
        self.max_attempts = max.max(1);
        self
    }

    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }
}

impl fmt::Debug for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobKind")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("max_attempts", &self.max_attempts)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// Every job kind this process knows, by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    kinds: HashMap<&'static str, JobKind>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a kind; a later registration under the same name replaces it.
    pub fn register(&mut self, kind: JobKind) -> &mut Self {
        self.kinds.insert(kind.name, kind);
        self
    }

    pub fn kind(&self, name: &str) -> Option<&JobKind> {
        self.kinds.get(name)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &JobKind> {
        self.kinds.values()
    }

    /// A job of kind `name`, due now, with the kind's queue, attempts and
    /// priority. An unregistered name gets the `default` queue and
    /// `NewJob`'s defaults; the runner then keeps it dead as "unknown job
    /// kind", which makes the mistake visible to operators rather than
    /// losing the job.
    pub fn new_job(&self, name: &str, payload: serde_json::Value, now: i64) -> NewJob {
        match self.kind(name) {
            Some(k) => NewJob::new(name, k.queue, payload, now)
                .attempts(k.max_attempts)
                .priority(k.priority),
            None => {
                tracing::warn!(kind = name, "enqueuing a job of an unregistered kind");
                NewJob::new(name, "default", payload, now)
            }
        }
    }
}

/// How a runner claims, runs and finishes jobs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Names this process in leases; unique per process.
    pub worker_id: String,
    /// How long a claim holds a job before another worker may take it
    /// (extended every `lease / 3` while the job runs).
    pub lease: Duration,
    /// Jobs in flight per queue. The runner serves exactly these queues
    /// (a queue left out, or set to 0, is not run by this process).
    pub concurrency: HashMap<String, usize>,
    /// Most jobs claimed in one call.
    pub claim_batch: usize,
    /// Prefetch buffer per queue: jobs claimed ahead of free slots and held
    /// (leased) until a slot frees. A queue not listed gets
    /// [`default_prefetch`]; 0 turns the buffer off (claims then wait for
    /// half the slots to free). A job in a buffer is not available to other
    /// processes, so queues of long jobs (syncs) are better left small.
    pub prefetch: HashMap<String, usize>,
    /// Wait between claims while a queue has nothing due.
    pub idle_poll: Duration,
    /// First retry delay ([`backoff`]); doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// On shutdown, how long running jobs may take to finish before they are
    /// released back to the queue.
    pub shutdown_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        let concurrency = [
            ("default", 64),
            ("mail", 4),
            ("sync", 1),
            ("maintenance", 1),
            ("webhooks", 16),
        ]
        .into_iter()
        .map(|(q, n)| (q.to_string(), n))
        .collect();
        Self {
            worker_id: default_worker_id(),
            lease: Duration::from_secs(30),
            concurrency,
            claim_batch: 256,
            // Long, rare jobs: holding them in one process's buffer would
            // keep them from an idle process in scale mode.
            prefetch: [("sync", 0), ("maintenance", 0)]
                .into_iter()
                .map(|(q, n)| (q.to_string(), n))
                .collect(),
            idle_poll: Duration::from_millis(200),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl RunnerConfig {
    /// The prefetch buffer of `queue` (see `prefetch`).
    pub fn prefetch_of(&self, queue: &str) -> usize {
        let concurrency = self.concurrency.get(queue).copied().unwrap_or(0);
        match self.prefetch.get(queue) {
            Some(n) => *n,
            None => default_prefetch(concurrency, self.claim_batch),
        }
    }
}

/// The buffer a queue gets unless configured: twice its concurrency, at
/// least 64, and no more than one claim's worth (`claim_batch`). Twice the
/// concurrency lets a claim of half the buffer be out while the slots still
/// have work; 64 keeps claims large at low concurrency, where the round
/// trip per job cost most.
pub fn default_prefetch(concurrency: usize, claim_batch: usize) -> usize {
    (2 * concurrency).max(64).min(claim_batch.max(1))
}

/// What a runner has asked of its queue since it started: the figures
/// `rushhour bench jobs` reports beside the rate (how many jobs a claim
/// carried is what the prefetch buffer is for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// `claim` calls, and the jobs they returned.
    pub claims: u64,
    pub claimed: u64,
    /// `complete` calls, and the jobs they marked done.
    pub completes: u64,
    pub completed: u64,
    /// `heartbeat` calls.
    pub heartbeats: u64,
    /// Jobs given back unrun (`release`) at shutdown: buffered or running.
    pub released: u64,
}

impl RunnerStats {
    /// Jobs per claim call (0 before the first claim).
    pub fn jobs_per_claim(&self) -> f64 {
        if self.claims == 0 {
            0.0
        } else {
            self.claimed as f64 / self.claims as f64
        }
    }
}

/// `worker-<pid>-<random>`: the pid helps operators find the process, the
/// random part keeps two runners in one process (tests) or a reused pid
/// (containers are often pid 1) apart.
pub fn default_worker_id() -> String {
    format!("worker-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// The delay before retry number `attempt` (1 = after the first failure):
/// `base * 2^(attempt-1)`, capped at `max`, with **equal jitter**: half of
/// that step is kept and the other half is scaled by `jitter` (a uniform
/// draw in `0..=1`; clamped). So the delay lies in `[step/2, step]`: it still
/// grows with every attempt, unlike full jitter (`[0, step]`), yet jobs that
/// failed together (an upstream outage) spread out instead of retrying in
/// lockstep.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let step = base.saturating_mul(1u32 << doublings).min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = step / 2;
    // Through f64 seconds without `mul_f64`, which panics where rounding
    // pushes a huge duration past `Duration::MAX`.
    let extra = Duration::try_from_secs_f64(half.as_secs_f64() * jitter).map_or(half, |d| d.min(half));
    half + extra
}

/// Talks to a running runner.
#[derive(Clone)]
pub struct RunnerHandle {
    worker_id: String,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
    shared: Arc<runner::Shared>,
}

impl fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("worker_id", &self.worker_id)
            .field("queues", &self.wakers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RunnerHandle {
    /// Wake every idle claim loop now (call after enqueueing locally, so a
    /// new job does not wait for the next idle poll).
    pub fn notify(&self) {
        for w in self.wakers.values() {
            w.notify_one();
        }
    }

    /// Wake the claim loop of one queue.
    pub fn notify_queue(&self, queue: &str) {
        if let Some(w) = self.wakers.get(queue) {
            w.notify_one();
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// What the runner has asked of its queue so far.
    pub fn stats(&self) -> RunnerStats {
        self.shared.stats()
    }
}

/// Start the runner on `tracker`: a claim loop per queue in
/// `config.concurrency`, the finisher and the heartbeat. When `shutdown` is
/// cancelled it stops claiming at once, gives buffered jobs back to the
/// queue at once, gives running jobs up to `shutdown_grace`, flushes
/// finished ones and releases the rest to the queue (their tasks are
/// aborted); the tracker's tasks end after that.
pub fn spawn_runner(
    queue: Arc<dyn JobQueue>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> RunnerHandle {
    for kind in registry.kinds() {
        if config.concurrency.get(kind.queue).copied().unwrap_or(0) == 0 {
            tracing::warn!(
                kind = kind.name,
                queue = kind.queue,
                "this process runs no claim loop for the queue of a registered job kind"
            );
        }
    }
    let wakers: HashMap<String, Arc<Notify>> = config
        .concurrency
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(q, _)| (q.clone(), Arc::new(Notify::new())))
        .collect();
    let wakers = Arc::new(wakers);
    let shared = runner::Shared::new(queue, registry, clock, config);
    let handle = RunnerHandle {
        worker_id: shared.config.worker_id.clone(),
        wakers: wakers.clone(),
        shared: shared.clone(),
    };
    runner::spawn(shared, wakers, tracker, shutdown);
    handle
}

/// The runner as a single step, for tests and one-shot tools: what the
/// claim loops do, one round at a time, with no timers (see
/// [`Runner::run_once`]). Production runs [`spawn_runner`].
pub struct Runner {
    shared: Arc<runner::Shared>,
}

impl Runner {
    pub fn new(queue: Arc<dyn JobQueue>, registry: Arc<Registry>, clock: Arc<dyn Clock>, config: RunnerConfig) -> Self {
        Self {
            shared: runner::Shared::new(queue, registry, clock, config),
        }
    }

    /// One round: per served queue, claim the jobs due at the clock's `now`
    /// (up to the queue's concurrency and `claim_batch`), run them to their
    /// end and record their outcomes (done, retry with [`backoff`], dead),
    /// exactly as the loops would. Returns how many jobs ran; 0 means
    /// nothing was due.
    pub async fn run_once(&self) -> Result<usize, PortError> {
        runner::run_once(&self.shared).await
    }

    /// What the rounds have asked of the queue so far.
    pub fn stats(&self) -> RunnerStats {
        self.shared.stats()
    }
}

/// Poll the queue's counts every `interval` and publish them as the
/// `jobs{queue,state}` gauges (`queued` includes `scheduled`, the part not
/// yet due), until `shutdown`.
pub fn spawn_queue_gauges(
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            match queue.counts(clock.now_ms()).await {
                Ok(counts) => {
                    for c in counts {
                        for (state, n) in [
                            ("queued", c.queued),
                            ("scheduled", c.scheduled),
                            ("running", c.running),
                            ("done", c.done),
                            ("dead", c.dead),
                        ] {
                            metrics::gauge!(names::JOBS, "queue" => c.queue.clone(), "state" => state).set(n as f64);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read job counts for the queue gauges"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_doubles_per_attempt_up_to_the_cap() {
        let full: Vec<u64> = (1..=14).map(|a| backoff(a, S, H, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]);
        // Attempt 0 is treated as the first; huge attempts do not overflow.
        assert_eq!(backoff(0, S, H, 1.0), S);
        assert_eq!(backoff(u32::MAX, S, H, 1.0), H);
        assert!(backoff(40, Duration::MAX, Duration::MAX, 0.5) >= Duration::MAX / 2);
    }

    #[test]
    fn equal_jitter_keeps_half_the_step() {
        for attempt in 1..20 {
            let step = backoff(attempt, S, H, 1.0);
            assert_eq!(backoff(attempt, S, H, 0.0), step / 2);
            for j in [0.1, 0.25, 0.5, 0.9, 0.999] {
                let d = backoff(attempt, S, H, j);
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {attempt} jitter {j}: {d:?} not in [{:?}, {step:?}]",
                    step / 2
                );
            }
            // Random draws stay in range too, and the lower bound grows.
            let d = backoff(attempt, S, H, rand::random());
            assert!(d >= step / 2 && d <= step);
        }
        assert!(backoff(5, S, H, 0.0) > backoff(4, S, H, 1.0) / 2);
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(backoff(3, S, H, -1.0), backoff(3, S, H, 0.0));
        assert_eq!(backoff(3, S, H, 7.0), backoff(3, S, H, 1.0));
        assert_eq!(backoff(3, S, H, f64::NAN), backoff(3, S, H, 0.0));
    }

    #[test]
    fn a_cap_below_the_base_wins() {
        assert_eq!(
            backoff(1, S, Duration::from_millis(300), 1.0),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn new_jobs_take_their_kind_defaults() {
        let mut r = Registry::new();
        r.register(
            JobKind::new("mail.receipt", "mail", handler_fn(|_| async { Ok(()) }))
                .attempts(8)
                .priority(3),
        );
        let j = r.new_job("mail.receipt", serde_json::json!({"order": 1}), 42);
        assert_eq!(
            (j.queue.as_str(), j.max_attempts, j.priority, j.run_at),
            ("mail", 8, 3, 42)
        );
        let unknown = r.new_job("nope", serde_json::Value::Null, 42);
        assert_eq!(unknown.queue, "default");
    }

    #[test]
    fn port_errors_map_to_retry_or_fatal() {
        assert!(matches!(
            JobError::from(PortError::Unavailable("x".into())),
            JobError::Retry(_)
        ));
        assert!(matches!(
            JobError::from(PortError::Conflict("x".into())),
            JobError::Fatal(_)
        ));
    }
}
