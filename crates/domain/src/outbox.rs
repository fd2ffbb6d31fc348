//! The transactional outbox of the pickup (issue 12): a receipt and a
//! points report are enqueued atomically with the pickup, so a crash
//! between the two cannot lose them.
//!
//! The pickup already writes a row in the same store transaction as the
//! status change: its `picked_up` live event. That row is the outbox
//! record; a second table written beside it would say the same thing.
//! [`relay`] (run by a worker loop, `worker::outbox::Relay::run_once`)
//! reads each store's live events after the cursor it keeps in the store
//! (`outbox.<store>` in the sync cursors), awards the loyalty points the
//! pickup earned (`domain::loyalty::award`, once per order), enqueues the
//! jobs the pickup owes (the receipt and the points report, each unique
//! per order) and only then moves the cursor. A crash
//! between the two replays the events: the jobs' unique keys make the
//! second enqueue a no-op while the first is queued or running.
//!
//! Rejected: enqueueing from the HTTP handler after the commit (what was
//! there: lost on a crash in between), and enqueueing inside the store
//! transaction (the job queue is another database in embedded mode, and no
//! transaction spans two SQLite files).

use crate::events::{LiveEvent, LiveEventKind};
use crate::ids::StoreId;
use crate::jobs::{JobQueue, NewJob};
use crate::loyalty::PointsRule;
use crate::order::OrderStatus;
use crate::ports::{Clock, PortResult, Store};

/// The sync-cursor key under which the relay keeps a store's position.
pub fn cursor_key(store: &StoreId) -> String {
    format!("outbox.{store}")
}

/// Whether a committed live event is a pickup (an outbox record).
pub fn is_pickup(event: &LiveEvent) -> bool {
    event.kind == LiveEventKind::Status && event.status == OrderStatus::PickedUp
}

/// What a pickup owes: its points (awarded here, once), then its receipt
/// and, when it earned points, their report.
async fn owed(store: &dyn Store, rule: PointsRule, event: &LiveEvent, now: i64) -> PortResult<Vec<NewJob>> {
    let mut jobs = vec![crate::jobs::receipt_job(event.order_id, now)];
    if crate::loyalty::award(store, rule, event.order_id, now).await?.is_some() {
        jobs.push(crate::jobs::loyalty_report_job(event.order_id, now));
    }
    Ok(jobs)
}

/// One relay pass over every store: up to `batch` events each. Returns how
/// many jobs it enqueued (duplicates of live jobs included). A store
/// without a cursor starts from its first event (migration 0005 gave every
/// store that had events then a cursor after them: their receipts had been
/// enqueued by the handler of the time).
pub async fn relay(
    store: &dyn Store,
    jobs: &dyn JobQueue,
    clock: &dyn Clock,
    rule: PointsRule,
    batch: u32,
) -> PortResult<usize> {
    let mut enqueued = 0;
    for info in store.list_stores().await? {
        let key = cursor_key(&info.id);
        let after = store
            .sync_cursor(&key)
            .await?
            .and_then(|c| c.parse::<i64>().ok())
            .unwrap_or(0);
        let events = store
            .events_after(&crate::ports::EventScope::Store(info.id.clone()), after, batch)
            .await?;
        let Some(last) = events.last().map(|e| e.id) else {
            continue;
        };
        let now = clock.now_ms();
        let mut due = Vec::new();
        for e in events.iter().filter(|e| is_pickup(e)) {
            due.extend(owed(store, rule, e, now).await?);
        }
        if !due.is_empty() {
            enqueued += jobs.enqueue(&due, now).await?.len();
        }
        store.set_sync_cursor(&key, Some(&last.to_string())).await?;
    }
    Ok(enqueued)
}
