//! `LogConfig`: which `EventLog` adapter to run and its settings, and
//! `build()`, which opens it. The binary turns `log.url` into one of these
//! at configuration load, so choosing a backend is a match here rather
//! than in the wiring (Vector's `SinkConfig::build` is the model).
//!
//! `Kafka` is always a variant, so a configuration naming Kafka parses in
//! every build; without the `kafka` feature its `build()` fails with
//! [`LogBuildError::KafkaNotCompiled`]. Its settings, `KafkaLogOptions`,
//! are therefore plain data defined here, outside the feature.
//! The Kafka build also creates the PostgreSQL pool its idempotency claims
//! live in, which the binary's wiring used to do.
//!
//! `KafkaClientSettings` is the pass-through to librdkafka (`log.kafka.*`:
//! `security.protocol`, SASL, CA file…), applied to every client the log
//! makes. Why a pass-through rather than a typed key per setting: librdkafka
//! has dozens of security settings, each deployment needs a different few,
//! and its own names are the ones its documentation and every Kafka
//! operator know. What rushhour sets itself may not be overridden there,
//! and SSL needs the `kafka-tls` feature (ADR 0008).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::ports::{EventLog, PortError};

use crate::{SqliteEventLog, SqliteLogOptions};

/// An event log to open.
#[derive(Debug, Clone)]
pub enum LogConfig {
    /// The embedded log: one SQLite file.
    Sqlite { path: PathBuf, options: SqliteLogOptions },
    /// The scale-mode log: Apache Kafka, with idempotency claims in
    /// PostgreSQL. Boxed: its settings are several times the SQLite ones.
    Kafka(Box<KafkaConfig>),
}

/// Settings of the Kafka log: plain data, so a binary built without the
/// `kafka` feature still parses a `kafka://` configuration (and its
/// `build()` says what is missing).
#[derive(Debug, Clone)]
pub struct KafkaLogOptions {
    /// `host:port,host:port`
    pub brokers: String,
    pub topic: String,
    /// Where records the processors gave up on are copied.
    pub dlq_topic: String,
    /// Partitions of a topic this log creates; an existing topic must have
    /// exactly this many (the partition function depends on it).
    pub partitions: u32,
    pub replication_factor: i32,
    /// Producer batching: how long librdkafka waits to fill a batch.
    pub linger: Duration,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// Longest an append may take, idempotency claim and broker
    /// acknowledgement together.
    pub append_timeout: Duration,
    /// How long a crashed member keeps its partitions before the group
    /// moves them.
    pub session_timeout: Duration,
    /// Longest a fetch waits at the broker for records to arrive (an idle
    /// partition's poll interval; records that arrive are sent at once).
    pub fetch_wait: Duration,
    /// Consumer group whose committed offsets bound `find`'s scan.
    pub processor_group: String,
    /// How long a duplicate request waits for the first one's append
    /// before appending the claimed record itself.
    pub claim_wait: Duration,
    /// librdkafka settings applied to every client (producer, consumers,
    /// admin): security and connection settings (`log.kafka.*`).
    pub client_settings: KafkaClientSettings,
}

impl Default for KafkaLogOptions {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: "rushhour.orders.v1".into(),
            dlq_topic: "rushhour.orders.v1.dlq".into(),
            partitions: 8,
            replication_factor: 1,
            linger: Duration::from_millis(1),
            compression: "lz4".into(),
            append_timeout: Duration::from_millis(900),
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(100),
            processor_group: "order-processors".into(),
            claim_wait: Duration::from_secs(2),
            client_settings: KafkaClientSettings::default(),
        }
    }
}

/// librdkafka settings passed through to every Kafka client, by
/// librdkafka's own names. `Debug` hides the values of secret ones.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaClientSettings(pub BTreeMap<String, String>);

/// Settings the Kafka log sets itself (its guarantees, its groups, or a
/// `log.*` key of their own): the pass-through may not change them.
pub const MANAGED_KAFKA_SETTINGS: &[&str] = &[
    "bootstrap.servers",
    "acks",
    "enable.idempotence",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "linger.ms",
    "compression.type",
    "message.timeout.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "fetch.wait.max.ms",
    "log_level",
    "socket.keepalive.enable",
];

impl KafkaClientSettings {
    /// Whether `key` holds a secret (a password, a client secret, a token,
    /// an inline private key): its value is never shown.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        ["password", "secret", "token", "credential"]
            .iter()
            .any(|word| key.contains(word))
            || key == "ssl.key.pem"
            || key == "sasl.oauthbearer.config"
    }

    /// The settings with secret values replaced by `[redacted]`.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = if Self::is_secret(k) {
                    "[redacted]".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// Refuse a setting the log manages, and an SSL protocol in a build
    /// without OpenSSL (the `kafka-tls` feature), naming the fix. SASL over
    /// plain TCP (`SASL_PLAINTEXT`, mechanism `PLAIN`) needs no feature.
    pub fn check(&self) -> Result<(), KafkaSettingsError> {
        if let Some(key) = self.0.keys().find(|k| MANAGED_KAFKA_SETTINGS.contains(&k.as_str())) {
            return Err(KafkaSettingsError::Managed(key.clone()));
        }
        if let Some(protocol) = self.0.get("security.protocol") {
            let needs_ssl = ["ssl", "sasl_ssl"].contains(&protocol.to_ascii_lowercase().as_str());
            if needs_ssl && !cfg!(feature = "kafka-tls") {
                return Err(KafkaSettingsError::TlsNotCompiled(protocol.clone()));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for KafkaClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// Why the pass-through Kafka settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSettingsError {
    #[error("log.kafka.{0:?} is set by rushhour itself (see the log.* keys); remove it from log.kafka")]
    Managed(String),
    #[error(
        "log.kafka.\"security.protocol\" = {0:?} needs TLS, but this binary was built without the \
         `kafka-tls` feature (librdkafka's OpenSSL; build with `--features kafka-tls`, see \
         docs/adr/0008-tls-to-backends.md); SASL_PLAINTEXT works without it"
    )]
    TlsNotCompiled(String),
}

/// The Kafka log and where its idempotency claims live.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub options: KafkaLogOptions,
    pub claims: ClaimsConfig,
}

/// The PostgreSQL pool of the Kafka log's idempotency claims.
#[derive(Clone)]
pub struct ClaimsConfig {
    /// A `postgres://` URL (it may hold a password: not in `Debug`).
    pub url: String,
    pub max_connections: u32,
    /// How long an append waits for a pooled connection: intake must
    /// answer within its deadline when PostgreSQL is gone.
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for ClaimsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsConfig")
            .field("url", &"[redacted]")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogBuildError {
    #[error("cannot open the SQLite event log: {0}")]
    Sqlite(#[from] PortError),
    #[cfg(feature = "kafka")]
    #[error("cannot connect to the Kafka event log: {0}")]
    Kafka(#[from] crate::KafkaLogError),
    #[error("the event log is Kafka, but this binary was built without the `kafka` feature")]
    KafkaNotCompiled,
    #[error("{0}")]
    KafkaSettings(#[from] KafkaSettingsError),
}

impl LogConfig {
    /// Open the log: a SQLite file is created and migrated (off the async
    /// threads); Kafka topics are checked or created and the claims pool
    /// connected.
    pub async fn build(&self) -> Result<Arc<dyn EventLog>, LogBuildError> {
        match self {
            LogConfig::Sqlite { path, options } => {
                let (path, options) = (path.clone(), options.clone());
                let log = tokio::task::spawn_blocking(move || SqliteEventLog::open(&path, options))
                    .await
                    .map_err(|e| PortError::Unavailable(format!("opening the SQLite event log: {e}")))??;
                Ok(Arc::new(log))
            }
            LogConfig::Kafka(kafka) => {
                kafka.options.client_settings.check()?;
                build_kafka(kafka).await
            }
        }
    }
}

#[cfg(feature = "kafka")]
async fn build_kafka(c: &KafkaConfig) -> Result<Arc<dyn EventLog>, LogBuildError> {
    // The claims live in the default schema; each claim is bounded by the
    // append budget on the client side, the statement timeout is only a
    // server-side backstop against a query stuck on a lock.
    let settings = dbkit::postgres::PoolSettings {
        max_connections: c.claims.max_connections,
        acquire_timeout: c.claims.acquire_timeout,
        statement_timeout: std::time::Duration::from_secs(30),
        idle_timeout: std::time::Duration::from_secs(600),
        schema: None,
    };
    let pool = dbkit::postgres::pool(&c.claims.url, &settings)
        .await
        .map_err(crate::KafkaLogError::Claims)?;
    Ok(Arc::new(crate::KafkaEventLog::connect(c.options.clone(), pool).await?))
}

#[cfg(not(feature = "kafka"))]
async fn build_kafka(_c: &KafkaConfig) -> Result<Arc<dyn EventLog>, LogBuildError> {
    Err(LogBuildError::KafkaNotCompiled)
}

/// A configuration naming Kafka parses in a build without the `kafka`
/// feature; only `build()` refuses it, saying why
/// (`cargo test -p eventlog --no-default-features`).
#[cfg(all(test, not(feature = "kafka")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kafka_compiled_out_fails_to_build_with_a_clear_message() {
        let config = LogConfig::Kafka(Box::new(KafkaConfig {
            options: KafkaLogOptions {
                brokers: "k1:9092".into(),
                ..Default::default()
            },
            claims: ClaimsConfig {
                url: "postgres://db/x".into(),
                max_connections: 4,
                acquire_timeout: Duration::from_secs(1),
            },
        }));
        let err = config.build().await.err().expect("no Kafka in this build");
        assert!(matches!(err, LogBuildError::KafkaNotCompiled));
        assert!(err.to_string().contains("without the `kafka` feature"), "{err}");
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> KafkaClientSettings {
        KafkaClientSettings(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let s = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "rushhour"),
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "keypass"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
        ]);
        let shown = format!("{s:?}");
        for secret in ["hunter2", "keypass", "BEGIN PRIVATE KEY", "oauth-secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(
            shown.contains("SASL_PLAINTEXT") && shown.contains("rushhour"),
            "{shown}"
        );
        assert!(s.check().is_ok(), "SASL_PLAINTEXT needs no feature");
    }

    #[test]
    fn managed_settings_and_ssl_without_the_feature_are_refused() {
        let err = settings(&[("acks", "1")]).check().unwrap_err();
        assert_eq!(err, KafkaSettingsError::Managed("acks".into()));
        assert!(err.to_string().contains("log.kafka.\"acks\""), "{err}");
        for protocol in ["SSL", "sasl_ssl"] {
            let checked = settings(&[("security.protocol", protocol)]).check();
            if cfg!(feature = "kafka-tls") {
                assert!(checked.is_ok());
            } else {
                let err = checked.unwrap_err();
                assert!(err.to_string().contains("`kafka-tls` feature"), "{err}");
            }
        }
    }
}
