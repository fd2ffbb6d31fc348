//! The job catalog: every background job kind rushhour runs, with its queue,
//! attempts, priority and body, and which configured schedule fires which
//! kind. Adding a job means one line in [`registry`] (and a use-case in
//! `domain`); nothing in the binary changes but its configuration.
//!
//! | kind | queue | fired by |
//! |---|---|---|
//! | `sync.menu` | sync | hourly, `rushhour sync menu --background`, admin |
//! | `sync.accounts` | sync | nightly, `rushhour sync accounts --background` |
//! | `cache.warmup` | maintenance | every 30 min |
//! | `perf.snapshot` | maintenance | every 5 min |
//! | `orders.expire` | maintenance | every minute |
//! | `cleanup.nightly` | maintenance | nightly |
//! | `db.maintenance` | maintenance | nightly |
//! | `db.backup` | maintenance | `backup` schedule (off by default) |
//! | `mail.receipt` | mail | an order's pickup (the outbox relay) |
//! | `loyalty.report` | sync | a pickup that earned points (the outbox relay) |
//! | `webhooks.deliver` | webhooks | the webhook dispatcher (a subscriber with deliveries due) |
//! | `noop` | default | `rushhour bench jobs` |
//!
//! The kind names themselves are constants in `domain::jobs`, because the
//! API and the processors enqueue some of them and depend on `domain` only.
//! The bodies are thin: each calls a `domain` use-case through ports and
//! records its metrics, so `rushhour sync`, `rushhour warmup` and the job of
//! the same name run the very same code ([`Tasks`]).

use std::sync::Arc;
use std::time::Duration;

use domain::housekeeping::{self, Cleaned, RetentionPeriods};
use domain::jobs::{
    CACHE_WARMUP, CLEANUP, DB_BACKUP, DB_MAINTENANCE, Job, JobQueue, LOYALTY_REPORT, LOYALTY_REPORT_ATTEMPTS,
    MAIL_RECEIPT, NOOP, NewJob, ORDERS_EXPIRE, PERF_SNAPSHOT, POPULAR_REFRESH, RECEIPT_ATTEMPTS, RECEIPT_QUEUE,
    SYNC_ACCOUNTS, SYNC_ATTEMPTS, SYNC_MENU, SYNC_QUEUE, WEBHOOK_ATTEMPTS, WEBHOOK_DELIVER, WEBHOOK_QUEUE,
};
use domain::ops::{PerfSnapshot, SyncRun};
use domain::ports::{Backups, Mailer, PortError, PortResult, SessionStore, WebhookSender};
use domain::sync::{AuthEpoch, NoProgress, SyncProgress, Upstream};
use domain::webhooks::{AttemptReport, DeliverySettings, DeliveryState};
use domain::{OrderId, Rushhour};
use futures::FutureExt;
use futures::future::BoxFuture;
use telemetry::names;

use crate::jobs::{JobError, JobKind, Registry, handler_fn};
use crate::scheduler::{Schedule, ScheduleError, parse_schedule};

/// Which job each configured schedule (`scheduler.schedules.<name>`) fires.
pub const SCHEDULES: [(&str, &str); 9] = [
    ("menu_sync", SYNC_MENU),
    ("accounts_sync", SYNC_ACCOUNTS),
    ("cache_warmup", CACHE_WARMUP),
    ("perf_snapshot", PERF_SNAPSHOT),
    ("order_expiry", ORDERS_EXPIRE),
    ("cleanup", CLEANUP),
    ("db_maintenance", DB_MAINTENANCE),
    ("popular_refresh", POPULAR_REFRESH),
    ("backup", DB_BACKUP),
];

/// A configured schedule the catalog cannot turn into a job.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("scheduler.schedules.{name}: unknown schedule (known: {known})")]
    UnknownSchedule { name: String, known: String },
    #[error("unknown job kind {0}")]
    UnknownKind(String),
    #[error("scheduler.schedules.{name} = {cron:?}: {source}")]
    Schedule {
        name: String,
        cron: String,
        source: ScheduleError,
    },
}

/// The settings the job bodies need besides the ports.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// A ready order not picked up within this expires.
    pub pickup_timeout: Duration,
    pub retention: RetentionPeriods,
    /// Accounts asked of the loyalty service per page.
    pub accounts_page: u32,
    /// This process, as named in performance snapshots.
    pub instance: String,
}

/// What the jobs need: the application's ports and a few settings.
pub struct Tasks {
    pub app: Arc<Rushhour>,
    pub jobs: Arc<dyn JobQueue>,
    pub upstream: Arc<dyn Upstream>,
    pub mailer: Arc<dyn Mailer>,
    pub settings: TaskSettings,
    /// Login sessions, purged by the nightly cleanup when set.
    pub sessions: Option<Arc<dyn SessionStore>>,
    /// Backups of every database, taken by the `db.backup` job when set.
    pub backups: Option<Arc<dyn Backups>>,
    /// The upstream auth epoch this process last saw.
    auth_epoch: AuthEpoch,
    /// Outbound webhooks' HTTP client and delivery settings, when this
    /// process delivers them.
    webhooks: Option<(Arc<dyn WebhookSender>, DeliverySettings)>,
}

impl Tasks {
    pub fn new(
        app: Arc<Rushhour>,
        jobs: Arc<dyn JobQueue>,
        upstream: Arc<dyn Upstream>,
        mailer: Arc<dyn Mailer>,
        settings: TaskSettings,
    ) -> Self {
        Self {
            app,
            jobs,
            upstream,
            mailer,
            settings,
            sessions: None,
            backups: None,
            auth_epoch: AuthEpoch::default(),
            webhooks: None,
        }
    }

    /// Let the `webhooks.deliver` jobs send with `sender` under `settings`.
    pub fn with_webhooks(mut self, sender: Arc<dyn WebhookSender>, settings: DeliverySettings) -> Self {
        self.webhooks = Some((sender, settings));
        self
    }

    /// Attempt `subscriber`'s due webhook deliveries (one job's work) and
    /// record their metrics.
    pub async fn deliver_webhooks(&self, subscriber: i64) -> PortResult<Vec<AttemptReport>> {
        let Some((sender, settings)) = &self.webhooks else {
            return Err(PortError::Unavailable("this process has no webhook sender".into()));
        };
        let reports =
            domain::webhooks::deliver_due(&*self.app.store, &**sender, &*self.app.clock, subscriber, settings).await?;
        for r in &reports {
            let outcome = match r.state {
                DeliveryState::Delivered => "delivered",
                DeliveryState::Pending => "retry",
                DeliveryState::Dead => "dead",
            };
            metrics::counter!(names::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
            metrics::histogram!(names::WEBHOOK_DELIVERY_DURATION).record(r.duration.as_secs_f64());
        }
        Ok(reports)
    }

    /// Let the nightly cleanup purge expired sessions too.
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Let the `db.backup` job take backups.
    pub fn with_backups(mut self, backups: Arc<dyn Backups>) -> Self {
        self.backups = Some(backups);
        self
    }

    /// The `db.backup` job: one backup, then the retention.
    pub async fn backup(&self) -> PortResult<domain::ports::BackupTaken> {
        let Some(backups) = &self.backups else {
            return Err(PortError::Invalid(
                "this process takes no backups (scheduler only?)".into(),
            ));
        };
        let taken = backups.backup_and_prune().await?;
        tracing::info!(dir = %taken.dir, files = taken.files, pruned = taken.pruned, "backup taken");
        Ok(taken)
    }

    /// `rushhour cache clear --auth`: every process forgets its token.
    pub async fn clear_auth_everywhere(&self) -> PortResult<()> {
        domain::sync::clear_auth_everywhere(&*self.app.store, &*self.upstream, &*self.app.clock).await
    }

    pub async fn sync_menu(&self, progress: &dyn SyncProgress) -> PortResult<SyncRun> {
        self.auth_epoch.honour(&*self.app.store, &*self.upstream).await?;
        let run = domain::sync::sync_menu(
            &*self.app.store,
            &*self.app.menus,
            &*self.upstream,
            &*self.app.clock,
            progress,
        )
        .await;
        record_sync_metrics("menu", &run);
        run
    }

    pub async fn sync_accounts(&self, progress: &dyn SyncProgress) -> PortResult<SyncRun> {
        self.auth_epoch.honour(&*self.app.store, &*self.upstream).await?;
        let run = domain::sync::sync_accounts(
            &*self.app.store,
            &*self.upstream,
            &*self.app.clock,
            self.settings.accounts_page,
            progress,
        )
        .await;
        record_sync_metrics("accounts", &run);
        run
    }

    /// Load every store's menu into the caches; how many were loaded.
    pub async fn warm_up(&self, progress: &dyn SyncProgress) -> PortResult<usize> {
        let n = housekeeping::warm_up(&self.app, progress).await?;
        metrics::counter!(names::CACHE_WARMUPS).increment(1);
        Ok(n)
    }

    pub async fn expire_orders(&self) -> PortResult<usize> {
        let n = housekeeping::expire_orders(&self.app, self.settings.pickup_timeout).await?;
        metrics::counter!(names::ORDERS_EXPIRED).increment(n as u64);
        Ok(n)
    }

    pub async fn cleanup(&self) -> PortResult<Cleaned> {
        let mut cleaned = housekeeping::cleanup(&self.app, &*self.jobs, &self.settings.retention).await?;
        if let Some(sessions) = &self.sessions {
            cleaned.expired_sessions = sessions.purge_sessions(self.app.clock.now_ms()).await?;
            tracing::info!(expired_sessions = cleaned.expired_sessions, "purged expired sessions");
        }
        Ok(cleaned)
    }

    pub async fn snapshot(&self) -> PortResult<PerfSnapshot> {
        housekeeping::snapshot(&self.app, &*self.jobs, &self.settings.instance).await
    }

    pub async fn send_receipt(&self, order: OrderId) -> PortResult<bool> {
        let sent = domain::receipt::send_receipt(&*self.app.store, &*self.mailer, order).await?;
        if sent {
            metrics::counter!(names::RECEIPTS_SENT).increment(1);
        }
        Ok(sent)
    }
}

fn record_sync_metrics(kind: &'static str, run: &Result<SyncRun, PortError>) {
    match run {
        Ok(r) => {
            let outcome = if r.outcome == "not_modified" {
                "not_modified"
            } else {
                "ok"
            };
            metrics::counter!(names::SYNC_RUNS, "kind" => kind, "outcome" => outcome).increment(1);
            metrics::gauge!(names::SYNC_LAST_FETCHED, "kind" => kind).set(r.fetched as f64);
            metrics::gauge!(names::SYNC_LAST_CHANGED, "kind" => kind).set(r.changed as f64);
            metrics::histogram!(names::SYNC_DURATION, "kind" => kind)
                .record((r.finished_at - r.started_at).max(0) as f64 / 1000.0);
        }
        Err(_) => metrics::counter!(names::SYNC_RUNS, "kind" => kind, "outcome" => "failed").increment(1),
    }
}

/// A port failure is worth retrying when the backend may come back;
/// anything else is final.
fn job_error(e: PortError) -> JobError {
    if e.is_retryable() {
        JobError::Retry(e.to_string())
    } else {
        JobError::Fatal(e.to_string())
    }
}

/// A failed sync attempt: with the upstream circuit open, the next attempt
/// waits until it closes (an attempt inside the cooldown could only fail
/// with "circuit open"); otherwise as any port failure. Each attempt runs
/// as a half-open probe, so that next attempt (or an operator's retry
/// before it) does reach the upstream.
fn sync_error(t: &Tasks, e: PortError) -> JobError {
    match t.upstream.open_for() {
        Some(open) if e.is_retryable() => JobError::RetryAfter(e.to_string(), open),
        _ => job_error(e),
    }
}

/// The order a job's payload names (`{"order_id": "<uuid>"}`).
fn order_of(job: &Job) -> Result<OrderId, JobError> {
    job.payload
        .get("order_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .map(OrderId)
        .ok_or_else(|| JobError::Fatal(format!("{} payload without an order_id: {}", job.kind, job.payload)))
}

/// A job body: a plain function of the tasks and the job.
type Body = fn(Arc<Tasks>, Job) -> BoxFuture<'static, Result<(), JobError>>;

/// Every job kind rushhour knows, bound to `tasks`.
pub fn registry(tasks: Arc<Tasks>) -> Registry {
    let mut r = Registry::new();
    let mut add = |name: &'static str, queue: &'static str, max_attempts: u32, priority: i16, body: Body| {
        r.register(JobKind {
            name,
            queue,
            max_attempts,
            priority,
            handler: {
                let tasks = tasks.clone();
                handler_fn(move |job| body(tasks.clone(), job))
            },
        });
    };
    add(NOOP, "default", 3, 0, |_, _| async { Ok(()) }.boxed());
    // Every sync attempt is a half-open probe of the upstream circuit (see
    // `sync_error` and `upstream::breaker`).
    add(SYNC_MENU, SYNC_QUEUE, SYNC_ATTEMPTS, 0, |t, _| {
        async move {
            t.upstream.probe();
            t.sync_menu(&NoProgress).await.map(drop).map_err(|e| sync_error(&t, e))
        }
        .boxed()
    });
    add(SYNC_ACCOUNTS, SYNC_QUEUE, SYNC_ATTEMPTS, 0, |t, _| {
        async move {
            t.upstream.probe();
            t.sync_accounts(&NoProgress)
                .await
                .map(drop)
                .map_err(|e| sync_error(&t, e))
        }
        .boxed()
    });
    add(CACHE_WARMUP, "maintenance", 2, 0, |t, _| {
        async move { t.warm_up(&NoProgress).await.map(drop).map_err(job_error) }.boxed()
    });
    add(PERF_SNAPSHOT, "maintenance", 1, 0, |t, _| {
        async move { t.snapshot().await.map(drop).map_err(job_error) }.boxed()
    });
    // Expiry outranks the rest of the maintenance queue: a customer's
    // order status depends on it.
    add(ORDERS_EXPIRE, "maintenance", 2, 10, |t, _| {
        async move { t.expire_orders().await.map(drop).map_err(job_error) }.boxed()
    });
    // Two attempts: a second try an hour later is better than no backup,
    // a third would overlap the next night's.
    add(DB_BACKUP, "maintenance", 2, -10, |t, _| {
        async move { t.backup().await.map(drop).map_err(job_error) }.boxed()
    });
    add(CLEANUP, "maintenance", 3, -10, |t, _| {
        async move { t.cleanup().await.map(drop).map_err(job_error) }.boxed()
    });
    // Best sellers for the menu's "popular now" row: cheap, and stale for
    // at most one more tick if a run fails.
    add(POPULAR_REFRESH, "maintenance", 2, 0, |t, _| {
        async move {
            let now = t.app.clock.now_ms();
            domain::reports::refresh_popular(&*t.app.store, now)
                .await
                .map(drop)
                .map_err(job_error)
        }
        .boxed()
    });
    add(DB_MAINTENANCE, "maintenance", 2, -10, |t, _| {
        async move { t.app.store.maintain().await.map(drop).map_err(job_error) }.boxed()
    });
    add(MAIL_RECEIPT, RECEIPT_QUEUE, RECEIPT_ATTEMPTS, 0, |t, job| {
        async move {
            let id = order_of(&job)?;
            t.send_receipt(id).await.map(drop).map_err(job_error)
        }
        .boxed()
    });
    add(LOYALTY_REPORT, SYNC_QUEUE, LOYALTY_REPORT_ATTEMPTS, 0, |t, job| {
        async move {
            let id = order_of(&job)?;
            let now = t.app.clock.now_ms();
            domain::loyalty::report(&*t.app.store, &*t.upstream, id, now)
                .await
                .map(drop)
                .map_err(|e| sync_error(&t, e))
        }
        .boxed()
    });
    add(WEBHOOK_DELIVER, WEBHOOK_QUEUE, WEBHOOK_ATTEMPTS, 0, |t, job| {
        async move {
            let id = job.payload.get("subscriber").and_then(|v| v.as_i64()).ok_or_else(|| {
                JobError::Fatal(format!(
                    "webhooks.deliver payload without a subscriber: {}",
                    job.payload
                ))
            })?;
            t.deliver_webhooks(id).await.map(drop).map_err(job_error)
        }
        .boxed()
    });
    r
}

/// The periodic schedules from configuration (`name → cron`; an empty cron
/// switches a schedule off), each firing its job (unique, so a slow run is
/// never doubled by the next tick).
pub fn schedules<'a>(
    configured: impl IntoIterator<Item = (&'a str, &'a str)>,
    registry: &Registry,
    now: i64,
) -> Result<Vec<Schedule>, CatalogError> {
    let mut out = Vec::new();
    for (name, cron) in configured {
        if cron.trim().is_empty() {
            continue;
        }
        let kind = SCHEDULES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| CatalogError::UnknownSchedule {
                name: name.to_owned(),
                known: SCHEDULES.map(|(n, _)| n).join(", "),
            })?;
        let job = unique_job(registry, kind, now)?;
        out.push(
            parse_schedule(name, cron, job).map_err(|source| CatalogError::Schedule {
                name: name.to_owned(),
                cron: cron.to_owned(),
                source,
            })?,
        );
    }
    Ok(out)
}

/// A job of `kind` with its kind's queue, priority and attempts, unique by
/// kind: a second `sync.menu` while one is queued or running is not added.
pub fn unique_job(registry: &Registry, kind: &str, now: i64) -> Result<NewJob, CatalogError> {
    if registry.kind(kind).is_none() {
        return Err(CatalogError::UnknownKind(kind.to_owned()));
    }
    Ok(registry.new_job(kind, serde_json::json!({}), now).unique(kind))
}
