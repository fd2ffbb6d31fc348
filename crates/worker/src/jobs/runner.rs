//! The runner's loops: per-queue claim loops, the finisher that batches
//! outcomes into few queue calls, and the heartbeat. `jobs.rs` documents the
//! design; this file is its mechanics.
//!
//! Bookkeeping: each claim loop owns its prefetch buffer (a `VecDeque` of
//! claimed jobs not started yet) and its running tasks (a `JoinSet`, so a
//! handler's panic comes back through the task's join result, and shutdown
//! can abort what is left). The jobs this process holds a lease on —
//! buffered, running, or finished and waiting for the finisher — are in one
//! shared map that the heartbeat reads; an entry leaves it once the queue
//! has been told the outcome (or the job was given back).
//!
//! A claim is a boxed future the loop polls in its `select!` beside the
//! running tasks, rather than a spawned task: the loop owns the buffer, so
//! the claimed jobs land there without a channel, and on shutdown the loop
//! awaits the claim that is out (dropping it could leave its jobs leased
//! to nobody until their leases ran out, costing them an attempt).

use super::{JobError, Registry, RunnerConfig, RunnerStats, backoff};
use domain::Clock;
use domain::jobs::{Job, JobId, JobQueue};
use domain::ports::PortResult;
use futures::StreamExt;
use metrics::{Counter, Gauge, Histogram};
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use telemetry::names;
use tokio::sync::{Notify, mpsc};
use tokio::task::{Id as TaskId, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The finisher flushes once this many outcomes are buffered…
const FLUSH_AT: usize = 256;
/// …or this long after the first one arrived, whichever comes first.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Bounded, so a slow queue backend slows the claim loops down instead of
/// buffering outcomes without limit.
const FINISH_CHANNEL: usize = 4 * FLUSH_AT;
/// `fail` is one call per job; this many run at once during a flush.
const FAIL_CONCURRENCY: usize = 8;
/// Attempts at one `complete`/`fail`/`release` call before giving up (the
/// job's lease then runs out and it runs again elsewhere: at least once).
const CALL_ATTEMPTS: u32 = 3;
/// Delay after a failed claim, doubling up to `CLAIM_ERROR_MAX`.
const CLAIM_ERROR_BASE: Duration = Duration::from_millis(100);
const CLAIM_ERROR_MAX: Duration = Duration::from_secs(5);

/// Where a held job stands, for the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    /// Claimed into the prefetch buffer, not started; its lease is extended.
    Buffered,
    /// Running; its lease is extended.
    Held,
    /// Finished or being released; still extended until the queue has the
    /// outcome, but a loss is no longer worth reporting.
    Settling,
    /// Another worker may have it now; not extended, outcome dropped.
    Lost,
}

pub(super) struct Shared {
    queue: Arc<dyn JobQueue>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    pub(super) config: RunnerConfig,
    leases: Mutex<HashMap<JobId, Lease>>,
    stats: Stats,
}

/// `RunnerStats` as counters the loops bump (relaxed: they are figures,
/// not synchronisation).
#[derive(Default)]
struct Stats {
    claims: AtomicU64,
    claimed: AtomicU64,
    completes: AtomicU64,
    completed: AtomicU64,
    heartbeats: AtomicU64,
    released: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Shared {
    fn leases(&self) -> MutexGuard<'_, HashMap<JobId, Lease>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single inserts and removes), so a poisoned lock is still usable.
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stats(&self) -> RunnerStats {
        let s = &self.stats;
        RunnerStats {
            claims: s.claims.load(Ordering::Relaxed),
            claimed: s.claimed.load(Ordering::Relaxed),
            completes: s.completes.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            heartbeats: s.heartbeats.load(Ordering::Relaxed),
            released: s.released.load(Ordering::Relaxed),
        }
    }

    /// One `claim` call, counted.
    async fn claim(self: Arc<Self>, queue: String, max: usize) -> PortResult<Vec<Job>> {
        let cfg = &self.config;
        let now = self.clock.now_ms();
        let jobs = self.queue.claim(&queue, &cfg.worker_id, max, cfg.lease, now).await?;
        Stats::add(&self.stats.claims, 1);
        Stats::add(&self.stats.claimed, jobs.len());
        Ok(jobs)
    }

    /// Give jobs back unrun (`release`), with retries, then forget their
    /// leases whatever the answer (a failed release leaves them to their
    /// lease's end: at least once).
    async fn release(&self, queue: &str, ids: &[JobId], what: &str) {
        if ids.is_empty() {
            return;
        }
        {
            let mut leases = self.leases();
            for id in ids {
                if let Some(state) = leases.get_mut(id) {
                    *state = Lease::Settling;
                }
            }
        }
        let worker = &self.config.worker_id;
        let result = with_retries("release", || self.queue.release(ids, worker, self.clock.now_ms())).await;
        match result {
            Ok(()) => {
                Stats::add(&self.stats.released, ids.len());
                tracing::info!(queue = %queue, jobs = ids.len(), "gave back {what} at shutdown");
            }
            Err(e) => {
                tracing::error!(queue = %queue, jobs = ?ids, error = %e, "cannot give back {what} at shutdown; they run again once their leases expire")
            }
        }
        let mut leases = self.leases();
        for id in ids {
            leases.remove(id);
        }
    }
}

/// What the finisher tells the queue about one job.
#[derive(Debug)]
enum Finish {
    Done(JobId),
    Fail {
        id: JobId,
        error: String,
        retry_at: Option<i64>,
    },
}

impl Shared {
    pub(super) fn new(
        queue: Arc<dyn JobQueue>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
    ) -> Arc<Self> {
        Arc::new(Shared {
            queue,
            registry,
            clock,
            config,
            leases: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        })
    }
}

/// One round without the loops: per served queue (in name order), claim
/// what is due at the clock's `now` (up to the queue's concurrency and
/// `claim_batch`), run those jobs concurrently to their end, and settle
/// them through the same outcome and flush code as the loops. No timers
/// and no heartbeat: a round lasts as long as its slowest handler.
pub(super) async fn run_once(shared: &Arc<Shared>) -> PortResult<usize> {
    let cfg = &shared.config;
    let mut queues: Vec<(&String, usize)> = cfg
        .concurrency
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(q, n)| (q, *n))
        .collect();
    queues.sort();
    let mut ran = 0;
    for (queue, concurrency) in queues {
        let want = concurrency.min(cfg.claim_batch.max(1));
        let jobs = shared.clone().claim(queue.clone(), want).await?;
        if jobs.is_empty() {
            continue;
        }
        ran += jobs.len();
        // Room for every outcome, so settling never waits on a finisher.
        let (tx, mut rx) = mpsc::channel(jobs.len());
        let mut round = ClaimLoop::new(shared.clone(), queue.clone(), concurrency, Arc::new(Notify::new()), tx);
        round.hold(jobs);
        round.fill().await;
        while let Some(r) = round.tasks.join_next_with_id().await {
            round.reap(r).await;
        }
        drop(round);
        let mut batch = Vec::new();
        while let Ok(f) = rx.try_recv() {
            batch.push(f);
        }
        flush(shared, &mut batch).await;
    }
    Ok(ran)
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    wakers: Arc<HashMap<String, Arc<Notify>>>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let tasks = tracker.clone();
    tracker.spawn(async move {
        let worker = shared.config.worker_id.clone();
        tracing::info!(worker = %worker, queues = ?shared.config.concurrency, "job runner started");
        let (tx, rx) = mpsc::channel(FINISH_CHANNEL);
        let finisher = tasks.spawn(finisher(shared.clone(), rx));
        let stop_heartbeat = CancellationToken::new();
        let heartbeat = tasks.spawn(heartbeat(shared.clone(), stop_heartbeat.clone()));
        let loops: Vec<_> = wakers
            .iter()
            .map(|(queue, waker)| {
                let concurrency = shared.config.concurrency.get(queue).copied().unwrap_or(0);
                let l = ClaimLoop::new(shared.clone(), queue.clone(), concurrency, waker.clone(), tx.clone());
                tasks.spawn(l.run(shutdown.clone()))
            })
            .collect();
        drop(tx);
        for l in loops {
            if let Err(e) = l.await {
                tracing::error!(error = %e, "a job claim loop crashed");
            }
        }
        // Every loop is done, so every sender is gone: the finisher flushes
        // what is left and ends. Leases matter until then.
        if let Err(e) = finisher.await {
            tracing::error!(error = %e, "the job finisher crashed");
        }
        stop_heartbeat.cancel();
        let _ = heartbeat.await;
        tracing::info!(worker = %worker, "job runner stopped");
    });
}

/// A job running in this loop's `JoinSet`.
struct Running {
    id: JobId,
    kind: String,
    attempt: u32,
    max_attempts: u32,
    started: Instant,
    /// The statements the handler runs (`db_queries_per_job{kind}`).
    queries: Arc<telemetry::queries::Scope>,
}

/// Metric handles of one kind, made once: looking a labelled series up per
/// job would cost more than a no-op job itself.
struct KindMetrics {
    done: Counter,
    retry: Counter,
    dead: Counter,
    duration: Histogram,
    queries: Histogram,
}

impl KindMetrics {
    fn new(kind: &str) -> Self {
        let k = kind.to_string();
        Self {
            done: metrics::counter!(names::JOBS_PROCESSED, "kind" => k.clone(), "outcome" => "done"),
            retry: metrics::counter!(names::JOBS_PROCESSED, "kind" => k.clone(), "outcome" => "retry"),
            dead: metrics::counter!(names::JOBS_PROCESSED, "kind" => k.clone(), "outcome" => "dead"),
            duration: metrics::histogram!(names::JOB_DURATION, "kind" => k.clone()),
            queries: metrics::histogram!(names::DB_QUERIES_PER_JOB, "kind" => k),
        }
    }
}

type TaskResult = Result<(TaskId, Result<(), JobError>), JoinError>;

/// A claim that is out, and how many jobs it asked for.
type Claim = (Pin<Box<dyn Future<Output = PortResult<Vec<Job>>> + Send>>, usize);

enum Wake {
    Stop,
    Claimed(PortResult<Vec<Job>>),
    Reaped(TaskResult),
    Poll,
}

struct ClaimLoop {
    shared: Arc<Shared>,
    queue: String,
    concurrency: usize,
    /// The prefetch buffer's bound, and the buffer: claimed, leased, not
    /// started, in claim order.
    prefetch: usize,
    buffer: VecDeque<Job>,
    waker: Arc<Notify>,
    finish: mpsc::Sender<Finish>,
    tasks: JoinSet<Result<(), JobError>>,
    running: HashMap<TaskId, Running>,
    metrics: HashMap<String, KindMetrics>,
    in_flight: Gauge,
    buffered: Gauge,
}

impl ClaimLoop {
    fn new(
        shared: Arc<Shared>,
        queue: String,
        concurrency: usize,
        waker: Arc<Notify>,
        finish: mpsc::Sender<Finish>,
    ) -> Self {
        let in_flight = metrics::gauge!(names::JOBS_IN_FLIGHT, "queue" => queue.clone());
        let buffered = metrics::gauge!(names::JOBS_BUFFERED, "queue" => queue.clone());
        let prefetch = shared.config.prefetch_of(&queue);
        Self {
            shared,
            queue,
            concurrency,
            prefetch,
            buffer: VecDeque::with_capacity(prefetch),
            waker,
            finish,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            metrics: HashMap::new(),
            in_flight,
            buffered,
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let cfg = self.shared.config.clone();
        // Set after a claim that came back short (nothing more is due) or
        // failed: no claim before this instant unless notified.
        let mut idle_until: Option<Instant> = None;
        let mut claim_error_delay = CLAIM_ERROR_BASE;
        let mut claiming: Option<Claim> = None;
        loop {
            while let Some(r) = self.tasks.try_join_next_with_id() {
                self.reap(r).await;
            }
            if shutdown.is_cancelled() {
                break;
            }
            self.fill().await;
            if claiming.is_none()
                && idle_until.is_none_or(|t| Instant::now() >= t)
                && let Some(want) = self.claim_size()
            {
                let claim = self.shared.clone().claim(self.queue.clone(), want);
                claiming = Some((Box::pin(claim), want));
            }
            let wake = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Wake::Stop,
                r = async { claiming.as_mut().expect("guarded by the branch condition").0.as_mut().await },
                    if claiming.is_some() => Wake::Claimed(r),
                Some(r) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Wake::Reaped(r),
                _ = self.waker.notified() => Wake::Poll,
                _ = tokio::time::sleep_until(idle_until.unwrap_or_else(Instant::now)), if idle_until.is_some() => Wake::Poll,
            };
            match wake {
                Wake::Stop => break,
                Wake::Claimed(result) => {
                    let want = claiming.take().map_or(0, |(_, want)| want);
                    match result {
                        Ok(jobs) => {
                            claim_error_delay = CLAIM_ERROR_BASE;
                            // A full claim: more may be due right now.
                            idle_until = (jobs.len() < want).then(|| Instant::now() + cfg.idle_poll);
                            self.hold(jobs);
                        }
                        Err(e) => {
                            tracing::warn!(queue = %self.queue, error = %e, "cannot claim jobs; retrying");
                            idle_until = Some(Instant::now() + claim_error_delay);
                            claim_error_delay = (claim_error_delay * 2).min(CLAIM_ERROR_MAX);
                        }
                    }
                }
                Wake::Reaped(r) => self.reap(r).await,
                Wake::Poll => idle_until = None,
            }
        }
        // The claim that is out may have leased jobs already: take them in,
        // so they are given back with the rest of the buffer.
        if let Some((claim, _)) = claiming.take()
            && let Ok(jobs) = claim.await
        {
            self.hold(jobs);
        }
        self.drain(cfg.shutdown_grace).await;
    }

    /// How many jobs to claim now, if any: room for a full buffer and full
    /// slots, at most `claim_batch`, but only once that is at least half
    /// of it (claims stay large) or nothing is held at all (a lone job in
    /// an idle queue starts at once). With the buffer off this waits for
    /// half the slots to free rather than claiming one job per freed slot.
    fn claim_size(&self) -> Option<usize> {
        let batch = self.shared.config.claim_batch.max(1);
        let target = self.concurrency + self.prefetch;
        let held = self.tasks.len() + self.buffer.len();
        let room = target.saturating_sub(held).min(batch);
        let worth_it = target.div_ceil(2).min(batch);
        (room > 0 && (room >= worth_it || held == 0)).then_some(room)
    }

    /// Take claimed jobs into the buffer (their leases are held from now:
    /// the heartbeat extends them).
    fn hold(&mut self, jobs: Vec<Job>) {
        {
            let mut leases = self.shared.leases();
            for job in &jobs {
                leases.insert(job.id, Lease::Buffered);
            }
        }
        self.buffer.extend(jobs);
        self.buffered.set(self.buffer.len() as f64);
    }

    /// Start buffered jobs while slots are free. A buffered job whose lease
    /// was lost meanwhile (a stall longer than the lease) is dropped: its
    /// new holder runs it.
    async fn fill(&mut self) {
        let mut started = false;
        while self.tasks.len() < self.concurrency
            && let Some(job) = self.buffer.pop_front()
        {
            let lost = {
                let mut leases = self.shared.leases();
                match leases.get_mut(&job.id) {
                    Some(state @ Lease::Buffered) => {
                        *state = Lease::Held;
                        false
                    }
                    _ => {
                        leases.remove(&job.id);
                        true
                    }
                }
            };
            if lost {
                tracing::warn!(job = job.id, queue = %self.queue, "a buffered job lost its lease before it started; dropping it");
                continue;
            }
            self.start(job).await;
            started = true;
        }
        if started {
            self.buffered.set(self.buffer.len() as f64);
            self.in_flight.set(self.tasks.len() as f64);
        }
    }

    /// Run one claimed job as its own task (or settle it at once when no
    /// handler knows its kind).
    async fn start(&mut self, job: Job) {
        let Some(kind) = self.shared.registry.kind(&job.kind) else {
            tracing::error!(job = job.id, kind = %job.kind, "unknown job kind; keeping the job dead");
            self.kind_metrics("unknown").dead.increment(1);
            let error = format!("unknown job kind `{}`", job.kind);
            self.settle(
                job.id,
                Finish::Fail {
                    id: job.id,
                    error,
                    retry_at: None,
                },
            )
            .await;
            return;
        };
        let handler = kind.handler.clone();
        let running = Running {
            id: job.id,
            kind: job.kind.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            started: Instant::now(),
            queries: telemetry::queries::Scope::new(),
        };
        let scope = running.queries.clone();
        let span = job_span(&job);
        let run = async move { handler.run(&job).await };
        let task = match span {
            Some(span) => self
                .tasks
                .spawn(telemetry::queries::within(scope, run.instrument(span))),
            None => self.tasks.spawn(telemetry::queries::within(scope, run)),
        };
        self.running.insert(task.id(), running);
    }

    /// Turn a finished task into an outcome for the finisher.
    async fn reap(&mut self, r: TaskResult) {
        let (task, result) = match r {
            Ok((task, result)) => (task, result),
            Err(e) => {
                let task = e.id();
                let result = if e.is_panic() {
                    Err(JobError::Retry(format!("handler panicked: {}", panic_message(e))))
                } else {
                    // Only shutdown aborts tasks, and `drain` handles those.
                    Err(JobError::Retry("handler task was cancelled".into()))
                };
                (task, result)
            }
        };
        self.in_flight.set(self.tasks.len() as f64);
        let Some(job) = self.running.remove(&task) else {
            return;
        };
        let elapsed = job.started.elapsed().as_secs_f64();
        let finish = match result {
            Ok(()) => Finish::Done(job.id),
            Err(e) => {
                let (error, not_before, retryable) = match e {
                    JobError::Retry(error) => (error, Duration::ZERO, true),
                    JobError::RetryAfter(error, after) => (error, after, true),
                    JobError::Fatal(error) => (error, Duration::ZERO, false),
                };
                if retryable && job.attempt < job.max_attempts {
                    let cfg = &self.shared.config;
                    let delay = backoff(job.attempt, cfg.backoff_base, cfg.backoff_max, rand::random()).max(not_before);
                    let retry_at = self.shared.clock.now_ms().saturating_add(delay.as_millis() as i64);
                    tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %error, retry_in = ?delay, "job failed; will retry");
                    Finish::Fail {
                        id: job.id,
                        error,
                        retry_at: Some(retry_at),
                    }
                } else {
                    tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %error, "job failed for the last time; keeping it dead");
                    Finish::Fail {
                        id: job.id,
                        error,
                        retry_at: None,
                    }
                }
            }
        };
        let m = self.kind_metrics(&job.kind);
        m.duration.record(elapsed);
        m.queries.record(f64::from(job.queries.queries()));
        match &finish {
            Finish::Done(_) => m.done.increment(1),
            Finish::Fail { retry_at: Some(_), .. } => m.retry.increment(1),
            Finish::Fail { retry_at: None, .. } => m.dead.increment(1),
        }
        self.settle(job.id, finish).await;
    }

    /// Hand an outcome to the finisher, unless the lease was lost meanwhile
    /// (another worker may run the job; the queue would ignore us anyway).
    async fn settle(&mut self, id: JobId, finish: Finish) {
        let lost = {
            let mut leases = self.shared.leases();
            match leases.get_mut(&id) {
                Some(Lease::Lost) | None => {
                    leases.remove(&id);
                    true
                }
                Some(state) => {
                    *state = Lease::Settling;
                    false
                }
            }
        };
        if lost {
            tracing::warn!(
                job = id,
                "job finished after its lease was lost; its outcome is dropped"
            );
            return;
        }
        if self.finish.send(finish).await.is_err() {
            // Only possible if the finisher crashed; the lease runs out and
            // the job runs again.
            tracing::error!(job = id, "the job finisher is gone; outcome dropped");
            self.shared.leases().remove(&id);
        }
    }

    fn kind_metrics(&mut self, kind: &str) -> &KindMetrics {
        if !self.metrics.contains_key(kind) {
            self.metrics.insert(kind.to_string(), KindMetrics::new(kind));
        }
        &self.metrics[kind]
    }

    /// Shutdown: no more claims. Buffered jobs are given back at once (no
    /// attempt counted, their place in the claim order kept), so another
    /// process can run them while this one finishes. Running jobs get
    /// `grace` to finish; the rest are aborted and released the same way.
    async fn drain(&mut self, grace: Duration) {
        let buffered: Vec<JobId> = self.buffer.drain(..).map(|j| j.id).collect();
        self.buffered.set(0.0);
        self.shared.release(&self.queue, &buffered, "buffered jobs").await;
        let deadline = Instant::now() + grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(r)) => self.reap(r).await,
                Ok(None) | Err(_) => break,
            }
        }
        self.tasks.abort_all();
        let mut release = Vec::new();
        while let Some(r) = self.tasks.join_next_with_id().await {
            match r {
                Err(e) if e.is_cancelled() => {
                    if let Some(job) = self.running.remove(&e.id()) {
                        release.push(job.id);
                    }
                }
                // Finished (or panicked) just before the abort landed.
                other => self.reap(other).await,
            }
        }
        self.in_flight.set(0.0);
        self.shared.release(&self.queue, &release, "jobs still running").await;
    }
}

fn panic_message(e: JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Retry a queue call a few times while the backend says a retry may help.
async fn with_retries<F, Fut>(what: &str, mut call: F) -> domain::ports::PortResult<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = domain::ports::PortResult<()>>,
{
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && attempt < CALL_ATTEMPTS => {
                tracing::warn!(call = what, attempt, error = %e, "job queue call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Collect outcomes and tell the queue in batches: one `complete` for all
/// the done jobs of a batch, `fail`s a few at a time. Ends when every claim
/// loop has dropped its sender, after flushing what it holds.
async fn finisher(shared: Arc<Shared>, mut rx: mpsc::Receiver<Finish>) {
    let mut batch: Vec<Finish> = Vec::with_capacity(FLUSH_AT);
    loop {
        if rx.recv_many(&mut batch, FLUSH_AT).await == 0 {
            break;
        }
        let deadline = Instant::now() + FLUSH_EVERY;
        while batch.len() < FLUSH_AT {
            let room = FLUSH_AT - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        flush(&shared, &mut batch).await;
    }
}

async fn flush(shared: &Shared, batch: &mut Vec<Finish>) {
    let worker = &shared.config.worker_id;
    let mut done = Vec::with_capacity(batch.len());
    let mut fails = Vec::new();
    for f in batch.drain(..) {
        match f {
            Finish::Done(id) => done.push(id),
            Finish::Fail { id, error, retry_at } => fails.push((id, error, retry_at)),
        }
    }
    if !done.is_empty() {
        let result = with_retries("complete", || {
            shared.queue.complete(&done, worker, shared.clock.now_ms())
        })
        .await;
        match result {
            Ok(()) => {
                Stats::add(&shared.stats.completes, 1);
                Stats::add(&shared.stats.completed, done.len());
            }
            Err(e) => {
                tracing::error!(jobs = done.len(), error = %e, "cannot mark jobs done; they run again once their leases expire")
            }
        }
    }
    futures::stream::iter(&fails)
        .for_each_concurrent(FAIL_CONCURRENCY, |(id, error, retry_at)| async move {
            let result = with_retries("fail", || {
                shared
                    .queue
                    .fail(*id, worker, error, *retry_at, shared.clock.now_ms())
            })
            .await;
            if let Err(e) = result {
                tracing::error!(job = id, error = %e, "cannot record a failed attempt; the job runs again once its lease expires");
            }
        })
        .await;
    let mut leases = shared.leases();
    for id in done.iter().chain(fails.iter().map(|(id, ..)| id)) {
        leases.remove(id);
    }
}

/// Every `lease / 3`, extend the leases of every job this process holds
/// with one call; mark and log the ones that were lost.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let cfg = &shared.config;
    let every = (cfg.lease / 3).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let ids: Vec<JobId> = shared
            .leases()
            .iter()
            .filter(|(_, l)| **l != Lease::Lost)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        match shared
            .queue
            .heartbeat(&ids, &cfg.worker_id, cfg.lease, shared.clock.now_ms())
            .await
        {
            Ok(held) => {
                Stats::add(&shared.stats.heartbeats, 1);
                if held.len() == ids.len() {
                    continue;
                }
                let held: HashSet<JobId> = held.into_iter().collect();
                let mut lost = Vec::new();
                {
                    let mut leases = shared.leases();
                    for id in ids.iter().filter(|id| !held.contains(id)) {
                        if let Some(state @ (Lease::Held | Lease::Buffered)) = leases.get_mut(id) {
                            lost.push((*id, *state == Lease::Held));
                            *state = Lease::Lost;
                        }
                    }
                }
                for (id, running) in lost {
                    metrics::counter!(names::JOB_LEASES_LOST).increment(1);
                    if running {
                        tracing::warn!(job = id, worker = %cfg.worker_id, "lost the lease of a running job; another worker may run it again");
                    } else {
                        tracing::warn!(job = id, worker = %cfg.worker_id, "lost the lease of a buffered job; it will not be started here");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(jobs = ids.len(), error = %e, "job heartbeat failed; leases may run out")
            }
        }
    }
}

/// The run span of a job when traces are exported: a child of whoever
/// enqueued it (a pickup's request, an operator's API call), a root for a
/// job with no traced enqueuer (a cron tick).
fn job_span(job: &Job) -> Option<tracing::Span> {
    if !telemetry::traces::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        parent: None,
        "job.run",
        otel.name = format!("job {}", job.kind),
        otel.kind = "consumer",
        job.id = job.id,
        job.attempt = job.attempt,
    );
    if let Some(trace) = &job.trace {
        telemetry::traces::set_parent(&span, trace);
    }
    Some(span)
}
