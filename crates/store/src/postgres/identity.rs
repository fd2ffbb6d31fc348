//! `UserStore` and `AuditLog` on `PgStore`: staff users, their API keys
//! and the audit trail (`migrations/postgres/0003_identity.sql`).
//!
//! Users and keys are read from the primary, never the replica: a revoked
//! key or a disabled user must stop working at once, not when the standby
//! catches up, and an admin who just added a user expects to see it. The
//! audit listing tolerates lag and goes to the replica when there is one.
//!
//! Uniqueness is the database's: a taken username or key prefix fails the
//! insert with a unique violation (SQLSTATE 23505), which `dbkit`
//! classifies as `Conflict`, so there is no check-then-insert race.

use async_trait::async_trait;
use dbkit::observe::observed;
use domain::identity::{ApiKey, AuditEntry, User};
use domain::ports::{AuditLog, AuditQuery, PortResult, UserStore};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::{Error, PgStore};
use crate::decode::role;

const USER_COLUMNS: &str = "id, username, role, disabled, password_hash, created_at, updated_at";

fn user_row(r: &PgRow) -> Result<User, Error> {
    Ok(User {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        role: role(r.try_get(2)?)?,
        disabled: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

const KEY_COLUMNS: &str = "id, prefix, hash, name, user_id, role, store, created_at, last_used_at, revoked_at";

fn key_row(r: &PgRow) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: r.try_get(0)?,
        prefix: r.try_get(1)?,
        hash: r.try_get(2)?,
        name: r.try_get(3)?,
        user_id: r.try_get(4)?,
        role: role(r.try_get(5)?)?,
        store: r.try_get(6)?,
        created_at: r.try_get(7)?,
        last_used_at: r.try_get(8)?,
        revoked_at: r.try_get(9)?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, role, action, target, detail, source";

fn audit_row(r: &PgRow) -> Result<AuditEntry, Error> {
    Ok(AuditEntry {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        role: r.try_get::<Option<&str>, _>(3)?.map(role).transpose()?,
        action: r.try_get(4)?,
        target: r.try_get(5)?,
        detail: r.try_get(6)?,
        source: r.try_get(7)?,
    })
}

/// Decode every row with `row`, converting to the port's error.
fn decode<T>(rows: &[PgRow], row: fn(&PgRow) -> Result<T, Error>) -> PortResult<Vec<T>> {
    Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, u: &User) -> PortResult<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(u.id)
        .bind(&u.username)
        .bind(u.role.as_str())
        .bind(u.disabled)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> PortResult<Option<User>> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1::text COLLATE \"C\")"
        )))
        .bind(username)
        .fetch_optional(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(found.as_ref().map(user_row).transpose()?)
    }

    async fn user(&self, id: Uuid) -> PortResult<Option<User>> {
        let found = sqlx::query(AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
            .bind(id)
            .fetch_optional(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(found.as_ref().map(user_row).transpose()?)
    }

    async fn list_users(&self) -> PortResult<Vec<User>> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username, id"
        )))
        .fetch_all(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        decode(&found, user_row)
    }

    async fn update_user(&self, u: &User) -> PortResult<()> {
        let done =
            sqlx::query("UPDATE users SET role = $1, disabled = $2, password_hash = $3, updated_at = $4 WHERE id = $5")
                .bind(u.role.as_str())
                .bind(u.disabled)
                .bind(&u.password_hash)
                .bind(u.updated_at)
                .bind(u.id)
                .execute(observed(&self.primary))
                .await
                .map_err(Error::from)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound.into());
        }
        Ok(())
    }

    async fn create_api_key(&self, k: &ApiKey) -> PortResult<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(k.id)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(&k.name)
        .bind(k.user_id)
        .bind(k.role.as_str())
        .bind(&k.store)
        .bind(k.created_at)
        .bind(k.last_used_at)
        .bind(k.revoked_at)
        .execute(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> PortResult<Option<ApiKey>> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
        )))
        .bind(prefix)
        .fetch_optional(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(found.as_ref().map(key_row).transpose()?)
    }

    async fn list_api_keys(&self) -> PortResult<Vec<ApiKey>> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC"
        )))
        .fetch_all(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        decode(&found, key_row)
    }

    async fn revoke_api_key(&self, prefix: &str, at: i64) -> PortResult<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(prefix)
            .execute(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }

    /// Never moves `last_used_at` back (`GREATEST` ignores a NULL): two
    /// instances may record uses of one key out of order. An unknown prefix
    /// records nothing.
    async fn touch_api_key(&self, prefix: &str, at: i64) -> PortResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $1) WHERE prefix = $2")
            .bind(at)
            .bind(prefix)
            .execute(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(())
    }
}

#[async_trait]
impl AuditLog for PgStore {
    async fn append_audit(&self, e: &AuditEntry) -> PortResult<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, role, action, target, detail, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(e.at)
        .bind(&e.actor)
        .bind(e.role.map(|r| r.as_str()))
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.detail)
        .bind(&e.source)
        .fetch_one(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(id)
    }

    async fn list_audit(&self, query: &AuditQuery) -> PortResult<Vec<AuditEntry>> {
        // Values are always bound, never formatted into the SQL; eight
        // shapes at most, each prepared once per connection.
        let mut q = QueryBuilder::new(format!("SELECT {AUDIT_COLUMNS} FROM audit_log"));
        let mut sep = " WHERE ";
        if let Some(before) = query.before {
            q.push(sep).push("id < ").push_bind(before);
            sep = " AND ";
        }
        if let Some(actor) = &query.actor {
            q.push(sep).push("actor = ").push_bind(actor.clone());
            sep = " AND ";
        }
        if let Some(action) = &query.action {
            q.push(sep).push("action = ").push_bind(action.clone());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
        let found = q
            .build()
            .fetch_all(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        decode(&found, audit_row)
    }

    async fn purge_audit(&self, before: i64) -> PortResult<u64> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected())
    }
}
