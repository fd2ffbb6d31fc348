//! `LogConfig`: which `EventLog` adapter to run and its settings, and
//! `build()`, which opens it. The binary turns `log.url` into one of these
//! at configuration load, so choosing a backend is a match here rather
//! than in the wiring (Vector's `SinkConfig::build` is the model).
//!
//! `Kafka` is always a variant, so a configuration naming Kafka parses in
//! every build; without the `kafka` feature its `build()` fails with
//! [`LogBuildError::KafkaNotCompiled`]. Its settings are therefore plain
//! fields here, not `KafkaLogOptions`, which exists only with the feature.
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

/// Settings of the Kafka log (see `KafkaLogOptions` for each one's
/// meaning).
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port`
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    pub partitions: u32,
    pub replication_factor: i32,
    pub linger: Duration,
    pub compression: String,
    pub append_timeout: Duration,
    pub session_timeout: Duration,
    pub fetch_wait: Duration,
    pub processor_group: String,
    /// Where the idempotency claims live.
    pub claims: ClaimsConfig,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
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
    let options = crate::KafkaLogOptions {
        brokers: c.brokers.clone(),
        topic: c.topic.clone(),
        dlq_topic: c.dlq_topic.clone(),
        partitions: c.partitions,
        replication_factor: c.replication_factor,
        linger: c.linger,
        compression: c.compression.clone(),
        append_timeout: c.append_timeout,
        session_timeout: c.session_timeout,
        fetch_wait: c.fetch_wait,
        processor_group: c.processor_group.clone(),
        ..Default::default()
    };
    Ok(Arc::new(crate::KafkaEventLog::connect(options, pool).await?))
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
            brokers: "k1:9092".into(),
            topic: "t".into(),
            dlq_topic: "t.dlq".into(),
            partitions: 8,
            replication_factor: 1,
            linger: Duration::from_millis(1),
            compression: "lz4".into(),
            append_timeout: Duration::from_millis(900),
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(100),
            processor_group: "g".into(),
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
