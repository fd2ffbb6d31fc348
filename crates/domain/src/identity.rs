//! Who may do what: staff roles, users, personal API keys, sessions, audit
//! entries and the order access token customers hold (§2, §7).
//!
//! These are the values the identity ports (`UserStore`, `AuditLog`,
//! `SessionStore`, `LoginAttempts`) store and return. The rules that use
//! them (password hashing, lockout, which role may call which route) live
//! with the use-cases in `crates/identity` and the permission table in
//! `crates/api`; this module only says what a role, a user, a key and a
//! session are, so every adapter stores the same thing.
//!
//! Secrets are never held in clear here: a user has a PHC password hash, an
//! API key and a session are stored by the SHA-256 of their token, and an
//! order access token is derived from the order id with a server key
//! ([`order_token`]) so it needs no storage at all and an idempotent replay
//! of the original 202 carries the same token.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ids::OrderId;

/// A staff role. Ordered: each role may do everything the one before it
/// may (`Barista < Manager < Admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The board, starting and finishing lines, pickups.
    Barista,
    /// Also: availability, the order list and search, cancelling any
    /// order, the store's figures.
    Manager,
    /// Also: jobs, sync, cache, dead letters, users and keys, audit,
    /// webhook subscriptions.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Barista, Role::Manager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Barista => "barista",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `needed` may.
    pub fn covers(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so a column width (`{:<8}`) applies.
        f.pad(self.as_str())
    }
}

/// A staff account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Unique, compared case-insensitively (stored lower-cased).
    pub username: String,
    pub role: Role,
    /// A disabled user cannot log in, and its sessions and keys stop
    /// working at once.
    pub disabled: bool,
    /// Argon2id PHC string (`$argon2id$v=19$m=…`); never the password.
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A personal API key (tills, kiosks, scripts). The secret is shown once
/// at issue; what is stored is its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    /// The visible, non-secret start of the key (`rhk_3f9a1c2b`), unique:
    /// how a key is found and how people name it in lists and logs.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// What the key is for ("till 3").
    pub name: String,
    /// The user it was issued to or by, if any (the legacy staff key has
    /// none).
    pub user_id: Option<Uuid>,
    pub role: Role,
    /// Only this store's routes, when set.
    pub store: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A login session, stored under the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    /// Double-submit CSRF token for cookie-authenticated unsafe requests.
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Sliding expiry: moved forward on use, never past `absolute_expiry`.
    pub expires_at: i64,
    pub absolute_expiry: i64,
}

/// One staff action, for `GET /v1/admin/audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the log on append; increasing.
    pub id: i64,
    pub at: i64,
    /// Username, `key:<prefix>`, or `cli` for the command line.
    pub actor: String,
    pub role: Option<Role>,
    /// Stable snake_case name (`login`, `login_failed`, `lockout`,
    /// `availability`, `cancel`, `job_retry`, `user_add`, ...).
    pub action: String,
    /// What it acted on (an order id, a username, a job id), or empty.
    pub target: String,
    /// Free-form details as JSON (`{}` when none).
    pub detail: String,
    /// The client address, or empty.
    pub source: String,
}

/// Failed login attempts under one key (a username or a client address)
/// within the lockout window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempts {
    pub count: u32,
    /// When the last failure was recorded (epoch ms), 0 when none.
    pub last_at: i64,
}

/// Hex SHA-256 of a token: how API keys and sessions are stored and looked
/// up. A fast hash is right here (unlike passwords): the tokens are 128+
/// random bits, so there is nothing to brute-force.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The order access token of `order`: HMAC-SHA256 of the id under the
/// server's key, 128 bits, base64url-free hex (URL- and header-safe).
/// Deterministic, so it needs no storage and an idempotent replay of the
/// original 202 carries the same token; unguessable without the key.
pub fn order_token(key: &[u8], order: OrderId) -> String {
    hex::encode(&order_mac(key, order).finalize().into_bytes()[..16])
}

/// The MAC both [`order_token`] and [`order_token_matches`] start from.
fn order_mac(key: &[u8], order: OrderId) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"rushhour/order-token/v1\0");
    mac.update(order.0.as_bytes());
    mac
}

/// Whether `token` is `order`'s access token, in constant time.
pub fn order_token_matches(key: &[u8], order: OrderId, token: &str) -> bool {
    let Ok(given) = hex::decode(token) else {
        return false;
    };
    given.len() == 16 && order_mac(key, order).verify_truncated_left(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin.covers(Role::Manager));
        assert!(Role::Manager.covers(Role::Barista));
        assert!(!Role::Barista.covers(Role::Manager));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn order_tokens_are_per_order_and_per_key() {
        let a = OrderId(Uuid::now_v7());
        let b = OrderId(Uuid::now_v7());
        let t = order_token(b"key-1", a);
        assert_eq!(t.len(), 32);
        assert_eq!(t, order_token(b"key-1", a), "deterministic");
        assert!(order_token_matches(b"key-1", a, &t));
        assert!(!order_token_matches(b"key-1", b, &t), "another order");
        assert!(!order_token_matches(b"key-2", a, &t), "another key");
        assert!(!order_token_matches(b"key-1", a, &t[..16]), "truncated");
        assert!(!order_token_matches(b"key-1", a, "zz"), "not hex");
    }
}
