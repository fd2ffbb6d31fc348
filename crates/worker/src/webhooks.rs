//! The webhook dispatcher: the loop that turns the store's outbox of order
//! events into deliveries and keeps one `webhooks.deliver` job queued for
//! every subscriber with something due (`domain::webhooks` has the road an
//! event takes and why).
//!
//! It runs beside the job runner in every worker process; the store lets
//! one dispatch run at a time, and the delivery jobs are unique per
//! subscriber, so a second dispatcher only costs a few queries. It never
//! touches the order path: intake and the processors know nothing of it.

use std::sync::Arc;
use std::time::Duration;

use domain::jobs::{JobQueue, webhook_job};
use domain::ports::{Clock, PortResult, WebhookStore};
use telemetry::names;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Outbox events fanned out per store transaction.
pub const DISPATCH_BATCH: u32 = 500;

/// The pending-deliveries gauge is refreshed every this many rounds.
const GAUGE_EVERY: u32 = 20;

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchRound {
    /// Outbox events fanned out.
    pub events: usize,
    /// Subscribers with due deliveries (a delivery job queued, or already
    /// there).
    pub subscribers: usize,
}

pub struct WebhookDispatcher {
    store: Arc<dyn WebhookStore>,
    jobs: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
}

impl WebhookDispatcher {
    pub fn new(store: Arc<dyn WebhookStore>, jobs: Arc<dyn JobQueue>, clock: Arc<dyn Clock>) -> Self {
        Self { store, jobs, clock }
    }

    /// One round: fan out the whole outbox, then queue a delivery job for
    /// every subscriber with a delivery due now (unique per subscriber: one
    /// already queued or running is left alone).
    pub async fn run_once(&self) -> PortResult<DispatchRound> {
        let now = self.clock.now_ms();
        let events = domain::webhooks::dispatch_all(&*self.store, DISPATCH_BATCH, now).await?;
        let due = self.store.due_subscribers(now).await?;
        if !due.is_empty() {
            let jobs: Vec<_> = due.iter().map(|s| webhook_job(*s, now)).collect();
            self.jobs.enqueue(&jobs, now).await?;
        }
        Ok(DispatchRound {
            events,
            subscribers: due.len(),
        })
    }

    /// Refresh the `webhook_deliveries_pending` gauge.
    pub async fn publish_gauge(&self) -> PortResult<u64> {
        let n = self.store.pending_deliveries().await?;
        metrics::gauge!(names::WEBHOOK_PENDING).set(n as f64);
        Ok(n)
    }
}

/// Run the dispatcher every `interval` until `shutdown`. A failed round is
/// logged and retried next tick: the outbox keeps what it did not take.
pub fn spawn_webhook_dispatcher(
    dispatcher: WebhookDispatcher,
    interval: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let mut round: u32 = 0;
        loop {
            if let Err(e) = dispatcher.run_once().await {
                tracing::warn!(error = %e, "webhook dispatch round failed");
            }
            if round.is_multiple_of(GAUGE_EVERY)
                && let Err(e) = dispatcher.publish_gauge().await
            {
                tracing::debug!(error = %e, "webhook pending gauge");
            }
            round = round.wrapping_add(1);
            tokio::select! {
                _ = dispatcher.clock.sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
