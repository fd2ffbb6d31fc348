//! Configuration: the compiled-in `config/default.toml`, then an optional
//! `--config FILE`, then `RUSHHOUR__SECTION__KEY` environment variables
//! (figment merges them in that order). Backends are chosen by URL.
//!
//! This is the only module that reads the environment for settings.

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
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub processor: ProcessorSection,
    pub cache: CacheConfig,
    pub jobs: JobsConfig,
    pub scheduler: SchedulerConfig,
    pub upstream: UpstreamSection,
    pub mail: MailConfig,
    pub webhooks: WebhooksConfig,
    pub telemetry: TelemetryConfig,
    pub demo: DemoConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub max_inflight_intake: usize,
    pub sse_heartbeat_secs: u64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub staff_key: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig").field("staff_key", &"[redacted]").finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sync {
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub url: String,
    pub partitions: u32,
    pub group_commit: bool,
    pub max_batch: usize,
    pub linger_us: u64,
    pub synchronous: Sync,
    pub topic: String,
    pub dlq_topic: String,
    pub replication_factor: i32,
    pub producer_linger_ms: u64,
    pub compression: String,
    pub append_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub fetch_wait_ms: u64,
    pub claims_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    pub synchronous: Sync,
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
pub struct CacheConfig {
    pub url: String,
    pub menu_ttl_secs: u64,
    pub l1_ttl_secs: u64,
    pub key_prefix: String,
    pub max_stores: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
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
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub orders_days: u64,
    pub records_days: u64,
    pub finished_jobs_days: u64,
    pub idempotency_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
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
}

impl std::fmt::Debug for UpstreamSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSection")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub url: String,
    pub from: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub secret: String,
    pub tolerance_secs: u64,
    pub max_inflight: usize,
}

impl std::fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field("secret", &"[redacted]")
            .field("tolerance_secs", &self.tolerance_secs)
            .field("max_inflight", &self.max_inflight)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: String,
    pub log_filter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    pub seed: bool,
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
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            bail!("log.partitions must be 1 to 1024");
        }
        if self.processor.max_batch == 0 || self.log.max_batch == 0 {
            bail!("processor.max_batch and log.max_batch must be at least 1");
        }
        if self.http.max_inflight_intake == 0 {
            bail!("http.max_inflight_intake must be at least 1");
        }
        self.log_backend()?;
        self.store_backend()?;
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.log.compression.as_str()) {
            bail!("log.compression must be none, gzip, snappy, lz4 or zstd");
        }
        if self.log.append_timeout_ms == 0 {
            bail!("log.append_timeout_ms must be at least 1");
        }
        self.jobs_backend()?;
        if !(10..=1000).contains(&self.upstream.page_size) {
            bail!("upstream.page_size must be 10 to 1000");
        }
        if self.jobs.lease_secs == 0 || self.jobs.claim_batch == 0 {
            bail!("jobs.lease_secs and jobs.claim_batch must be at least 1");
        }
        if !(self.mail.url.starts_with("file://") || self.mail.url.starts_with("smtp://")) {
            bail!(
                "mail.url = {:?}: expected file:// or smtp://",
                redact_url(&self.mail.url)
            );
        }
        if !(self.cache.url == "memory://"
            || self.cache.url.starts_with("redis://")
            || self.cache.url.starts_with("rediss://"))
        {
            bail!(
                "cache.url = {:?}: expected memory:// or redis://",
                redact_url(&self.cache.url)
            );
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    pub fn log_backend(&self) -> anyhow::Result<Backend> {
        backend(&self.log.url, &self.data_dir, "log.db", "log.url")
    }

    /// Where the Kafka log keeps its idempotency claims: `log.claims_url`,
    /// or the store's PostgreSQL database when that is empty.
    pub fn claims_url(&self) -> anyhow::Result<String> {
        let url = if self.log.claims_url.is_empty() {
            &self.store.url
        } else {
            &self.log.claims_url
        };
        match backend(url, &self.data_dir, "rushhour.db", "log.claims_url")? {
            Backend::Postgres(u) => Ok(u),
            _ => bail!(
                "log.url = kafka:// keeps idempotency claims in PostgreSQL: set store.url \
                 (or log.claims_url) to a postgres:// URL"
            ),
        }
    }

    /// Where the job queue lives: `jobs.url`, else the store's PostgreSQL,
    /// else `<data_dir>/jobs.db`.
    pub fn jobs_backend(&self) -> anyhow::Result<Backend> {
        let url = if !self.jobs.url.is_empty() {
            self.jobs.url.as_str()
        } else if matches!(self.store_backend()?, Backend::Postgres(_)) {
            self.store.url.as_str()
        } else {
            "sqlite://"
        };
        match backend(url, &self.data_dir, "jobs.db", "jobs.url")? {
            Backend::Kafka(_) => bail!("jobs.url cannot be kafka://"),
            b => Ok(b),
        }
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

    pub fn store_backend(&self) -> anyhow::Result<Backend> {
        backend(&self.store.url, &self.data_dir, "rushhour.db", "store.url")
    }

    pub fn redacted_store_url(&self) -> String {
        match self.store_backend() {
            Ok(Backend::Sqlite(p)) => p.display().to_string(),
            _ => redact_url(&self.store.url),
        }
    }

    pub fn redacted_log_url(&self) -> String {
        match self.log_backend() {
            Ok(Backend::Sqlite(p)) => p.display().to_string(),
            _ => redact_url(&self.log.url),
        }
    }

    /// The configuration as TOML with secrets replaced.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut c = self.clone();
        for secret in [
            &mut c.auth.staff_key,
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
        ] {
            *url = redact_url(url);
        }
        toml::to_string_pretty(&c).context("render config")
    }
}

/// Which engine a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
    Kafka(String),
}

fn backend(url: &str, data_dir: &Path, default_file: &str, key: &str) -> anyhow::Result<Backend> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = if rest.is_empty() {
            data_dir.join(default_file)
        } else {
            PathBuf::from(rest)
        };
        return Ok(Backend::Sqlite(path));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Backend::Postgres(url.to_owned()));
    }
    if let Some(brokers) = url.strip_prefix("kafka://") {
        if brokers.is_empty() {
            bail!("{key} = kafka:// needs brokers: kafka://host:port,host:port");
        }
        return Ok(Backend::Kafka(brokers.to_owned()));
    }
    bail!(
        "{key} = {:?}: expected sqlite://, postgres:// or kafka://",
        redact_url(url)
    )
}

/// Hide a password in `scheme://user:password@host`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:[redacted]{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_select_embedded_backends() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.log_backend().unwrap(), Backend::Sqlite(c.data_dir.join("log.db")));
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
        assert_eq!(c.store_backend().unwrap(), Backend::Sqlite("/tmp/x/rushhour.db".into()));
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::load(None, &Overrides::default()).unwrap();
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
        let mut c = Config::load(None, &Overrides::default()).unwrap();
        c.log.url = "kafka://k1:9092,k2:9092".into();
        assert_eq!(c.log_backend().unwrap(), Backend::Kafka("k1:9092,k2:9092".into()));
        assert!(c.claims_url().is_err(), "SQLite store cannot hold the claims");
        c.store.url = "postgres://db/rushhour".into();
        assert_eq!(c.claims_url().unwrap(), "postgres://db/rushhour");
        c.log.url = "kafka://".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_job_queue_follows_the_store() {
        let mut c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.jobs_backend().unwrap(), Backend::Sqlite(c.data_dir.join("jobs.db")));
        c.store.url = "postgres://db/rushhour".into();
        assert_eq!(
            c.jobs_backend().unwrap(),
            Backend::Postgres("postgres://db/rushhour".into())
        );
        c.jobs.url = "sqlite:///tmp/j.db".into();
        assert_eq!(c.jobs_backend().unwrap(), Backend::Sqlite("/tmp/j.db".into()));
        assert_eq!(c.scheduler.schedules["order_expiry"], "* * * * *");
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let mut c = Config::load(None, &Overrides::default()).unwrap();
        c.log.url = "mysql://x".into();
        assert!(c.validate().is_err());
    }
}
