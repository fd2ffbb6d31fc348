//! `EventLog` adapters. The embedded backend, [`SqliteEventLog`], is a
//! partitioned log in its own SQLite file with a single writer thread that
//! gathers concurrent appends into one transaction (group commit). The scale
//! backend (Apache Kafka through rdkafka, behind the `kafka` feature) lives
//! beside it as `kafka.rs` once scale mode lands; both pass the same
//! contract suite in `testkit::eventlog`.

pub mod sqlite;

pub use sqlite::{SqliteEventLog, SqliteLogOptions, Synchronous};
