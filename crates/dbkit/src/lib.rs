//! The database plumbing every adapter shares, written once: the SQLite
//! writer thread, reader pool, background checkpointer and
//! `user_version`-counted migrations ([`sqlite`]); the PostgreSQL pool,
//! schema-name check and advisory-locked migrations ([`postgres`], behind
//! the `postgres` feature); the lazy Redis connection and per-call deadline
//! ([`redis`], behind the `redis` feature); and the one translation of
//! rusqlite and sqlx errors into `domain::ports::PortError` ([`error`]);
//! and the counting and timing of every statement, per request and per job
//! ([`observe`]).
//! and the operator's side of every database: `optimize-db`'s inspection
//! ([`inspect`]) and online backups with their restore ([`backup`]).
//!
//! Why a crate of its own: the store, the job queue and the event log each
//! had a copy of this code, and the copies had drifted (the same SQLite
//! error was `Invalid` in one adapter and retryable `Unavailable` in
//! another). The adapters keep what is theirs (their SQL, their schema
//! files, their hot-path statements); everything about opening, pooling,
//! migrating and classifying errors lives here.

pub mod backup;
pub mod error;
pub mod inspect;
pub mod observe;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sqlite;

pub use error::sqlite_error;
#[cfg(feature = "postgres")]
pub use error::sqlx_error;
pub use sqlite::Synchronous;
