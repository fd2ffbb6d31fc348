//! The nightly cleanup (`domain::housekeeping::cleanup`, the body of the
//! `cleanup.nightly` job) on the real embedded log, store and queue, with
//! time set by the manual clock: each retention period removes what is
//! older than it and keeps the rest (webhook deliveries: delivered and dead
//! ones by their own periods).

use std::sync::Arc;
use std::time::Duration;

use domain::housekeeping::{self, RetentionPeriods};
use domain::identity::{AuditEntry, Role};
use domain::ops::SyncRun;
use domain::ports::{AuditLog, AuditQuery, OpsStore, WebhookStore};
use domain::webhooks::{Attempt, DeliveryState, EventType, NewSubscriber};
use domain::{Rushhour, RushhourConfig};
use tempfile::TempDir;
use testkit::clock::ManualClock;

const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

fn audit(at: i64, action: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: "alice".into(),
        role: Some(Role::Admin),
        action: action.into(),
        target: String::new(),
        detail: "{}".into(),
        source: String::new(),
    }
}

/// The retention periods of `config/default.toml`.
fn keep() -> RetentionPeriods {
    RetentionPeriods {
        orders: days(90),
        records: days(30),
        finished_jobs: days(7),
        idempotency: Duration::from_secs(26 * 3600),
        audit: days(365),
        webhook_deliveries: days(14),
        dead_webhook_deliveries: days(30),
    }
}

/// An app on embedded files in `dir`, its clock at `T0`.
fn app(dir: &TempDir) -> (Rushhour, Arc<store::SqliteStore>, queue::SqliteQueue) {
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), Default::default()).unwrap();
    let store = Arc::new(store::SqliteStore::open(&dir.path().join("store.db"), Default::default()).unwrap());
    let jobs = queue::SqliteQueue::open(&dir.path().join("jobs.db"), Default::default()).unwrap();
    let app = Rushhour {
        log: Arc::new(log),
        store: store.clone(),
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(60), 10)),
        feed: Arc::new(cache::BroadcastFeed::new(16)),
        clock: ManualClock::new(T0),
        config: RushhourConfig::default(),
    };
    (app, store, jobs)
}

#[tokio::test]
async fn cleanup_purges_audit_entries_past_their_retention() {
    let dir = TempDir::new().unwrap();
    let (app, store, jobs) = app(&dir);
    for (at, action) in [
        (T0 - 400 * DAY, "login"),
        (T0 - 366 * DAY, "user_add"),
        (T0 - 364 * DAY, "cancel"),
        (T0 - DAY, "login"),
    ] {
        store.append_audit(&audit(at, action)).await.unwrap();
    }
    // A sync run past its own (shorter) retention goes in the same run.
    store
        .record_sync_run(&SyncRun {
            kind: "menu".into(),
            started_at: T0 - 31 * DAY,
            finished_at: T0 - 31 * DAY,
            fetched: 1,
            changed: 0,
            db_queries: 1,
            errors: 0,
            outcome: "ok".into(),
        })
        .await
        .unwrap();
    let keep = keep();

    let cleaned = housekeeping::cleanup(&app, &jobs, &keep).await.unwrap();
    assert_eq!(cleaned.audit_entries, 2, "the two entries older than 365 days");
    assert_eq!(cleaned.records, 1);
    assert_eq!(cleaned.orders, 0);
    assert!(cleaned.to_string().contains("2 audit entries"), "{cleaned}");
    let left: Vec<String> = store
        .list_audit(&AuditQuery {
            limit: 500,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(left, ["login", "cancel"], "the recent entries stay, newest first");

    // Nothing more is due until time moves on.
    let again = housekeeping::cleanup(&app, &jobs, &keep).await.unwrap();
    assert_eq!(again.audit_entries, 0);
}

#[tokio::test]
async fn cleanup_prunes_webhook_deliveries_and_keeps_dead_ones_longer() {
    let dir = TempDir::new().unwrap();
    let (app, store, jobs) = app(&dir);
    let sub = store
        .create_subscriber(&NewSubscriber {
            url: "https://s.example".into(),
            events: EventType::SUBSCRIBABLE.to_vec(),
            store: None,
            secret: "whsec_test".into(),
            enabled: true,
            created_at: T0 - 60 * DAY,
        })
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(store.add_ping(sub.id, T0 - 60 * DAY).await.unwrap());
    }
    store.dispatch(100, T0 - 60 * DAY).await.unwrap();
    let finished = |event_id, state, at| Attempt {
        subscriber: sub.id,
        event_id,
        state,
        next_at: at,
        status: Some(200),
        body: None,
        error: None,
        at,
    };
    store
        .record_attempts(&[
            finished(events[0], DeliveryState::Delivered, T0 - 15 * DAY),
            finished(events[1], DeliveryState::Delivered, T0 - 13 * DAY),
            finished(events[2], DeliveryState::Dead, T0 - 20 * DAY),
            finished(events[3], DeliveryState::Dead, T0 - 31 * DAY),
        ])
        .await
        .unwrap();

    let cleaned = housekeeping::cleanup(&app, &jobs, &keep()).await.unwrap();
    assert_eq!(
        cleaned.webhook_deliveries, 2,
        "delivered 15 days ago and dead 31 days ago"
    );
    assert!(cleaned.to_string().contains("2 webhook deliveries"), "{cleaned}");
    let mut left: Vec<i64> = store
        .deliveries(sub.id, None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [events[1], events[2]],
        "the recent delivered one and the dead one within 30 days"
    );
    let again = housekeeping::cleanup(&app, &jobs, &keep()).await.unwrap();
    assert_eq!(again.webhook_deliveries, 0);
}
