//! Traces end to end, through the real binary and its real OTLP exporter
//! sending to an in-process receiver (`otlp::Receiver`): one trace per
//! order from `POST /v1/orders` through the log append, the `traceparent`
//! stored on the record, and the processor's batch span linked to it; a
//! payment callback's trace the same way. Also what the logs look like
//! when written to a file: JSON lines carrying the `trace_id`, and no
//! colour codes in either format.

use crate::crash::{free_port, ready};
use crate::otlp::{Receiver, Span};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const SECRET: &str = "whsec_traces-test";

/// `rushhour serve` on `port`, stderr to `log`, with `env` on top.
fn serve(dir: &std::path::Path, port: u16, log: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUSHHOUR__AUTH__STAFF_KEY", "traces-test")
        .env("RUSHHOUR__WEBHOOKS__SECRET", SECRET)
        // The exporter's batch goes out every 100 ms instead of 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start rushhour")
}

fn named<'a>(spans: &'a [Span], name: &str) -> impl Iterator<Item = &'a Span> {
    spans.iter().filter(move |s| s.name == name)
}

/// The span named `name` in `trace` whose parent is `parent`.
fn child<'a>(spans: &'a [Span], name: &str, parent: &Span) -> Option<&'a Span> {
    named(spans, name).find(|s| s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id)
}

/// A batch span linked to `span`.
fn batch_linked_to<'a>(spans: &'a [Span], span: &Span) -> Option<&'a Span> {
    named(spans, "apply batch").find(|b| b.links.iter().any(|(t, s)| *t == span.trace_id && *s == span.span_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_and_its_payment_are_each_one_trace_from_request_to_batch() {
    let receiver = Receiver::start().await;
    let dir = tempfile::TempDir::new().unwrap();
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::support::http_client(Duration::from_secs(10));
    let mut server = serve(
        dir.path(),
        port,
        &log,
        &[
            ("RUSHHOUR__TELEMETRY__OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("RUSHHOUR__TELEMETRY__LOG_FORMAT", "json"),
            // The request span's DEBUG line: one log line inside a traced request.
            ("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn,api::traces=debug"),
        ],
    );
    ready(&client, &base).await;

    // The order.
    let res = client
        .post(format!("{base}/v1/orders"))
        .json(&json!({"store": "demo-downtown", "lines": [{"sku": "latte", "size": "medium", "qty": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let order: Value = res.json().await.unwrap();
    let (order_id, total) = (
        order["id"].as_str().unwrap().to_owned(),
        order["total"]["amount"].as_i64().unwrap(),
    );

    let (request, append, batch) = receiver
        .wait_for("order trace reaching its batch", |spans| {
            let request = named(spans, "POST /v1/orders").next()?;
            let append = child(spans, "log append", request)?;
            let batch = batch_linked_to(spans, append)?;
            Some((request.clone(), append.clone(), batch.clone()))
        })
        .await;
    assert_eq!(request.service, "rushhour-serve");
    assert_eq!(request.parent_span_id, "", "the request is the trace's root");
    assert_eq!(request.attributes["http.route"], "/v1/orders");
    assert_eq!(request.attributes["http.response.status_code"], "202");
    assert_ne!(
        batch.trace_id, request.trace_id,
        "a batch is a trace of its own, linked"
    );
    assert_eq!(batch.parent_span_id, "");
    assert_eq!(append.trace_id, request.trace_id, "the append is in the order's trace");

    // Its payment callback: another trace, reaching its batch the same way.
    let body = json!({"id": "evt_traced", "type": "payment.succeeded", "order_id": order_id,
                      "amount": total, "currency": "USD",
                      "created": domain::ports::system_now_ms() / 1000})
    .to_string();
    let t = domain::ports::system_now_ms() / 1000;
    let res = client
        .post(format!("{base}/v1/webhooks/payments"))
        .header("content-type", "application/json")
        .header("rushhour-signature", api::webhook_signature(SECRET, t, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (callback, paid_batch) = receiver
        .wait_for("payment trace reaching its batch", |spans| {
            let callback = named(spans, "POST /v1/webhooks/payments").next()?;
            let append = child(spans, "log append", callback)?;
            Some((callback.clone(), batch_linked_to(spans, append)?.clone()))
        })
        .await;
    assert_ne!(callback.trace_id, request.trace_id);
    assert_eq!(callback.attributes["http.route"], "/v1/webhooks/payments");
    assert_ne!(paid_batch.span_id, batch.span_id);

    server.kill().await.unwrap();
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(!written.contains("\x1b["), "colour codes in a log file:\n{written}");
    let traced: Vec<Value> = written
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["trace_id"] == request.trace_id.as_str())
        .collect();
    assert!(
        !traced.is_empty(),
        "no JSON log line carries the order's trace id {}:\n{written}",
        request.trace_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::TempDir::new().unwrap();
    let log = dir.path().join("stderr.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::support::http_client(Duration::from_secs(10));
    let mut server = serve(dir.path(), port, &log, &[("RUSHHOUR__TELEMETRY__LOG_FILTER", "info")]);
    ready(&client, &base).await;
    server.kill().await.unwrap();
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("INFO"), "the start-up lines were logged:\n{written}");
    assert!(!written.contains("\x1b["), "colour codes in a log file:\n{written}");
}
