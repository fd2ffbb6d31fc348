//! Processor tests on the real embedded log and store, driven step by step
//! with `run_once` (no timers): micro-batch bounds, resuming from the stored
//! position, poison records going to the dead-letter table without blocking
//! their partition, 86'd items rejecting orders, and payments applied once
//! per event id after their order.

use domain::events::{LogEvent, PaymentStatus, PaymentV1};
use domain::ports::{AppendOutcome, AppendRequest, EventLog, MenuStore, Position};
use domain::{OrderStatus, Rushhour, RushhourConfig};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use worker::{PartitionWorker, ProcessorConfig, TokioClock};

mod housekeeping;
mod jobs;
mod scheduler;
mod supervision;
mod webhooks;

struct Rig {
    app: Arc<Rushhour>,
    _dir: TempDir,
}

async fn rig() -> Rig {
    let dir = TempDir::new().unwrap();
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), Default::default()).unwrap();
    let store = store::SqliteStore::open(&dir.path().join("store.db"), Default::default()).unwrap();
    store.upsert_menu(&domain::menu::demo_menu()).await.unwrap();
    let app = Arc::new(Rushhour {
        log: Arc::new(log),
        store: Arc::new(store),
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(60), 10)),
        feed: Arc::new(cache::BroadcastFeed::new(1024)),
        clock: Arc::new(TokioClock),
        config: RushhourConfig::default(),
    });
    Rig { app, _dir: dir }
}

fn config() -> ProcessorConfig {
    ProcessorConfig {
        linger: Duration::ZERO,
        ..Default::default()
    }
}

/// Append raw bytes under `key`; returns where they landed.
async fn append(log: &dyn EventLog, key: &str, payload: Vec<u8>) -> Position {
    let req = AppendRequest {
        key: key.into(),
        payload,
        idempotency: None,
        trace: None,
    };
    match log.append(req).await.unwrap() {
        AppendOutcome::Appended(p) => p,
        other => panic!("{other:?}"),
    }
}

/// Append a valid order under `key` (so tests can steer its partition).
async fn append_order(log: &dyn EventLog, key: &str) -> (domain::OrderId, Position) {
    let mut placed = testkit::fixtures::placed_order(2, 1);
    placed.order_id = domain::OrderId::new();
    let id = placed.order_id;
    let p = append(log, key, LogEvent::OrderPlacedV1(placed).encode()).await;
    (id, p)
}

#[tokio::test]
async fn batches_are_bounded_and_resume_from_the_stored_position() {
    let rig = rig().await;
    let log = rig.app.log.clone();
    let mut ids = Vec::new();
    for _ in 0..250 {
        // One key, one partition: all 250 in partition p.
        ids.push(append_order(&*log, "same-key").await);
    }
    let p = ids[0].1.partition;
    let mut w = PartitionWorker::start(rig.app.clone(), config(), p).await.unwrap();
    assert_eq!(w.run_once(Duration::ZERO).await.unwrap(), 100);
    assert_eq!(w.run_once(Duration::ZERO).await.unwrap(), 100);
    assert_eq!(w.position(), 200);

    // A new worker (a restart) resumes where the store says, not at 0.
    let mut again = PartitionWorker::start(rig.app.clone(), config(), p).await.unwrap();
    assert_eq!(again.position(), 200);
    assert_eq!(again.run_once(Duration::ZERO).await.unwrap(), 50);
    assert_eq!(again.run_once(Duration::ZERO).await.unwrap(), 0);
    for (id, _) in &ids {
        let o = rig.app.store.get_order(*id).await.unwrap().expect("applied");
        assert_eq!(o.status, OrderStatus::Confirmed);
    }
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_does_not_block_its_partition() {
    let rig = rig().await;
    let log = rig.app.log.clone();
    let (before, p) = append_order(&*log, "k").await;
    let poison = append(&*log, "k", b"{\"type\":\"order_placed.v9\"}".to_vec()).await;
    let (after, _) = append_order(&*log, "k").await;
    assert_eq!(poison.partition, p.partition);

    let mut w = PartitionWorker::start(rig.app.clone(), config(), p.partition)
        .await
        .unwrap();
    assert_eq!(w.run_once(Duration::ZERO).await.unwrap(), 3);
    for id in [before, after] {
        let o = rig
            .app
            .store
            .get_order(id)
            .await
            .unwrap()
            .expect("applied around the poison");
        assert_eq!(o.status, OrderStatus::Confirmed);
    }
    let dead = rig.app.store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].offset, poison.offset);
    assert_eq!(dead[0].payload, b"{\"type\":\"order_placed.v9\"}".to_vec());
    assert!(dead[0].error.contains("undecodable"), "{}", dead[0].error);
    assert_eq!(
        rig.app
            .store
            .consumer_position(&config().group, p.partition)
            .await
            .unwrap(),
        poison.offset + 2
    );
}

#[tokio::test]
async fn items_86d_before_processing_reject_the_order_with_a_reason() {
    let rig = rig().await;
    let (id, p) = append_order(&*rig.app.log, "k").await;
    let store = domain::StoreId("demo-downtown".into());
    // The fixture's first line is a latte.
    rig.app.set_availability(&store, "latte", false).await.unwrap();
    let mut w = PartitionWorker::start(rig.app.clone(), config(), p.partition)
        .await
        .unwrap();
    w.run_once(Duration::ZERO).await.unwrap();
    let o = rig.app.store.get_order(id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Rejected);
    assert!(o.reject_reason.unwrap().contains("sold out"));
    assert!(o.lines.iter().all(|l| l.ticket.is_none()));
}

#[tokio::test]
async fn processing_publishes_live_events() {
    let rig = rig().await;
    let mut feed = rig.app.feed.subscribe().await.unwrap();
    let (id, p) = append_order(&*rig.app.log, "k").await;
    let mut w = PartitionWorker::start(rig.app.clone(), config(), p.partition)
        .await
        .unwrap();
    w.run_once(Duration::ZERO).await.unwrap();
    use futures::StreamExt;
    match feed.next().await {
        Some(domain::ports::FeedItem::Event(e)) => {
            assert_eq!(e.order_id, id);
            assert_eq!(e.status, OrderStatus::Confirmed);
        }
        other => panic!("expected the confirmation event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_record_the_store_keeps_refusing_is_dead_lettered_after_max_attempts() {
    let rig = rig().await;
    let log = rig.app.log.clone();
    let (good, p) = append_order(&*log, "k").await;
    // Decodes fine, but two lines share number 1: the store's primary key
    // refuses it every time (a conflict, which no retry can fix).
    let mut bad = testkit::fixtures::placed_order(2, 1);
    bad.lines[1].line = 1;
    let bad_id = bad.order_id;
    let bad_at = append(&*log, "k", LogEvent::OrderPlacedV1(bad).encode()).await;
    let (after, _) = append_order(&*log, "k").await;

    let cfg = ProcessorConfig {
        max_attempts: 2,
        ..config()
    };
    let mut w = PartitionWorker::start(rig.app.clone(), cfg, p.partition).await.unwrap();
    for attempt in 1..=2 {
        let err = w
            .run_once(Duration::ZERO)
            .await
            .expect_err("the batch fails while attempts remain");
        assert!(!err.is_retryable(), "attempt {attempt}: {err}");
        assert_eq!(w.position(), p.offset, "nothing is skipped while retrying");
    }
    // Attempts exhausted: record by record, the culprit is set aside.
    assert_eq!(w.run_once(Duration::ZERO).await.unwrap(), 3);
    for id in [good, after] {
        assert_eq!(
            rig.app.store.get_order(id).await.unwrap().unwrap().status,
            OrderStatus::Confirmed
        );
    }
    assert!(rig.app.store.get_order(bad_id).await.unwrap().is_none());
    let dead = rig.app.store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].offset, bad_at.offset);
    assert_eq!(dead[0].attempts, 2);
}

fn payment(event_id: &str, order: domain::OrderId, status: PaymentStatus, amount: i64) -> (String, Vec<u8>) {
    let p = PaymentV1 {
        event_id: event_id.into(),
        order_id: order,
        status,
        amount,
        currency: "USD".into(),
        provider_ts: 1_700_000_000,
        received_at: 1_700_000_000_000,
    };
    (format!("{order}/payment/{event_id}"), LogEvent::PaymentV1(p).encode())
}

#[tokio::test]
async fn payments_follow_their_order_and_each_event_applies_once() {
    let rig = rig().await;
    let log = rig.app.log.clone();
    let mut placed = testkit::fixtures::placed_order(2, 1);
    placed.order_id = domain::OrderId::new();
    let (order, total) = (placed.order_id, placed.total);
    let at = append(&*log, &order.to_string(), LogEvent::OrderPlacedV1(placed).encode()).await;
    // Written straight to the log, without the intake's idempotency claim,
    // so redeliveries reach the processor: the store must drop them.
    let records = [
        payment("evt_paid", order, PaymentStatus::Paid, total),
        payment("evt_paid", order, PaymentStatus::Paid, total),
        payment("evt_refund", order, PaymentStatus::Refunded, total),
        payment("evt_paid", order, PaymentStatus::Paid, total),
        payment("evt_short", order, PaymentStatus::Paid, total - 1),
    ];
    for (key, payload) in records {
        let p = append(&*log, &key, payload).await;
        assert_eq!(p.partition, at.partition, "a payment lands in its order's partition");
    }
    // A payment for an order nobody placed, in its own partition.
    let stranger = domain::OrderId::new();
    let (key, payload) = payment("evt_stranger", stranger, PaymentStatus::Paid, 100);
    let lost = append(&*log, &key, payload).await;

    // Three records a batch: the order and its payment apply together, the
    // in-batch repeat is dropped, and so is the repeat two batches later.
    let cfg = ProcessorConfig {
        max_batch: 3,
        ..config()
    };
    let mut w = PartitionWorker::start(rig.app.clone(), cfg.clone(), at.partition)
        .await
        .unwrap();
    assert_eq!(w.run_once(Duration::ZERO).await.unwrap(), 3);
    let o = rig.app.store.get_order(order).await.unwrap().expect("applied");
    assert_eq!(o.payment_status, "paid");
    while w.run_once(Duration::ZERO).await.unwrap() > 0 {}
    // Refunded, and neither the late redelivery of the success nor a
    // success for the wrong amount moved it back.
    let o = rig.app.store.get_order(order).await.unwrap().unwrap();
    assert_eq!(o.payment_status, "refunded");
    assert_eq!(o.status, OrderStatus::Confirmed, "payments leave the lifecycle alone");

    let mut w = PartitionWorker::start(rig.app.clone(), cfg, lost.partition)
        .await
        .unwrap();
    while w.run_once(Duration::ZERO).await.unwrap() > 0 {}
    assert_eq!(w.position(), log.end_offset(lost.partition).await.unwrap());
    assert!(rig.app.store.get_order(stranger).await.unwrap().is_none());
    assert!(
        rig.app.store.dead_letters(10).await.unwrap().is_empty(),
        "an unknown order's payment is not a poison record"
    );
}
