//! A simulator of both upstreams — the catalog API and the loyalty service —
//! for tests, demos and benchmarks, since nothing may reach the internet.
//!
//! It speaks exactly what `UpstreamClient` expects (`crate::wire`): OAuth2
//! client credentials, the paged catalog with an ETag, the accounts change
//! feed, and points reports (applied once per order id). Its data is generated from a seed (`data`), and it can be
//! made to misbehave — latency, 5xx bursts, revoked tokens — and to change
//! its data, both from Rust (`Simulator`) and over HTTP for demos:
//!
//! - `POST /_sim/faults` `{"latency_ms":…, "fail_next":…, "fail_status":…,
//!   "fail_after":…, "expire_tokens":true}`
//! - `POST /_sim/mutate` `{"accounts":…, "items":…}`
//! - `GET /_sim/stats`: requests served by endpoint.
//!
//! Faults and latency apply to the API endpoints, not to `/_sim/*`.

mod data;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use domain::menu::Item;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::wire::{PointsAnswer, PointsReport, TokenResponse, WireAccount, paths};
use data::{Accounts, Catalog};

pub use data::{MAX_CHANGES_LIMIT, MAX_PER_PAGE};

/// What to simulate.
#[derive(Clone)]
pub struct SimOptions {
    /// Loyalty accounts (ids `L000001`…).
    pub accounts: usize,
    /// Catalog items (the demo menu's first, then generated ones).
    pub items: usize,
    pub client_id: String,
    pub client_secret: String,
    /// How long an issued token is valid.
    pub token_ttl: Duration,
    /// Same seed, same data.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            accounts: 150_000,
            items: 200,
            client_id: "rushhour".into(),
            client_secret: "sim-secret".into(),
            token_ttl: Duration::from_secs(3600),
            seed: 42,
        }
    }
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("accounts", &self.accounts)
            .field("items", &self.items)
            .field("client_id", &self.client_id)
            .field("token_ttl", &self.token_ttl)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Requests the simulator answered, by endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub token: u64,
    pub catalog: u64,
    pub loyalty_changes: u64,
    /// Answers replaced by an injected failure.
    pub injected_failures: u64,
    /// 401s for a missing, unknown or expired token.
    pub unauthorized: u64,
    /// 304s to a catalog request whose `If-None-Match` still matched.
    pub not_modified: u64,
    /// Points reports received (repeats included).
    pub points_reports: u64,
    /// Points reports applied (one per order).
    pub points_applied: u64,
}

#[derive(Debug, Default)]
struct Counters {
    token: AtomicU64,
    catalog: AtomicU64,
    loyalty_changes: AtomicU64,
    injected_failures: AtomicU64,
    unauthorized: AtomicU64,
    not_modified: AtomicU64,
    points_reports: AtomicU64,
    points_applied: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        SimStats {
            token: self.token.load(Ordering::Relaxed),
            catalog: self.catalog.load(Ordering::Relaxed),
            loyalty_changes: self.loyalty_changes.load(Ordering::Relaxed),
            injected_failures: self.injected_failures.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            points_reports: self.points_reports.load(Ordering::Relaxed),
            points_applied: self.points_applied.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.token,
            &self.catalog,
            &self.loyalty_changes,
            &self.injected_failures,
            &self.unauthorized,
            &self.not_modified,
            &self.points_reports,
            &self.points_applied,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    latency: Duration,
    /// Requests still answered normally before the failures start.
    skip: u64,
    /// Requests still to fail.
    fail: u64,
    status: u16,
}

struct Shared {
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    seed: u64,
    catalog: Mutex<Catalog>,
    accounts: Mutex<Accounts>,
    tokens: Mutex<HashMap<String, Instant>>,
    issued: AtomicU64,
    faults: Mutex<Faults>,
    stats: Counters,
    /// Points reports applied: order id → (account, points).
    points: Mutex<HashMap<String, (String, i64)>>,
}

/// The simulator's state is plain data mutated under short critical
/// sections that cannot panic half-way, so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn new(cfg: &SimOptions) -> Self {
        Self {
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            token_ttl: cfg.token_ttl,
            seed: cfg.seed,
            catalog: Mutex::new(Catalog::generate(cfg.items, cfg.seed)),
            accounts: Mutex::new(Accounts::generate(cfg.accounts, cfg.seed)),
            tokens: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            stats: Counters::default(),
            points: Mutex::new(HashMap::new()),
        }
    }

    fn set_faults(&self, f: &FaultsBody) {
        let mut faults = lock(&self.faults);
        if let Some(ms) = f.latency_ms {
            faults.latency = Duration::from_millis(ms);
        }
        if let Some(n) = f.fail_next {
            faults.fail = n;
            faults.skip = f.fail_after.unwrap_or(0);
            faults.status = f.fail_status.unwrap_or(503);
        }
        drop(faults);
        if f.expire_tokens == Some(true) {
            lock(&self.tokens).clear();
        }
    }

    fn mutate(&self, accounts: usize, items: usize) -> Mutated {
        let now = domain::ports::system_now_ms();
        let changed_accounts = lock(&self.accounts).mutate(accounts, now);
        let mut catalog = lock(&self.catalog);
        let changed_items = catalog.mutate(items);
        Mutated {
            accounts: changed_accounts,
            items: changed_items,
            catalog_etag: catalog.etag().to_owned(),
        }
    }

    /// What every API request goes through: counted, delayed, maybe failed
    /// (`Some`: answer this instead).
    async fn gate(&self, counter: &AtomicU64) -> Option<Response> {
        counter.fetch_add(1, Ordering::Relaxed);
        let (latency, fail) = {
            let mut f = lock(&self.faults);
            let fail = if f.skip > 0 {
                if f.fail > 0 {
                    f.skip -= 1;
                }
                None
            } else if f.fail > 0 {
                f.fail -= 1;
                Some(f.status)
            } else {
                None
            };
            (f.latency, fail)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(status) = fail {
            self.stats.injected_failures.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Some((status, Json(serde_json::json!({"error": "simulated failure"}))).into_response());
        }
        None
    }

    /// `Some(401)` unless the request carries a live token.
    fn authorize(&self, headers: &HeaderMap) -> Option<Response> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let valid = token.is_some_and(|t| lock(&self.tokens).get(t).is_some_and(|exp| Instant::now() < *exp));
        if valid {
            return None;
        }
        self.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                Json(serde_json::json!({"error": "invalid_token"})),
            )
                .into_response(),
        )
    }

    fn credentials_ok(&self, headers: &HeaderMap, form: &TokenForm) -> bool {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let (id, secret) = match (&basic, &form.client_id, &form.client_secret) {
            (Some(pair), _, _) => match pair.split_once(':') {
                Some((id, secret)) => (id.to_owned(), secret.to_owned()),
                None => return false,
            },
            // RFC 6749 §2.3.1 also allows the credentials in the body.
            (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return false,
        };
        id == self.client_id && secret == self.client_secret
    }
}

/// What a mutation changed.
#[derive(Debug, Clone, Serialize)]
pub struct Mutated {
    /// Ids of the accounts that changed.
    pub accounts: Vec<String>,
    /// Skus of the items whose prices changed.
    pub items: Vec<String>,
    pub catalog_etag: String,
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CatalogQuery {
    page: Option<u32>,
    per_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    since: String,
    limit: Option<u32>,
}

/// `POST /_sim/faults`. `fail_next` failures (with `fail_status`, default
/// 503) start after `fail_after` more requests (default 0).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    latency_ms: Option<u64>,
    fail_next: Option<u64>,
    fail_status: Option<u16>,
    fail_after: Option<u64>,
    expire_tokens: Option<bool>,
}

/// `POST /_sim/mutate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MutateBody {
    #[serde(default)]
    accounts: usize,
    #[serde(default)]
    items: usize,
}

fn problem(status: StatusCode, error: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    if let Some(r) = s.gate(&s.stats.token).await {
        return r;
    }
    let Ok(Form(form)) = form else {
        return problem(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if form.grant_type != "client_credentials" {
        return problem(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if !s.credentials_ok(&headers, &form) {
        return problem(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let n = s.issued.fetch_add(1, Ordering::Relaxed);
    let access_token = format!("sim-{:x}-{n}", s.seed);
    lock(&s.tokens).insert(access_token.clone(), Instant::now() + s.token_ttl);
    Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: s.token_ttl.as_secs().max(1),
    })
    .into_response()
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

async fn catalog(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<CatalogQuery>) -> Response {
    if let Some(r) = s.gate(&s.stats.catalog).await {
        return r;
    }
    if let Some(r) = s.authorize(&headers) {
        return r;
    }
    let page = q.page.unwrap_or(1);
    let (body, etag) = {
        let c = lock(&s.catalog);
        let etag = c.etag().to_owned();
        if page <= 1 && matches_etag(&headers, &etag) {
            drop(c);
            s.stats.not_modified.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        (c.page(page, q.per_page.unwrap_or(MAX_PER_PAGE)), etag)
    };
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn changes(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<ChangesQuery>) -> Response {
    if let Some(r) = s.gate(&s.stats.loyalty_changes).await {
        return r;
    }
    if let Some(r) = s.authorize(&headers) {
        return r;
    }
    let since = if q.since.is_empty() {
        None
    } else {
        match data::decode_cursor(&q.since) {
            Some(c) => Some(c),
            None => return problem(StatusCode::BAD_REQUEST, "invalid_cursor"),
        }
    };
    let page = lock(&s.accounts).changes(since, q.limit.unwrap_or(1000));
    let body = data::render_changes(&page);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn report_points(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path(account): axum::extract::Path<String>,
    body: Result<Json<PointsReport>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = s.gate(&s.stats.points_reports).await {
        return r;
    }
    if let Some(r) = s.authorize(&headers) {
        return r;
    }
    let Ok(Json(report)) = body else {
        return problem(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if lock(&s.accounts).get(&account).is_none() {
        return problem(StatusCode::NOT_FOUND, "unknown_account");
    }
    let mut points = lock(&s.points);
    let applied = !points.contains_key(&report.order_id);
    if applied {
        points.insert(report.order_id.clone(), (account.clone(), report.points));
        s.stats.points_applied.fetch_add(1, Ordering::Relaxed);
    }
    let reported_points = points.values().filter(|(a, _)| *a == account).map(|(_, p)| p).sum();
    Json(PointsAnswer {
        applied,
        reported_points,
    })
    .into_response()
}

async fn set_faults(State(s): State<Arc<Shared>>, Json(body): Json<FaultsBody>) -> StatusCode {
    s.set_faults(&body);
    StatusCode::NO_CONTENT
}

async fn mutate(State(s): State<Arc<Shared>>, Json(body): Json<MutateBody>) -> Json<Mutated> {
    Json(s.mutate(body.accounts, body.items))
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<SimStats> {
    Json(s.stats.snapshot())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(paths::TOKEN, post(token))
        .route(paths::CATALOG_ITEMS, get(catalog))
        .route(paths::ACCOUNT_CHANGES, get(changes))
        .route(paths::ACCOUNT_POINTS, post(report_points))
        .route("/_sim/faults", post(set_faults))
        .route("/_sim/mutate", post(mutate))
        .route("/_sim/stats", get(stats))
        .with_state(shared)
}

async fn build(cfg: SimOptions) -> io::Result<Arc<Shared>> {
    // 150k accounts take a moment to generate: off the async workers.
    tokio::task::spawn_blocking(move || Arc::new(Shared::new(&cfg)))
        .await
        .map_err(io::Error::other)
}

/// Serve the simulator on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, cfg: SimOptions, shutdown: CancellationToken) -> io::Result<()> {
    let shared = build(cfg).await?;
    serve_shared(listener, shared, shutdown).await
}

async fn serve_shared(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// A simulator running in this process, with its fault and data controls.
/// Dropping it stops the server.
pub struct Simulator {
    shared: Arc<Shared>,
    base_url: String,
    shutdown: CancellationToken,
    _stop_on_drop: DropGuard,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Generate the data, bind an ephemeral port on 127.0.0.1 and serve.
    /// Returns the base URL (`http://127.0.0.1:<port>`) and the handle.
    pub async fn start(cfg: SimOptions) -> io::Result<(String, Simulator)> {
        let shared = build(cfg).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_shared(listener, shared.clone(), shutdown.clone()));
        let sim = Simulator {
            shared,
            base_url: base_url.clone(),
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task,
        };
        Ok((base_url, sim))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Delay every API answer by `d` (zero: none).
    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared.faults).latency = d;
    }

    /// Answer the next `n` API requests with `status` (a 5xx or 429).
    pub fn fail_next(&self, n: u64, status: u16) {
        self.fail_after(0, n, status);
    }

    /// Answer `skip` more API requests normally, then the `n` after them
    /// with `status`.
    pub fn fail_after(&self, skip: u64, n: u64, status: u16) {
        let mut f = lock(&self.shared.faults);
        f.skip = skip;
        f.fail = n;
        f.status = status;
    }

    /// Revoke every token issued so far: their next use answers 401.
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// `n` accounts change (points, tier, version). Returns their ids.
    pub fn mutate_accounts(&self, n: usize) -> Vec<String> {
        self.shared.mutate(n, 0).accounts
    }

    /// `n` items change price (and the catalog its ETag). Returns their skus.
    pub fn mutate_items(&self, n: usize) -> Vec<String> {
        self.shared.mutate(0, n).items
    }

    /// Every size of `sku` now costs `price`, however wrong (and the
    /// catalog gets a new ETag). False when there is no such item.
    pub fn set_price(&self, sku: &str, price: i64) -> bool {
        lock(&self.shared.catalog).set_price(sku, price)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    pub fn catalog_etag(&self) -> String {
        lock(&self.shared.catalog).etag().to_owned()
    }

    /// The catalog's item as the simulator holds it now.
    pub fn item(&self, sku: &str) -> Option<Item> {
        lock(&self.shared.catalog).item(sku).cloned()
    }

    pub fn catalog_len(&self) -> usize {
        lock(&self.shared.catalog).len()
    }

    /// The account as the simulator holds it now.
    pub fn account(&self, id: &str) -> Option<WireAccount> {
        lock(&self.shared.accounts).get(id).cloned()
    }

    /// The points reports applied for `account` (one per order), summed.
    pub fn reported_points(&self, account: &str) -> i64 {
        lock(&self.shared.points)
            .values()
            .filter(|(a, _)| a == account)
            .map(|(_, p)| p)
            .sum()
    }

    pub fn accounts_len(&self) -> usize {
        lock(&self.shared.accounts).len()
    }

    /// Stop serving and wait for the server to finish.
    pub async fn shutdown(self) -> io::Result<()> {
        self.shutdown.cancel();
        let Simulator { task, .. } = self;
        task.await.map_err(io::Error::other)?
    }
}
