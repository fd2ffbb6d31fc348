//! `SessionStore` and `LoginAttempts`: identity state that expires. Login
//! sessions and failed-login counters are read on every staff request and
//! every login, are worthless after hours, and must be shared by every API
//! instance, so they live in SQLite (embedded) or Redis (scale, with key
//! expiry doing the cleanup), not in the store's relational tables.

use async_trait::async_trait;
use uuid::Uuid;

use super::PortResult;
use crate::identity::{Attempts, Session};

/// Login sessions, keyed by the SHA-256 of their token.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> PortResult<()>;

    /// The session, or `None` when unknown or expired at `now`.
    async fn session(&self, token_hash: &str, now: i64) -> PortResult<Option<Session>>;

    /// Slide a session's expiry (and `last_seen_at` to `now`).
    async fn touch_session(&self, token_hash: &str, now: i64, expires_at: i64) -> PortResult<()>;

    async fn delete_session(&self, token_hash: &str) -> PortResult<()>;

    /// End every session of a user (disabled, password changed); how many.
    async fn delete_user_sessions(&self, user: Uuid) -> PortResult<u64>;

    /// Drop expired sessions (the nightly cleanup); how many.
    async fn purge_sessions(&self, now: i64) -> PortResult<u64>;

    /// Whether the backend answers (`/health/ready`).
    async fn health(&self) -> PortResult<()>;
}

/// Failed login counters, per username and per client address, for lockout
/// and backoff. A counter forgets itself `window_ms` after its last failure.
#[async_trait]
pub trait LoginAttempts: Send + Sync {
    /// Count one more failure under `key` at `now`; the counter after it.
    async fn record_failure(&self, key: &str, now: i64, window_ms: i64) -> PortResult<Attempts>;

    /// The counter under `key` at `now` (zero when none or forgotten).
    async fn attempts(&self, key: &str, now: i64) -> PortResult<Attempts>;

    /// Forget `key` (a successful login).
    async fn clear_attempts(&self, key: &str) -> PortResult<()>;
}
