//! The router under test, assembled as the binary's `wiring::build` does —
//! `SqliteEventLog`, `SqliteStore` seeded with the demo menu,
//! `MemoryMenuCache`, `BroadcastFeed`, `TokioClock`, in a temporary
//! directory — and driven in-process with `tower::ServiceExt::oneshot`.
//!
//! In-process rather than over a socket (the binary's `spawn_app`) because
//! these tests need a hand on the ports: log, store and cache sit behind a
//! fault `Switch`, and processors run only when a test calls
//! `process_all`, so "durable but not yet applied" is a state a test can
//! stand in rather than race against.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use domain::identity::Role;
use domain::ports::EventLog;
use domain::{OrderId, Rushhour, RushhourConfig};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use api::{ApiConfig, router};

use crate::faults::{Faulty, Switch};

/// The deprecated shared staff key (acts as admin).
pub const KEY: &str = "staff-secret";
/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery staple";
/// The server key order access tokens are derived with.
pub const ORDER_KEY: &[u8] = b"order-token-test-key";
pub const STORE: &str = "demo-downtown";
/// The payment provider's shared secret (`Rushhour-Signature`).
pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

pub struct Harness {
    pub router: Router,
    pub app: Arc<Rushhour>,
    /// A personal API key per role (users `barista`, `manager`, `admin`).
    pub keys: std::collections::HashMap<Role, String>,
    /// Fault switches in front of the real log, store and menu cache.
    pub log: Switch,
    pub store: Switch,
    pub cache: Switch,
    /// The log without its switch, for inspecting what was appended while
    /// a fault is set.
    raw_log: eventlog::SqliteEventLog,
    pub shutdown: CancellationToken,
    _dir: TempDir,
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub async fn harness_with(tweak: impl FnOnce(&mut ApiConfig)) -> Harness {
    harness_full(64, tweak).await
}

/// `feed_capacity`: how far a live subscriber may fall behind before the
/// feed tells it `Lagged`.
pub async fn harness_full(feed_capacity: usize, tweak: impl FnOnce(&mut ApiConfig)) -> Harness {
    let dir = TempDir::new().unwrap();
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), eventlog::SqliteLogOptions::default())
        .expect("open the event log");
    let store = store::SqliteStore::open(&dir.path().join("store.db"), store::SqliteStoreOptions::default())
        .expect("open the store");
    let (log_fault, store_fault, cache_fault) = (Switch::default(), Switch::default(), Switch::default());
    let store = Arc::new(Faulty::new(store, store_fault.clone()));
    domain::ports::MenuStore::upsert_menu(&*store, &domain::menu::demo_menu())
        .await
        .expect("seed the demo menu");
    let clock: Arc<dyn domain::ports::Clock> = Arc::new(worker::TokioClock);
    let sessions = Arc::new(sessions::SqliteSessions::open(&dir.path().join("sessions.db")).expect("open sessions"));
    let identity = Arc::new(
        identity::Identity::new(
            identity::IdentityPorts {
                users: store.clone(),
                audit: store.clone(),
                sessions: sessions.clone(),
                attempts: sessions,
                clock: clock.clone(),
            },
            identity::Passwords::fast_for_tests(),
            identity::IdentitySettings::default(),
        )
        .with_staff_key(Some(KEY.into())),
    );
    let mut keys = std::collections::HashMap::new();
    for role in Role::ALL {
        let actor = identity::Actor::cli("test");
        identity
            .add_user(&actor, role.as_str(), role, PASSWORD)
            .await
            .expect("add a test user");
        let issued = identity
            .issue_key(
                &actor,
                identity::KeyRequest {
                    name: format!("{role} key"),
                    role,
                    store: None,
                    user: Some(role.as_str().into()),
                },
            )
            .await
            .expect("issue a test key");
        keys.insert(role, issued.key);
    }
    let app = Arc::new(Rushhour {
        log: Arc::new(Faulty::new(log.clone(), log_fault.clone())),
        store,
        menus: Arc::new(Faulty::new(
            cache::MemoryMenuCache::new(Duration::from_secs(60), 100),
            cache_fault.clone(),
        )),
        feed: Arc::new(cache::BroadcastFeed::new(feed_capacity)),
        clock,
        config: RushhourConfig {
            // Short, so "not applied yet" answers 503 quickly; every other
            // test applies its orders before acting on them.
            apply_wait: Duration::from_millis(20),
            order_token_key: ORDER_KEY.into(),
        },
    });
    let shutdown = CancellationToken::new();
    let mut config = ApiConfig {
        max_body_bytes: 64 * 1024,
        max_inflight_intake: 64,
        request_timeout: Duration::from_secs(5),
        identity: identity.clone(),
        limiter: Arc::new(ratelimit::MemoryLimiter::new()),
        limits: api::RateLimits::default(),
        trusted_proxies: vec![],
        secure_cookies: false,
        sse_heartbeat: Duration::from_secs(15),
        web: api::WebConfig::default(),
        shutdown: shutdown.clone(),
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_tolerance: Duration::from_secs(300),
        max_inflight_webhooks: 64,
        jobs: None,
        processors: None,
        body_read_timeout: Duration::from_secs(5),
        max_streams: 100,
        max_streams_per_client: 16,
        ops: api::OpsConfig::default(),
        observe: api::ObserveConfig::default(),
        ttls: api::CacheTtls::default(),
    };
    tweak(&mut config);
    Harness {
        router: router(app.clone(), telemetry::prometheus(), config),
        app,
        keys,
        log: log_fault,
        store: store_fault,
        cache: cache_fault,
        raw_log: log,
        shutdown,
        _dir: dir,
    }
}

/// A whole response, body read.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Assert a problem document with this status and code.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["status"], status);
        v
    }
}

impl Harness {
    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    pub async fn post_json(&self, uri: &str, body: &Value, key: Option<&str>) -> Answer {
        let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        self.send(req.body(Body::from(body.to_string())).unwrap()).await
    }

    pub async fn staff(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        self.with_bearer(KEY, method, uri, body).await
    }

    /// A request with the personal API key of the user with `role`.
    pub async fn as_role(&self, role: Role, method: Method, uri: &str, body: Option<Value>) -> Answer {
        self.with_bearer(&self.keys[&role], method, uri, body).await
    }

    /// The customer's access token of `id`.
    pub fn token(&self, id: OrderId) -> String {
        domain::identity::order_token(ORDER_KEY, id)
    }

    /// `GET /v1/orders/{id}` as its customer (with the order's token).
    pub async fn customer_get(&self, id: OrderId) -> Answer {
        self.send(
            Request::get(format!("/v1/orders/{id}"))
                .header("x-order-token", self.token(id))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `POST /v1/orders/{id}/cancel` as its customer.
    pub async fn customer_cancel(&self, id: OrderId) -> Answer {
        self.send(
            Request::post(format!("/v1/orders/{id}/cancel"))
                .header("x-order-token", self.token(id))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn with_bearer(&self, token: &str, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(req.body(body).unwrap()).await
    }

    /// Open a Server-Sent Event stream; asserts the 200 and content type.
    pub async fn stream(&self, req: Request<Body>) -> axum::body::BodyDataStream {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        resp.into_body().into_data_stream()
    }

    /// Place `body` through the router (asserting the 202); the order is
    /// durable in the log but not applied until `process_all`.
    pub async fn place(&self, body: &Value) -> OrderId {
        let a = self.post_json("/v1/orders", body, None).await;
        assert_eq!(a.status, 202, "{:?}", a.body);
        OrderId::parse(a.json()["id"].as_str().unwrap()).unwrap()
    }

    /// Place a two-line order and apply it: confirmed, both tickets queued.
    pub async fn confirmed_order(&self) -> OrderId {
        let id = self.place(&two_drinks()).await;
        self.process_all().await;
        id
    }

    /// Drive the processors one step per partition until the log is
    /// drained, as the binary's test support does: no background task, no
    /// waiting.
    pub async fn process_all(&self) {
        let app = self.app.clone();
        for p in 0..app.log.partitions() {
            let mut w = worker::PartitionWorker::start(app.clone(), worker::ProcessorConfig::default(), p)
                .await
                .expect("start a processor");
            while w.run_once(Duration::ZERO).await.expect("apply a batch") > 0 {}
        }
    }

    /// Records appended to the log, over every partition; read past the
    /// fault switch.
    pub async fn log_records(&self) -> u64 {
        let mut n = 0;
        for p in 0..self.raw_log.partitions() {
            n += self.raw_log.end_offset(p).await.unwrap();
        }
        n
    }
}

/// One line, two large oat-milk lattes: 2 × (420 + 90 + 60) = 1140.
pub fn latte_order() -> Value {
    json!({"store": STORE, "customer": "ada",
           "lines": [{"sku": "latte", "size": "large", "modifiers": ["oat-milk"], "qty": 2}]})
}

/// Two barista lines, so a ticket can move while the order stays open.
pub fn two_drinks() -> Value {
    json!({"store": STORE, "customer": "ada", "lines": [
        {"sku": "latte", "size": "small", "qty": 1},
        {"sku": "latte", "size": "small", "qty": 1}
    ]})
}

/// Read SSE frames until `pred` holds for the text so far. Bounded, so a
/// missing event fails the test instead of hanging it.
pub async fn read_until(body: &mut axum::body::BodyDataStream, seen: &mut String, pred: impl Fn(&str) -> bool) {
    while !pred(seen) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap_or_else(|_| panic!("an event within 5 s; so far: {seen}"))
            .expect("the stream is still open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// The `id:` of every event read so far, in order.
pub fn event_ids(seen: &str) -> Vec<i64> {
    seen.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().unwrap())
        .collect()
}

/// A body that sends `first` and then nothing, for ever: a client
/// trickling its upload. `polled` is notified once the server has taken
/// the first chunk, i.e. once the request is inside the router reading it.
pub fn stalled_body(first: &'static str) -> (Body, Arc<tokio::sync::Notify>) {
    let polled = Arc::new(tokio::sync::Notify::new());
    let signal = polled.clone();
    let head = futures::stream::once(async move {
        signal.notify_one();
        Ok::<_, std::io::Error>(Bytes::from_static(first.as_bytes()))
    });
    (Body::from_stream(head.chain(futures::stream::pending())), polled)
}
