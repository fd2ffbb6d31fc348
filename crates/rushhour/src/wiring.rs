//! Wiring: the one place that knows every adapter. It turns a `Config` into
//! ports (`build`), and runs the roles of a process — HTTP API, order
//! processors, job workers, scheduler — under one cancellation token and
//! task tracker (`run`), so SIGTERM drains: stop accepting, finish in-flight
//! batches and jobs (or release them), commit, exit.

use anyhow::{Context, bail};
use domain::jobs::JobQueue;
use domain::ports::{EventLog, LiveFeed, Mailer, MenuCache, Store};
use domain::{Rushhour, RushhourConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Backend, Config, Sync};

/// A process's ports, built from config.
pub struct Built {
    pub app: Arc<Rushhour>,
    pub staff_key: String,
    /// Set when this start generated the staff key (print it once).
    pub generated_key: bool,
    pub jobs: Arc<dyn JobQueue>,
    pub mailer: Arc<dyn Mailer>,
    pub upstream: Arc<upstream::UpstreamClient>,
    pub webhook_secret: String,
    /// Set when this start generated the webhook secret (print it once).
    pub generated_webhook_secret: bool,
}

impl Built {
    /// The background jobs' view of this process's ports.
    pub fn tasks(&self, cfg: &Config) -> Arc<crate::tasks::Tasks> {
        Arc::new(crate::tasks::Tasks::new(
            cfg,
            self.app.clone(),
            self.jobs.clone(),
            self.upstream.clone(),
            self.mailer.clone(),
        ))
    }
}

fn log_sync(s: Sync) -> eventlog::Synchronous {
    match s {
        Sync::Full => eventlog::Synchronous::Full,
        Sync::Normal => eventlog::Synchronous::Normal,
    }
}

fn store_sync(s: Sync) -> store::Synchronous {
    match s {
        Sync::Full => store::Synchronous::Full,
        Sync::Normal => store::Synchronous::Normal,
    }
}

#[cfg(not(feature = "kafka"))]
fn scale_mode_missing(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: this binary was built without the `kafka` feature")
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match cfg.store_backend()? {
        Backend::Sqlite(path) => {
            let opts = store::SqliteStoreOptions {
                synchronous: store_sync(cfg.store.synchronous),
                ..Default::default()
            };
            let s = tokio::task::spawn_blocking(move || store::SqliteStore::open(&path, opts))
                .await?
                .context("open the SQLite store")?;
            Ok(Arc::new(s))
        }
        Backend::Postgres(url) => {
            let opts = store::PgStoreOptions {
                max_connections: cfg.store.max_connections,
                statement_timeout: Duration::from_millis(cfg.store.statement_timeout_ms),
                read_replica_url: Some(cfg.store.read_replica_url.clone()).filter(|u| !u.is_empty()),
                schema: Some(cfg.store.schema.clone()).filter(|s| !s.is_empty()),
                ..Default::default()
            };
            let s = store::PgStore::connect(&url, opts)
                .await
                .context("connect to the PostgreSQL store")?;
            s.migrate().await.context("migrate the PostgreSQL store")?;
            Ok(Arc::new(s))
        }
        Backend::Kafka(_) => bail!("store.url cannot be kafka://"),
    }
}

pub async fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    match cfg.log_backend()? {
        Backend::Sqlite(path) => {
            let opts = eventlog::SqliteLogOptions {
                partitions: cfg.log.partitions,
                group_commit: cfg.log.group_commit,
                max_batch: cfg.log.max_batch,
                linger: Duration::from_micros(cfg.log.linger_us),
                synchronous: log_sync(cfg.log.synchronous),
                ..Default::default()
            };
            let l = tokio::task::spawn_blocking(move || eventlog::SqliteEventLog::open(&path, opts))
                .await?
                .context("open the SQLite event log")?;
            Ok(Arc::new(l))
        }
        Backend::Kafka(brokers) => open_kafka_log(cfg, brokers).await,
        Backend::Postgres(_) => bail!("log.url cannot be postgres://"),
    }
}

#[cfg(feature = "kafka")]
async fn open_kafka_log(cfg: &Config, brokers: String) -> anyhow::Result<Arc<dyn EventLog>> {
    let claims_url = cfg.claims_url()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(cfg.store.max_connections)
        // Intake must answer within a second when PostgreSQL is gone.
        .acquire_timeout(Duration::from_millis(cfg.log.append_timeout_ms))
        .connect(&claims_url)
        .await
        .context("connect to PostgreSQL for the Kafka log's idempotency claims")?;
    let opts = eventlog::KafkaLogOptions {
        brokers,
        topic: cfg.log.topic.clone(),
        dlq_topic: cfg.log.dlq_topic.clone(),
        partitions: cfg.log.partitions,
        replication_factor: cfg.log.replication_factor,
        linger: Duration::from_millis(cfg.log.producer_linger_ms),
        compression: cfg.log.compression.clone(),
        append_timeout: Duration::from_millis(cfg.log.append_timeout_ms),
        session_timeout: Duration::from_millis(cfg.log.session_timeout_ms),
        fetch_wait: Duration::from_millis(cfg.log.fetch_wait_ms),
        processor_group: cfg.processor.group.clone(),
        ..Default::default()
    };
    let log = eventlog::KafkaEventLog::connect(opts, pool)
        .await
        .context("connect to Kafka")?;
    Ok(Arc::new(log))
}

#[cfg(not(feature = "kafka"))]
async fn open_kafka_log(_cfg: &Config, _brokers: String) -> anyhow::Result<Arc<dyn EventLog>> {
    Err(scale_mode_missing("log.url = kafka://"))
}

/// The menu cache and the live-event feed: in-process, or over Redis so
/// every instance shares them. Redis connects lazily: an instance starts
/// (and serves from its own memory and the store) while Redis is down.
pub async fn open_cache(cfg: &Config) -> anyhow::Result<(Arc<dyn MenuCache>, Arc<dyn LiveFeed>)> {
    const FEED_CAPACITY: usize = 4096;
    if cfg.cache.url == "memory://" {
        let menus = cache::MemoryMenuCache::new(Duration::from_secs(cfg.cache.menu_ttl_secs), cfg.cache.max_stores);
        return Ok((Arc::new(menus), Arc::new(cache::BroadcastFeed::new(FEED_CAPACITY))));
    }
    let menus = cache::RedisMenuCache::connect(
        &cfg.cache.url,
        cache::RedisCacheOptions {
            l1_ttl: Duration::from_secs(cfg.cache.l1_ttl_secs),
            l1_max_stores: cfg.cache.max_stores,
            l2_ttl: Duration::from_secs(cfg.cache.menu_ttl_secs),
            key_prefix: cfg.cache.key_prefix.clone(),
            ..Default::default()
        },
    )
    .await
    .context("set up the Redis menu cache")?;
    let feed = cache::RedisFeed::connect(
        &cfg.cache.url,
        cache::RedisFeedOptions {
            capacity: FEED_CAPACITY,
            channel_prefix: cfg.cache.key_prefix.clone(),
            ..Default::default()
        },
    )
    .await
    .context("set up the Redis live-event feed")?;
    Ok((Arc::new(menus), Arc::new(feed)))
}

/// The job queue: `<data_dir>/jobs.db` or PostgreSQL (see `jobs_backend`).
pub async fn open_jobs(cfg: &Config) -> anyhow::Result<Arc<dyn JobQueue>> {
    match cfg.jobs_backend()? {
        Backend::Sqlite(path) => {
            let q = tokio::task::spawn_blocking(move || {
                queue::SqliteQueue::open(&path, queue::SqliteQueueOptions::default())
            })
            .await?
            .context("open the SQLite job queue")?;
            Ok(Arc::new(q))
        }
        Backend::Postgres(url) => {
            let opts = queue::PgQueueOptions {
                max_connections: cfg.jobs.max_connections,
                statement_timeout: Duration::from_millis(cfg.store.statement_timeout_ms),
                schema: Some(cfg.store.schema.clone()).filter(|s| !s.is_empty()),
                ..Default::default()
            };
            let q = queue::PgQueue::connect(&url, opts)
                .await
                .context("connect to the PostgreSQL job queue")?;
            q.migrate().await.context("migrate the PostgreSQL job queue")?;
            Ok(Arc::new(q))
        }
        Backend::Kafka(_) => bail!("jobs.url cannot be kafka://"),
    }
}

pub fn upstream_client(cfg: &Config) -> anyhow::Result<Arc<upstream::UpstreamClient>> {
    let u = &cfg.upstream;
    let client = upstream::UpstreamClient::new(
        upstream::UpstreamConfig {
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
        Arc::new(worker::TokioClock),
    )
    .context("set up the upstream client")?;
    Ok(Arc::new(client))
}

/// Build every port from config, migrate, and seed the demo store if the
/// store is empty and `demo.seed` is on.
pub async fn build(cfg: &Config) -> anyhow::Result<Built> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let store = open_store(cfg).await?;
    let log = open_log(cfg).await?;
    if cfg.demo.seed && store.list_stores().await.context("list stores")?.is_empty() {
        store
            .upsert_menu(&domain::menu::demo_menu())
            .await
            .context("seed the demo menu")?;
        tracing::info!("seeded the demo store 'demo-downtown' and its menu");
    }
    let (staff_key, generated_key) = staff_key(cfg)?;
    let (webhook_secret, generated_webhook_secret) = webhook_secret(cfg)?;
    let (menus, feed) = open_cache(cfg).await?;
    let jobs = open_jobs(cfg).await?;
    let mailer = mail::open(&cfg.mail.url, &cfg.mail.from, &cfg.data_dir).context("set up mail")?;
    let upstream = upstream_client(cfg)?;
    let app = Arc::new(Rushhour {
        log,
        store,
        menus,
        feed,
        clock: Arc::new(worker::TokioClock),
        config: RushhourConfig::default(),
    });
    Ok(Built {
        app,
        staff_key,
        generated_key,
        jobs,
        mailer,
        upstream,
        webhook_secret,
        generated_webhook_secret,
    })
}

/// The configured staff key, or the one stored under the data dir, or a new
/// random one written there (mode 0600).
fn staff_key(cfg: &Config) -> anyhow::Result<(String, bool)> {
    if !cfg.auth.staff_key.is_empty() {
        return Ok((cfg.auth.staff_key.clone(), false));
    }
    let path = cfg.data_dir.join("staff.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_owned();
        if !k.is_empty() {
            return Ok((k, false));
        }
    }
    let key = format!("rh_{}", hex_key());
    write_secret(&path, &key).with_context(|| format!("write {}", path.display()))?;
    Ok((key, true))
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

pub fn api_config(cfg: &Config, built: &Built, shutdown: CancellationToken) -> api::ApiConfig {
    api::ApiConfig {
        max_body_bytes: cfg.http.max_body_bytes,
        max_inflight_intake: cfg.http.max_inflight_intake,
        request_timeout: cfg.request_timeout(),
        staff_key: built.staff_key.clone(),
        sse_heartbeat: Duration::from_secs(cfg.http.sse_heartbeat_secs),
        shutdown,
        webhook_secret: built.webhook_secret.clone(),
        webhook_tolerance: Duration::from_secs(cfg.webhooks.tolerance_secs),
        max_inflight_webhooks: cfg.webhooks.max_inflight,
        jobs: Some(built.jobs.clone()),
        processors: None,
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
        let registry = Arc::new(crate::tasks::registry(built.tasks(cfg)));
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
            let schedules = crate::tasks::schedules(cfg, &registry, built.app.clock.now_ms())?;
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
        let mut config = api_config(cfg, built, shutdown.clone());
        if let Some(status) = processors.clone() {
            config.processors = Some(Arc::new(move || status.health()));
        }
        // A worker-only process serves the probes and /metrics.
        let router = if roles.api {
            api::router(built.app.clone(), telemetry::prometheus(), config)
        } else {
            api::ops_router(built.app.clone(), telemetry::prometheus(), config)
        };
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("shutting down: draining requests and batches");
    tracker.wait().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
