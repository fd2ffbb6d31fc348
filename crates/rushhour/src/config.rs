//! Configuration: the compiled-in `config/default.toml`, then an optional
//! `--config FILE`, then `RUSHHOUR__SECTION__KEY` environment variables
//! (figment merges them in that order). Backends are chosen by URL: each
//! port's URL is parsed here, when configuration loads, into that port's
//! config enum (`store::StoreConfig`, `eventlog::LogConfig`,
//! `queue::QueueConfig`, `cache::CacheConfig`, `mail::MailConfig`), whose
//! `build()` the wiring calls. A URL naming another port's engine
//! (`store.url = kafka://…`) is refused at load, naming the key and the
//! schemes it accepts.
//!
//! This is the only module that reads the environment for settings.
//!
//! Secrets: `rushhour config` and every message naming a URL show it through
//! [`redact_url`] (a password in `user:pass@` and every secret-looking query
//! parameter replaced), and scale mode refuses to start without the secrets
//! that every instance must share ([`Config::check_scale_secrets`]).

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    pub store: StoreSection,
    pub processor: ProcessorSection,
    pub cache: CacheSection,
    pub jobs: JobsSection,
    pub scheduler: SchedulerSection,
    pub upstream: UpstreamSection,
    pub mail: MailSection,
    pub webhooks: WebhooksSection,
    pub board: BoardSection,
    pub telemetry: TelemetrySection,
    pub demo: DemoSection,
    pub observability: ObservabilitySection,
    pub backup: BackupSection,
    pub loyalty: LoyaltySection,
    pub profiling: ProfilingSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub addr: SocketAddr,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_inflight_intake: usize,
    pub sse_heartbeat_secs: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For`,
    /// `Forwarded` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<String>,
    pub header_read_timeout_ms: u64,
    pub max_connections: usize,
    pub body_read_timeout_ms: u64,
    pub max_streams: usize,
    pub max_streams_per_client: usize,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Deprecated: honoured as an admin API key, with a warning.
    pub staff_key: String,
    /// Key material for session, CSRF and order-access tokens. Generated
    /// into `<data_dir>/session.key` in embedded mode; required in scale
    /// mode, where every instance must use the same.
    pub session_key: String,
    /// The first admin's password (scale mode needs it on the first start,
    /// when no admin exists yet).
    pub bootstrap_admin_password: String,
    pub session_idle_mins: u64,
    pub session_lifetime_hours: u64,
    pub lockout_threshold: u32,
    pub address_lockout_threshold: u32,
    pub lockout_base_secs: u64,
    pub lockout_max_secs: u64,
    pub secure_cookies: bool,
}

impl std::fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSection")
            .field("staff_key", &"[redacted]")
            .field("session_key", &"[redacted]")
            .field("bootstrap_admin_password", &"[redacted]")
            .field("session_idle_mins", &self.session_idle_mins)
            .field("session_lifetime_hours", &self.session_lifetime_hours)
            .finish_non_exhaustive()
    }
}

/// Requests per minute (burst: the same number) per client address, or
/// per credential for staff, by route class; 0 = unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub enabled: bool,
    /// Client addresses (or CIDR blocks) never limited.
    pub exempt: Vec<String>,
    pub intake: u32,
    pub reads: u32,
    pub streams: u32,
    pub login: u32,
    pub webhooks: u32,
    pub staff: u32,
    pub admin: u32,
}

/// `log.synchronous` and `store.synchronous`: one type for every embedded
/// database (`dbkit::Synchronous`, `full` / `normal`).
pub use store::Synchronous;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub url: String,
    pub partitions: u32,
    pub group_commit: bool,
    pub max_batch: usize,
    pub linger_us: u64,
    pub synchronous: Synchronous,
    pub topic: String,
    pub dlq_topic: String,
    pub replication_factor: i32,
    pub producer_linger_ms: u64,
    pub compression: String,
    pub append_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub fetch_wait_ms: u64,
    pub claims_url: String,
    /// `[log.kafka]`: librdkafka settings passed to every Kafka client.
    #[serde(default)]
    pub kafka: KafkaSection,
}

/// `[log.kafka]`, librdkafka's own setting names to string values, e.g.
/// `"security.protocol" = "SASL_PLAINTEXT"`. Dotted TOML keys
/// (`security.protocol = …`, which TOML reads as nested tables) and
/// environment variables (`RUSHHOUR__LOG__KAFKA__SASL__USERNAME`, `__`
/// standing for `.`) are flattened back to dotted names; numbers and
/// booleans become their text. `Debug` hides secret values.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KafkaSection(pub std::collections::BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KafkaSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn flatten(
            prefix: &str,
            value: toml::Value,
            out: &mut std::collections::BTreeMap<String, String>,
        ) -> Result<(), String> {
            let text = match value {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                        flatten(&key, v, out)?;
                    }
                    return Ok(());
                }
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(format!("log.kafka.{prefix:?} must be a string")),
            };
            out.insert(prefix.to_owned(), text);
            Ok(())
        }
        let mut out = std::collections::BTreeMap::new();
        flatten("", toml::Value::deserialize(d)?, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Self(out))
    }
}

impl std::fmt::Debug for KafkaSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&eventlog::KafkaClientSettings(self.0.clone()), f)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub url: String,
    pub synchronous: Synchronous,
    pub max_connections: u32,
    pub statement_timeout_ms: u64,
    pub read_replica_url: String,
    pub schema: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSection {
    pub enabled: bool,
    pub group: String,
    pub max_batch: usize,
    pub linger_ms: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    pub url: String,
    /// `rediss://`: a PEM file of CAs trusted instead of the system's.
    pub tls_ca_file: String,
    pub menu_ttl_secs: u64,
    pub l1_ttl_secs: u64,
    pub key_prefix: String,
    pub max_stores: u64,
    pub popular_ttl_secs: u64,
    pub stores_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    pub url: String,
    pub enabled: bool,
    pub worker_id: String,
    pub lease_secs: u64,
    pub claim_batch: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub shutdown_grace_secs: u64,
    pub pickup_timeout_secs: u64,
    pub max_connections: u32,
    pub concurrency: std::collections::BTreeMap<String, usize>,
    /// Prefetch buffer per queue (jobs claimed ahead of free slots); a queue
    /// not listed gets `worker::default_prefetch`, 0 turns it off.
    #[serde(default)]
    pub prefetch: std::collections::BTreeMap<String, usize>,
    pub retention: RetentionSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub orders_days: u64,
    pub records_days: u64,
    pub finished_jobs_days: u64,
    pub idempotency_hours: u64,
    /// Audit entries of staff actions.
    pub audit_days: u64,
    /// Delivered outbound webhook deliveries.
    pub webhook_deliveries_days: u64,
    /// Dead outbound webhook deliveries (kept longer: they can be retried
    /// until pruned).
    pub dead_webhook_deliveries_days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    pub enabled: bool,
    /// Schedule name → cron expression ("" = off).
    pub schedules: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub page_size: u32,
    pub accounts_page: u32,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub circuit_failures: u32,
    pub circuit_cooldown_secs: u64,
    /// `https://`: a PEM file of CAs trusted besides the system's.
    pub tls_ca_file: String,
}

impl std::fmt::Debug for UpstreamSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSection")
            .field("base_url", &redact_url(&self.base_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    pub url: String,
    pub from: String,
    /// `smtps://` or STARTTLS: a PEM file of CAs trusted besides the
    /// bundled roots.
    pub tls_ca_file: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    pub secret: String,
    pub tolerance_secs: u64,
    pub max_inflight: usize,
    pub outbound: OutboundWebhooksSection,
}

/// Outbound webhooks to subscribers (`[webhooks.outbound]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundWebhooksSection {
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub concurrency: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub dispatch_interval_ms: u64,
    pub tls_ca_file: String,
}

impl OutboundWebhooksSection {
    pub fn delivery_settings(&self) -> domain::webhooks::DeliverySettings {
        domain::webhooks::DeliverySettings {
            timeout: std::time::Duration::from_millis(self.timeout_ms.max(1)),
            max_attempts: self.max_attempts.max(1),
            concurrency: self.concurrency.max(1),
            backoff_base: std::time::Duration::from_millis(self.backoff_base_ms),
            backoff_max: std::time::Duration::from_secs(self.backoff_max_secs),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for WebhooksSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhooksSection")
            .field("secret", &"[redacted]")
            .field("tolerance_secs", &self.tolerance_secs)
            .field("max_inflight", &self.max_inflight)
            .field("outbound", &self.outbound)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    pub log_format: String,
    pub log_filter: String,
    /// OTLP/HTTP endpoint traces are exported to; empty: traces off.
    pub otlp_endpoint: String,
    /// Fraction of new traces kept, 0.0 to 1.0 (parent-based).
    pub trace_sample_ratio: f64,
    /// `service.name` of the spans; empty: `rushhour-<role>`.
    pub service_name: String,
    pub trace_export_timeout_ms: u64,
}

impl TelemetrySection {
    /// The exporter's settings, or `None` when traces are off. `role` names
    /// the process (`serve`, `api`, `worker`, `scheduler`) for the default
    /// service name, so one collector tells the processes apart.
    pub fn traces(&self, role: &str) -> Option<telemetry::TraceSettings> {
        if self.otlp_endpoint.is_empty() {
            return None;
        }
        Some(telemetry::TraceSettings {
            endpoint: self.otlp_endpoint.clone(),
            sample_ratio: self.trace_sample_ratio,
            service_name: if self.service_name.is_empty() {
                format!("rushhour-{role}")
            } else {
                self.service_name.clone()
            },
            export_timeout: std::time::Duration::from_millis(self.trace_export_timeout_ms),
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !["pretty", "json"].contains(&self.log_format.as_str()) {
            bail!("telemetry.log_format must be pretty or json");
        }
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            bail!("telemetry.trace_sample_ratio must be 0.0 to 1.0");
        }
        let http = ["http://", "https://"]
            .iter()
            .any(|p| self.otlp_endpoint.starts_with(p));
        if !self.otlp_endpoint.is_empty() && !http {
            bail!(
                "telemetry.otlp_endpoint must be an http:// or https:// URL (OTLP over HTTP, e.g. http://localhost:4318)"
            );
        }
        if self.trace_export_timeout_ms == 0 {
            bail!("telemetry.trace_export_timeout_ms must be at least 1");
        }
        Ok(())
    }
}

/// `[board]`: the barista and kitchen display's ticket timers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    pub barista_warn_secs: u32,
    pub barista_late_secs: u32,
    pub kitchen_warn_secs: u32,
    pub kitchen_late_secs: u32,
}

impl BoardSection {
    /// The web UI's settings from this section.
    pub fn web(&self) -> api::WebConfig {
        api::WebConfig {
            barista: api::Ageing {
                warn_secs: self.barista_warn_secs,
                late_secs: self.barista_late_secs,
            },
            kitchen: api::Ageing {
                warn_secs: self.kitchen_warn_secs,
                late_secs: self.kitchen_late_secs,
            },
            ..api::WebConfig::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSection {
    pub seed: bool,
}

/// `[observability]`: statement counting (the N+1 guard) and the slow
/// statement and slow request thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilitySection {
    pub count_queries: bool,
    pub query_count_header: bool,
    pub slow_query_ms: u64,
    pub slow_request_ms: u64,
}

impl ObservabilitySection {
    /// What the HTTP edge needs of it.
    pub fn api(&self) -> api::ObserveConfig {
        api::ObserveConfig {
            query_count_header: self.query_count_header,
            slow_request: Duration::from_millis(self.slow_request_ms),
        }
    }

    /// Set the process-wide statement hooks (`dbkit::observe`); call before
    /// any database is opened (SQLite hooks are installed at open).
    pub fn install(&self) {
        dbkit::observe::set_enabled(self.count_queries);
        dbkit::observe::set_slow_query(Duration::from_millis(self.slow_query_ms));
    }
}

/// `[profiling]`: whether jemalloc's heap profiler samples from start
/// (ADR 0011). Off, a heap profile records allocations for a window asked
/// for; on, every heap profile covers everything live since start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilingSection {
    pub heap: bool,
}

/// `[backup]`: where backups go and how many the schedule keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// "" = `<data_dir>/backups`.
    pub dir: String,
    pub keep: usize,
}

/// `[loyalty]`: the points a picked-up order earns (`domain::loyalty`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltySection {
    /// Points per whole currency unit of the total, rounded down; 0: none.
    pub points_per_unit: u32,
}

impl LoyaltySection {
    pub fn rule(&self) -> domain::loyalty::PointsRule {
        domain::loyalty::PointsRule {
            points_per_unit: self.points_per_unit,
        }
    }
}

/// Command-line overrides, applied last.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverride>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpOverride {
    pub addr: SocketAddr,
}

impl Config {
    /// Defaults, then `file`, then the environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig
            .merge(Env::prefixed("RUSHHOUR__").split("__").lowercase(true))
            .merge(Serialized::defaults(overrides));
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.telemetry.validate()?;
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            bail!("log.partitions must be 1 to 1024");
        }
        if self.processor.max_batch == 0 || self.log.max_batch == 0 {
            bail!("processor.max_batch and log.max_batch must be at least 1");
        }
        if self.http.max_inflight_intake == 0 {
            bail!("http.max_inflight_intake must be at least 1");
        }
        self.trusted_proxies()?;
        self.limit_exemptions()?;
        if self.auth.session_idle_mins == 0 || self.auth.session_lifetime_hours == 0 {
            bail!("auth.session_idle_mins and auth.session_lifetime_hours must be at least 1");
        }
        if self.auth.lockout_threshold == 0 || self.auth.address_lockout_threshold == 0 {
            bail!("auth.lockout_threshold and auth.address_lockout_threshold must be at least 1");
        }
        let h = &self.http;
        if h.header_read_timeout_ms == 0
            || h.max_connections == 0
            || h.body_read_timeout_ms == 0
            || h.max_streams == 0
            || h.max_streams_per_client == 0
        {
            bail!(
                "http.header_read_timeout_ms, http.max_connections, http.body_read_timeout_ms, http.max_streams and \
                 http.max_streams_per_client must be at least 1"
            );
        }
        self.check_urls()?;
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.log.compression.as_str()) {
            bail!("log.compression must be none, gzip, snappy, lz4 or zstd");
        }
        if self.log.append_timeout_ms == 0 {
            bail!("log.append_timeout_ms must be at least 1");
        }
        if !(10..=1000).contains(&self.upstream.page_size) {
            bail!("upstream.page_size must be 10 to 1000");
        }
        if self.jobs.lease_secs == 0 || self.jobs.claim_batch == 0 {
            bail!("jobs.lease_secs and jobs.claim_batch must be at least 1");
        }
        if !self.log.kafka.0.is_empty() {
            eventlog::KafkaClientSettings(self.log.kafka.0.clone()).check()?;
        }
        Ok(())
    }

    /// Scale mode: the store on PostgreSQL or the log on Kafka, i.e. more
    /// than one process may serve the same data.
    pub fn is_scale_mode(&self) -> bool {
        matches!(parse_url(&STORE_URL, &self.store.url), Ok(Engine::Postgres(_)))
            || matches!(parse_url(&LOG_URL, &self.log.url), Ok(Engine::Kafka(_)))
    }

    /// In scale mode, refuse to start without the secrets every instance
    /// must share: generated ones would differ per instance (a payment
    /// callback signed for one would fail on the others, a session made on
    /// one would be unknown to the rest). The message names the setting
    /// and its environment variable. Embedded mode generates them.
    pub fn check_scale_secrets(&self) -> anyhow::Result<()> {
        if !self.is_scale_mode() {
            return Ok(());
        }
        let required = [
            ("webhooks.secret", &self.webhooks.secret, 1),
            ("auth.session_key", &self.auth.session_key, MIN_SESSION_KEY_LEN),
        ];
        for (key, value, min_len) in required {
            let env = format!("RUSHHOUR__{}", key.replace('.', "__").to_uppercase());
            if value.is_empty() {
                bail!(
                    "scale mode needs {key} ({env}): set the same value on every instance \
                     (only the embedded mode generates secrets)"
                );
            }
            if value.chars().count() < min_len {
                bail!("{key} ({env}) must be at least {min_len} characters");
            }
        }
        Ok(())
    }

    /// `http.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        parse_nets("http.trusted_proxies", &self.http.trusted_proxies)
    }

    /// `limits.exempt`, parsed.
    pub fn limit_exemptions(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        parse_nets("limits.exempt", &self.limits.exempt)
    }

    /// Login, session and lockout settings.
    pub fn identity_settings(&self) -> identity::IdentitySettings {
        let a = &self.auth;
        let max = Duration::from_secs(a.lockout_max_secs.max(1));
        identity::IdentitySettings {
            session_idle: Duration::from_secs(a.session_idle_mins * 60),
            session_lifetime: Duration::from_secs(a.session_lifetime_hours * 3600),
            lockout_threshold: a.lockout_threshold,
            address_threshold: a.address_lockout_threshold,
            lockout_base: Duration::from_secs(a.lockout_base_secs.max(1)).min(max),
            lockout_max: max,
            lockout_window: max.max(Duration::from_secs(3600)),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    /// Every URL's scheme names an engine of its own port (and Kafka has
    /// brokers): checked at load, so a misplaced URL never reaches the
    /// wiring.
    fn check_urls(&self) -> anyhow::Result<()> {
        self.store_config()?;
        self.log_engine()?;
        if !self.log.claims_url.is_empty() {
            parse_url(&CLAIMS_URL, &self.log.claims_url)?;
        }
        self.queue_config()?;
        self.cache_config()?;
        self.mail_config()?;
        Ok(())
    }

    /// The store `store.url` names.
    pub fn store_config(&self) -> anyhow::Result<store::StoreConfig> {
        Ok(match parse_url(&STORE_URL, &self.store.url)? {
            Engine::Sqlite(path) => store::StoreConfig::Sqlite {
                path: self.sqlite_path(path, "rushhour.db"),
                options: store::SqliteStoreOptions {
                    synchronous: self.store.synchronous,
                    ..Default::default()
                },
            },
            Engine::Postgres(url) => store::StoreConfig::Postgres {
                url: url.to_owned(),
                options: store::PgStoreOptions {
                    max_connections: self.store.max_connections,
                    statement_timeout: Duration::from_millis(self.store.statement_timeout_ms),
                    read_replica_url: Some(self.store.read_replica_url.clone()).filter(|u| !u.is_empty()),
                    schema: self.pg_schema(),
                    ..Default::default()
                },
            },
            other => unreachable!("store.url accepts no {other:?}"),
        })
    }

    /// `log.url`'s engine: a SQLite file or Kafka brokers.
    fn log_engine(&self) -> anyhow::Result<Engine<'_>> {
        let engine = parse_url(&LOG_URL, &self.log.url)?;
        if engine == Engine::Kafka("") {
            bail!("log.url = kafka:// needs brokers: kafka://host:port,host:port");
        }
        Ok(engine)
    }

    /// The event log `log.url` names. Kafka also needs a PostgreSQL for
    /// its idempotency claims ([`Config::claims_url`]), checked here rather
    /// than at load, as before: only a process that opens the log needs it.
    pub fn log_config(&self) -> anyhow::Result<eventlog::LogConfig> {
        let l = &self.log;
        Ok(match self.log_engine()? {
            Engine::Sqlite(path) => eventlog::LogConfig::Sqlite {
                path: self.sqlite_path(path, "log.db"),
                options: eventlog::SqliteLogOptions {
                    partitions: l.partitions,
                    group_commit: l.group_commit,
                    max_batch: l.max_batch,
                    linger: Duration::from_micros(l.linger_us),
                    synchronous: l.synchronous,
                    ..Default::default()
                },
            },
            Engine::Kafka(brokers) => eventlog::LogConfig::Kafka(Box::new(eventlog::KafkaConfig {
                options: eventlog::KafkaLogOptions {
                    brokers: brokers.to_owned(),
                    topic: l.topic.clone(),
                    dlq_topic: l.dlq_topic.clone(),
                    partitions: l.partitions,
                    replication_factor: l.replication_factor,
                    linger: Duration::from_millis(l.producer_linger_ms),
                    compression: l.compression.clone(),
                    append_timeout: Duration::from_millis(l.append_timeout_ms),
                    session_timeout: Duration::from_millis(l.session_timeout_ms),
                    fetch_wait: Duration::from_millis(l.fetch_wait_ms),
                    processor_group: self.processor.group.clone(),
                    client_settings: eventlog::KafkaClientSettings(l.kafka.0.clone()),
                    ..Default::default()
                },
                claims: eventlog::ClaimsConfig {
                    url: self.claims_url()?,
                    max_connections: self.store.max_connections,
                    // Intake must answer within a second when PostgreSQL is gone.
                    acquire_timeout: Duration::from_millis(l.append_timeout_ms),
                },
            })),
            other => unreachable!("log.url accepts no {other:?}"),
        })
    }

    /// Where the Kafka log keeps its idempotency claims: `log.claims_url`,
    /// or the store's PostgreSQL database when that is empty.
    pub fn claims_url(&self) -> anyhow::Result<String> {
        let (spec, url) = if self.log.claims_url.is_empty() {
            (&STORE_URL, &self.store.url)
        } else {
            (&CLAIMS_URL, &self.log.claims_url)
        };
        match parse_url(spec, url)? {
            Engine::Postgres(u) => Ok(u.to_owned()),
            _ => bail!(
                "log.url = kafka:// keeps idempotency claims in PostgreSQL: set store.url \
                 (or log.claims_url) to a postgres:// URL"
            ),
        }
    }

    /// The job queue: `jobs.url`, else the store's PostgreSQL, else
    /// `<data_dir>/jobs.db`.
    pub fn queue_config(&self) -> anyhow::Result<queue::QueueConfig> {
        let url = if !self.jobs.url.is_empty() {
            self.jobs.url.as_str()
        } else if matches!(parse_url(&STORE_URL, &self.store.url)?, Engine::Postgres(_)) {
            self.store.url.as_str()
        } else {
            "sqlite://"
        };
        Ok(match parse_url(&JOBS_URL, url)? {
            Engine::Sqlite(path) => queue::QueueConfig::Sqlite {
                path: self.sqlite_path(path, "jobs.db"),
                options: queue::SqliteQueueOptions::default(),
            },
            Engine::Postgres(url) => queue::QueueConfig::Postgres {
                url: url.to_owned(),
                options: queue::PgQueueOptions {
                    max_connections: self.jobs.max_connections,
                    statement_timeout: Duration::from_millis(self.store.statement_timeout_ms),
                    schema: self.pg_schema(),
                    ..Default::default()
                },
            },
            other => unreachable!("jobs.url accepts no {other:?}"),
        })
    }

    /// The menu cache and live feed `cache.url` names: in-process, or over
    /// Redis so every instance shares them.
    pub fn cache_config(&self) -> anyhow::Result<cache::CacheConfig> {
        let c = &self.cache;
        Ok(match parse_url(&CACHE_URL, &c.url)? {
            Engine::Memory => cache::CacheConfig::Memory {
                menu_ttl: Duration::from_secs(c.menu_ttl_secs),
                max_stores: c.max_stores,
                feed_capacity: FEED_CAPACITY,
            },
            Engine::Redis(url) => cache::CacheConfig::Redis {
                url: url.to_owned(),
                cache: cache::RedisCacheOptions {
                    l1_ttl: Duration::from_secs(c.l1_ttl_secs),
                    l1_max_stores: c.max_stores,
                    l2_ttl: Duration::from_secs(c.menu_ttl_secs),
                    key_prefix: c.key_prefix.clone(),
                    tls_ca_file: ca_file(&c.tls_ca_file),
                    ..Default::default()
                },
                feed: cache::RedisFeedOptions {
                    capacity: FEED_CAPACITY,
                    channel_prefix: c.key_prefix.clone(),
                    tls_ca_file: ca_file(&c.tls_ca_file),
                    ..Default::default()
                },
            },
            other => unreachable!("cache.url accepts no {other:?}"),
        })
    }

    /// Where sessions and failed-login counters live: Redis when the cache
    /// is on Redis (shared by every API instance), else
    /// `<data_dir>/sessions.db`.
    pub fn sessions_config(&self) -> anyhow::Result<sessions::SessionsConfig> {
        Ok(match parse_url(&CACHE_URL, &self.cache.url)? {
            Engine::Redis(url) => sessions::SessionsConfig::Redis {
                url: url.to_owned(),
                key_prefix: self.cache.key_prefix.clone(),
            },
            _ => sessions::SessionsConfig::Sqlite {
                path: self.data_dir.join("sessions.db"),
            },
        })
    }

    /// The rate limiter: shared through Redis when the cache is on Redis,
    /// else in process.
    pub fn rate_limit_config(&self) -> anyhow::Result<ratelimit::RateLimitConfig> {
        Ok(match parse_url(&CACHE_URL, &self.cache.url)? {
            Engine::Redis(url) => ratelimit::RateLimitConfig::Redis {
                url: url.to_owned(),
                key_prefix: self.cache.key_prefix.clone(),
            },
            _ => ratelimit::RateLimitConfig::Memory,
        })
    }

    /// The budget of every route class (`limits.*`, per minute).
    pub fn rate_limits(&self) -> anyhow::Result<api::RateLimits> {
        let l = &self.limits;
        let mut quotas = std::collections::HashMap::new();
        if l.enabled {
            for (class, per_min) in [
                (api::Class::Intake, l.intake),
                (api::Class::Reads, l.reads),
                (api::Class::Streams, l.streams),
                (api::Class::Login, l.login),
                (api::Class::Webhooks, l.webhooks),
                (api::Class::Staff, l.staff),
                (api::Class::Admin, l.admin),
            ] {
                if per_min > 0 {
                    let quota = domain::ports::Quota {
                        burst: per_min,
                        period: Duration::from_secs(60),
                    };
                    quotas.insert(class, quota);
                }
            }
        }
        Ok(api::RateLimits {
            quotas,
            exempt: self.limit_exemptions()?,
        })
    }

    /// The mailer `mail.url` names.
    pub fn mail_config(&self) -> anyhow::Result<mail::MailConfig> {
        parse_url(&MAIL_URL, &self.mail.url)?;
        let mut config = mail::MailConfig::from_url(&self.mail.url, &self.mail.from, &self.data_dir)
            .with_context(|| format!("mail.url = {:?}", redact_url(&self.mail.url)))?;
        if let mail::MailConfig::Smtp(smtp) = &mut config {
            smtp.tls_ca_file = ca_file(&self.mail.tls_ca_file);
        }
        Ok(config)
    }

    /// The upstream client's settings.
    pub fn upstream_options(&self) -> upstream::UpstreamOptions {
        let u = &self.upstream;
        upstream::UpstreamOptions {
            base_url: u.base_url.clone(),
            client_id: u.client_id.clone(),
            client_secret: u.client_secret.clone(),
            page_size: u.page_size,
            timeout: Duration::from_millis(u.timeout_ms),
            max_retries: u.max_retries,
            circuit_failures: u.circuit_failures,
            circuit_cooldown: Duration::from_secs(u.circuit_cooldown_secs),
            tls_ca_file: ca_file(&u.tls_ca_file),
            ..Default::default()
        }
    }

    /// `sqlite://` alone means `<data_dir>/<default_file>`.
    fn sqlite_path(&self, rest: &str, default_file: &str) -> PathBuf {
        if rest.is_empty() {
            self.data_dir.join(default_file)
        } else {
            PathBuf::from(rest)
        }
    }

    fn pg_schema(&self) -> Option<String> {
        Some(self.store.schema.clone()).filter(|s| !s.is_empty())
    }

    /// This process's lease-holder name: `jobs.worker_id` or host-pid.
    pub fn worker_id(&self) -> String {
        if !self.jobs.worker_id.is_empty() {
            return self.jobs.worker_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        format!("{host}-{}", std::process::id())
    }

    pub fn redacted_store_url(&self) -> String {
        match self.store_config() {
            Ok(store::StoreConfig::Sqlite { path, .. }) => path.display().to_string(),
            _ => redact_url(&self.store.url),
        }
    }

    pub fn redacted_log_url(&self) -> String {
        match self.log_engine() {
            Ok(Engine::Sqlite(path)) => self.sqlite_path(path, "log.db").display().to_string(),
            _ => redact_url(&self.log.url),
        }
    }

    /// The configuration as TOML with secrets replaced.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut c = self.clone();
        for secret in [
            &mut c.auth.staff_key,
            &mut c.auth.session_key,
            &mut c.auth.bootstrap_admin_password,
            &mut c.upstream.client_secret,
            &mut c.webhooks.secret,
        ] {
            if !secret.is_empty() {
                *secret = "[redacted]".into();
            }
        }
        for url in [
            &mut c.log.url,
            &mut c.log.claims_url,
            &mut c.store.url,
            &mut c.store.read_replica_url,
            &mut c.cache.url,
            &mut c.jobs.url,
            &mut c.mail.url,
            &mut c.upstream.base_url,
            &mut c.telemetry.otlp_endpoint,
        ] {
            *url = redact_url(url);
        }
        c.log.kafka.0 = eventlog::KafkaClientSettings(c.log.kafka.0).redacted();
        toml::to_string_pretty(&c).context("render config")
    }
}

/// The operating-system user running a CLI command, named in audit
/// entries (`cli:<user>`); empty when unknown.
#[allow(clippy::disallowed_methods)] // this module is where the environment is read
pub fn os_user() -> String {
    std::env::var("USER").unwrap_or_default()
}

/// Where `backup`/`restore` look for `pg_dump` and `pg_restore`: `PATH`.
#[allow(clippy::disallowed_methods)] // this module is where the environment is read
pub fn tool_search_path() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// Addresses (`10.0.0.1`) or blocks (`10.0.0.0/8`) of a list setting.
fn parse_nets(key: &str, items: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| format!("{key}: {s:?} is neither an address nor a CIDR block"))
        })
        .collect()
}

/// Events buffered per live subscriber (in-process and Redis feeds).
const FEED_CAPACITY: usize = 4096;

/// `auth.session_key` signs tokens: at least this many characters (a
/// generated one is 48 hex digits, 192 bits).
pub const MIN_SESSION_KEY_LEN: usize = 32;

/// A `*_tls_ca_file` setting: empty means none.
fn ca_file(setting: &str) -> Option<PathBuf> {
    Some(PathBuf::from(setting)).filter(|p| !p.as_os_str().is_empty())
}

/// The engine a URL names, with the part of the URL its adapter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine<'a> {
    /// What follows `sqlite://`: empty (the data directory's default
    /// file) or a path.
    Sqlite(&'a str),
    /// The whole `postgres://` URL.
    Postgres(&'a str),
    /// The brokers after `kafka://`.
    Kafka(&'a str),
    Memory,
    /// The whole `redis://`/`rediss://` URL.
    Redis(&'a str),
    /// `file://` or `smtp://`/`smtps://` (parsed by `mail::MailConfig`).
    Mail,
}

/// A URL key and the schemes it accepts.
struct UrlKey {
    key: &'static str,
    accepts: &'static [&'static str],
}

const STORE_URL: UrlKey = UrlKey {
    key: "store.url",
    accepts: &["sqlite://", "postgres://", "postgresql://"],
};
const LOG_URL: UrlKey = UrlKey {
    key: "log.url",
    accepts: &["sqlite://", "kafka://"],
};
const CLAIMS_URL: UrlKey = UrlKey {
    key: "log.claims_url",
    accepts: &["postgres://", "postgresql://"],
};
const JOBS_URL: UrlKey = UrlKey {
    key: "jobs.url",
    accepts: &["sqlite://", "postgres://", "postgresql://"],
};
const CACHE_URL: UrlKey = UrlKey {
    key: "cache.url",
    accepts: &["memory://", "redis://", "rediss://"],
};
const MAIL_URL: UrlKey = UrlKey {
    key: "mail.url",
    accepts: &["file://", "smtp://", "smtps://"],
};

/// Every URL key, in the order an error names the keys a scheme belongs to.
const URL_KEYS: [&UrlKey; 6] = [&STORE_URL, &LOG_URL, &JOBS_URL, &CLAIMS_URL, &CACHE_URL, &MAIL_URL];

/// The keys that accept `scheme`, as a phrase ("a, b and c").
fn owners(scheme: &str) -> String {
    let keys: Vec<&str> = URL_KEYS
        .iter()
        .filter(|k| k.accepts.contains(&scheme))
        .map(|k| k.key)
        .collect();
    match keys.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The engine `url` names if `spec` accepts it; else an error naming the
/// key, the keys the scheme belongs to (when it is another port's engine)
/// and the schemes the key accepts.
fn parse_url<'a>(spec: &UrlKey, url: &'a str) -> anyhow::Result<Engine<'a>> {
    let (key, accepts) = (spec.key, spec.accepts.join(", "));
    let mut known = URL_KEYS.iter().flat_map(|k| k.accepts.iter().copied());
    let Some(scheme) = known.find(|scheme| url.starts_with(scheme)) else {
        bail!("{key} = {:?}: unknown scheme; {key} accepts {accepts}", redact_url(url));
    };
    if !spec.accepts.contains(&scheme) {
        let owners = owners(scheme);
        bail!(
            "{key} = {:?}: {scheme} is an engine for {owners}, not for {key}; {key} accepts {accepts}",
            redact_url(url)
        );
    }
    let rest = &url[scheme.len()..];
    Ok(match scheme {
        "sqlite://" => Engine::Sqlite(rest),
        "postgres://" | "postgresql://" => Engine::Postgres(url),
        "kafka://" => Engine::Kafka(rest),
        "memory://" if rest.is_empty() => Engine::Memory,
        "memory://" => bail!("{key} = {url:?}: memory:// takes nothing after it"),
        "redis://" | "rediss://" => Engine::Redis(url),
        _ => Engine::Mail,
    })
}

/// Query parameters whose values are secrets, by a word in their name:
/// `password`, `sslpassword`, `sasl.password`, `secret`, `client_secret`,
/// `token`, `access_token`, `api_key`…
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `url` with its secrets replaced by `[redacted]`: the password of
/// `scheme://user:password@host`, and the value of every query parameter
/// that names a secret (`?password=…`, `&sslpassword=…`, `?token=…`).
/// Everything else (host, database, `sslmode`, file paths) stays readable.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let (head, query) = match before_fragment.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:[redacted]{}", &head[..s + 3], &creds[..c], &head[at..]),
                None => head.to_owned(),
            }
        }
        _ => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, value)) if is_secret_param(name) && !value.is_empty() => format!("{name}=[redacted]"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        Config::load(None, &Overrides::default()).unwrap()
    }

    #[test]
    fn defaults_parse_and_select_embedded_backends() {
        let c = defaults();
        assert!(matches!(
            c.log_config().unwrap(),
            eventlog::LogConfig::Sqlite { path, .. } if path == c.data_dir.join("log.db")
        ));
        assert!(matches!(c.cache_config().unwrap(), cache::CacheConfig::Memory { .. }));
        assert!(matches!(
            c.mail_config().unwrap(),
            mail::MailConfig::Outbox { dir, .. } if dir == c.data_dir.join("outbox")
        ));
        assert_eq!(c.http.max_body_bytes, 64 * 1024);
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            data_dir: Some("/tmp/x".into()),
            http: Some(HttpOverride {
                addr: "127.0.0.1:9999".parse().unwrap(),
            }),
        };
        let c = Config::load(None, &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.http.addr.port(), 9999);
        assert!(matches!(
            c.store_config().unwrap(),
            store::StoreConfig::Sqlite { path, .. } if path == Path::new("/tmp/x/rushhour.db")
        ));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = defaults();
        c.auth.staff_key = "s3cret".into();
        c.store.url = "postgres://app:hunter2@db:5432/rushhour".into();
        c.upstream.client_secret = "upst-secret".into();
        c.webhooks.secret = "whsec-secret".into();
        c.mail.url = "smtp://mailer:mailpass@smtp:587".into();
        let out = c.redacted_toml().unwrap();
        for secret in ["s3cret", "hunter2", "upst-secret", "whsec-secret", "mailpass"] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(out.contains("postgres://app:[redacted]@db:5432/rushhour"));
    }

    #[test]
    fn kafka_needs_brokers_and_a_postgres_for_claims() {
        let mut c = defaults();
        c.log.url = "kafka://k1:9092,k2:9092".into();
        assert!(c.validate().is_ok(), "Kafka parses (a build without it fails to build)");
        assert!(c.claims_url().is_err(), "SQLite store cannot hold the claims");
        assert!(c.log_config().is_err());
        c.store.url = "postgres://db/rushhour".into();
        assert_eq!(c.claims_url().unwrap(), "postgres://db/rushhour");
        match c.log_config().unwrap() {
            eventlog::LogConfig::Kafka(k) => {
                assert_eq!(k.options.brokers, "k1:9092,k2:9092");
                assert_eq!(k.claims.url, "postgres://db/rushhour");
            }
            other => panic!("expected Kafka, got {other:?}"),
        }
        c.log.url = "kafka://".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_job_queue_follows_the_store() {
        let mut c = defaults();
        assert!(matches!(
            c.queue_config().unwrap(),
            queue::QueueConfig::Sqlite { path, .. } if path == c.data_dir.join("jobs.db")
        ));
        c.store.url = "postgres://db/rushhour".into();
        assert!(matches!(
            c.queue_config().unwrap(),
            queue::QueueConfig::Postgres { url, .. } if url == "postgres://db/rushhour"
        ));
        c.jobs.url = "sqlite:///tmp/j.db".into();
        assert!(matches!(
            c.queue_config().unwrap(),
            queue::QueueConfig::Sqlite { path, .. } if path == Path::new("/tmp/j.db")
        ));
        assert_eq!(c.scheduler.schedules["order_expiry"], "* * * * *");
    }

    /// A URL under the wrong key, or with a scheme nobody knows, is refused
    /// when configuration loads, with a message naming the key, the keys
    /// the scheme belongs to, and what the key accepts.
    #[test]
    fn misplaced_and_unknown_urls_are_parse_errors() {
        type Set = fn(&mut Config, &str);
        let store: Set = |c, u| c.store.url = u.into();
        let log: Set = |c, u| c.log.url = u.into();
        let claims: Set = |c, u| c.log.claims_url = u.into();
        let jobs: Set = |c, u| c.jobs.url = u.into();
        let cache: Set = |c, u| c.cache.url = u.into();
        let mail: Set = |c, u| c.mail.url = u.into();
        let cases: [(Set, &str, &str); 14] = [
            (
                store,
                "kafka://k1:9092",
                "store.url = \"kafka://k1:9092\": kafka:// is an engine for log.url, not for store.url; \
                 store.url accepts sqlite://, postgres://, postgresql://",
            ),
            (
                store,
                "redis://r:6379",
                "store.url = \"redis://r:6379\": redis:// is an engine for cache.url, not for store.url",
            ),
            (
                store,
                "mysql://db",
                "store.url = \"mysql://db\": unknown scheme; store.url accepts sqlite://, postgres://, postgresql://",
            ),
            (
                log,
                "postgres://db/x",
                "log.url = \"postgres://db/x\": postgres:// is an engine for store.url, jobs.url and \
                 log.claims_url, not for log.url; log.url accepts sqlite://, kafka://",
            ),
            (
                log,
                "memory://",
                "log.url = \"memory://\": memory:// is an engine for cache.url",
            ),
            (log, "kafka://", "log.url = kafka:// needs brokers"),
            (
                claims,
                "sqlite://",
                "log.claims_url = \"sqlite://\": sqlite:// is an engine for store.url, log.url and jobs.url",
            ),
            (
                jobs,
                "kafka://k:9092",
                "jobs.url = \"kafka://k:9092\": kafka:// is an engine for log.url, not for jobs.url; \
                 jobs.url accepts sqlite://, postgres://, postgresql://",
            ),
            (
                cache,
                "postgres://u:hunter2@db/x",
                "cache.url = \"postgres://u:[redacted]@db/x\": postgres:// is an engine for store.url",
            ),
            (
                cache,
                "memory://x",
                "cache.url = \"memory://x\": memory:// takes nothing after it",
            ),
            (
                cache,
                "sqlite://",
                "cache.url = \"sqlite://\": sqlite:// is an engine for store.url, log.url and jobs.url, \
                 not for cache.url; cache.url accepts memory://, redis://, rediss://",
            ),
            (
                mail,
                "redis://r",
                "mail.url = \"redis://r\": redis:// is an engine for cache.url, not for mail.url; \
                 mail.url accepts file://, smtp://, smtps://",
            ),
            (
                mail,
                "file://relative/dir",
                "mail.url = \"file://relative/dir\": invalid mail URL",
            ),
            (
                mail,
                "http://mail",
                "mail.url = \"http://mail\": unknown scheme; mail.url accepts file://, smtp://, smtps://",
            ),
        ];
        for (set, url, want) in cases {
            let mut c = defaults();
            set(&mut c, url);
            let err = format!("{:#}", c.validate().expect_err(url));
            assert!(err.contains(want), "{url}:\n got: {err}\nwant: {want}");
        }
    }

    /// The same refusal comes from `Config::load`, before anything is
    /// built, and configuration written for earlier binaries (every key of
    /// the defaults, scale-mode URLs) still loads.
    #[test]
    fn load_refuses_a_misplaced_url_and_accepts_todays_files() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[store]\nurl = \"kafka://k1:9092\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&bad), &Overrides::default()).unwrap_err());
        assert!(
            err.contains("store.url = \"kafka://k1:9092\": kafka:// is an engine for log.url"),
            "{err}"
        );

        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            DEFAULTS
                .replace(
                    "url = \"sqlite://\"\npartitions",
                    "url = \"kafka://k1:9092\"\npartitions",
                )
                .replace("url = \"memory://\"", "url = \"redis://127.0.0.1:6379\"")
                .replace("url = \"file://\"", "url = \"smtp://127.0.0.1:2525\""),
        )
        .unwrap();
        let c = Config::load(Some(&good), &Overrides::default()).unwrap();
        assert!(matches!(c.cache_config().unwrap(), cache::CacheConfig::Redis { .. }));
        assert!(matches!(c.mail_config().unwrap(), mail::MailConfig::Smtp(_)));
        assert_eq!(c.log.url, "kafka://k1:9092");
    }

    /// Every secret a URL can carry is hidden, in `user:pass@` and in the
    /// query string, and nothing else is.
    #[test]
    fn redact_url_hides_every_secret_and_nothing_else() {
        let cases = [
            (
                "postgres://app:hunter2@db:5432/rh",
                "postgres://app:[redacted]@db:5432/rh",
            ),
            ("postgres://app@db/rh", "postgres://app@db/rh"),
            ("postgres://:hunter2@db/rh", "postgres://:[redacted]@db/rh"),
            (
                "postgres://db/rh?user=app&password=hunter2&sslmode=require",
                "postgres://db/rh?user=app&password=[redacted]&sslmode=require",
            ),
            (
                "postgres://db/rh?password=hunter2",
                "postgres://db/rh?password=[redacted]",
            ),
            (
                "postgres://db/rh?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=keypass",
                "postgres://db/rh?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=[redacted]",
            ),
            (
                "postgres://u:p1@db/rh?PASSWORD=p2",
                "postgres://u:[redacted]@db/rh?PASSWORD=[redacted]",
            ),
            ("rediss://:hunter2@cache:6380/0", "rediss://:[redacted]@cache:6380/0"),
            (
                "redis://cache?token=t0k&client_secret=cs&api_key=ak&db=2",
                "redis://cache?token=[redacted]&client_secret=[redacted]&api_key=[redacted]&db=2",
            ),
            (
                "kafka://k1:9092?sasl.password=hunter2",
                "kafka://k1:9092?sasl.password=[redacted]",
            ),
            (
                "smtp://mailer:mailpass@smtp:587?tls=starttls",
                "smtp://mailer:[redacted]@smtp:587?tls=starttls",
            ),
            (
                "https://up.example/api?secret=s#frag",
                "https://up.example/api?secret=[redacted]#frag",
            ),
            ("sqlite:///var/lib/rh/a@b.db", "sqlite:///var/lib/rh/a@b.db"),
            ("postgres://db/rh?password=", "postgres://db/rh?password="),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn redacted_toml_hides_query_and_kafka_secrets() {
        let mut c = defaults();
        c.store.url = "postgres://db/rh?user=app&password=qsecret1&sslmode=require".into();
        c.store.read_replica_url = "postgres://db2/rh?sslpassword=qsecret2".into();
        c.cache.url = "rediss://:qsecret3@cache:6380".into();
        c.auth.session_key = "sessionsecret".repeat(3);
        c.auth.bootstrap_admin_password = "adminsecret".into();
        c.upstream.base_url = "https://u:upsecret@up.example".into();
        c.log.kafka.0.insert("sasl.password".into(), "kafkasecret".into());
        c.log.kafka.0.insert("sasl.username".into(), "rushhour".into());
        let out = c.redacted_toml().unwrap();
        for secret in [
            "qsecret1",
            "qsecret2",
            "qsecret3",
            "sessionsecret",
            "adminsecret",
            "upsecret",
            "kafkasecret",
        ] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(out.contains("sslmode=require"), "{out}");
        assert!(out.contains("rushhour"), "non-secret Kafka settings stay: {out}");
        let debug = format!("{c:?}");
        for secret in ["sessionsecret", "adminsecret", "kafkasecret", "upsecret"] {
            assert!(!debug.contains(secret), "{secret} leaked into Debug");
        }
    }

    /// `[log.kafka]` reads librdkafka's dotted names however TOML (or the
    /// environment, whose `__` makes the same nesting) spells them.
    #[test]
    fn the_kafka_table_is_flattened_to_librdkafka_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kafka.toml");
        std::fs::write(
            &file,
            "[log]\nurl = \"kafka://k1:9092\"\n\n[log.kafka]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
             \"sasl.mechanism\" = \"PLAIN\"\nsocket.timeout.ms = 5000\n\n\
             [log.kafka.sasl]\nusername = \"rh\"\npassword = \"pw\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &Overrides::default()).unwrap();
        let got: Vec<(&str, &str)> = c.log.kafka.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("sasl.mechanism", "PLAIN"),
                ("sasl.password", "pw"),
                ("sasl.username", "rh"),
                ("security.protocol", "SASL_PLAINTEXT"),
                ("socket.timeout.ms", "5000"),
            ]
        );
        let mut with_pg = c.clone();
        with_pg.store.url = "postgres://db/rh".into();
        match with_pg.log_config().unwrap() {
            eventlog::LogConfig::Kafka(k) => assert_eq!(k.options.client_settings.0, c.log.kafka.0),
            other => panic!("expected Kafka, got {other:?}"),
        }

        std::fs::write(&file, "[log.kafka]\nacks = \"1\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), &Overrides::default()).unwrap_err());
        assert!(err.contains("log.kafka.\"acks\" is set by rushhour"), "{err}");
    }

    /// Scale mode (PostgreSQL store or Kafka log) refuses to start without
    /// the shared secrets, naming each setting and its variable.
    #[test]
    fn scale_mode_needs_its_secrets() {
        let c = defaults();
        assert!(!c.is_scale_mode());
        c.check_scale_secrets().expect("embedded mode generates its secrets");
        let scales: [fn(&mut Config); 2] = [
            |c| c.store.url = "postgres://db/rh".into(),
            |c| c.log.url = "kafka://k1:9092".into(),
        ];
        for scale in scales {
            let mut c = defaults();
            scale(&mut c);
            assert!(c.is_scale_mode());
            let err = c.check_scale_secrets().unwrap_err().to_string();
            assert!(
                err.contains("scale mode needs webhooks.secret (RUSHHOUR__WEBHOOKS__SECRET)"),
                "{err}"
            );
            c.webhooks.secret = "whsec_shared".into();
            let err = c.check_scale_secrets().unwrap_err().to_string();
            assert!(
                err.contains("scale mode needs auth.session_key (RUSHHOUR__AUTH__SESSION_KEY)"),
                "{err}"
            );
            c.auth.session_key = "short".into();
            let err = c.check_scale_secrets().unwrap_err().to_string();
            assert!(err.contains("at least 32 characters"), "{err}");
            c.auth.session_key = "k".repeat(MIN_SESSION_KEY_LEN);
            c.check_scale_secrets().expect("every secret set");
        }
    }

    #[test]
    fn tls_ca_files_reach_their_adapters() {
        let mut c = defaults();
        c.cache.url = "rediss://cache:6380".into();
        c.cache.tls_ca_file = "/etc/rh/redis-ca.pem".into();
        c.mail.url = "smtps://relay:465".into();
        c.mail.tls_ca_file = "/etc/rh/mail-ca.pem".into();
        c.upstream.tls_ca_file = "/etc/rh/up-ca.pem".into();
        match c.cache_config().unwrap() {
            cache::CacheConfig::Redis { cache, feed, .. } => {
                assert_eq!(cache.tls_ca_file, Some(PathBuf::from("/etc/rh/redis-ca.pem")));
                assert_eq!(feed.tls_ca_file, cache.tls_ca_file);
            }
            other => panic!("expected Redis, got {other:?}"),
        }
        match c.mail_config().unwrap() {
            mail::MailConfig::Smtp(smtp) => assert_eq!(smtp.tls_ca_file, Some(PathBuf::from("/etc/rh/mail-ca.pem"))),
            other => panic!("expected SMTP, got {other:?}"),
        }
        assert_eq!(
            c.upstream_options().tls_ca_file,
            Some(PathBuf::from("/etc/rh/up-ca.pem"))
        );
        assert_eq!(defaults().upstream_options().tls_ca_file, None);
    }
}
