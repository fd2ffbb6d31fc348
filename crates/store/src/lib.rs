//! Adapters of the `domain::ports::Store` port: durable stores, menus,
//! orders, tickets, live events, consumer positions and dead letters.
//!
//! `sqlite` is the embedded backend (one file under `./data/`, nothing to
//! install); `postgres` is the scale-mode backend (`PgStore`), passing the
//! same contract suite (`testkit::store`). `baseline` is not a
//! backend: it is the "raw SQLite" insert ceiling that benchmarks compare the
//! processors' drain rate to, kept here because it must share the schema.

pub mod baseline;
pub mod baseline_pg;
mod bulk;
mod decode;
mod error;
pub mod postgres;
pub mod sqlite;

pub use postgres::{PgStore, PgStoreOptions};
pub use sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};
