//! Adapters of the store ports (`OrderStore`, `MenuStore`, `AccountStore`,
//! `OpsStore`, `UserStore`, `AuditLog`; together `domain::ports::Store`):
//! durable stores, menus, orders, tickets, live events, consumer positions
//! and dead letters, staff users with their API keys, and the audit trail.
//!
//! `sqlite` is the embedded backend (one file under `./data/`, nothing to
//! install); `postgres` is the scale-mode backend (`PgStore`), passing the
//! same contract suite (`testkit::store`). The raw-insert baselines that
//! benchmarks compare the processors with live in the `bench` crate.

mod bulk;
mod config;
mod decode;
mod error;
mod lines;
pub mod postgres;
pub mod sqlite;

pub use config::StoreConfig;
pub use postgres::{PgStore, PgStoreOptions};
pub use sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};
