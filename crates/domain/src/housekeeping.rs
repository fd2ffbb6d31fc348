//! Housekeeping use-cases run by the periodic jobs (and, for warm-up, by
//! `rushhour warmup`): expire orders nobody picked up, prune what retention
//! no longer keeps, record a performance snapshot, and load every menu into
//! the caches.
//!
//! They are written against ports only, like the other use-cases, so the
//! job catalog (`worker::catalog`) and the operator commands run the very
//! same code; metrics are the caller's business, since `domain` records
//! none. They used to be methods of a `Tasks` struct in the binary, where
//! no test could reach them without the whole wiring.

use std::fmt;
use std::time::Duration;

use crate::app::{AppError, Rushhour};
use crate::jobs::JobQueue;
use crate::ops::{PerfSnapshot, Retention};
use crate::ports::{PortError, PortResult};
use crate::sync::SyncProgress;

/// Orders `expire_orders` moves per store call.
const EXPIRE_CHUNK: u32 = 500;

/// Webhook deliveries `cleanup` deletes per statement: small enough that a
/// statement never holds the delivery log's locks for long (the delivery
/// jobs write to it all the time), large enough that a month of a busy
/// subscriber goes in a few hundred statements.
const DELIVERY_PRUNE_CHUNK: u32 = 5_000;

/// How long the nightly cleanup keeps each kind of row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPeriods {
    /// Finished orders, with their lines, tickets and events.
    pub orders: Duration,
    /// Sync runs and performance snapshots.
    pub records: Duration,
    /// Finished (done) jobs in the job queue.
    pub finished_jobs: Duration,
    /// Idempotency keys of the event log (at least the 24 h promised).
    pub idempotency: Duration,
    /// Audit entries of staff actions.
    pub audit: Duration,
    /// Delivered outbound webhook deliveries (the delivery log's receipts).
    pub webhook_deliveries: Duration,
    /// Dead outbound webhook deliveries: kept longer than delivered ones,
    /// since they are what an operator still has to act on (retry, or
    /// tell the receiver) and a pruned one can no longer be retried.
    pub dead_webhook_deliveries: Duration,
}

/// What one cleanup removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    pub orders: u64,
    pub records: u64,
    pub finished_jobs: u64,
    pub idempotency_keys: u64,
    pub audit_entries: u64,
    /// Delivered and dead webhook deliveries past their retention.
    pub webhook_deliveries: u64,
    /// Expired login sessions dropped (`SessionStore::purge_sessions`;
    /// counted by the caller that holds the session port).
    pub expired_sessions: u64,
}

impl fmt::Display for Cleaned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pruned {} orders, {} records, {} finished jobs, {} idempotency keys, {} audit entries, \
             {} webhook deliveries, {} expired sessions",
            self.orders,
            self.records,
            self.finished_jobs,
            self.idempotency_keys,
            self.audit_entries,
            self.webhook_deliveries,
            self.expired_sessions
        )
    }
}

/// Load every store's menu into the caches (L1 and, in scale mode, Redis),
/// so the first customers after a deploy or a flush hit warm entries.
/// Returns how many menus were loaded.
pub async fn warm_up(app: &Rushhour, progress: &dyn SyncProgress) -> PortResult<usize> {
    let stores = app.store.list_stores().await?;
    progress.set_total(stores.len() as u64);
    for s in &stores {
        app.menu(&s.id).await.map_err(app_port_error)?;
        progress.advance(1);
    }
    Ok(stores.len())
}

/// Ready orders not picked up within `pickup_timeout` become `expired`;
/// their live events are published. Returns how many expired.
pub async fn expire_orders(app: &Rushhour, pickup_timeout: Duration) -> PortResult<usize> {
    let now = app.clock.now_ms();
    let cutoff = now - pickup_timeout.as_millis() as i64;
    let mut total = 0;
    loop {
        let events = app.store.expire_ready(cutoff, EXPIRE_CHUNK, now).await?;
        total += events.len();
        let more = events.len() == EXPIRE_CHUNK as usize;
        app.publish(&events).await;
        if !more {
            break;
        }
    }
    if total > 0 {
        tracing::info!(expired = total, "expired orders not picked up in time");
    }
    Ok(total)
}

/// Retention: old finished orders and records, finished jobs, idempotency
/// keys past their promise, old audit entries, and delivered and dead
/// webhook deliveries (bounded statements, one after another).
pub async fn cleanup(app: &Rushhour, jobs: &dyn JobQueue, keep: &RetentionPeriods) -> PortResult<Cleaned> {
    let now = app.clock.now_ms();
    let ago = |d: Duration| now - d.as_millis() as i64;
    let pruned = app
        .store
        .prune(&Retention {
            orders_before: ago(keep.orders),
            records_before: ago(keep.records),
        })
        .await?;
    let finished_jobs = jobs.prune(ago(keep.finished_jobs)).await?;
    let idempotency_keys = app.log.prune_idempotency(ago(keep.idempotency)).await?;
    let audit_entries = app.store.purge_audit(ago(keep.audit)).await?;
    let mut webhook_deliveries = 0;
    loop {
        let n = app
            .store
            .prune_deliveries(
                ago(keep.webhook_deliveries),
                ago(keep.dead_webhook_deliveries),
                DELIVERY_PRUNE_CHUNK,
            )
            .await?;
        webhook_deliveries += n;
        if n < u64::from(DELIVERY_PRUNE_CHUNK) {
            break;
        }
    }
    let cleaned = Cleaned {
        orders: pruned.orders,
        records: pruned.records,
        finished_jobs,
        idempotency_keys,
        audit_entries,
        webhook_deliveries,
        expired_sessions: 0,
    };
    tracing::info!("{cleaned}");
    Ok(cleaned)
}

/// A row of key figures for `monitor` and for trend-watching, recorded in
/// the store under `instance` and returned.
pub async fn snapshot(app: &Rushhour, jobs: &dyn JobQueue, instance: &str) -> PortResult<PerfSnapshot> {
    let orders: serde_json::Map<String, serde_json::Value> = app
        .store
        .order_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), n.into()))
        .collect();
    let queues = jobs.counts(app.clock.now_ms()).await?;
    let (queued, running, dead) = queues
        .iter()
        .fold((0, 0, 0), |(q, r, d), c| (q + c.queued, r + c.running, d + c.dead));
    let snapshot = PerfSnapshot {
        at: app.clock.now_ms(),
        instance: instance.to_owned(),
        metrics: serde_json::json!({
            "orders_by_status": orders,
            "jobs_queued": queued,
            "jobs_running": running,
            "jobs_dead": dead,
            "dead_letters": app.store.dead_letters(1000).await?.len(),
            "loyalty_accounts": app.store.count_accounts().await?,
        }),
    };
    app.store.record_snapshot(&snapshot).await?;
    Ok(snapshot)
}

/// A port failure stays what it is; any other application error (an
/// unknown store, say) is reported as unavailable, since a job cannot act
/// on it.
fn app_port_error(e: AppError) -> PortError {
    match e {
        AppError::Backend(p) => p,
        other => PortError::Unavailable(other.to_string()),
    }
}
