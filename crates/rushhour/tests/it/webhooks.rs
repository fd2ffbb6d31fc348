//! Outbound webhooks through the real binary's wiring: a subscriber added
//! with the `webhooks` CLI, orders placed and moved over HTTP, and the
//! running process's dispatcher and job runner delivering them, signed, to
//! an in-process receiver; the CLI's delivery log shows the outcome, and
//! dead deliveries retried over HTTP and with the CLI go again.

use crate::support::{STORE, problem, spawn_app_with};
use reqwest::StatusCode;
use rushhour::webhooks_cli::{WebhooksArgs, WebhooksCommand, parse_events, run};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::receiver::{Behaviour, Receiver, signature_valid};

async fn cli(app: &crate::support::TestApp, command: WebhooksCommand) -> String {
    let mut out = Vec::new();
    run(
        &*app.built.app.store,
        &WebhooksArgs { command },
        "tester",
        domain::ports::system_now_ms(),
        &mut out,
    )
    .await
    .expect("the webhooks command");
    String::from_utf8(out).unwrap()
}

/// Poll until `check` holds, for at most 30 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_a_subscriber_added_with_the_cli() {
    let app = spawn_app_with(|c| {
        c.webhooks.outbound.dispatch_interval_ms = 20;
        c.webhooks.outbound.timeout_ms = 500;
        c.webhooks.outbound.max_attempts = 2;
        c.webhooks.outbound.backoff_base_ms = 50;
    })
    .await;
    let (fine, dead) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    dead.set(Behaviour::Status(410, "gone".into()));

    let added = cli(
        &app,
        WebhooksCommand::Add {
            url: fine.url(),
            events: "confirmed,ready,picked_up".into(),
            store: Some(STORE.into()),
            disabled: false,
        },
    )
    .await;
    assert!(added.starts_with("added subscriber 1 -> "), "{added}");
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("the secret is printed")
        .to_owned();
    cli(
        &app,
        WebhooksCommand::Add {
            url: dead.url(),
            events: "confirmed".into(),
            store: None,
            disabled: false,
        },
    )
    .await;
    let listed = cli(&app, WebhooksCommand::List).await;
    assert!(listed.contains(&fine.url()) && listed.contains(&dead.url()), "{listed}");
    assert!(!listed.contains(&secret), "list never shows a secret");

    let body = json!({"store": STORE, "lines": [{"sku": "latte", "size": "large", "qty": 1}]});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = app.place(&body).await;
        assert_eq!(app.settled(&id).await, "confirmed");
        ids.push(id);
    }
    for id in &ids {
        for step in ["lines/1/start", "lines/1/done", "pickup"] {
            let res = app.staff_post(&format!("/v1/orders/{id}/{step}")).await;
            assert_eq!(res.status(), StatusCode::OK, "{step}");
        }
    }
    until("nine deliveries", || fine.accepted().len() >= 9).await;
    let got = fine.accepted();
    assert_eq!(got.len(), 9, "each event once");
    for id in &ids {
        let kinds: Vec<String> = got
            .iter()
            .map(|r| r.json())
            .filter(|b| b["order_id"] == id.as_str())
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["confirmed", "ready", "picked_up"], "order {id}");
    }
    for r in &got {
        assert!(signature_valid(
            secret.as_bytes(),
            r.header("rushhour-signature").unwrap(),
            &r.body
        ));
    }

    // The refusing subscriber: dead after two attempts, its answer kept.
    until("the dead deliveries", || dead.requests().len() >= 6).await;
    let store = app.built.app.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows =
            domain::ports::WebhookStore::deliveries(&*store, 2, Some(domain::webhooks::DeliveryState::Dead), None, 10)
                .await
                .unwrap();
        if rows.len() == 3 {
            assert!(rows.iter().all(|d| d.last_status == Some(410) && d.attempts == 2));
            break;
        }
        assert!(Instant::now() < deadline, "three dead deliveries, got {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = cli(
        &app,
        WebhooksCommand::Deliveries {
            id: 2,
            state: Some("dead".into()),
            limit: 10,
        },
    )
    .await;
    assert_eq!(
        log.lines().filter(|l| l.contains("receiver answered 410")).count(),
        3,
        "{log}"
    );

    // The receiver is back: one dead delivery retried over HTTP, the rest
    // with the CLI; each is sent again, once.
    dead.set(Behaviour::Ok);
    let dead_rows =
        domain::ports::WebhookStore::deliveries(&*store, 2, Some(domain::webhooks::DeliveryState::Dead), None, 10)
            .await
            .unwrap();
    let first = domain::webhooks::event_id(dead_rows[0].event_id);
    let retried = app
        .staff_post(&format!("/v1/admin/webhooks/2/deliveries/{first}/retry"))
        .await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let retried: serde_json::Value = retried.json().await.unwrap();
    assert_eq!(retried["event_id"], first.as_str());
    assert_eq!(retried["attempts"], 0, "{retried}");
    problem(
        app.staff_post(&format!("/v1/admin/webhooks/2/deliveries/{first}/retry"))
            .await,
        409,
        "delivery_not_dead",
    )
    .await;
    problem(
        app.staff_post("/v1/admin/webhooks/2/deliveries/evt_999999/retry").await,
        404,
        "delivery_not_found",
    )
    .await;
    problem(
        app.staff_post("/v1/admin/webhooks/99/deliveries/evt_1/retry").await,
        404,
        "webhook_not_found",
    )
    .await;
    problem(
        app.staff_post("/v1/admin/webhooks/2/deliveries/nope/retry").await,
        400,
        "invalid_path",
    )
    .await;
    let rest = cli(
        &app,
        WebhooksCommand::Retry {
            id: 2,
            delivery: None,
            all_dead: true,
        },
    )
    .await;
    assert!(
        rest.starts_with("2 dead deliveries of subscriber 2 pending again"),
        "{rest}"
    );
    until("the three retried deliveries", || dead.accepted().len() >= 3).await;
    let resent: Vec<String> = dead
        .accepted()
        .iter()
        .map(|r| r.header("rushhour-event-id").unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = dead_rows
        .iter()
        .map(|d| domain::webhooks::event_id(d.event_id))
        .collect();
    let mut sorted = resent.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each dead delivery sent again, once");

    let ping = cli(&app, WebhooksCommand::Test { id: 1 }).await;
    assert!(ping.starts_with("queued evt_"), "{ping}");
    until("the ping", || {
        fine.accepted().iter().any(|r| r.json()["type"] == "ping")
    })
    .await;
    let removed = cli(&app, WebhooksCommand::Remove { id: 2 }).await;
    assert_eq!(removed.trim(), "removed subscriber 2");
    app.stop().await.unwrap();
}

#[test]
fn event_lists_are_checked() {
    assert_eq!(parse_events("ready, paid,ready").unwrap().len(), 2);
    assert!(parse_events("ping").is_err());
    assert!(parse_events("shipped").is_err());
}
