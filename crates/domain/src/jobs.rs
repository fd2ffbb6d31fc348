//! Background jobs: what a job is, the states it moves through, and the
//! `JobQueue` port that the embedded (SQLite) and scale (PostgreSQL) queues
//! implement.
//!
//! Semantics every backend keeps (the `testkit` queue contract checks them):
//! - **At least once, with leases.** `claim` leases a job to one worker until
//!   `now + lease`; `heartbeat` extends it. A job whose lease ran out (its
//!   worker died) is claimable again and counts another attempt; once its
//!   attempts are used up it goes dead with the error `lease expired`.
//! - **Batched.** `claim` takes up to `max` jobs in one round trip and
//!   `complete` finishes many in one, so the per-job cost of a no-op job is a
//!   fraction of a query.
//! - **Order.** Due jobs (`run_at <= now`) of a queue are claimed highest
//!   `priority` first, then oldest `run_at`, then oldest id.
//! - **Unique jobs.** A job with a `unique_key` is not enqueued while another
//!   job with that key is queued or running; `enqueue` answers `Duplicate`
//!   with the existing id.
//! - **Periodic jobs fire once.** `fire(schedule, slot, …)` enqueues the job
//!   only for the first caller of that `(schedule, slot)` across every
//!   process sharing the queue.
//! - Failed jobs are retried at the `retry_at` the runner computed (backoff
//!   with jitter), or kept as **dead** with their last error until `retry`
//!   or `discard`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::ports::PortResult;

pub type JobId = i64;

/// The queues jobs are routed to; each has its own concurrency.
pub const QUEUES: [&str; 4] = ["default", "mail", "sync", "maintenance"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to run (now, or at `run_at`).
    Queued,
    /// Leased to a worker.
    Running,
    /// Finished successfully.
    Done,
    /// Failed for the last time (or its lease expired on the last attempt).
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(JobState::Queued),
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            "dead" => Some(JobState::Dead),
            _ => None,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// What to run, e.g. `sync.menu`; the runner maps it to a handler.
    pub kind: String,
    pub queue: String,
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i16,
    /// Not before this time (epoch ms).
    pub run_at: i64,
    /// Attempts before the job goes dead (at least 1).
    pub max_attempts: u32,
    pub unique_key: Option<String>,
    /// W3C `traceparent` of the enqueuer; `None` lets the queue take the
    /// span the enqueue runs in (nothing when traces are off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl NewJob {
    /// A job of `kind` on `queue`, due now, priority 0, 5 attempts, not unique.
    pub fn new(kind: impl Into<String>, queue: impl Into<String>, payload: serde_json::Value, now: i64) -> Self {
        Self {
            kind: kind.into(),
            queue: queue.into(),
            payload,
            priority: 0,
            run_at: now,
            max_attempts: 5,
            unique_key: None,
            trace: None,
        }
    }

    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    pub fn at(mut self, run_at: i64) -> Self {
        self.run_at = run_at;
        self
    }

    pub fn attempts(mut self, max: u32) -> Self {
        self.max_attempts = max.max(1);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created(JobId),
    /// A queued or running job already holds the unique key.
    Duplicate(JobId),
}

impl Enqueued {
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A claimed job, as handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub queue: String,
    pub payload: serde_json::Value,
    pub priority: i16,
    /// Attempts so far, this one included (1 on the first run).
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    /// The lease ends here unless heartbeated.
    pub lease_until: i64,
    /// The W3C `traceparent` of whoever enqueued it; its run span is a
    /// child of that context.
    pub trace: Option<String>,
}

/// Everything known about a job, for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: JobId,
    pub kind: String,
    pub queue: String,
    pub state: JobState,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
    /// The worker holding the lease (while running).
    pub worker: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Keyset cursor: only jobs with a smaller id (newest first).
    pub before: Option<JobId>,
    pub limit: u32,
}

/// Job counts of one queue by state. `scheduled` is the part of `queued`
/// whose `run_at` is still in the future.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub queue: String,
    pub queued: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

/// Which jobs a bulk action (`JobQueue::retry_matching`,
/// `JobQueue::discard_matching`) applies to: every job matching all the
/// given fields. Running and done jobs are never touched by either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkFilter {
    pub queue: Option<String>,
    pub state: Option<BulkState>,
    pub kind: Option<String>,
}

/// The states a bulk action may select: a queued job is `Scheduled` while
/// its `run_at` is in the future and `Ready` once it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkState {
    Dead,
    Scheduled,
    Ready,
}

impl BulkState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dead" => Some(BulkState::Dead),
            "scheduled" => Some(BulkState::Scheduled),
            "ready" => Some(BulkState::Ready),
            _ => None,
        }
    }
}

/// A periodic schedule as operators see it (`GET /v1/admin/schedules`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    /// The job each tick enqueues (its `run_at` is the tick's).
    pub job: NewJob,
    /// The next tick strictly after the `now` asked about, epoch ms.
    pub next_at: Option<i64>,
}

/// The configured periodic schedules, for the operator routes: the API
/// knows them through this port rather than by importing the scheduler
/// (`worker` implements it), so an `api`-only process can show and run
/// schedules that its workers fire.
pub trait ScheduleBook: Send + Sync {
    /// Every schedule, with its next tick after `now` (epoch ms).
    fn schedules(&self, now: i64) -> Vec<ScheduleInfo>;
}

/// A durable job queue shared by every process of a deployment.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueue jobs, one answer per job in order. Atomic per job, batched
    /// per call.
    async fn enqueue(&self, jobs: &[NewJob], now: i64) -> PortResult<Vec<Enqueued>>;

    /// Lease up to `max` due jobs of `queue` to `worker` until `now + lease`
    /// (see the module docs for order and expired leases).
    async fn claim(&self, queue: &str, worker: &str, max: usize, lease: Duration, now: i64) -> PortResult<Vec<Job>>;

    /// Extend the leases `worker` still holds on `ids` to `now + lease`;
    /// returns the ids it still holds (a lost lease means another worker may
    /// be running the job: stop caring about it).
    async fn heartbeat(&self, ids: &[JobId], worker: &str, lease: Duration, now: i64) -> PortResult<Vec<JobId>>;

    /// Mark jobs `worker` holds as done. Jobs it no longer holds are left alone.
    async fn complete(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()>;

    /// Record a failed attempt: queue it again at `retry_at`, or (with
    /// `None`) keep it as dead.
    async fn fail(&self, id: JobId, worker: &str, error: &str, retry_at: Option<i64>, now: i64) -> PortResult<()>;

    /// Give leased jobs back unrun (graceful shutdown, and the runner's
    /// prefetch buffer): queued again, and the attempt does not count. A
    /// job keeps its `run_at` (it was due when claimed, so it is due now)
    /// and so its place in the claim order: a job given back is claimed
    /// before the ones enqueued after it, as if it had never been taken.
    async fn release(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()>;

    /// Enqueue `job` for the periodic schedule `schedule`'s time slot `slot`
    /// (epoch ms of the cron tick), unless some process already did: `true`
    /// for the one caller that enqueued it.
    async fn fire(&self, schedule: &str, slot: i64, job: &NewJob, now: i64) -> PortResult<bool>;

    /// The newest slot fired for `schedule`, if any.
    async fn last_fired(&self, schedule: &str) -> PortResult<Option<i64>>;

    /// The newest slot fired for every schedule that ever fired, by name,
    /// in one statement (the schedules list shows them all: one
    /// `last_fired` per schedule was an N+1).
    async fn last_fired_all(&self) -> PortResult<std::collections::HashMap<String, i64>>;

    async fn get(&self, id: JobId) -> PortResult<Option<JobInfo>>;

    /// Newest first.
    async fn list(&self, filter: &JobFilter) -> PortResult<Vec<JobInfo>>;

    /// Per queue, every queue that has jobs (and the four standard ones).
    async fn counts(&self, now: i64) -> PortResult<Vec<QueueCounts>>;

    /// Queue a dead job again, due now, with its attempts reset. `false` if
    /// there is no such dead job.
    async fn retry(&self, id: JobId, now: i64) -> PortResult<bool>;

    /// Delete a queued or dead job. `false` if there is no such job (or it
    /// is running).
    async fn discard(&self, id: JobId) -> PortResult<bool>;

    /// Bulk retry of every job matching `filter`, in one statement: dead
    /// jobs are queued again due now with their attempts reset, scheduled
    /// ones are made due now (ready ones are left as they are). Without a
    /// state, dead jobs only. Returns how many jobs changed.
    async fn retry_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64>;

    /// Bulk discard: delete every queued or dead job matching `filter`, in
    /// one statement (never a running or done one). Returns how many went.
    async fn discard_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64>;

    /// Delete done jobs finished before `before` and fired schedule slots
    /// older than it; returns the number of jobs deleted.
    async fn prune(&self, before: i64) -> PortResult<u64>;

    async fn health(&self) -> PortResult<()>;
}

// Every job kind rushhour runs, in one list: the API and the processors
// enqueue some of them and depend on `domain` only, so the names live here;
// each kind's queue, attempts, priority and body are registered in
// `worker::catalog`.

/// The upstream catalog sync (`domain::sync::sync_menu`).
pub const SYNC_MENU: &str = "sync.menu";
/// The loyalty accounts sync (`domain::sync::sync_accounts`).
pub const SYNC_ACCOUNTS: &str = "sync.accounts";
/// Load every menu into the caches (`domain::housekeeping::warm_up`).
pub const CACHE_WARMUP: &str = "cache.warmup";
/// Record a performance snapshot (`domain::housekeeping::snapshot`).
pub const PERF_SNAPSHOT: &str = "perf.snapshot";
/// Expire ready orders nobody picked up (`domain::housekeeping::expire_orders`).
pub const ORDERS_EXPIRE: &str = "orders.expire";
/// Retention (`domain::housekeeping::cleanup`).
pub const CLEANUP: &str = "cleanup.nightly";
/// Refresh the store's planner statistics (`Store::maintain`).
pub const DB_MAINTENANCE: &str = "db.maintenance";
/// Rank every store's best sellers (`domain::reports::refresh_popular`).
pub const POPULAR_REFRESH: &str = "popular.refresh";
/// Back up every database and prune old backups (`ports::Backups`; the
/// `backup` schedule, off by default).
pub const DB_BACKUP: &str = "db.backup";
/// A job that does nothing (`rushhour bench jobs`).
pub const NOOP: &str = "noop";

/// The queue and attempts of the sync jobs (`sync_job`, and their
/// registration in `worker::catalog`).
pub const SYNC_QUEUE: &str = "sync";
pub const SYNC_ATTEMPTS: u32 = 3;

/// A sync job of `kind` (`SYNC_MENU` or `SYNC_ACCOUNTS`): on the `sync`
/// queue, 3 attempts, unique by kind (a sync asked for while one is queued
/// or running is not queued again).
pub fn sync_job(kind: &str, now: i64) -> NewJob {
    NewJob::new(kind, SYNC_QUEUE, serde_json::json!({}), now)
        .attempts(SYNC_ATTEMPTS)
        .unique(kind)
}

/// E-mail a picked-up order's receipt (`domain::receipt::send_receipt`).
pub const MAIL_RECEIPT: &str = "mail.receipt";
/// The queue and attempts of receipt jobs (`receipt_job`, and their
/// registration in `worker::catalog`).
pub const RECEIPT_QUEUE: &str = "mail";
pub const RECEIPT_ATTEMPTS: u32 = 8;

/// The receipt job of a picked-up order: on the `mail` queue, unique per
/// order (a repeated pickup request does not send two), 8 attempts.
pub fn receipt_job(order: crate::ids::OrderId, now: i64) -> NewJob {
    NewJob::new(
        MAIL_RECEIPT,
        RECEIPT_QUEUE,
        serde_json::json!({ "order_id": order.to_string() }),
        now,
    )
    .attempts(RECEIPT_ATTEMPTS)
    .unique(format!("{MAIL_RECEIPT}:{order}"))
}

/// Attempt a webhook subscriber's due deliveries
/// (`domain::webhooks::deliver_due`).
pub const WEBHOOK_DELIVER: &str = "webhooks.deliver";
/// The queue of webhook deliveries: of its own, so a slow subscriber never
/// delays receipts, syncs or maintenance.
pub const WEBHOOK_QUEUE: &str = "webhooks";
pub const WEBHOOK_ATTEMPTS: u32 = 3;

/// The delivery job of one subscriber, unique per subscriber: one runs at
/// a time, which is what keeps its per-order order and its concurrency
/// bound (the deliveries' own retries are in their rows, not here).
pub fn webhook_job(subscriber: i64, now: i64) -> NewJob {
    NewJob::new(
        WEBHOOK_DELIVER,
        WEBHOOK_QUEUE,
        serde_json::json!({ "subscriber": subscriber }),
        now,
    )
    .attempts(WEBHOOK_ATTEMPTS)
    .unique(format!("{WEBHOOK_DELIVER}:{subscriber}"))
}

/// Report a picked-up order's loyalty points to the loyalty service
/// (`domain::loyalty::report`).
pub const LOYALTY_REPORT: &str = "loyalty.report";
/// The attempts of points reports (on the `sync` queue, with the other
/// upstream calls).
pub const LOYALTY_REPORT_ATTEMPTS: u32 = 8;

/// The points report of a picked-up order: on the `sync` queue, unique per
/// order, 8 attempts.
pub fn loyalty_report_job(order: crate::ids::OrderId, now: i64) -> NewJob {
    NewJob::new(
        LOYALTY_REPORT,
        SYNC_QUEUE,
        serde_json::json!({ "order_id": order.to_string() }),
        now,
    )
    .attempts(LOYALTY_REPORT_ATTEMPTS)
    .unique(format!("{LOYALTY_REPORT}:{order}"))
}
