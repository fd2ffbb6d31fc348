//! `spawn_app()`: the application as `rushhour serve` builds it, on a
//! temporary data dir and a free loopback port, plus small HTTP helpers.

use futures::StreamExt;
use reqwest::{Client, Response, StatusCode};
use rushhour::config::{Config, HttpOverride, Overrides};
use rushhour::wiring::{self, Built, Roles};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const STAFF_KEY: &str = "test-staff-key";
pub const STORE: &str = "demo-downtown";
/// Secrets scale-mode processes must be given (`Config::check_scale_secrets`).
pub const WEBHOOK_SECRET: &str = "whsec_test-shared-webhook-secret";
pub const SESSION_KEY: &str = "test-session-key-shared-by-every-instance";
/// The first admin's password scale-mode processes are started with.
pub const ADMIN_PASSWORD: &str = "scale test admin password";

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub built: Arc<Built>,
    pub config: Config,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

/// An HTTP client for the tests. reqwest has rustls but no crypto provider
/// of its own (ADR 0008): the process default must be ring before a client
/// is built, as `main` makes it in the binary.
pub fn http_client(timeout: Duration) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().timeout(timeout).build().unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Start the app with a config adjusted by `tweak` (e.g. processors off).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    telemetry::init_tracing("warn", telemetry::LogFormat::Pretty);
    let dir = TempDir::new().unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().to_owned()),
        http: Some(HttpOverride {
            addr: "127.0.0.1:0".parse().unwrap(),
        }),
    };
    let mut config = Config::load(None, &overrides).unwrap();
    config.auth.staff_key = STAFF_KEY.into();
    config.auth.session_key = SESSION_KEY.into();
    tweak(&mut config);
    let built = Arc::new(wiring::build(&config).await.expect("build app"));
    let listener = tokio::net::TcpListener::bind(config.http.addr).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = {
        let (config, built, shutdown) = (config.clone(), built.clone(), shutdown.clone());
        tokio::spawn(async move { wiring::run(&config, &built, Some(listener), Roles::ALL, shutdown).await })
    };
    TestApp {
        base,
        client: http_client(Duration::from_secs(30)),
        built,
        config,
        shutdown,
        server: Some(server),
        _dir: dir,
    }
}

/// The access token of the order a `/v1/orders/{id}…` path names (the
/// in-process app derives tokens from [`SESSION_KEY`]).
pub fn customer_token(path: &str) -> Option<String> {
    let id = path.strip_prefix("/v1/orders/")?.split(['/', '?']).next()?;
    let id = domain::OrderId::parse(id)?;
    Some(domain::identity::order_token(SESSION_KEY.as_bytes(), id))
}

pub fn latte_order() -> Value {
    json!({"store": STORE, "lines": [
        {"sku": "latte", "size": "large", "modifiers": ["oat-milk"], "qty": 2},
        {"sku": "croissant", "qty": 1}
    ]})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A GET with no credential; on an order's routes it carries that
    /// order's access token, as its customer would.
    pub async fn get(&self, path: &str) -> Response {
        let mut r = self.client.get(self.url(path));
        if let Some(token) = customer_token(path) {
            r = r.header("x-order-token", token);
        }
        r.send().await.unwrap()
    }

    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> Response {
        let mut r = self.client.post(self.url("/v1/orders")).json(body);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.unwrap()
    }

    /// Place an order and return its id (asserting the 202).
    pub async fn place(&self, body: &Value) -> String {
        let key = uuid::Uuid::now_v7().to_string();
        let res = self.post_order(body, Some(&key)).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// A GET with the staff key (an admin).
    pub async fn staff_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(STAFF_KEY)
            .send()
            .await
            .unwrap()
    }

    /// A POST with no body and no staff credential; on an order's routes
    /// it carries that order's access token (the customer's cancel).
    pub async fn post(&self, path: &str) -> Response {
        let mut r = self.client.post(self.url(path));
        if let Some(token) = customer_token(path) {
            r = r.header("x-order-token", token);
        }
        r.send().await.unwrap()
    }

    pub async fn staff_post(&self, path: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(STAFF_KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn set_available(&self, sku: &str, available: bool) -> Response {
        self.client
            .put(self.url(&format!("/v1/stores/{STORE}/items/{sku}/availability")))
            .bearer_auth(STAFF_KEY)
            .json(&json!({ "available": available }))
            .send()
            .await
            .unwrap()
    }

    pub async fn order(&self, id: &str) -> Value {
        let res = self.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Wait, through the order's own SSE stream (no sleeping), until it has
    /// a status other than `placed`; returns that status.
    pub async fn settled(&self, id: &str) -> String {
        let mut stream = self.sse(&format!("/v1/orders/{id}/events"), None).await;
        loop {
            let ev = stream
                .next_event()
                .await
                .expect("stream ended before the order settled");
            let status = ev.data["status"].as_str().unwrap().to_owned();
            if status != "placed" {
                return status;
            }
        }
    }

    pub async fn sse(&self, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut r = self.client.get(self.url(path)).bearer_auth(STAFF_KEY);
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "SSE {path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"),
            "SSE content type"
        );
        SseReader {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        }
    }

    /// Drive the processors one step per partition from the test itself
    /// (for apps started with `processor.enabled = false`).
    pub async fn process_all(&self) {
        let app = self.built.app.clone();
        for p in 0..app.log.partitions() {
            let mut w = worker::PartitionWorker::start(app.clone(), wiring::processor_config(&self.config), p)
                .await
                .unwrap();
            while w.run_once(Duration::ZERO).await.unwrap() > 0 {}
        }
    }

    /// Graceful shutdown; returns the server's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

pub struct SseReader {
    body: Body,
    buf: String,
}

impl SseReader {
    /// The next event with data (heartbeat comments are skipped); `None`
    /// when the stream ends. Bounded by a timeout so a bug fails, not hangs.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(Duration::from_secs(20), self.next_inner())
            .await
            .expect("no SSE event within 20 s")
    }

    async fn next_inner(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("SSE data is JSON"),
                });
            }
            let chunk = self.body.next().await?.ok()?;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
}

/// Assert a problem+json response and return its body.
pub async fn problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status for {code}");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "content type for {code}"
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    v
}
