//! Wiring: the one place that knows every adapter. It turns a `Config` into
//! ports (`build`), and runs the roles of a process — HTTP API, order
//! processors, job workers, scheduler — under one cancellation token and
//! task tracker (`run`), so SIGTERM drains: stop accepting, finish in-flight
//! batches and jobs (or release them), commit, exit.
//!
//! Embedded mode generates the secrets it was not given (staff key, webhook
//! secret, session key) into the data directory: each file mode 0600, the
//! directory 0700, tightened on every start should an existing one have
//! looser modes (a copied backup, a umask of 022). Scale mode is given them
//! (`Config::check_scale_secrets`).

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
    /// Outbound webhooks' HTTP client.
    pub webhook_sender: Arc<dyn domain::ports::WebhookSender>,
    pub webhook_secret: String,
    /// Set when this start generated the webhook secret (print it once).
    pub generated_webhook_secret: bool,
    /// Key material for session, CSRF and order-access tokens
    /// (`auth.session_key`, or `<data_dir>/session.key`).
    pub session_key: String,
}

impl Built {
    /// The background jobs' view of this process's ports.
    pub fn tasks(&self, cfg: &Config) -> Arc<Tasks> {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let r = &cfg.jobs.retention;
        Arc::new(
            Tasks::new(
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
                        webhook_deliveries: days(r.webhook_deliveries_days),
                        dead_webhook_deliveries: days(r.dead_webhook_deliveries_days),
                    },
                    accounts_page: cfg.upstream.accounts_page,
                    instance: cfg.worker_id(),
                },
            )
            .with_sessions(self.sessions.clone())
            .with_webhooks(self.webhook_sender.clone(), cfg.webhooks.outbound.delivery_settings())
            .with_backups(Arc::new(crate::db_cli::ScheduledBackups { cfg: cfg.clone() })),
        )
    }
}

/// The job queue `jobs.url` (or the store's PostgreSQL) names.
pub async fn open_jobs(cfg: &Config) -> anyhow::Result<Arc<dyn JobQueue>> {
    cfg.queue_config()?.build().await.context("open the job queue")
}

fn upstream_client(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<dyn Upstream>> {
    let client = upstream::UpstreamClient::new(cfg.upstream_options(), clock).context("set up the upstream client")?;
    Ok(Arc::new(client))
}

/// Build every port from config, migrate, and seed the demo store if the
/// store is empty and `demo.seed` is on.
pub async fn build(cfg: &Config) -> anyhow::Result<Built> {
    private_dir(&cfg.data_dir)?;
    // Before any database opens: SQLite's statement hook is set at open.
    cfg.observability.install();
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
    let (session_key, _) = configured_or_generated(&cfg.auth.session_key, &cfg.data_dir.join("session.key"), "")?;
    let cache::Caches { menus, feed } = cfg.cache_config()?.build().await.context("set up the caches")?;
    let jobs = open_jobs(cfg).await?;
    let mailer = cfg.mail_config()?.build().context("set up mail")?;
    let clock: Arc<dyn Clock> = Arc::new(worker::TokioClock);
    let upstream = upstream_client(cfg, clock.clone())?;
    let ca = &cfg.webhooks.outbound.tls_ca_file;
    let webhook_sender: Arc<dyn domain::ports::WebhookSender> = Arc::new(
        upstream::HttpWebhookSender::new((!ca.is_empty()).then(|| Path::new(ca.as_str())))
            .context("set up the outbound webhooks' client")?,
    );
    let sessions::Sessions { sessions, attempts } =
        cfg.sessions_config()?.build().await.context("open the session store")?;
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
        webhook_sender,
        webhook_secret,
        generated_webhook_secret,
        session_key,
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

/// On first start: make sure an enabled admin exists, with
/// `auth.bootstrap_admin_password` or (embedded mode only) a generated
/// password, written to `<data_dir>/admin.password` (0600) and returned so
/// the caller may show it on a terminal; it never goes through the log.
/// Scale mode refuses to start without the setting while no admin exists:
/// a generated password would land on one replica's disk only.
pub async fn bootstrap_admin(cfg: &Config, built: &Built) -> anyhow::Result<Option<String>> {
    let configured = Some(cfg.auth.bootstrap_admin_password.as_str()).filter(|p| !p.is_empty());
    if configured.is_none() && cfg.is_scale_mode() && !built.identity.has_admin().await.context("look for an admin")? {
        anyhow::bail!(
            "scale mode needs auth.bootstrap_admin_password (RUSHHOUR__AUTH__BOOTSTRAP_ADMIN_PASSWORD) on its first \
             start: no admin account exists yet"
        );
    }
    let generated = built
        .identity
        .ensure_admin(configured)
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
    configured_or_generated(&cfg.webhooks.secret, &cfg.data_dir.join("webhook.secret"), "whsec_")
}

/// `configured` if set; else the secret stored at `path` (its mode
/// tightened to 0600 first); else a new random one, `prefix` + 48 hex
/// digits, written there. The flag says whether this call generated it.
fn configured_or_generated(configured: &str, path: &Path, prefix: &str) -> anyhow::Result<(String, bool)> {
    if !configured.is_empty() {
        return Ok((configured.to_owned(), false));
    }
    if path.exists() {
        restrict(path, 0o600)?;
        let stored = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let stored = stored.trim();
        if !stored.is_empty() {
            return Ok((stored.to_owned(), false));
        }
    }
    let key = format!("{prefix}{}", hex_key());
    write_secret(path, &key).with_context(|| format!("write {}", path.display()))?;
    Ok((key, true))
}

fn hex_key() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Write `value` to `path` readable by the owner only (0600), whatever the
/// file's mode was before (`mode` on open applies to new files only).
pub fn write_secret(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{value}")
}

/// Create `dir` (and its parents) if missing, and make it the owner's
/// only (0700), as it holds the generated secrets.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create data dir {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Take away every permission bit of `path` that `mode` does not grant
/// (group and others, typically); leaves a stricter mode alone.
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)
        .with_context(|| format!("read the mode of {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))
            .with_context(|| format!("restrict {} to mode {mode:o}", path.display()))?;
    }
    Ok(())
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
    let mut prefetch = worker::RunnerConfig::default().prefetch;
    prefetch.extend(j.prefetch.iter().map(|(q, n)| (q.clone(), *n)));
    worker::RunnerConfig {
        worker_id: cfg.worker_id(),
        lease: Duration::from_secs(j.lease_secs),
        concurrency,
        claim_batch: j.claim_batch,
        prefetch,
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
        web: cfg.board.web(),
        ops: api::OpsConfig {
            schedules: Some(schedule_book(cfg, built)?),
            role: "serve",
            instance: cfg.worker_id(),
            profiler: Some(profiling::ProcessProfiler::shared()),
        },
        observe: cfg.observability.api(),
        ttls: api::CacheTtls {
            popular: Duration::from_secs(cfg.cache.popular_ttl_secs),
            stores: Duration::from_secs(cfg.cache.stores_ttl_secs),
        },
    })
}

/// The configured schedules, for the operator routes: built as `run` builds
/// the scheduler's, whether or not this process runs the scheduler (an
/// `api` process shows and runs what its workers fire).
fn schedule_book(cfg: &Config, built: &Built) -> anyhow::Result<Arc<dyn domain::jobs::ScheduleBook>> {
    let registry = catalog::registry(built.tasks(cfg));
    let configured = cfg.scheduler.schedules.iter().map(|(n, c)| (n.as_str(), c.as_str()));
    let schedules = catalog::schedules(configured, &registry, built.app.clock.now_ms())?;
    Ok(Arc::new(worker::ScheduleList(schedules)))
}

/// Take a sample of this process's live figures every second
/// (`telemetry::figures`, served by `GET /v1/admin/figures`), until
/// `shutdown`.
fn spawn_figures_sampler(clock: Arc<dyn Clock>, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A late tick is taken late, not doubled: the rates divide by the
        // real time between samples anyway.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    telemetry::figures().sample(clock.now_ms());
                    // The database pools' gauges (`db_pool_*`), same cadence.
                    dbkit::observe::sample_pools();
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
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
    spawn_figures_sampler(built.app.clock.clone(), &tracker, shutdown.clone());
    let role = match (roles.api, roles.processors || roles.jobs) {
        (true, true) => "serve",
        (true, false) => "api",
        (false, true) => "worker",
        (false, false) => "scheduler",
    };
    // Every process joins the instance registry, so `rushhour sync`,
    // `warmup` and `cache clear` reach its caches (`domain::fleet`).
    let addr = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_default();
    worker::spawn_member(
        built.tasks(cfg),
        cfg.worker_id(),
        role,
        addr,
        &tracker,
        shutdown.clone(),
    );
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
            // The pickups' receipts go through the outbox (`domain::outbox`).
            worker::spawn_relay(
                worker::Relay::new(built.app.clone(), built.jobs.clone(), cfg.loyalty.rule()),
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
            // Outbound webhooks: beside the runner that delivers them.
            worker::spawn_webhook_dispatcher(
                worker::WebhookDispatcher::new(built.app.store.clone(), built.jobs.clone(), built.app.clock.clone()),
                Duration::from_millis(cfg.webhooks.outbound.dispatch_interval_ms.max(10)),
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
        config.ops.role = role;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Secrets are the owner's only, also when the file or the directory
    /// was already there with looser modes.
    #[test]
    fn secret_files_and_the_data_dir_are_private_even_if_they_were_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "a new data dir");
        let (key, generated) = configured_or_generated("", &dir.join("session.key"), "").unwrap();
        assert!(generated && key.len() == 48, "{key}");
        assert_eq!(mode(&dir.join("session.key")), 0o600, "a new secret file");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join("session.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.join("staff.key"), "rh_existing\n").unwrap();
        std::fs::set_permissions(dir.join("staff.key"), std::fs::Permissions::from_mode(0o666)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing data dir is tightened");
        let (again, generated) = configured_or_generated("", &dir.join("session.key"), "").unwrap();
        assert_eq!(
            (again.as_str(), generated),
            (key.as_str(), false),
            "the stored key is kept"
        );
        assert_eq!(
            mode(&dir.join("session.key")),
            0o600,
            "an existing secret file is tightened"
        );
        let (staff, _) = configured_or_generated("", &dir.join("staff.key"), "rh_").unwrap();
        assert_eq!(staff, "rh_existing");
        assert_eq!(mode(&dir.join("staff.key")), 0o600);

        // Rewriting an existing, loose file leaves it private too.
        std::fs::set_permissions(dir.join("staff.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&dir.join("staff.key"), "rh_new").unwrap();
        assert_eq!(mode(&dir.join("staff.key")), 0o600);

        // A configured secret wins and writes nothing.
        let (configured, generated) = configured_or_generated("given", &dir.join("webhook.secret"), "whsec_").unwrap();
        assert_eq!((configured.as_str(), generated), ("given", false));
        assert!(!dir.join("webhook.secret").exists());
    }
}
