//! `EventLog` adapters. The embedded backend, [`SqliteEventLog`], is a
//! partitioned log in its own SQLite file with a single writer thread that
//! gathers concurrent appends into one transaction (group commit). The scale
//! backend, [`KafkaEventLog`] (Apache Kafka through rdkafka, behind the
//! `kafka` feature, on by default), lives beside it; both pass the same
//! contract suite in `testkit::eventlog`.

mod config;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod sqlite;

#[cfg(feature = "kafka")]
pub use kafka::{KafkaEventLog, KafkaLogError};

pub use config::{
    ClaimsConfig, KafkaClientSettings, KafkaConfig, KafkaLogOptions, KafkaSettingsError, LogBuildError, LogConfig,
    MANAGED_KAFKA_SETTINGS,
};
pub use sqlite::{SqliteEventLog, SqliteLogOptions, Synchronous};
