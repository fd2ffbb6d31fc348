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
    /// PostgreSQL.
    Kafka(KafkaConfig),
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
        }
    }
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
            LogConfig::Kafka(kafka) => build_kafka(kafka).await,
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
        let config = LogConfig::Kafka(KafkaConfig {
            options: KafkaLogOptions {
                brokers: "k1:9092".into(),
                ..Default::default()
            },
            claims: ClaimsConfig {
                url: "postgres://db/x".into(),
                max_connections: 4,
                acquire_timeout: Duration::from_secs(1),
            },
        });
        let err = config.build().await.err().expect("no Kafka in this build");
        assert!(matches!(err, LogBuildError::KafkaNotCompiled));
        assert!(err.to_string().contains("without the `kafka` feature"), "{err}");
    }
}
