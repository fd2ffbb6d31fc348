//! Login sessions and failed-login counters: the two backends of
//! `domain::ports::{SessionStore, LoginAttempts}`. One backend serves both
//! ports, since both are small, short-lived identity state read on every
//! staff request or login.
//!
//! - [`SqliteSessions`] (embedded mode) keeps them in a SQLite file of
//!   their own (`<data_dir>/sessions.db`), apart from the store, so a touch
//!   on every staff request never queues behind a batch of orders on the
//!   store's single writer.
//! - [`RedisSessions`] (scale mode) keeps them in Redis, shared by every API
//!   instance, with key expiry doing the cleanup.
//!
//! Both pass the `testkit::sessions` contract suite. What the ports leave
//! open is decided the same way for both:
//!
//! - Creating a session under a hash that exists is a `Conflict` (tokens
//!   are random; a repeat is a bug, never a reason to replace a session).
//! - `touch_session` never revives a session expired at `now`, never moves
//!   the expiry past `absolute_expiry`, and does nothing for an unknown
//!   hash (a session ended by another request meanwhile is not an error).
//! - A login-attempt counter whose window has passed starts again at one.

mod config;
mod redis_store;
mod sqlite;

pub use config::{Sessions, SessionsConfig};
pub use redis_store::{RedisSessions, RedisSessionsOptions};
pub use sqlite::SqliteSessions;

/// `expires_at`, never past the session's absolute expiry.
pub(crate) fn capped_expiry(expires_at: i64, absolute_expiry: i64) -> i64 {
    expires_at.min(absolute_expiry)
}
