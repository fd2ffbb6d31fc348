//! Outbound webhooks end to end below the HTTP API: order changes in the
//! real embedded store, the dispatcher, `webhooks.deliver` jobs on the real
//! embedded queue, the real HTTP sender, and an in-process receiver
//! (`testkit::receiver`). Queue and delivery time is the manual clock, so
//! backoff is stepped, never slept through; loops are driven with
//! `run_once`.

use std::sync::Arc;
use std::time::Duration;

use domain::events::OrderPlacedV1;
use domain::jobs::{JobQueue, WEBHOOK_ATTEMPTS, WEBHOOK_DELIVER, WEBHOOK_QUEUE};
use domain::ports::{ApplyBatch, Decided, Decision, OrderStore, WebhookSender};
use domain::webhooks::{DeliverySettings, DeliveryState, EventType, NewSubscriber, Subscriber};
use domain::{Action, Rushhour, RushhourConfig};
use tempfile::TempDir;
use testkit::clock::ManualClock;
use testkit::receiver::{Behaviour, Receiver, signature_valid};
use worker::{JobError, JobKind, Registry, Runner, RunnerConfig, WebhookDispatcher, handler_fn};

const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

struct Rig {
    app: Arc<Rushhour>,
    clock: Arc<ManualClock>,
    dispatcher: WebhookDispatcher,
    runner: Runner,
    settings: DeliverySettings,
    _dir: TempDir,
}

fn settings() -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_millis(300),
        max_attempts: 3,
        concurrency: 4,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        ..Default::default()
    }
}

async fn rig(settings: DeliverySettings) -> Rig {
    let dir = TempDir::new().unwrap();
    let clock = ManualClock::new(T0);
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), Default::default()).unwrap();
    let store = Arc::new(store::SqliteStore::open(&dir.path().join("store.db"), Default::default()).unwrap());
    domain::ports::MenuStore::upsert_menu(&*store, &domain::menu::demo_menu())
        .await
        .unwrap();
    let jobs: Arc<dyn JobQueue> =
        Arc::new(queue::SqliteQueue::open(&dir.path().join("jobs.db"), Default::default()).unwrap());
    let app = Arc::new(Rushhour {
        log: Arc::new(log),
        store: store.clone(),
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(60), 10)),
        feed: Arc::new(cache::BroadcastFeed::new(1024)),
        clock: clock.clone(),
        config: RushhourConfig::default(),
    });
    let sender: Arc<dyn WebhookSender> = Arc::new(upstream::HttpWebhookSender::new(None).unwrap());
    // The catalog's body of `webhooks.deliver`, over this rig's ports.
    let mut registry = Registry::new();
    let (s, a, c) = (settings.clone(), app.clone(), clock.clone());
    registry.register(JobKind {
        name: WEBHOOK_DELIVER,
        queue: WEBHOOK_QUEUE,
        max_attempts: WEBHOOK_ATTEMPTS,
        priority: 0,
        handler: handler_fn(move |job| {
            let (s, a, c, sender) = (s.clone(), a.clone(), c.clone(), sender.clone());
            async move {
                let id = job.payload["subscriber"].as_i64().unwrap();
                domain::webhooks::deliver_due(&*a.store, &*sender, &*c, id, &s)
                    .await
                    .map(drop)
                    .map_err(|e| JobError::Retry(e.to_string()))
            }
        }),
    });
    let runner = Runner::new(
        jobs.clone(),
        Arc::new(registry),
        clock.clone(),
        RunnerConfig {
            concurrency: [(WEBHOOK_QUEUE.to_string(), 8)].into_iter().collect(),
            ..RunnerConfig::default()
        },
    );
    let dispatcher = WebhookDispatcher::new(store, jobs, clock.clone());
    Rig {
        app,
        clock,
        dispatcher,
        runner,
        settings,
        _dir: dir,
    }
}

impl Rig {
    async fn subscribe(&self, url: &str, events: &[EventType]) -> Subscriber {
        self.app
            .store
            .create_subscriber(&NewSubscriber {
                url: url.into(),
                events: events.to_vec(),
                store: None,
                secret: format!("whsec_{url}"),
                enabled: true,
                created_at: T0,
            })
            .await
            .unwrap()
    }

    /// Dispatch and run delivery jobs until nothing more is due now.
    async fn drain(&self) {
        for _ in 0..100 {
            let round = self.dispatcher.run_once().await.unwrap();
            let ran = self.runner.run_once().await.unwrap();
            if round.events == 0 && round.subscribers == 0 && ran == 0 {
                return;
            }
        }
        panic!("deliveries did not settle in 100 rounds");
    }

    /// Move past every backoff step, then drain.
    async fn later(&self) {
        self.clock.advance(self.settings.backoff_max + Duration::from_secs(1));
        self.drain().await;
    }

    /// `n` orders, each confirmed, made ready and picked up.
    async fn orders_through_pickup(&self, n: usize) -> Vec<OrderPlacedV1> {
        let placed: Vec<OrderPlacedV1> = (0..n)
            .map(|i| testkit::fixtures::placed_order(1 + i % 2, T0 + i as i64))
            .map(|mut p| {
                p.order_id = domain::OrderId::new();
                p
            })
            .collect();
        let decided: Vec<Decided> = placed
            .iter()
            .map(|p| Decided {
                placed: p.clone(),
                decision: Decision::Confirm,
                trace: None,
            })
            .collect();
        let store: &dyn OrderStore = &*self.app.store;
        store
            .apply_batch(ApplyBatch {
                orders: &decided,
                ..ApplyBatch::new("order-processors", 0, 1, T0)
            })
            .await
            .unwrap();
        for p in &placed {
            for l in &p.lines {
                store
                    .transition(p.order_id, Action::StartLine(l.line), T0)
                    .await
                    .unwrap();
                store
                    .transition(p.order_id, Action::FinishLine(l.line), T0)
                    .await
                    .unwrap();
            }
            store.transition(p.order_id, Action::PickUp, T0).await.unwrap();
        }
        placed
    }
}

/// The event types each order got, in arrival order.
fn per_order(requests: &[testkit::receiver::Request]) -> std::collections::HashMap<String, Vec<String>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in requests {
        let body = r.json();
        if let Some(order) = body["order_id"].as_str() {
            out.entry(order.to_owned())
                .or_default()
                .push(body["type"].as_str().unwrap().to_owned());
        }
    }
    out
}

fn lifecycle() -> Vec<String> {
    ["confirmed", "ready", "picked_up"].map(String::from).to_vec()
}

#[tokio::test]
async fn every_event_arrives_once_signed_and_in_order_per_order() {
    let rig = rig(settings()).await;
    let receiver = Receiver::start().await.unwrap();
    let sub = rig.subscribe(&receiver.url(), &EventType::SUBSCRIBABLE).await;
    let orders = rig.orders_through_pickup(5).await;
    rig.drain().await;

    let got = receiver.requests();
    assert_eq!(got.len(), 15, "three events for each of five orders, each once");
    let by_order = per_order(&got);
    for p in &orders {
        assert_eq!(by_order[&p.order_id.to_string()], lifecycle(), "order {}", p.order_id);
    }
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("rushhour-event-id").unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 15, "event ids are unique");
    for r in &got {
        let sig = r.header("rushhour-signature").expect("signed");
        assert!(signature_valid(sub.secret.as_bytes(), sig, &r.body), "{sig}");
        assert!(!signature_valid(b"another secret", sig, &r.body));
        let body = r.json();
        assert_eq!(body["id"], r.header("rushhour-event-id").unwrap());
        assert_eq!(body["type"], r.header("rushhour-event-type").unwrap());
        assert_eq!(body["store"], "demo-downtown");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let log = rig.app.store.deliveries(sub.id, None, None, 100).await.unwrap();
    assert_eq!(log.len(), 15);
    assert!(
        log.iter()
            .all(|d| d.state == DeliveryState::Delivered && d.attempts == 1)
    );
    assert_eq!(rig.app.store.pending_deliveries().await.unwrap(), 0);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_once_back_in_order() {
    let rig = rig(DeliverySettings {
        max_attempts: 10,
        ..settings()
    })
    .await;
    let receiver = Receiver::start().await.unwrap();
    let sub = rig.subscribe(&receiver.url(), &EventType::SUBSCRIBABLE).await;
    receiver.set(Behaviour::Status(503, "maintenance".into()));
    let orders = rig.orders_through_pickup(3).await;
    rig.drain().await;
    rig.later().await;
    assert!(receiver.accepted().is_empty());
    let failing = rig.app.store.deliveries(sub.id, None, None, 100).await.unwrap();
    assert_eq!(failing.len(), 9);
    for d in &failing {
        assert_eq!(d.state, DeliveryState::Pending);
        // Only each order's first event was tried: the rest wait behind it.
        let first = d.kind == EventType::Confirmed;
        assert_eq!(d.attempts, if first { 2 } else { 0 }, "{d:?}");
        if first {
            assert_eq!(d.last_status, Some(503));
            assert_eq!(d.last_body.as_deref(), Some("maintenance"));
        }
    }

    receiver.set(Behaviour::Ok);
    rig.later().await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 9, "every event, once");
    let by_order = per_order(&accepted);
    for p in &orders {
        assert_eq!(by_order[&p.order_id.to_string()], lifecycle());
    }
    let log = rig.app.store.deliveries(sub.id, None, None, 100).await.unwrap();
    assert!(log.iter().all(|d| d.state == DeliveryState::Delivered), "{log:?}");
}

#[tokio::test]
async fn a_dead_subscriber_keeps_its_last_response_and_does_not_stop_another() {
    let rig = rig(DeliverySettings {
        max_attempts: 2,
        ..settings()
    })
    .await;
    let (hung, failing, fine) = (
        Receiver::start().await.unwrap(),
        Receiver::start().await.unwrap(),
        Receiver::start().await.unwrap(),
    );
    hung.set(Behaviour::Hang);
    failing.set(Behaviour::Status(500, "boom".repeat(300)));
    let hung_sub = rig.subscribe(&hung.url(), &[EventType::Confirmed]).await;
    let failing_sub = rig.subscribe(&failing.url(), &[EventType::Confirmed]).await;
    let fine_sub = rig.subscribe(&fine.url(), &EventType::SUBSCRIBABLE).await;
    rig.orders_through_pickup(2).await;
    rig.drain().await;
    rig.later().await;

    assert_eq!(fine.accepted().len(), 6, "the healthy subscriber got everything");
    let store = rig.app.store.clone();
    let dead = |sub: i64| {
        let store = store.clone();
        async move {
            store
                .deliveries(sub, Some(DeliveryState::Dead), None, 10)
                .await
                .unwrap()
        }
    };
    let timed_out = dead(hung_sub.id).await;
    assert_eq!(timed_out.len(), 2);
    for d in &timed_out {
        assert_eq!(d.attempts, 2);
        assert_eq!(d.last_status, None);
        assert!(d.last_error.as_deref().unwrap().contains("timed out"), "{d:?}");
    }
    let refused = dead(failing_sub.id).await;
    assert_eq!(refused.len(), 2);
    for d in &refused {
        assert_eq!(d.last_status, Some(500));
        let body = d.last_body.as_deref().unwrap();
        assert_eq!(body.len(), domain::webhooks::BODY_EXCERPT, "a bounded excerpt");
        assert!(body.starts_with("boomboom"));
        assert_eq!(d.last_error.as_deref(), Some("receiver answered 500"));
    }
    assert_eq!(failing.requests().len(), 4, "two attempts each, then no more");
    let fine_log = rig.app.store.deliveries(fine_sub.id, None, None, 10).await.unwrap();
    assert!(fine_log.iter().all(|d| d.state == DeliveryState::Delivered));
}

#[tokio::test]
async fn a_ping_reaches_only_its_subscriber() {
    let rig = rig(settings()).await;
    let (a, b) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    let sub_a = rig.subscribe(&a.url(), &[EventType::Paid]).await;
    rig.subscribe(&b.url(), &[EventType::Paid]).await;
    let event = rig.app.store.add_ping(sub_a.id, T0).await.unwrap();
    rig.drain().await;
    assert!(b.requests().is_empty());
    let got = a.accepted();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["type"], "ping");
    assert_eq!(body["id"], domain::webhooks::event_id(event));
    assert!(body.get("order_id").is_none());
}
