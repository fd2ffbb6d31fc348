//! The HTTP edge of rushhour: the axum router, its handlers and DTOs, and the
//! mapping of every error to `application/problem+json`.
//!
//! This is the only crate that knows HTTP. Handlers are thin: they parse and
//! validate the request, call one `domain::Rushhour` use-case and render the
//! result; every rule lives in `domain`. The binary builds one [`router`]
//! and serves it with [`serve`] (connection cap, header deadline, client
//! address, graceful drain); it never reaches into the modules below.
//!
//! Layering, outermost first: request metrics → tracing span → panic
//! catcher → body limit → (per route) timeout → on intake and webhooks, the
//! body read under its deadline, then load shedding → handler.
//! Metrics sit outside the panic catcher so a panic is still counted as a
//! 500, and the timeout sits on routes rather than the whole router because
//! Server-Sent Event streams must be allowed to live for hours.

mod accounts;
mod admin;
mod admin_figures;
mod admin_ops;
mod admin_profile;
mod auth;
mod encoding;
mod error;
mod events;
mod extract;
mod health;
mod loyalty;
mod metrics;
mod openapi;
mod orders;
mod permissions;
mod protect;
mod schemas;
mod serve;
mod stores;
mod subscribers;
mod traces;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use domain::Rushhour;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

pub use admin_figures::{FigureSeries, FiguresNow, FiguresView, PartitionDto, QueueDepth, SyncRunDto};
pub use auth::{Caller, RateLimits};
pub use error::{ApiError, ErrorCode};
pub use health::SharedProbe;
pub use openapi::ApiDoc;
pub use permissions::{Access, Class, RULES, Rule};
pub use serve::{ServeOptions, serve};
pub use web::{Ageing, WebConfig};
pub use webhooks::webhook_signature;

/// The decoders behind the routes, reachable from the fuzz targets in
/// `fuzz/` (CONTRIBUTING.md, "Fuzzing"). Not an API: the routes are; the
/// items keep the names and behaviour the handlers use.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::accounts::AuditParams;
    pub use crate::admin::JobListQuery;
    pub use crate::events::AfterQuery;
    pub use crate::extract::parse_last_event_id;
    pub use crate::orders::{ListQuery, OrderView, PlaceOrderRequest};
    pub use crate::subscribers::DeliveryQuery;
    pub use crate::webhooks::{PaymentWebhook, decode as decode_payment, verify};
}

/// What the binary decides about the HTTP edge.
#[derive(Clone)]
pub struct ApiConfig {
    /// Largest request body accepted (64 KiB in the shipped config).
    pub max_body_bytes: usize,
    /// Intake requests (`POST /v1/orders`) allowed in flight at once; more
    /// are refused at once with 503 rather than queued.
    pub max_inflight_intake: usize,
    /// Deadline for every request except the Server-Sent Event streams.
    pub request_timeout: Duration,
    /// Staff logins, sessions and API keys (the deprecated shared staff
    /// key is configured on it).
    pub identity: Arc<identity::Identity>,
    /// Request budgets: in process, or shared through Redis.
    pub limiter: Arc<dyn domain::ports::RateLimiter>,
    /// The budget of each route class.
    pub limits: RateLimits,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` / `X-Forwarded-Proto`
    /// are believed (none by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Mark the session cookie `Secure` (set it when clients reach the
    /// API over HTTPS through a proxy that does not say so).
    pub secure_cookies: bool,
    /// Interval of SSE keep-alive comments.
    pub sse_heartbeat: Duration,
    /// Cancelled at shutdown; open SSE streams end so the server can drain.
    pub shutdown: CancellationToken,
    /// Shared secret of `POST /v1/webhooks/payments` (HMAC-SHA256). Empty
    /// disables the endpoint: every call is refused 401 `invalid_signature`
    /// (never accepted unsigned) and `router` logs a warning at startup.
    pub webhook_secret: String,
    /// How far a webhook's signed timestamp may be from our clock, either
    /// way, before it is refused as `stale_signature` (300 s shipped).
    pub webhook_tolerance: Duration,
    /// Payment webhooks allowed in flight at once, apart from intake's
    /// bound; more are refused at once with 503 so a provider's flood
    /// cannot crowd out orders.
    pub max_inflight_webhooks: usize,
    /// The job queue the `/v1/admin/...` routes inspect and act on; with
    /// `None` they answer 503 `jobs_unavailable`. `/health/ready` checks it
    /// too.
    pub jobs: Option<Arc<dyn domain::jobs::JobQueue>>,
    /// The order processors of this process, if it runs them:
    /// `/health/ready` fails while one of its partitions has no running
    /// processor.
    pub processors: Option<health::SharedProbe>,
    /// Deadline for the whole body of an intake or a payment webhook,
    /// read before the request takes its in-flight permit; a late body is
    /// answered 408 `body_timeout`.
    pub body_read_timeout: Duration,
    /// Server-Sent Event streams open at once in this process; beyond it
    /// 503 `streams_at_capacity`.
    pub max_streams: usize,
    /// Streams open at once per client address; beyond it 429
    /// `too_many_streams`.
    pub max_streams_per_client: usize,
    /// The web UI's settings (board timers); its heartbeat is
    /// `sse_heartbeat`'s.
    pub web: WebConfig,
    /// What the operator routes need besides the ports.
    pub ops: OpsConfig,
    /// Statement counting and slow requests (`[observability]`).
    pub observe: ObserveConfig,
    /// How long the API reuses what it caches per kind (`[cache]`).
    pub ttls: CacheTtls,
}

/// How long each kind of data the API caches in process is reused; menus
/// have their own cache port (`MenuCache`, `cache.menu_ttl_secs`).
#[derive(Debug, Clone)]
pub struct CacheTtls {
    /// `GET /v1/stores/{id}/popular` (60 s: the `popular.refresh` job
    /// rewrites the list far less often).
    pub popular: Duration,
    /// `GET /v1/stores`; zero (the default) reads the store every time.
    pub stores: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            popular: domain::reports::POPULAR_TTL,
            stores: Duration::ZERO,
        }
    }
}

/// What the request middleware (`metrics::track`) reports besides
/// latency: the statements each request ran, and slow requests.
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// Answer every request with `x-db-queries`, the number of database
    /// statements it ran (tests and local diagnosis; off by default).
    pub query_count_header: bool,
    /// Requests slower than this are counted and logged.
    pub slow_request: Duration,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            query_count_header: false,
            slow_request: Duration::from_secs(1),
        }
    }
}

/// What the operator routes (`/v1/admin/figures`, `/v1/admin/schedules`)
/// need besides the ports: who this process is, and the schedules.
#[derive(Clone)]
pub struct OpsConfig {
    /// The configured periodic schedules; `None` lists none.
    pub schedules: Option<Arc<dyn domain::jobs::ScheduleBook>>,
    /// `serve`, `api` or `worker`, as the figures name it.
    pub role: &'static str,
    /// `host-pid` (or the configured worker id), as the figures name it.
    pub instance: String,
    /// Samples this process for `GET /v1/admin/profile/{cpu,heap}`;
    /// `None` answers 503 (`unavailable` for the CPU,
    /// `profiling_unavailable` for the heap).
    pub profiler: Option<Arc<dyn domain::ports::Profiler>>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            schedules: None,
            role: "serve",
            instance: format!("rushhour-{}", std::process::id()),
            profiler: None,
        }
    }
}

// By hand: the queue is a trait object without `Debug`, and the secrets
// must not end up in a log line.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_inflight_intake", &self.max_inflight_intake)
            .field("request_timeout", &self.request_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_streams", &self.max_streams)
            .field("max_streams_per_client", &self.max_streams_per_client)
            .field("sse_heartbeat", &self.sse_heartbeat)
            .field("limits", &self.limits)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("jobs", &self.jobs.is_some())
            .field("processors", &self.processors.is_some())
            .field("schedules", &self.ops.schedules.is_some())
            .field("role", &self.ops.role)
            .finish_non_exhaustive()
    }
}

/// Everything a handler needs, shared behind one `Arc` so cloning the state
/// per request is a reference-count bump.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    pub app: Arc<Rushhour>,
    pub metrics: PrometheusHandle,
    pub max_body_bytes: usize,
    pub identity: Arc<identity::Identity>,
    pub limiter: Arc<dyn domain::ports::RateLimiter>,
    pub limits: RateLimits,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub secure_cookies: bool,
    pub sse_heartbeat: Duration,
    pub shutdown: CancellationToken,
    pub webhook_secret: String,
    pub webhook_tolerance: Duration,
    pub jobs: Option<Arc<dyn domain::jobs::JobQueue>>,
    pub processors: Option<health::SharedProbe>,
    pub streams: Arc<protect::StreamLimits>,
    pub ops: OpsConfig,
    /// Per-store prep-time medians for ready-time estimates (15 s).
    pub prep: domain::reports::TtlCache<domain::reports::PrepTimes>,
    /// Per-store popular items as the `popular.refresh` job kept them.
    pub popular: domain::reports::TtlCache<domain::reports::Popular>,
    /// The store list, under one key (`stores::STORE_LIST`).
    pub stores: domain::reports::TtlCache<Vec<domain::menu::StoreInfo>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

fn state(app: Arc<Rushhour>, metrics: PrometheusHandle, config: &ApiConfig) -> AppState {
    AppState(Arc::new(Shared {
        app,
        metrics,
        max_body_bytes: config.max_body_bytes,
        identity: config.identity.clone(),
        limiter: config.limiter.clone(),
        limits: config.limits.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        secure_cookies: config.secure_cookies,
        sse_heartbeat: config.sse_heartbeat,
        shutdown: config.shutdown.clone(),
        webhook_secret: config.webhook_secret.clone(),
        webhook_tolerance: config.webhook_tolerance,
        jobs: config.jobs.clone(),
        processors: config.processors.clone(),
        streams: protect::StreamLimits::new(config.max_streams, config.max_streams_per_client),
        ops: config.ops.clone(),
        prep: domain::reports::TtlCache::new(domain::reports::ESTIMATE_TTL),
        popular: domain::reports::TtlCache::new(config.ttls.popular),
        stores: domain::reports::TtlCache::new(config.ttls.stores),
    }))
}

/// Only the operations routes (`/health/live`, `/health/ready`,
/// `/metrics`) and the live figures (`/v1/admin/figures`, admin only): what
/// a process without the public API (a `worker`) serves so orchestrators
/// can probe it, Prometheus can scrape it, and `rushhour monitor` can watch
/// its processors (which an `api` process does not run).
pub fn ops_router(app: Arc<Rushhour>, metrics: PrometheusHandle, config: ApiConfig) -> Router {
    let state = state(app, metrics, &config);
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/v1/admin/figures", get(admin_figures::figures))
        .route_layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            protect::timeout,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .fallback(protect::route_not_found)
        .method_not_allowed_fallback(protect::method_not_allowed)
        .layer(CatchPanicLayer::custom(protect::panic_response))
        .with_state(state)
}

/// Build the whole HTTP API.
pub fn router(app: Arc<Rushhour>, metrics: PrometheusHandle, config: ApiConfig) -> Router {
    let state = state(app, metrics, &config);
    // A semaphore rather than tower's `ConcurrencyLimit`: that one queues
    // waiters, and a queue is exactly what must not grow during a rush.
    let intake = Arc::new(Semaphore::new(
        config.max_inflight_intake.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let webhook_permits = Arc::new(Semaphore::new(
        config.max_inflight_webhooks.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let body = |path| protect::BodyDeadline {
        limit: config.max_body_bytes,
        timeout: config.body_read_timeout,
        path,
    };
    if config.webhook_secret.is_empty() {
        tracing::warn!("no webhook secret configured: POST /v1/webhooks/payments refuses every call");
    }

    let timed = Router::new()
        .route(
            "/v1/orders",
            get(orders::list_orders).merge(
                // The later `route_layer` runs first: the body is read
                // before the permit is taken.
                post(orders::place_order)
                    .route_layer(axum::middleware::from_fn_with_state(intake, protect::shed_intake))
                    .route_layer(axum::middleware::from_fn_with_state(
                        body("/v1/orders"),
                        protect::read_body,
                    )),
            ),
        )
        .route("/v1/orders/{id}", get(orders::get_order))
        .route("/v1/orders/{id}/cancel", post(orders::cancel_order))
        .route("/v1/orders/{id}/lines/{line}/start", post(orders::start_line))
        .route("/v1/orders/{id}/lines/{line}/done", post(orders::finish_line))
        .route("/v1/orders/{id}/lines/{line}/undo", post(orders::undo_line))
        .route("/v1/orders/{id}/pickup", post(orders::pick_up))
        .route(
            "/v1/webhooks/payments",
            post(webhooks::receive_payment)
                .route_layer(axum::middleware::from_fn_with_state(webhook_permits, webhooks::shed))
                .route_layer(axum::middleware::from_fn_with_state(
                    body("/v1/webhooks/payments"),
                    protect::read_body,
                )),
        )
        .route("/v1/admin/figures", get(admin_figures::figures))
        .route("/v1/admin/snapshots", get(admin_figures::snapshots))
        .route("/v1/admin/queues", get(admin::queues))
        .route("/v1/admin/jobs", get(admin::list_jobs))
        .route("/v1/admin/jobs/retry", post(admin_ops::bulk_retry))
        .route("/v1/admin/jobs/discard", post(admin_ops::bulk_discard))
        .route("/v1/admin/jobs/{id}", get(admin::get_job).delete(admin::discard_job))
        .route("/v1/admin/jobs/{id}/retry", post(admin::retry_job))
        .route("/v1/admin/sync/{what}", post(admin::sync))
        .route("/v1/admin/cache/clear", post(admin::clear_cache))
        .route("/v1/admin/loyalty/accounts/{id}", get(loyalty::account))
        .route("/v1/admin/cache", get(admin_figures::cache))
        .route(
            "/v1/admin/cache/stores/{id}/invalidate",
            post(admin_ops::invalidate_store),
        )
        .route("/v1/admin/schedules", get(admin_ops::schedules))
        .route("/v1/admin/schedules/{name}/run", post(admin_ops::run_schedule))
        .route("/v1/admin/dead-letters", get(admin_ops::dead_letters))
        .route(
            "/v1/admin/dead-letters/{group}/{partition}/{offset}",
            axum::routing::delete(admin_ops::discard_dead_letter),
        )
        .route(
            "/v1/admin/dead-letters/{group}/{partition}/{offset}/replay",
            post(admin_ops::replay_dead_letter),
        )
        .route("/v1/admin/users", get(accounts::list_users).post(accounts::add_user))
        .route(
            "/v1/admin/users/{username}",
            axum::routing::patch(accounts::update_user),
        )
        .route("/v1/admin/keys", get(accounts::list_keys).post(accounts::issue_key))
        .route("/v1/admin/keys/{prefix}", axum::routing::delete(accounts::revoke_key))
        .route("/v1/admin/audit", get(accounts::audit))
        .route("/v1/admin/webhooks", get(subscribers::list).post(subscribers::create))
        .route(
            "/v1/admin/webhooks/{id}",
            axum::routing::patch(subscribers::update).delete(subscribers::remove),
        )
        .route("/v1/admin/webhooks/{id}/test", post(subscribers::test))
        .route("/v1/admin/webhooks/{id}/deliveries", get(subscribers::deliveries))
        .route(
            "/v1/admin/webhooks/{id}/deliveries/{delivery}/retry",
            post(subscribers::retry),
        )
        .route("/v1/sessions", post(accounts::login))
        .route("/v1/sessions/current", get(accounts::current).delete(accounts::logout))
        .route("/v1/stores", get(stores::list_stores))
        .route("/v1/stores/{id}/menu", get(stores::menu))
        .route("/v1/stores/{id}/tickets", get(stores::tickets))
        .route("/v1/stores/{id}/figures", get(stores::figures))
        .route("/v1/stores/{id}/popular", get(stores::popular))
        .route("/v1/stores/{id}/pickup", get(events::pickup_board))
        .route(
            "/v1/stores/{id}/items/{sku}/availability",
            put(stores::set_availability),
        )
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .merge(openapi::swagger_ui())
        // The pages: through the same timeout and the same `authorize`.
        .merge(web::router(
            state.app.clone(),
            WebConfig {
                heartbeat_secs: config.sse_heartbeat.as_secs().max(1),
                ..config.web.clone()
            },
        ))
        // `route_layer`, not `layer`: the fallback must stay untouched so
        // the merge below and the 404 handler keep working.
        .route_layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            protect::timeout,
        ));

    // Streams live as long as the client (or the shutdown token) allows.
    let streams = Router::new()
        .route("/v1/orders/{id}/events", get(events::order_events))
        .route("/v1/stores/{id}/board", get(events::store_board))
        .route("/v1/stores/{id}/pickup/events", get(events::pickup_events))
        // As long as the profile asked for (capped), not the request timeout.
        .route("/v1/admin/profile/cpu", get(admin_profile::cpu))
        .route("/v1/admin/profile/heap", get(admin_profile::heap));

    timed
        .merge(streams)
        // After every route (layers apply to the routes present), before
        // the fallbacks: who may call what, and the rate limits.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .fallback(protect::route_not_found)
        // Must come after every route: axum applies it to the routes that
        // exist when it is called.
        .method_not_allowed_fallback(protect::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(CatchPanicLayer::custom(protect::panic_response))
        // One span per request. Failures are logged at DEBUG only: a 503
        // shed during a rush is the system working, and a line per shed
        // request would flood the logs exactly when they matter; real
        // causes are logged where they are known (`ApiError::Internal`,
        // the backend warnings).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(traces::request_span)
                .on_response(traces::on_response)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.observe.clone()),
            metrics::track,
        ))
        .with_state(state)
}
