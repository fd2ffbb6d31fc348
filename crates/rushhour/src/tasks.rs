//! The jobs rushhour runs in the background, and the periodic schedule that
//! fires them: the bodies are thin, each calling a domain procedure or a
//! port, so `rushhour sync`, `rushhour warmup` and the job of the same name
//! run the very same code.
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
//! | `mail.receipt` | mail | an order's pickup |
//! | `noop` | default | `rushhour bench jobs` |

use anyhow::Context;
use domain::jobs::{Job, JobQueue, NewJob};
use domain::ops::{PerfSnapshot, Retention, SyncRun};
use domain::ports::{Email, Mailer, PortError};
use domain::sync::{NoProgress, SyncProgress};
use domain::{OrderId, OrderStatus, Rushhour};
use std::sync::Arc;
use std::time::Duration;
use worker::{JobError, JobKind, Registry};

use crate::config::Config;

pub use domain::jobs::{SYNC_ACCOUNTS, SYNC_MENU};
pub const CACHE_WARMUP: &str = "cache.warmup";
pub const PERF_SNAPSHOT: &str = "perf.snapshot";
pub const ORDERS_EXPIRE: &str = "orders.expire";
pub const CLEANUP: &str = "cleanup.nightly";
pub const DB_MAINTENANCE: &str = "db.maintenance";
pub use domain::jobs::MAIL_RECEIPT;
pub const NOOP: &str = "noop";

/// The store key under which `cache clear --auth` bumps the upstream auth
/// epoch: every process drops its cached token before its next sync.
const AUTH_EPOCH: &str = "upstream.auth_epoch";

/// Which job each configured schedule fires.
pub const SCHEDULES: [(&str, &str); 7] = [
    ("menu_sync", SYNC_MENU),
    ("accounts_sync", SYNC_ACCOUNTS),
    ("cache_warmup", CACHE_WARMUP),
    ("perf_snapshot", PERF_SNAPSHOT),
    ("order_expiry", ORDERS_EXPIRE),
    ("cleanup", CLEANUP),
    ("db_maintenance", DB_MAINTENANCE),
];

/// What the jobs need: the application's ports and a few settings.
pub struct Tasks {
    pub app: Arc<Rushhour>,
    pub jobs: Arc<dyn JobQueue>,
    pub upstream: Arc<upstream::UpstreamClient>,
    pub mailer: Arc<dyn Mailer>,
    pub pickup_timeout: Duration,
    pub retention: RetentionSettings,
    pub accounts_page: u32,
    pub instance: String,
    /// The auth epoch this process last saw (see `AUTH_EPOCH`).
    auth_epoch: std::sync::Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    pub orders: Duration,
    pub records: Duration,
    pub finished_jobs: Duration,
    pub idempotency: Duration,
}

impl Tasks {
    pub fn new(
        cfg: &Config,
        app: Arc<Rushhour>,
        jobs: Arc<dyn JobQueue>,
        upstream: Arc<upstream::UpstreamClient>,
        mailer: Arc<dyn Mailer>,
    ) -> Self {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let r = &cfg.jobs.retention;
        Self {
            app,
            jobs,
            upstream,
            mailer,
            pickup_timeout: Duration::from_secs(cfg.jobs.pickup_timeout_secs),
            retention: RetentionSettings {
                orders: days(r.orders_days),
                records: days(r.records_days),
                finished_jobs: days(r.finished_jobs_days),
                idempotency: Duration::from_secs(r.idempotency_hours.max(24) * 3600),
            },
            accounts_page: cfg.upstream.accounts_page,
            instance: cfg.worker_id(),
            auth_epoch: std::sync::Mutex::new(None),
        }
    }

    fn now(&self) -> i64 {
        self.app.clock.now_ms()
    }

    /// Drop the cached upstream token if `cache clear --auth` ran anywhere
    /// since this process last looked.
    async fn honour_auth_epoch(&self) -> Result<(), PortError> {
        let epoch = self.app.store.sync_cursor(AUTH_EPOCH).await?;
        let mut seen = self
            .auth_epoch
            .lock()
            .map_err(|_| PortError::Unavailable("auth epoch lock".into()))?;
        if *seen != epoch {
            if seen.is_some() || epoch.is_some() {
                self.upstream.clear_auth();
            }
            *seen = epoch;
        }
        Ok(())
    }

    /// `rushhour cache clear --auth`: every process forgets its token.
    pub async fn clear_auth_everywhere(&self) -> Result<(), PortError> {
        self.upstream.clear_auth();
        let epoch = self.now().to_string();
        self.app.store.set_sync_cursor(AUTH_EPOCH, Some(&epoch)).await
    }

    pub async fn sync_menu(&self, progress: &dyn SyncProgress) -> Result<SyncRun, PortError> {
        self.honour_auth_epoch().await?;
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

    pub async fn sync_accounts(&self, progress: &dyn SyncProgress) -> Result<SyncRun, PortError> {
        self.honour_auth_epoch().await?;
        let run = domain::sync::sync_accounts(
            &*self.app.store,
            &*self.upstream,
            &*self.app.clock,
            self.accounts_page,
            progress,
        )
        .await;
        record_sync_metrics("accounts", &run);
        run
    }

    /// Load every store's menu into the caches (L1 and, in scale mode,
    /// Redis), so the first customers after a deploy or a flush hit warm
    /// entries. Returns how many menus were loaded.
    pub async fn warm_up(&self, progress: &dyn SyncProgress) -> Result<usize, PortError> {
        let stores = self.app.store.list_stores().await?;
        progress.set_total(stores.len() as u64);
        for s in &stores {
            self.app.menu(&s.id).await.map_err(app_port_error)?;
            progress.advance(1);
        }
        metrics::counter!(telemetry::names::CACHE_WARMUPS).increment(1);
        Ok(stores.len())
    }

    /// Ready orders not picked up within `pickup_timeout` become `expired`.
    pub async fn expire_orders(&self) -> Result<usize, PortError> {
        let now = self.now();
        let cutoff = now - self.pickup_timeout.as_millis() as i64;
        let mut total = 0;
        loop {
            let events = self.app.store.expire_ready(cutoff, 500, now).await?;
            total += events.len();
            let more = events.len() == 500;
            self.app.publish(&events).await;
            if !more {
                break;
            }
        }
        if total > 0 {
            tracing::info!(expired = total, "expired orders not picked up in time");
        }
        metrics::counter!(telemetry::names::ORDERS_EXPIRED).increment(total as u64);
        Ok(total)
    }

    /// Retention: old finished orders and records, finished jobs, and
    /// idempotency keys past their promise.
    pub async fn cleanup(&self) -> Result<String, PortError> {
        let now = self.now();
        let ago = |d: Duration| now - d.as_millis() as i64;
        let pruned = self
            .app
            .store
            .prune(&Retention {
                orders_before: ago(self.retention.orders),
                records_before: ago(self.retention.records),
            })
            .await?;
        let jobs = self.jobs.prune(ago(self.retention.finished_jobs)).await?;
        let keys = self.app.log.prune_idempotency(ago(self.retention.idempotency)).await?;
        let line = format!(
            "pruned {} orders, {} records, {} finished jobs, {} idempotency keys",
            pruned.orders, pruned.records, jobs, keys
        );
        tracing::info!("{line}");
        Ok(line)
    }

    /// A row of key figures for `monitor` and for trend-watching.
    pub async fn snapshot(&self) -> Result<PerfSnapshot, PortError> {
        let orders: serde_json::Map<String, serde_json::Value> = self
            .app
            .store
            .order_counts()
            .await?
            .into_iter()
            .map(|(s, n)| (s.as_str().to_owned(), n.into()))
            .collect();
        let queues = self.jobs.counts(self.now()).await?;
        let (queued, running, dead) = queues
            .iter()
            .fold((0, 0, 0), |(q, r, d), c| (q + c.queued, r + c.running, d + c.dead));
        let snapshot = PerfSnapshot {
            at: self.now(),
            instance: self.instance.clone(),
            metrics: serde_json::json!({
                "orders_by_status": orders,
                "jobs_queued": queued,
                "jobs_running": running,
                "jobs_dead": dead,
                "dead_letters": self.app.store.dead_letters(1000).await?.len(),
                "loyalty_accounts": self.app.store.count_accounts().await?,
            }),
        };
        self.app.store.record_snapshot(&snapshot).await?;
        Ok(snapshot)
    }

    /// E-mail the receipt of a picked-up order to its customer: the
    /// customer field itself when it is an address, else the e-mail of the
    /// loyalty account it names. No address, no receipt.
    pub async fn send_receipt(&self, order: OrderId) -> Result<bool, PortError> {
        let Some(order) = self.app.store.get_order(order).await? else {
            return Ok(false);
        };
        if order.status != OrderStatus::PickedUp {
            return Ok(false);
        }
        let to = match order.customer.as_deref() {
            Some(c) if c.contains('@') => Some(c.to_owned()),
            Some(c) => self.app.store.loyalty_account(c).await?.and_then(|a| a.email),
            None => None,
        };
        let Some(to) = to else { return Ok(false) };
        let store_name = self
            .app
            .store
            .list_stores()
            .await?
            .into_iter()
            .find(|s| s.id == order.store)
            .map_or_else(|| order.store.to_string(), |s| s.name);
        let email: Email = mail::receipt::render(&order, &store_name, &to);
        self.mailer.send(&email).await?;
        metrics::counter!(telemetry::names::RECEIPTS_SENT).increment(1);
        Ok(true)
    }
}

fn app_port_error(e: domain::AppError) -> PortError {
    match e {
        domain::AppError::Backend(p) => p,
        other => PortError::Unavailable(other.to_string()),
    }
}

fn record_sync_metrics(kind: &'static str, run: &Result<SyncRun, PortError>) {
    use telemetry::names;
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

/// A job body: a plain function of the tasks and the job.
type Body = fn(Arc<Tasks>, Job) -> futures::future::BoxFuture<'static, Result<(), JobError>>;

/// Every job kind rushhour knows, bound to `tasks`.
pub fn registry(tasks: Arc<Tasks>) -> Registry {
    use futures::FutureExt;
    let mut r = Registry::new();
    let mut add = |name: &'static str, queue: &'static str, max_attempts: u32, priority: i16, body: Body| {
        r.register(JobKind {
            name,
            queue,
            max_attempts,
            priority,
            handler: {
                let tasks = tasks.clone();
                worker::handler_fn(move |job| body(tasks.clone(), job))
            },
        });
    };
    add(NOOP, "default", 3, 0, |_, _| async { Ok(()) }.boxed());
    add(SYNC_MENU, "sync", 3, 0, |t, _| {
        async move { t.sync_menu(&NoProgress).await.map(drop).map_err(job_error) }.boxed()
    });
    add(SYNC_ACCOUNTS, "sync", 3, 0, |t, _| {
        async move { t.sync_accounts(&NoProgress).await.map(drop).map_err(job_error) }.boxed()
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
    add(CLEANUP, "maintenance", 3, -10, |t, _| {
        async move { t.cleanup().await.map(drop).map_err(job_error) }.boxed()
    });
    add(DB_MAINTENANCE, "maintenance", 2, -10, |t, _| {
        async move { t.app.store.maintain().await.map(drop).map_err(job_error) }.boxed()
    });
    add(MAIL_RECEIPT, "mail", 8, 0, |t, job| {
        async move {
            let id = job
                .payload
                .get("order_id")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
                .ok_or_else(|| JobError::Fatal(format!("mail.receipt payload without an order_id: {}", job.payload)))?;
            t.send_receipt(OrderId(id)).await.map(drop).map_err(job_error)
        }
        .boxed()
    });
    r
}

/// The periodic schedules from config, each firing its job (unique, so a
/// slow run is never doubled by the next tick).
pub fn schedules(cfg: &Config, registry: &Registry, now: i64) -> anyhow::Result<Vec<worker::Schedule>> {
    let mut out = Vec::new();
    for (name, cron) in &cfg.scheduler.schedules {
        if cron.trim().is_empty() {
            continue;
        }
        let kind = SCHEDULES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
            .with_context(|| {
                format!(
                    "scheduler.schedules.{name}: unknown schedule (known: {})",
                    SCHEDULES.map(|(n, _)| n).join(", ")
                )
            })?;
        let job = unique_job(registry, kind, now)?;
        out.push(
            worker::parse_schedule(name, cron, job)
                .with_context(|| format!("scheduler.schedules.{name} = {cron:?}"))?,
        );
    }
    Ok(out)
}

/// A job of `kind` with its kind's queue, priority and attempts, unique by
/// kind: a second `sync.menu` while one is queued or running is not added.
pub fn unique_job(registry: &Registry, kind: &str, now: i64) -> anyhow::Result<NewJob> {
    anyhow::ensure!(registry.kind(kind).is_some(), "unknown job kind {kind}");
    Ok(registry.new_job(kind, serde_json::json!({}), now).unique(kind))
}
