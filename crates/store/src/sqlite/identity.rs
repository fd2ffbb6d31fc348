//! `UserStore` and `AuditLog` on `SqliteStore`: staff users, their API keys
//! and the audit trail, in the store's own file (`0003_identity.sql`).
//!
//! They share the store's writer and readers rather than a database of
//! their own: the rows are few and written rarely (a login touches a key
//! at most once a minute, an audit entry is one short insert), so they cost
//! the hot path nothing, and one file keeps backup and restore one step.
//!
//! Uniqueness is the database's: a taken username or key prefix fails the
//! insert with a constraint violation, which `dbkit` classifies as
//! `Conflict`, so there is no check-then-insert race to get wrong.
//!
//! # Durability
//!
//! The store commits with `synchronous=NORMAL` because everything else in
//! it can be rebuilt from the event log (`sqlite.rs`). Users and keys
//! cannot: a revocation or a disabled account lost to a power cut would
//! let a key or a person back in. So the writes that change who may do
//! what (`create_user`, `update_user`, `create_api_key`, `revoke_api_key`)
//! commit with `synchronous=FULL` ([`durably`]), one WAL fsync each, which
//! their rarity makes free. Audit appends and key touches stay `NORMAL`:
//! they are frequent, and losing the last of them with a power cut loses
//! what the staff actions they record lose (`sqlite.rs`), nothing more.

use async_trait::async_trait;
use domain::identity::{ApiKey, AuditEntry, User};
use domain::ports::{AuditLog, AuditQuery, PortResult, UserStore};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use uuid::Uuid;

use super::{Error, SqliteStore, all};
use crate::decode::{role, uuid};

const USER_COLUMNS: &str = "id, username, role, disabled, password_hash, created_at, updated_at";

fn user_row(r: &Row<'_>) -> Result<User, Error> {
    Ok(User {
        id: uuid("user id", &r.get::<_, String>(0)?)?,
        username: r.get(1)?,
        role: role(&r.get::<_, String>(2)?)?,
        disabled: r.get(3)?,
        password_hash: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const KEY_COLUMNS: &str = "id, prefix, hash, name, user_id, role, store, created_at, last_used_at, revoked_at";

fn key_row(r: &Row<'_>) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: uuid("api key id", &r.get::<_, String>(0)?)?,
        prefix: r.get(1)?,
        hash: r.get(2)?,
        name: r.get(3)?,
        user_id: r
            .get::<_, Option<String>>(4)?
            .map(|u| uuid("api key user", &u))
            .transpose()?,
        role: role(&r.get::<_, String>(5)?)?,
        store: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, role, action, target, detail, source";

fn audit_row(r: &Row<'_>) -> Result<AuditEntry, Error> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        role: r.get::<_, Option<String>>(3)?.map(|s| role(&s)).transpose()?,
        action: r.get(4)?,
        target: r.get(5)?,
        detail: r.get(6)?,
        source: r.get(7)?,
    })
}

/// Run `f` on the writer with `synchronous=FULL`, so its commit is on disk
/// when it returns (module docs), then put the store's own setting back,
/// whether `f` succeeded or not. A store opened with `FULL` already just
/// runs `f`.
fn durably<T>(c: &mut Connection, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
    /// `PRAGMA synchronous` answers a number: 0 off, 1 normal, 2 full, 3 extra.
    const FULL: i64 = 2;
    let level: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if level >= FULL {
        return f(c);
    }
    c.pragma_update(None, "synchronous", FULL)?;
    let out = f(c);
    c.pragma_update(None, "synchronous", level)?;
    out
}

fn one<T>(
    c: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    row: fn(&Row<'_>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    Ok(all(c, sql, args, row)?.into_iter().next())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User) -> PortResult<()> {
        let u = user.clone();
        self.write(move |c| {
            durably(c, |c| {
                c.prepare_cached(&format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?
                .execute(params![
                    u.id.to_string(),
                    u.username,
                    u.role.as_str(),
                    u.disabled,
                    u.password_hash,
                    u.created_at,
                    u.updated_at
                ])?;
                Ok(())
            })
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> PortResult<Option<User>> {
        let name = username.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower(?1)"),
                params![name],
                user_row,
            )
        })
        .await
    }

    async fn user(&self, id: Uuid) -> PortResult<Option<User>> {
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![id.to_string()],
                user_row,
            )
        })
        .await
    }

    async fn list_users(&self) -> PortResult<Vec<User>> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username, id"),
                [],
                user_row,
            )
        })
        .await
    }

    async fn update_user(&self, user: &User) -> PortResult<()> {
        let u = user.clone();
        self.write(move |c| {
            durably(c, |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE users SET role = ?1, disabled = ?2, password_hash = ?3, updated_at = ?4 WHERE id = ?5",
                    )?
                    .execute(params![
                        u.role.as_str(),
                        u.disabled,
                        u.password_hash,
                        u.updated_at,
                        u.id.to_string()
                    ])?;
                if changed == 0 {
                    return Err(Error::NotFound);
                }
                Ok(())
            })
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKey) -> PortResult<()> {
        let k = key.clone();
        self.write(move |c| {
            durably(c, |c| {
                c.prepare_cached(&format!(
                    "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?
                .execute(params![
                    k.id.to_string(),
                    k.prefix,
                    k.hash,
                    k.name,
                    k.user_id.map(|u| u.to_string()),
                    k.role.as_str(),
                    k.store,
                    k.created_at,
                    k.last_used_at,
                    k.revoked_at
                ])?;
                Ok(())
            })
        })
        .await
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> PortResult<Option<ApiKey>> {
        let prefix = prefix.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1"),
                params![prefix],
                key_row,
            )
        })
        .await
    }

    async fn list_api_keys(&self) -> PortResult<Vec<ApiKey>> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC"),
                [],
                key_row,
            )
        })
        .await
    }

    async fn revoke_api_key(&self, prefix: &str, at: i64) -> PortResult<bool> {
        let prefix = prefix.to_owned();
        self.write(move |c| {
            durably(c, |c| {
                let changed = c
                    .prepare_cached("UPDATE api_keys SET revoked_at = ?1 WHERE prefix = ?2 AND revoked_at IS NULL")?
                    .execute(params![at, prefix])?;
                Ok(changed > 0)
            })
        })
        .await
    }

    /// Never moves `last_used_at` back: two instances may record uses of
    /// one key out of order. An unknown prefix records nothing.
    async fn touch_api_key(&self, prefix: &str, at: i64) -> PortResult<()> {
        let prefix = prefix.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, ?1), ?1) WHERE prefix = ?2",
            )?
            .execute(params![at, prefix])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> PortResult<i64> {
        let e = entry.clone();
        self.write(move |c| {
            let id = c
                .prepare_cached(
                    "INSERT INTO audit_log (at, actor, role, action, target, detail, source) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                )?
                .query_row(
                    params![
                        e.at,
                        e.actor,
                        e.role.map(|r| r.as_str()),
                        e.action,
                        e.target,
                        e.detail,
                        e.source
                    ],
                    |r| r.get(0),
                )?;
            Ok(id)
        })
        .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> PortResult<Vec<AuditEntry>> {
        // One SQL text per filter shape (eight at most), each cached, as
        // `list_orders` does: the values are always bound.
        let mut clauses: Vec<&str> = Vec::with_capacity(3);
        let mut args: Vec<Value> = Vec::with_capacity(4);
        if let Some(before) = query.before {
            clauses.push("id < ?");
            args.push(Value::Integer(before));
        }
        if let Some(actor) = &query.actor {
            clauses.push("actor = ?");
            args.push(Value::Text(actor.clone()));
        }
        if let Some(action) = &query.action {
            clauses.push("action = ?");
            args.push(Value::Text(action.clone()));
        }
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Value::Integer(i64::from(query.limit)));
        self.read(move |c| all(c, &sql, params_from_iter(args), audit_row))
            .await
    }

    async fn purge_audit(&self, before: i64) -> PortResult<u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM audit_log WHERE at < ?1")?
                .execute(params![before])?;
            Ok(n as u64)
        })
        .await
    }
}
