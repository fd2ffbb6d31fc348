//! The `OpsStore` contract: sync runs and snapshots listed newest first,
//! the nightly cleanup, maintenance. The cleanup's scene is orders, so
//! cases take the whole `Store`.

use domain::events::PaymentStatus;
use domain::ops::{PerfSnapshot, PruneStats, Retention, SyncRun};

use crate::fixtures::payment;

use super::*;

/// Calls `$callback! { ops: case, case, ... }` with every `OpsStore` case.
#[macro_export]
macro_rules! ops_store_cases {
    ($callback:ident) => {
        $callback! {
            ops:
            fresh_store_has_no_runs_or_snapshots,
            prune_removes_old_finished_orders_and_old_records,
            sync_runs_and_snapshots_list_newest_first,
            maintain_leaves_a_working_store,
        }
    };
}

/// The names of every `OpsStore` case, in the order `run_all` runs them.
pub const CASES: &[&str] = ops_store_cases!(case_names);

/// A new store has no sync runs or snapshots, and is healthy.
pub async fn fresh_store_has_no_runs_or_snapshots(store: Stores) {
    store.health().await.expect("a fresh store is healthy");
    assert_eq!(store.sync_runs(None, 10).await.unwrap(), vec![]);
    assert_eq!(store.snapshots(10).await.unwrap(), vec![]);
}

/// The nightly cleanup deletes finished orders placed before the cutoff
/// with their lines, events and payment events, keeps active and recent
/// ones, and deletes sync runs and snapshots from before the other cutoff.
pub async fn prune_removes_old_finished_orders_and_old_records(store: Stores) {
    let picked = placed_order(1, 1_000);
    let cancelled = placed_order(2, 1_001);
    let rejected = placed_order(1, 1_002);
    let expired = placed_order(1, 1_003);
    let active = placed_order(1, 1_004);
    let ready = placed_order(1, 1_005);
    let recent = placed_order(1, 50_000);
    let batch = [
        confirm(&picked),
        confirm(&cancelled),
        reject(&rejected, "closed"),
        confirm(&expired),
        confirm(&active),
        confirm(&ready),
        confirm(&recent),
    ];
    apply(&store, 0, 7, &batch, 2_000).await;
    make_ready(&store, &picked, 3_000).await;
    store.transition(picked.order_id, Action::PickUp, 3_100).await.unwrap();
    store
        .transition(cancelled.order_id, Action::Cancel, 3_000)
        .await
        .unwrap();
    make_ready(&store, &expired, 3_000).await;
    store.transition(expired.order_id, Action::Expire, 4_000).await.unwrap();
    make_ready(&store, &ready, 3_000).await;
    store.transition(recent.order_id, Action::Cancel, 51_000).await.unwrap();

    let paid_picked = payment(&picked, "evt-picked", PaymentStatus::Paid, 3_500);
    let paid_active = payment(&active, "evt-active", PaymentStatus::Paid, 3_500);
    let ghost = |event: &str, at: i64| PaymentV1 {
        order_id: OrderId::new(),
        ..payment(&active, event, PaymentStatus::Paid, at)
    };
    let (ghost_old, ghost_new) = (ghost("evt-ghost-old", 1_500), ghost("evt-ghost-new", 60_000));
    let all_payments = [paid_picked, paid_active, ghost_old, ghost_new];
    assert_eq!(pay(&store, 8, &all_payments, 3_600).await.payments, counts(2, 0, 2, 0));

    let runs = [
        sync_run("menu", 1_000, "ok"),
        sync_run("accounts", 2_000, "ok"),
        sync_run("menu", 60_000, "not_modified"),
    ];
    for r in &runs {
        store.record_sync_run(r).await.unwrap();
    }
    for s in [snapshot(1_000, 10), snapshot(60_000, 20)] {
        store.record_snapshot(&s).await.unwrap();
    }

    let retention = Retention {
        orders_before: 10_000,
        records_before: 10_000,
    };
    assert_eq!(
        store.prune(&retention).await.unwrap(),
        PruneStats { orders: 4, records: 3 }
    );
    for p in [&picked, &cancelled, &rejected, &expired] {
        assert_eq!(store.get_order(p.order_id).await.unwrap(), None);
        assert_eq!(
            order_events(&store, p.order_id).await,
            vec![],
            "events go with the order"
        );
    }
    for p in [&active, &ready, &recent] {
        assert!(store.get_order(p.order_id).await.unwrap().is_some());
        assert!(!order_events(&store, p.order_id).await.is_empty());
    }
    let mut kept: Vec<OrderId> = [&active, &ready, &recent].iter().map(|p| p.order_id).collect();
    kept.sort_by(|a, b| b.cmp(a));
    assert_eq!(all_pages(&store, filter(None, None, 10)).await, kept);
    assert_eq!(payment_status(&store, active.order_id).await, "paid");

    // The pruned order's payment event went with it (delivered again, it
    // finds no order), as did the old one for an unknown order; the kept
    // ones are still there (duplicates).
    assert_eq!(pay(&store, 9, &all_payments, 70_000).await.payments, counts(0, 2, 2, 0));

    assert_eq!(store.sync_runs(None, 10).await.unwrap(), vec![runs[2].clone()]);
    assert_eq!(store.snapshots(10).await.unwrap(), vec![snapshot(60_000, 20)]);
    assert_eq!(
        store.prune(&retention).await.unwrap(),
        PruneStats { orders: 0, records: 0 },
        "nothing left to prune"
    );
}

/// Sync runs list newest (latest start) first, filtered by kind and cut at
/// `limit`; snapshots newest first, metrics as they were.
pub async fn sync_runs_and_snapshots_list_newest_first(store: Stores) {
    let menu1 = sync_run("menu", 1_000, "ok");
    let acct2 = sync_run("accounts", 2_000, "ok");
    let menu3 = sync_run("menu", 3_000, "not_modified");
    let acct15 = sync_run("accounts", 1_500, "failed: upstream answered 503");
    for r in [&menu1, &acct2, &menu3, &acct15] {
        store.record_sync_run(r).await.unwrap();
    }
    assert_eq!(
        store.sync_runs(None, 10).await.unwrap(),
        vec![menu3.clone(), acct2.clone(), acct15, menu1.clone()]
    );
    assert_eq!(
        store.sync_runs(Some("menu"), 10).await.unwrap(),
        vec![menu3.clone(), menu1]
    );
    assert_eq!(store.sync_runs(Some("accounts"), 1).await.unwrap(), vec![acct2]);
    assert_eq!(store.sync_runs(None, 1).await.unwrap(), vec![menu3]);
    assert_eq!(store.sync_runs(Some("nothing"), 10).await.unwrap(), vec![]);

    let snaps = [snapshot(1_000, 120), snapshot(3_000, 300), snapshot(2_000, 240)];
    for s in &snaps {
        store.record_snapshot(s).await.unwrap();
    }
    assert_eq!(
        store.snapshots(10).await.unwrap(),
        vec![snaps[1].clone(), snaps[2].clone(), snaps[0].clone()]
    );
    assert_eq!(store.snapshots(1).await.unwrap(), vec![snaps[1].clone()]);
}

/// Maintenance reports what ran and leaves the store working.
pub async fn maintain_leaves_a_working_store(store: Stores) {
    let a = placed_order(2, 1_000);
    apply(&store, 0, 1, &[confirm(&a)], 2_000).await;
    let line = store.maintain().await.unwrap();
    assert!(!line.trim().is_empty());
    assert!(!line.contains('\n'), "one line: {line:?}");
    store.health().await.unwrap();
    assert!(store.get_order(a.order_id).await.unwrap().is_some());
    store.maintain().await.unwrap();
    let b = placed_order(1, 1_001);
    assert_eq!(apply(&store, 0, 2, &[confirm(&b)], 3_000).await.inserted, 1);
}

fn sync_run(kind: &str, started_at: i64, outcome: &str) -> SyncRun {
    SyncRun {
        kind: kind.into(),
        started_at,
        finished_at: started_at + 250,
        fetched: 150_000,
        changed: 1_234,
        db_queries: 151,
        errors: 2,
        outcome: outcome.into(),
    }
}

fn snapshot(at: i64, orders_per_minute: i64) -> PerfSnapshot {
    PerfSnapshot {
        at,
        instance: "rushhour-1".into(),
        metrics: [
            ("orders_per_minute", orders_per_minute),
            ("consumer_lag", orders_per_minute / 10),
        ]
        .into_iter()
        .collect(),
    }
}
