//! `UserStore` and `AuditLog`: staff accounts with their API keys, and the
//! audit trail of staff actions. Both live in the store's database
//! (SQLite embedded, PostgreSQL in scale mode) because they are durable,
//! relational and small; the short-lived identity state (sessions, failed
//! login counters) has its own port in `sessions.rs`, served by Redis in
//! scale mode.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PortResult, StoreBackend};
use crate::identity::{ApiKey, AuditEntry, User};

/// Staff accounts and their personal API keys.
#[async_trait]
pub trait UserStore: StoreBackend {
    /// `Conflict` when the username is taken.
    async fn create_user(&self, user: &User) -> PortResult<()>;

    /// By lower-cased username.
    async fn user_by_name(&self, username: &str) -> PortResult<Option<User>>;

    async fn user(&self, id: Uuid) -> PortResult<Option<User>>;

    /// Every user, by username.
    async fn list_users(&self) -> PortResult<Vec<User>>;

    /// Overwrite role, disabled, password hash and `updated_at` of the user
    /// with `user.id`; `NotFound` when there is none.
    async fn update_user(&self, user: &User) -> PortResult<()>;

    /// `Conflict` when the prefix is taken.
    async fn create_api_key(&self, key: &ApiKey) -> PortResult<()>;

    async fn api_key_by_prefix(&self, prefix: &str) -> PortResult<Option<ApiKey>>;

    /// Every key (revoked ones too), newest first.
    async fn list_api_keys(&self) -> PortResult<Vec<ApiKey>>;

    /// Mark revoked at `at`; false when there is no such key or it was
    /// already revoked.
    async fn revoke_api_key(&self, prefix: &str, at: i64) -> PortResult<bool>;

    /// Record a use (callers throttle this: at most one write per key per
    /// minute).
    async fn touch_api_key(&self, prefix: &str, at: i64) -> PortResult<()>;
}

/// The audit trail of staff actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries with an id below this (paging backwards, newest first).
    pub before: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// 1 to 500.
    pub limit: u32,
}

#[async_trait]
pub trait AuditLog: StoreBackend {
    /// Append; returns the id assigned (`entry.id` is ignored).
    async fn append_audit(&self, entry: &AuditEntry) -> PortResult<i64>;

    /// Newest first.
    async fn list_audit(&self, query: &AuditQuery) -> PortResult<Vec<AuditEntry>>;

    /// Delete entries older than `before` (epoch ms); how many went.
    async fn purge_audit(&self, before: i64) -> PortResult<u64>;
}
