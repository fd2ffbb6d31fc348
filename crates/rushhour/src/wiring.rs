//! Wiring: the one place that knows every adapter. It turns a `Config` into
//! ports (`build`), and runs the roles of a process — HTTP API, order
//! processors, job workers, scheduler — under one cancellation token and
//! task tracker (`run`), so SIGTERM drains: stop accepting, finish in-flight
//! batches and jobs (or release them), commit, exit.

use anyhow::Context;
use domain::housekeeping::RetentionPeriods;
use domain::jobs::JobQueue;
use domain::ports::{Clock, Mailer};
use domain::sync::Upstream;
use domain::{Rushhour, RushhourConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::catalog::{self, TaskSettings, Tasks};

use crate::config::Config;

/// A process's ports, built from config.
pub struct Built {
    pub app: Arc<Rushhour>,
    /// Staff accounts, sessions, API keys, audit.
    pub identity: Arc<identity::Identity>,
    /// Request budgets (in process, or shared through Redis).
    pub limiter: Arc<dyn domain::ports::RateLimiter>,
    /// Sessions and login counters, for the nightly cleanup.
    pub sessions: Arc<dyn domain::ports::SessionStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub mailer: Arc<dyn Mailer>,
    /// The catalog and loyalty services, behind their ports.
    pub upstream: Arc<dyn Upstream>,
    pub webhook_secret: String,
    /// Set when this start generated the webhook secret (print it once).
    pub generated_webhook_secret: bool,
}

impl Built {
    /// The background jobs' view of this process's ports.
    pub fn tasks(&self, cfg: &Config) -> Arc<Tasks> {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let r = &cfg.jobs.retention;
        Arc::new(Tasks::new(
            self.app.clone(),
            self.jobs.clone(),
            self.upstream.clone(),
            self.mailer.clone(),
            TaskSettings {
                pickup_timeout: Duration::from_secs(cfg.jobs.pickup_timeout_secs),
                retention: RetentionPeriods {
                    orders: days(r.orders_days),
                    records: days(r.records_days),
                    finished_jobs: days(r.finished_jobs_days),
                    idempotency: Duration::from_secs(r.idempotency_hours.max(24) * 3600),
                    audit: days(r.audit_days),
                },
                accounts_page: cfg.upstream.accounts_page,
                instance: cfg.worker_id(),
            },
        ))
    }
}

/// The job queue `jobs.url` (or the store's PostgreSQL) names.
pub async fn open_jobs(cfg: &Config) -> anyhow::Result<Arc<dyn JobQueue>> {
    cfg.queue_config()?.build().await.context("open the job queue")
}

fn upstream_client(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn Upstream>> {
    let u = &cfg.upstream;
    let client = upstream::UpstreamClient::new(
        upstream::UpstreamOptions {
            base_url: u.base_url.clone(),
            client_id: u.client_id.clone(),
            client_secret: u.client_secret.clone(),
            page_size: u.page_size,
            timeout: Duration::from_millis(u.timeout_ms),
            max_retries: u.max_retries,
            circuit_failures: u.circuit_failures,
            circuit_cooldown: Duration::from_secs(u.circuit_cooldown_secs),
            ..Default::default()
        },
        clock,
    )
    .context("set up the upstream client")?;
    Ok(Arc::new(client))
}

/// Build every port from config, migrate, and seed the demo store if the
/// store is empty and `demo.seed` is on.
pub async fn build(cfg: &Config) -> anyhow::Result<Built> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let store = cfg.store_config()?.build().await.context("open the store")?;
    let log = cfg.log_config()?.build().await.context("open the event log")?;
    if cfg.demo.seed && store.list_stores().await.context("list stores")?.is_empty() {
        store
            .upsert_menu(&domain::menu::demo_menu())
            .await
            .context("seed the demo menu")?;
        tracing::info!("seeded the demo store 'demo-downtown' and its menu");
    }
    let staff_key = legacy_staff_key(cfg);
    let (webhook_secret, generated_webhook_secret) = webhook_secret(cfg)?;
    let cache::Caches { menus, feed } = cfg.cache_config()?.build().await.context("set up the caches")?;
    let jobs = open_jobs(cfg).await?;
    let mailer = cfg.mail_config()?.build().context("set up mail")?;
    let clock: Arc<dyn Clock> = Arc::new(worker::TokioClock);
    let upstream = upstream_client(cfg, clock.clone())?;
    let sessions::Sessions { sessions, attempts } = cfg
        .sessions_config()?
        .build()
        .await
        .context("open the session store")?;
    let limiter = cfg
        .rate_limit_config()?
        .build()
        .await
        .context("set up the rate limiter")?;
    let parallel_hashes = std::thread::available_parallelism().map_or(2, |n| n.get());
    let identity = identity::Identity::new(
        identity::IdentityPorts {
            users: store.clone(),
            audit: store.clone(),
            sessions: sessions.clone(),
            attempts,
            clock: clock.clone(),
        },
        identity::Passwords::owasp(parallel_hashes),
        cfg.identity_settings(),
    )
    .with_staff_key(staff_key);
    let app = Arc::new(Rushhour {
        log,
        store,
        menus,
        feed,
        clock,
        config: RushhourConfig {
            order_token_key: session_key.as_bytes().to_vec().into(),
            ..RushhourConfig::default()
        },
    });
    Ok(Built {
        app,
        identity: Arc::new(identity),
        limiter,
        sessions,
        jobs,
        mailer,
        upstream,
        webhook_secret,
        generated_webhook_secret,
    })
}

/// The deprecated shared staff key: the configured one, or the one an
/// earlier version generated under the data dir. Never generated any more;
/// honoured as an admin API key so existing deployments and scripts keep
/// working, with a warning at every start.
fn legacy_staff_key(cfg: &Config) -> Option<String> {
    let key = if cfg.auth.staff_key.is_empty() {
        let path = cfg.data_dir.join("staff.key");
        std::fs::read_to_string(&path).ok().map(|k| k.trim().to_owned())
    } else {
        Some(cfg.auth.staff_key.clone())
    };
    let key = key.filter(|k| !k.is_empty())?;
    tracing::warn!(
        "the shared staff key (auth.staff_key / staff.key) is deprecated and acts as an admin API key; \
         create staff accounts and personal keys with `rushhour users`, then remove it"
    );
    Some(key)
}

/// On first start: make sure an enabled admin exists. A generated password
/// is written to `<data_dir>/admin.password` (0600) and returned, so the
/// caller may show it on a terminal; it never goes through the log.
pub async fn bootstrap_admin(cfg: &Config, built: &Built, password: Option<&str>) -> anyhow::Result<Option<String>> {
    let generated = built
        .identity
        .ensure_admin(password)
        .await
        .context("create the first admin account")?;
    if let Some(p) = &generated {
        let path = cfg.data_dir.join("admin.password");
        write_secret(&path, p).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(generated)
}

/// The configured webhook secret, or the one under the data dir, or a new
/// one written there (mode 0600).
fn webhook_secret(cfg: &Config) -> anyhow::Result<(String, bool)> {
    if !cfg.webhooks.secret.is_empty() {
        return Ok((cfg.webhooks.secret.clone(), false));
    }
    let path = cfg.data_dir.join("webhook.secret");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_owned();
        if !k.is_empty() {
            return Ok((k, false));
        }
    }
    let key = format!("whsec_{}", hex_key());
    write_secret(&path, &key).with_context(|| format!("write {}", path.display()))?;
    Ok((key, true))
}

fn hex_key() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_secret(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{value}")
}

/// Which roles this process runs.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub api: bool,
    pub processors: bool,
    /// Job workers (every queue).
    pub jobs: bool,
    /// The periodic-job scheduler.
    pub scheduler: bool,
}

impl Roles {
    /// `serve`: everything in one process.
    pub const ALL: Roles = Roles {
        api: true,
        processors: true,
        jobs: true,
        scheduler: true,
    };
}

pub fn runner_config(cfg: &Config) -> worker::RunnerConfig {
    let j = &cfg.jobs;
    let mut concurrency = worker::RunnerConfig::default().concurrency;
    for (queue, n) in &j.concurrency {
        concurrency.insert(queue.clone(), (*n).max(1));
    }
    worker::RunnerConfig {
        worker_id: cfg.worker_id(),
        lease: Duration::from_secs(j.lease_secs),
        concurrency,
        claim_batch: j.claim_batch,
        backoff_base: Duration::from_millis(j.backoff_base_ms),
        backoff_max: Duration::from_secs(j.backoff_max_secs),
        shutdown_grace: Duration::from_secs(j.shutdown_grace_secs),
        ..Default::default()
    }
}

pub fn processor_config(cfg: &Config) -> worker::ProcessorConfig {
    worker::ProcessorConfig {
        group: cfg.processor.group.clone(),
        max_batch: cfg.processor.max_batch,
        linger: Duration::from_millis(cfg.processor.linger_ms),
        max_attempts: cfg.processor.max_attempts,
        ..Default::default()
    }
}

pub fn api_config(cfg: &Config, built: &Built, shutdown: CancellationToken) -> anyhow::Result<api::ApiConfig> {
    Ok(api::ApiConfig {
        max_body_bytes: cfg.http.max_body_bytes,
        max_inflight_intake: cfg.http.max_inflight_intake,
        request_timeout: cfg.request_timeout(),
        identity: built.identity.clone(),
        limiter: built.limiter.clone(),
        limits: cfg.rate_limits()?,
        trusted_proxies: cfg.trusted_proxies()?,
        secure_cookies: cfg.auth.secure_cookies,
        sse_heartbeat: Duration::from_secs(cfg.http.sse_heartbeat_secs),
        shutdown,
        webhook_secret: built.webhook_secret.clone(),
        webhook_tolerance: Duration::from_secs(cfg.webhooks.tolerance_secs),
        max_inflight_webhooks: cfg.webhooks.max_inflight,
        jobs: Some(built.jobs.clone()),
        processors: None,
        body_read_timeout: Duration::from_millis(cfg.http.body_read_timeout_ms),
        max_streams: cfg.http.max_streams,
        max_streams_per_client: cfg.http.max_streams_per_client,
    })
}

/// The server loop's connection-level protection (`http.*`).
pub fn serve_options(cfg: &Config) -> api::ServeOptions {
    api::ServeOptions {
        header_read_timeout: Duration::from_millis(cfg.http.header_read_timeout_ms),
        max_connections: cfg.http.max_connections,
    }
}

/// Run the roles until `shutdown` is cancelled, then drain: the HTTP server
/// stops accepting and finishes in-flight requests, processors finish and
/// commit their current batch; returns when everything has stopped.
pub async fn run(
    cfg: &Config,
    built: &Built,
    listener: Option<TcpListener>,
    roles: Roles,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let processors = (roles.processors && cfg.processor.enabled)
        .then(|| worker::spawn_processors(built.app.clone(), processor_config(cfg), &tracker, shutdown.clone()));
    if (roles.jobs && cfg.jobs.enabled) || (roles.scheduler && cfg.scheduler.enabled) {
        let registry = Arc::new(catalog::registry(built.tasks(cfg)));
        if roles.jobs && cfg.jobs.enabled {
            worker::spawn_runner(
                built.jobs.clone(),
                registry.clone(),
                built.app.clock.clone(),
                runner_config(cfg),
                &tracker,
                shutdown.clone(),
            );
            worker::spawn_queue_gauges(
                built.jobs.clone(),
                built.app.clock.clone(),
                Duration::from_secs(5),
                &tracker,
                shutdown.clone(),
            );
        }
        if roles.scheduler && cfg.scheduler.enabled {
            let configured = cfg.scheduler.schedules.iter().map(|(n, c)| (n.as_str(), c.as_str()));
            let schedules = catalog::schedules(configured, &registry, built.app.clock.now_ms())?;
            worker::spawn_scheduler(
                built.jobs.clone(),
                built.app.clock.clone(),
                schedules,
                &tracker,
                shutdown.clone(),
            );
        }
    }
    if let Some(listener) = listener {
        let mut config = api_config(cfg, built, shutdown.clone())?;
        if let Some(status) = processors.clone() {
            config.processors = Some(Arc::new(move || status.health()));
        }
        // A worker-only process serves the probes and /metrics.
        let router = if roles.api {
            api::router(built.app.clone(), telemetry::prometheus(), config)
        } else {
            api::ops_router(built.app.clone(), telemetry::prometheus(), config)
        };
        tracker.spawn(api::serve(listener, router, serve_options(cfg), shutdown.clone()));
    }
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("shutting down: draining requests and batches");
    tracker.wait().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
