//! Job runner tests on the real embedded queue (`queue::SqliteQueue` in a
//! temp dir): outcomes (done, retry with backoff, dead), concurrency and
//! priority, graceful shutdown, leases lost and kept, and a no-op drain
//! that prints its rate. Queue time is `testkit::clock::ManualClock`, moved
//! by the tests. Outcomes and "nothing is due" are checked by stepping a
//! `Runner` with `run_once`; only what needs the loops (concurrency limits,
//! shutdown, heartbeats, lost leases) spawns them and polls the queue's
//! state with a deadline.

use domain::Clock;
use domain::jobs::{JobFilter, JobInfo, JobQueue, JobState, NewJob};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use testkit::clock::ManualClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::{JobError, JobKind, Registry, Runner, RunnerConfig, RunnerHandle, TokioClock, handler_fn, spawn_runner};

/// Poll `check` every 10 ms until it holds; panic after `limit`.
pub(crate) async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const WAIT: Duration = Duration::from_secs(20);
const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

struct Rig {
    queue: Arc<dyn JobQueue>,
    _dir: TempDir,
}

fn rig() -> Rig {
    let dir = TempDir::new().unwrap();
    let q = queue::SqliteQueue::open(&dir.path().join("jobs.db"), Default::default()).unwrap();
    Rig {
        queue: Arc::new(q),
        _dir: dir,
    }
}

/// A started runner and what stops it.
struct Running {
    handle: RunnerHandle,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    /// Cancel, then wait (bounded) for every runner task to end.
    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("the runner stops within the bound");
    }
}

fn config(worker: &str, queues: &[(&str, usize)]) -> RunnerConfig {
    RunnerConfig {
        worker_id: worker.into(),
        concurrency: queues.iter().map(|(q, n)| (q.to_string(), *n)).collect(),
        idle_poll: Duration::from_millis(10),
        shutdown_grace: Duration::from_secs(5),
        ..RunnerConfig::default()
    }
}

fn start(queue: &Arc<dyn JobQueue>, registry: Registry, clock: Arc<dyn Clock>, config: RunnerConfig) -> Running {
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let handle = spawn_runner(
        queue.clone(),
        Arc::new(registry),
        clock,
        config,
        &tracker,
        shutdown.clone(),
    );
    Running {
        handle,
        tracker,
        shutdown,
    }
}

/// A runner to step with `run_once` (no loops, no timers).
fn stepper(queue: &Arc<dyn JobQueue>, registry: Registry, clock: Arc<dyn Clock>, config: RunnerConfig) -> Runner {
    Runner::new(queue.clone(), Arc::new(registry), clock, config)
}

async fn enqueue(queue: &dyn JobQueue, job: NewJob) -> i64 {
    queue.enqueue(&[job], T0).await.unwrap()[0].id()
}

async fn info(queue: &dyn JobQueue, id: i64) -> JobInfo {
    queue.get(id).await.unwrap().expect("the job exists")
}

async fn wait_for_state(queue: &dyn JobQueue, id: i64, state: JobState, attempts: u32) -> JobInfo {
    let what = format!("job {id} to be {state:?} after {attempts} attempts");
    wait_until(&what, WAIT, || async {
        let j = info(queue, id).await;
        j.state == state && j.attempts == attempts
    })
    .await;
    info(queue, id).await
}

#[tokio::test]
async fn a_successful_job_is_done_with_its_payload_seen() {
    let rig = rig();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    let s = seen.clone();
    reg.register(JobKind::new(
        "greet",
        "default",
        handler_fn(move |job| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((job.payload.clone(), job.attempt));
                Ok(())
            }
        }),
    ));
    let id = enqueue(&*rig.queue, reg.new_job("greet", json!({"name": "ada"}), T0)).await;
    let r = stepper(&rig.queue, reg, ManualClock::new(T0), config("w1", &[("default", 2)]));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Done, 1));
    assert_eq!(j.finished_at, Some(T0));
    assert_eq!(j.last_error, None);
    assert_eq!(*seen.lock().unwrap(), vec![(json!({"name": "ada"}), 1)]);
    assert_eq!(r.run_once().await.unwrap(), 0, "nothing left to run");
}

#[tokio::test]
async fn retries_back_off_then_the_job_dies_with_its_last_error() {
    let rig = rig();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let mut reg = Registry::new();
    reg.register(
        JobKind::new(
            "flaky",
            "default",
            handler_fn(move |job| {
                c.fetch_add(1, Ordering::SeqCst);
                async move { Err(JobError::Retry(format!("boom {}", job.attempt))) }
            }),
        )
        .attempts(3),
    );
    let id = enqueue(&*rig.queue, reg.new_job("flaky", json!(null), T0)).await;
    let clock = ManualClock::new(T0);
    let mut cfg = config("w1", &[("default", 2)]);
    cfg.backoff_base = Duration::from_secs(10);
    let r = stepper(&rig.queue, reg, clock.clone(), cfg);

    // Attempt 1 fails: queued again 5..=10 s later (equal jitter on 10 s).
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Queued, 1));
    assert_eq!(j.last_error.as_deref(), Some("boom 1"));
    let delay = j.run_at - clock.now_ms();
    assert!((5_000..=10_000).contains(&delay), "first retry in {delay} ms");
    // Not due yet: nothing runs while the clock stands still, nor a
    // millisecond before the retry is due.
    assert_eq!(r.run_once().await.unwrap(), 0);
    clock.advance(Duration::from_millis(delay as u64 - 1));
    assert_eq!(r.run_once().await.unwrap(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Attempt 2 fails: the step doubles (10..=20 s).
    clock.advance(Duration::from_millis(1));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Queued, 2));
    assert_eq!(j.last_error.as_deref(), Some("boom 2"));
    let delay = j.run_at - clock.now_ms();
    assert!((10_000..=20_000).contains(&delay), "second retry in {delay} ms");

    // Attempt 3 is the last: dead, keeping the last error.
    clock.advance(Duration::from_millis(delay as u64));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Dead, 3));
    assert_eq!(j.last_error.as_deref(), Some("boom 3"));
    assert!(j.finished_at.is_some());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(r.run_once().await.unwrap(), 0, "a dead job stays dead");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_fatal_error_kills_the_job_at_once() {
    let rig = rig();
    let mut reg = Registry::new();
    reg.register(
        JobKind::new(
            "strict",
            "default",
            handler_fn(|_| async { Err(JobError::Fatal("payload has no order id".into())) }),
        )
        .attempts(5),
    );
    let id = enqueue(&*rig.queue, reg.new_job("strict", json!({}), T0)).await;
    let r = stepper(&rig.queue, reg, ManualClock::new(T0), config("w1", &[("default", 2)]));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Dead, 1));
    assert_eq!(j.last_error.as_deref(), Some("payload has no order id"));
}

#[tokio::test]
async fn an_unknown_kind_is_kept_dead() {
    let rig = rig();
    let id = enqueue(&*rig.queue, NewJob::new("mystery", "default", json!({}), T0)).await;
    let r = stepper(
        &rig.queue,
        Registry::new(),
        ManualClock::new(T0),
        config("w1", &[("default", 2)]),
    );
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Dead, 1));
    let error = j.last_error.unwrap();
    assert!(
        error.contains("unknown job kind") && error.contains("mystery"),
        "{error}"
    );
}

#[tokio::test]
async fn a_panicking_handler_counts_as_a_retry() {
    let rig = rig();
    let mut reg = Registry::new();
    reg.register(JobKind::new(
        "shaky",
        "default",
        handler_fn(|job| async move {
            if job.attempt == 1 {
                panic!("first attempt explodes");
            }
            Ok(())
        }),
    ));
    let id = enqueue(&*rig.queue, reg.new_job("shaky", json!({}), T0)).await;
    let clock = ManualClock::new(T0);
    let r = stepper(&rig.queue, reg, clock.clone(), config("w1", &[("default", 2)]));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Queued, 1));
    let error = j.last_error.unwrap();
    assert!(
        error.contains("panicked") && error.contains("first attempt explodes"),
        "{error}"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Done, 2));
}

/// Counts jobs running at once and remembers the most seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }

    fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn slow_kind(name: &'static str, queue: &'static str, gauge: Arc<Gauge>) -> JobKind {
    JobKind::new(
        name,
        queue,
        handler_fn(move |_| {
            let g = gauge.clone();
            async move {
                g.enter();
                tokio::time::sleep(Duration::from_millis(15)).await;
                g.exit();
                Ok(())
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_queue_concurrency_is_never_exceeded() {
    let rig = rig();
    let (default, mail) = (Arc::new(Gauge::default()), Arc::new(Gauge::default()));
    let mut reg = Registry::new();
    reg.register(slow_kind("slow", "default", default.clone()));
    reg.register(slow_kind("slow.mail", "mail", mail.clone()));
    let mut jobs: Vec<NewJob> = (0..40).map(|i| reg.new_job("slow", json!(i), T0)).collect();
    jobs.extend((0..20).map(|i| reg.new_job("slow.mail", json!(i), T0)));
    rig.queue.enqueue(&jobs, T0).await.unwrap();
    let r = start(
        &rig.queue,
        reg,
        ManualClock::new(T0),
        config("w1", &[("default", 3), ("mail", 2)]),
    );
    wait_until("all 60 jobs done", WAIT, || async {
        let c = rig.queue.counts(T0).await.unwrap();
        c.iter().map(|q| q.done).sum::<u64>() == 60
    })
    .await;
    r.stop().await;
    assert!(
        default.max.load(Ordering::SeqCst) <= 3,
        "default ran {} at once",
        default.max.load(Ordering::SeqCst)
    );
    assert!(
        mail.max.load(Ordering::SeqCst) <= 2,
        "mail ran {} at once",
        mail.max.load(Ordering::SeqCst)
    );
    // And the slots are used: a claim fills every free one at once.
    assert_eq!(default.max.load(Ordering::SeqCst), 3);
    assert_eq!(mail.max.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn higher_priorities_run_first() {
    let rig = rig();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let mut reg = Registry::new();
    reg.register(JobKind::new(
        "note",
        "default",
        handler_fn(move |job| {
            o.lock()
                .unwrap()
                .push(job.payload.as_str().unwrap_or_default().to_string());
            async { Ok(()) }
        }),
    ));
    for (name, p) in [("zero", 0), ("five-a", 5), ("minus", -1), ("ten", 10), ("five-b", 5)] {
        enqueue(&*rig.queue, reg.new_job("note", json!(name), T0).priority(p)).await;
    }
    // One at a time, so the run order is the claim order.
    let r = stepper(&rig.queue, reg, ManualClock::new(T0), config("w1", &[("default", 1)]));
    while r.run_once().await.unwrap() > 0 {}
    assert_eq!(*order.lock().unwrap(), ["ten", "five-a", "five-b", "zero", "minus"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notified_runner_claims_without_waiting_for_its_idle_poll() {
    let rig = rig();
    let mut reg = Registry::new();
    reg.register(JobKind::new("ping", "default", handler_fn(|_| async { Ok(()) })));
    let job = reg.new_job("ping", json!({}), T0);
    let mut cfg = config("w1", &[("default", 1)]);
    // Without the notification the job would wait an hour.
    cfg.idle_poll = Duration::from_secs(3600);
    let r = start(&rig.queue, reg, ManualClock::new(T0), cfg);
    let id = enqueue(&*rig.queue, job).await;
    r.handle.notify_queue("default");
    wait_for_state(&*rig.queue, id, JobState::Done, 1).await;
    r.stop().await;
}

/// Sets its flag when dropped: tells whether a handler's task was aborted.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_short_jobs_and_releases_long_ones() {
    let rig = rig();
    let started = Arc::new(AtomicUsize::new(0));
    let aborted = Arc::new(AtomicBool::new(false));
    let mut reg = Registry::new();
    let (s1, s2, a) = (started.clone(), started.clone(), aborted.clone());
    reg.register(JobKind::new(
        "long",
        "default",
        handler_fn(move |_| {
            s1.fetch_add(1, Ordering::SeqCst);
            let flag = DropFlag(a.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(flag);
                Ok(())
            }
        }),
    ));
    reg.register(JobKind::new(
        "short",
        "default",
        handler_fn(move |_| {
            s2.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            }
        }),
    ));
    let long = enqueue(&*rig.queue, reg.new_job("long", json!({}), T0)).await;
    let shorts = [
        enqueue(&*rig.queue, reg.new_job("short", json!(1), T0)).await,
        enqueue(&*rig.queue, reg.new_job("short", json!(2), T0)).await,
    ];
    let clock = ManualClock::new(T0);
    let mut cfg = config("w1", &[("default", 4)]);
    cfg.shutdown_grace = Duration::from_secs(2);
    let r = start(&rig.queue, reg, clock.clone(), cfg);
    wait_until("all three jobs running", WAIT, || async {
        started.load(Ordering::SeqCst) == 3
    })
    .await;
    clock.advance(Duration::from_secs(1));
    let stopping = Instant::now();
    r.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10));

    for id in shorts {
        assert_eq!(info(&*rig.queue, id).await.state, JobState::Done, "short job {id}");
    }
    let j = info(&*rig.queue, long).await;
    assert_eq!(j.state, JobState::Queued, "released, not left running");
    assert_eq!(j.attempts, 0, "a released attempt does not count");
    assert_eq!(j.worker, None);
    assert!(j.run_at <= clock.now_ms(), "due again at once");
    assert!(aborted.load(Ordering::SeqCst), "the long handler was aborted");
    assert_eq!(started.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_job_of_a_dead_worker_is_run_again_after_its_lease() {
    let rig = rig();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = attempts.clone();
    let mut reg = Registry::new();
    reg.register(JobKind::new(
        "once",
        "default",
        handler_fn(move |job| {
            a.lock().unwrap().push(job.attempt);
            async { Ok(()) }
        }),
    ));
    let id = enqueue(&*rig.queue, reg.new_job("once", json!({}), T0)).await;
    // A worker claims it and dies without a word.
    let claimed = rig
        .queue
        .claim("default", "dead-worker", 10, Duration::from_secs(30), T0)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let clock = ManualClock::new(T0);
    let r = stepper(&rig.queue, reg, clock.clone(), config("w2", &[("default", 2)]));
    assert_eq!(r.run_once().await.unwrap(), 0, "the lease still holds");
    clock.advance(Duration::from_secs(29));
    assert_eq!(r.run_once().await.unwrap(), 0, "the lease still holds");
    assert!(attempts.lock().unwrap().is_empty());
    clock.advance(Duration::from_secs(2));
    assert_eq!(r.run_once().await.unwrap(), 1);
    let j = info(&*rig.queue, id).await;
    assert_eq!((j.state, j.attempts), (JobState::Done, 2));
    assert_eq!(j.worker, None);
    assert_eq!(*attempts.lock().unwrap(), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_lost_its_lease_does_not_settle_the_job() {
    let rig = rig();
    let go = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (g, s, f) = (go.clone(), started.clone(), finished.clone());
    let mut reg = Registry::new();
    reg.register(JobKind::new(
        "stuck",
        "default",
        handler_fn(move |_| {
            let (g, s, f) = (g.clone(), s.clone(), f.clone());
            async move {
                s.store(true, Ordering::SeqCst);
                g.notified().await;
                f.store(true, Ordering::SeqCst);
                Ok(())
            }
        }),
    ));
    let id = enqueue(&*rig.queue, reg.new_job("stuck", json!({}), T0)).await;
    let clock = ManualClock::new(T0);
    let mut cfg = config("w1", &[("default", 1)]);
    cfg.lease = Duration::from_millis(300);
    let r = start(&rig.queue, reg, clock.clone(), cfg);
    wait_until("the job to start", WAIT, || async { started.load(Ordering::SeqCst) }).await;

    // The runner stalls (as if paused): its lease runs out and another
    // worker takes the job over.
    clock.advance(Duration::from_secs(10));
    let taken = rig
        .queue
        .claim("default", "thief", 1, Duration::from_secs(600), clock.now_ms() + 10_000)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempt, 2);

    // The first runner's handler finishes later; its outcome must not
    // settle the job the thief now holds.
    go.notify_one();
    wait_until("the stalled handler to finish", WAIT, || async {
        finished.load(Ordering::SeqCst)
    })
    .await;
    r.stop().await;
    let j = info(&*rig.queue, id).await;
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.worker.as_deref(), Some("thief"));
    rig.queue.complete(&[id], "thief", clock.now_ms()).await.unwrap();
    assert_eq!(info(&*rig.queue, id).await.state, JobState::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_leased() {
    // Real time here: the lease must outlive several heartbeat periods.
    let rig = rig();
    let runs = Arc::new(AtomicU32::new(0));
    let n = runs.clone();
    let mut reg = Registry::new();
    reg.register(JobKind::new(
        "long",
        "default",
        handler_fn(move |_| {
            n.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok(())
            }
        }),
    ));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock);
    let id = rig
        .queue
        .enqueue(&[reg.new_job("long", json!({}), clock.now_ms())], clock.now_ms())
        .await
        .unwrap()[0]
        .id();
    let mut cfg = config("w1", &[("default", 2)]);
    cfg.lease = Duration::from_millis(1500);
    let r = start(&rig.queue, reg, clock.clone(), cfg);
    // Without heartbeats the lease would lapse after 1.5 s and the runner's
    // own claim loop would take the job again (attempt 2).
    let j = wait_for_state(&*rig.queue, id, JobState::Done, 1).await;
    assert_eq!(j.last_error, None);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    r.stop().await;
}

/// Not a speed test (no timing assertion): it drains a pile of no-op jobs
/// through the batched claim/complete path and prints the rate, which is
/// how the runner's throughput was measured (raise `N` to 100_000 for the
/// figure quoted in the runner's docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_many_noop_jobs() {
    const N: usize = 20_000;
    let dir = TempDir::new().unwrap();
    let opts = queue::SqliteQueueOptions {
        synchronous: queue::Synchronous::Normal,
        ..Default::default()
    };
    let q: Arc<dyn JobQueue> = Arc::new(queue::SqliteQueue::open(&dir.path().join("jobs.db"), opts).unwrap());
    let mut reg = Registry::new();
    reg.register(JobKind::new("noop", "default", handler_fn(|_| async { Ok(()) })));
    for chunk in (0..N).collect::<Vec<_>>().chunks(5_000) {
        let jobs: Vec<NewJob> = chunk.iter().map(|_| reg.new_job("noop", json!(null), T0)).collect();
        q.enqueue(&jobs, T0).await.unwrap();
    }
    let started = Instant::now();
    let r = start(&q, reg, ManualClock::new(T0), config("w1", &[("default", 1024)]));
    wait_until("every no-op job done", Duration::from_secs(120), || async {
        q.counts(T0).await.unwrap()[0].done == N as u64
    })
    .await;
    let took = started.elapsed();
    r.stop().await;
    eprintln!(
        "drained {N} no-op jobs in {took:?}: {:.0} jobs/s",
        N as f64 / took.as_secs_f64()
    );
    let dead = q
        .list(&JobFilter {
            state: Some(JobState::Dead),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(dead.is_empty());
    let counts: HashMap<String, u64> = q
        .counts(T0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.queue, c.queued + c.running))
        .collect();
    assert_eq!(counts["default"], 0);
}

/// A kind whose handler counts its starts, then waits for a permit of
/// `gate` (none at first): the jobs it starts stay running until the test
/// opens the gate.
fn gated_kind(name: &'static str, started: Arc<AtomicUsize>, gate: Arc<tokio::sync::Semaphore>) -> JobKind {
    JobKind::new(
        name,
        "default",
        handler_fn(move |_| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.expect("the gate is never closed").forget();
                Ok(())
            }
        }),
    )
}

async fn running_count(queue: &dyn JobQueue) -> u64 {
    queue.counts(T0).await.unwrap()[0].running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_claims_more_than_free_slots() {
    let rig = rig();
    let (started, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Semaphore::new(0)));
    let mut reg = Registry::new();
    reg.register(gated_kind("gated", started.clone(), gate.clone()));
    let jobs: Vec<NewJob> = (0..20).map(|i| reg.new_job("gated", json!(i), T0)).collect();
    rig.queue.enqueue(&jobs, T0).await.unwrap();
    let mut cfg = config("w1", &[("default", 2)]);
    cfg.prefetch.insert("default".into(), 8);
    let r = start(&rig.queue, reg, ManualClock::new(T0), cfg);

    // Two slots and a buffer of eight: one claim of ten, two of them run.
    wait_until("two running and eight buffered", WAIT, || async {
        started.load(Ordering::SeqCst) == 2 && running_count(&*rig.queue).await == 10
    })
    .await;
    let stats = r.handle.stats();
    assert_eq!((stats.claims, stats.claimed), (1, 10), "{stats:?}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "the buffer does not raise the concurrency"
    );

    gate.add_permits(20);
    wait_until("all 20 done", WAIT, || async {
        rig.queue.counts(T0).await.unwrap()[0].done == 20
    })
    .await;
    r.stop().await;
    assert_eq!(started.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_jobs_are_given_back_at_shutdown_and_run_by_the_next_runner() {
    let rig = rig();
    let (started, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Semaphore::new(0)));
    let mut reg = Registry::new();
    reg.register(gated_kind("gated", started.clone(), gate.clone()));
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(enqueue(&*rig.queue, reg.new_job("gated", json!(i), T0)).await);
    }
    let clock = ManualClock::new(T0);
    let mut cfg = config("w1", &[("default", 1)]);
    cfg.prefetch.insert("default".into(), 4);
    cfg.shutdown_grace = Duration::from_secs(60);
    let r = start(&rig.queue, reg, clock.clone(), cfg);
    wait_until("one running and four buffered", WAIT, || async {
        started.load(Ordering::SeqCst) == 1 && running_count(&*rig.queue).await == 5
    })
    .await;

    // Shutdown gives the buffered jobs back at once, while the running one
    // still has its (long) grace.
    r.shutdown.cancel();
    wait_until("the four buffered jobs queued again", WAIT, || async {
        let mut back = 0;
        for id in &ids[1..5] {
            let j = info(&*rig.queue, *id).await;
            back += usize::from(j.state == JobState::Queued && j.attempts == 0 && j.worker.is_none());
        }
        back == 4
    })
    .await;
    assert_eq!(
        info(&*rig.queue, ids[0]).await.state,
        JobState::Running,
        "still in its grace"
    );
    assert_eq!(r.handle.stats().released, 4);
    gate.add_permits(1);
    let handle = r.handle.clone();
    r.stop().await;
    assert_eq!(info(&*rig.queue, ids[0]).await.state, JobState::Done);
    assert_eq!(handle.stats().released, 4, "the running job finished within its grace");

    // The next runner runs them, first attempt, in their original order.
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let mut next = Registry::new();
    next.register(JobKind::new(
        "gated",
        "default",
        handler_fn(move |job| {
            o.lock().unwrap().push((job.id, job.attempt));
            async { Ok(()) }
        }),
    ));
    let r2 = stepper(&rig.queue, next, clock, config("w2", &[("default", 1)]));
    while r2.run_once().await.unwrap() > 0 {}
    let expected: Vec<(i64, u32)> = ids[1..].iter().map(|id| (*id, 1)).collect();
    assert_eq!(*order.lock().unwrap(), expected);
}

/// Drain `n` no-op jobs at `concurrency` with the given prefetch buffer
/// (`None`: the default) and return the runner's queue calls.
async fn drain_counting_claims(n: usize, concurrency: usize, prefetch: Option<usize>) -> worker::RunnerStats {
    let rig = rig();
    let mut reg = Registry::new();
    reg.register(JobKind::new("noop", "default", handler_fn(|_| async { Ok(()) })));
    let jobs: Vec<NewJob> = (0..n).map(|_| reg.new_job("noop", json!(null), T0)).collect();
    rig.queue.enqueue(&jobs, T0).await.unwrap();
    let mut cfg = config("w1", &[("default", concurrency)]);
    if let Some(p) = prefetch {
        cfg.prefetch.insert("default".into(), p);
    }
    let r = start(&rig.queue, reg, ManualClock::new(T0), cfg);
    wait_until("every job done", WAIT, || async {
        rig.queue.counts(T0).await.unwrap()[0].done == n as u64
    })
    .await;
    let stats = r.handle.stats();
    r.stop().await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_drains_a_low_concurrency_queue_in_fewer_claims() {
    const N: usize = 300;
    let off = drain_counting_claims(N, 2, Some(0)).await;
    let on = drain_counting_claims(N, 2, None).await;
    assert_eq!(worker::default_prefetch(2, 256), 64);
    // Without a buffer a claim asks for the free slots (at most 2 here),
    // so at least N/2 claims; with one, ~N/33 plus the idle polls.
    assert!(off.claims >= (N / 2) as u64, "without a buffer: {off:?}");
    assert!(
        on.claims * 4 < off.claims,
        "with the default buffer {on:?}, without {off:?}"
    );
    assert!(on.jobs_per_claim() > 4.0 * off.jobs_per_claim(), "{on:?} vs {off:?}");
    // Completion is batched either way: far fewer calls than jobs.
    assert!(on.completes < (N / 4) as u64, "{on:?}");
}
