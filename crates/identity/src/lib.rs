//! Staff identity use-cases (§2, §7): logins with lockout, sessions,
//! personal API keys, user administration and the audit trail, over the
//! ports `UserStore`, `AuditLog`, `SessionStore` and `LoginAttempts`.
//!
//! A crate of its own rather than a module of `domain` because password
//! hashing is deliberately expensive CPU work that must leave the async
//! threads (`tokio::task::spawn_blocking`), and `domain` knows no runtime.
//! It knows no HTTP either: the API's permission table decides which
//! [`Principal`] may call which route, and this crate only says who a
//! credential belongs to.
//!
//! Rules kept here:
//! - An unknown username, a wrong password and a disabled account get the
//!   same answer after the same work (the dummy hash), so a login says
//!   nothing about which accounts exist.
//! - Failures are counted per username (known or not) and per client
//!   address; past a threshold each further failure doubles the wait
//!   (`Locked { retry_after }`), every lock is audited and counted.
//! - Disabling a user or changing its password ends its sessions at once;
//!   its keys stop working within the key cache's two seconds.
//! - Every change to users and keys, every login and lockout is audited.

mod keys;
mod password;

use domain::identity::{ApiKey, AuditEntry, Role, Session, User, token_hash};
use domain::ports::{AuditLog, AuditQuery, Clock, LoginAttempts, PortError, SessionStore, UserStore};
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use uuid::Uuid;

/// Argon2 cost parameters (for [`Passwords::with_params`]).
pub use argon2::Params as Argon2Params;
pub use keys::{API_KEY_SCHEME, SESSION_SCHEME, api_key_prefix, generated_password, new_api_key, random_hex};
pub use password::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Passwords, Verified, check_policy};

/// Why an identity operation failed. The HTTP edge maps each to one stable
/// problem code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Unknown user, wrong password or disabled account: one answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins for this username or from this address.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    Locked { retry_after: Duration },
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("no API key {0:?}")]
    UnknownKey(String),
    /// The change would leave no enabled admin.
    #[error("the last enabled admin cannot be disabled or demoted")]
    LastAdmin,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{0}")]
    Internal(String),
}

/// Settings of logins and sessions.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// A session unused this long ends (sliding expiry).
    pub session_idle: Duration,
    /// A session ends this long after login, however much it is used.
    pub session_lifetime: Duration,
    /// Failed logins for one username before it is locked.
    pub lockout_threshold: u32,
    /// Failed logins from one address before it is slowed down.
    pub address_threshold: u32,
    /// The first lock's length; each further failure doubles it.
    pub lockout_base: Duration,
    /// The longest lock.
    pub lockout_max: Duration,
    /// A failure counter forgets itself this long after its last failure.
    pub lockout_window: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            session_idle: Duration::from_secs(8 * 3600),
            session_lifetime: Duration::from_secs(24 * 3600),
            lockout_threshold: 5,
            address_threshold: 20,
            lockout_base: Duration::from_secs(30),
            lockout_max: Duration::from_secs(15 * 60),
            lockout_window: Duration::from_secs(3600),
        }
    }
}

impl IdentitySettings {
    /// How long `count` failures lock, counted from the last one: nothing
    /// below `threshold`, then `base`, `2·base`, `4·base`, … up to `max`.
    pub fn backoff(&self, count: u32, threshold: u32) -> Duration {
        if count < threshold {
            return Duration::ZERO;
        }
        let doublings = (count - threshold).min(20);
        self.lockout_base.saturating_mul(1 << doublings).min(self.lockout_max)
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A login session (cookie or bearer); cookie-borne unsafe requests
    /// must echo `csrf`.
    Session { token_hash: String, csrf: String },
    /// A personal API key.
    ApiKey { prefix: String },
    /// The deprecated shared staff key (`auth.staff_key` / `staff.key`),
    /// honoured as an admin key.
    StaffKey,
}

/// An authenticated staff caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who, for the audit log: the username, or `key:<prefix>`.
    pub actor: String,
    pub role: Role,
    pub user_id: Option<Uuid>,
    /// Only this store's routes, when set (store-scoped API keys).
    pub store: Option<String>,
    pub credential: Credential,
}

impl Principal {
    /// Whether this caller may act on `store`'s orders and board.
    pub fn may_act_on_store(&self, store: &str) -> bool {
        self.store.as_deref().is_none_or(|s| s == store)
    }

    /// The rate-limit key of this credential.
    pub fn limit_key(&self) -> String {
        match &self.credential {
            Credential::Session { .. } => format!("user:{}", self.actor),
            Credential::ApiKey { prefix } => format!("key:{prefix}"),
            Credential::StaffKey => "key:staff".into(),
        }
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub name: String,
    pub role: Option<Role>,
    /// The client address, or empty.
    pub source: String,
}

impl Actor {
    pub fn of(principal: &Principal, source: impl Into<String>) -> Self {
        Actor {
            name: principal.actor.clone(),
            role: Some(principal.role),
            source: source.into(),
        }
    }

    /// The command line (`rushhour users …`), run by OS user `user`.
    pub fn cli(user: &str) -> Self {
        Actor {
            name: if user.is_empty() {
                "cli".into()
            } else {
                format!("cli:{user}")
            },
            role: Some(Role::Admin),
            source: String::new(),
        }
    }

    /// Nobody yet (a login attempt).
    pub fn anonymous(source: impl Into<String>) -> Self {
        Actor {
            name: String::new(),
            role: None,
            source: source.into(),
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The session token: the cookie's value and the bearer token. Shown
    /// to the client once; only its hash is stored.
    pub token: String,
    pub session: Session,
}

/// A newly issued API key; `key` is shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: String,
    pub record: ApiKey,
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub role: Role,
    pub store: Option<String>,
    /// The user the key acts for (it stops working when they are
    /// disabled); `None` for a device key.
    pub user: Option<String>,
}

/// The identity use-cases, shared by the API and the CLI.
pub struct Identity {
    users: Arc<dyn UserStore>,
    audit: Arc<dyn AuditLog>,
    sessions: Arc<dyn SessionStore>,
    attempts: Arc<dyn LoginAttempts>,
    clock: Arc<dyn Clock>,
    passwords: Passwords,
    settings: IdentitySettings,
    staff_key: Option<String>,
    /// API keys by prefix, for two seconds: a key is checked on every
    /// request, and a store read per request would cost more than the
    /// request. Revocation through this instance evicts at once.
    keys: Cache<String, Arc<ApiKey>>,
    /// Whether a user is enabled, for keys tied to a user; same bound.
    enabled: Cache<Uuid, bool>,
    /// Keys whose last use was written in the last minute: one write per
    /// key per minute, not per request.
    touched: Cache<String, ()>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("settings", &self.settings)
            .field("staff_key", &self.staff_key.is_some())
            .finish_non_exhaustive()
    }
}

/// The ports identity works over.
pub struct IdentityPorts {
    pub users: Arc<dyn UserStore>,
    pub audit: Arc<dyn AuditLog>,
    pub sessions: Arc<dyn SessionStore>,
    pub attempts: Arc<dyn LoginAttempts>,
    pub clock: Arc<dyn Clock>,
}

const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// How often a credential's last use is written.
const TOUCH_EVERY_MS: i64 = 60_000;

impl Identity {
    pub fn new(ports: IdentityPorts, passwords: Passwords, settings: IdentitySettings) -> Self {
        Identity {
            users: ports.users,
            audit: ports.audit,
            sessions: ports.sessions,
            attempts: ports.attempts,
            clock: ports.clock,
            passwords,
            settings,
            staff_key: None,
            keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            enabled: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            touched: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// Honour the deprecated shared staff key as an admin API key.
    pub fn with_staff_key(mut self, key: Option<String>) -> Self {
        self.staff_key = key.filter(|k| !k.is_empty());
        self
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    // ------------------------------------------------------------ logins

    /// Check a username and password; on success start a session.
    #[tracing::instrument(skip_all, fields(source = %source))]
    pub async fn login(&self, username: &str, password: &str, source: &str) -> Result<LoggedIn, IdentityError> {
        let now = self.clock.now_ms();
        let name = normalize_username(username);
        let user_key = format!("user:{name}");
        let addr_key = format!("addr:{source}");
        let s = &self.settings;

        // Locks first, before any hashing: a locked username or address
        // costs the server nothing more.
        let by_addr = self.attempts.attempts(&addr_key, now).await?;
        let by_user = self.attempts.attempts(&user_key, now).await?;
        let wait = remaining(by_addr.last_at, s.backoff(by_addr.count, s.address_threshold), now).max(remaining(
            by_user.last_at,
            s.backoff(by_user.count, s.lockout_threshold),
            now,
        ));
        if !wait.is_zero() {
            metrics::counter!(names::LOGINS, "outcome" => "locked").increment(1);
            return Err(IdentityError::Locked { retry_after: wait });
        }

        let user = self.users.user_by_name(&name).await?;
        let verified = self
            .passwords
            .verify(user.as_ref().map(|u| u.password_hash.as_str()), password)
            .await?;
        let user = match (user, verified) {
            (Some(u), Verified::Yes | Verified::YesRehash) if !u.disabled => {
                if verified == Verified::YesRehash {
                    self.rehash(&u, password).await;
                }
                u
            }
            _ => return Err(self.failed_login(&name, &user_key, &addr_key, source, now).await),
        };

        self.attempts.clear_attempts(&user_key).await?;
        let token = keys::new_session_token();
        let session = Session {
            token_hash: token_hash(&token),
            user_id: user.id,
            username: user.username.clone(),
            role: user.role,
            csrf: random_hex(16),
            created_at: now,
            last_seen_at: now,
            expires_at: now + ms(s.session_idle).min(ms(s.session_lifetime)),
            absolute_expiry: now + ms(s.session_lifetime),
        };
        self.sessions.create_session(&session).await?;
        metrics::counter!(names::LOGINS, "outcome" => "ok").increment(1);
        let actor = Actor {
            name: user.username.clone(),
            role: Some(user.role),
            source: source.to_owned(),
        };
        self.record(&actor, "login", &user.username, "{}").await;
        Ok(LoggedIn { token, session })
    }

    async fn failed_login(&self, name: &str, user_key: &str, addr_key: &str, source: &str, now: i64) -> IdentityError {
        let s = &self.settings;
        let window = ms(s.lockout_window.max(s.lockout_max));
        metrics::counter!(names::LOGINS, "outcome" => "invalid").increment(1);
        let actor = Actor::anonymous(source);
        self.record(&actor, "login_failed", name, "{}").await;
        let (by_user, by_addr) = match tokio::try_join!(
            self.attempts.record_failure(user_key, now, window),
            self.attempts.record_failure(addr_key, now, window),
        ) {
            Ok(pair) => pair,
            Err(e) => return e.into(),
        };
        for (scope, count, threshold) in [
            ("user", by_user.count, s.lockout_threshold),
            ("address", by_addr.count, s.address_threshold),
        ] {
            if count >= threshold {
                metrics::counter!(names::LOCKOUTS, "scope" => scope).increment(1);
                let lock = s.backoff(count, threshold);
                let detail = serde_json::json!({
                    "scope": scope,
                    "failures": count,
                    "locked_secs": lock.as_secs(),
                })
                .to_string();
                let target = if scope == "user" { name } else { source };
                self.record(&actor, "lockout", target, &detail).await;
            }
        }
        IdentityError::InvalidCredentials
    }

    async fn rehash(&self, user: &User, password: &str) {
        match self.passwords.hash(password).await {
            Ok(hash) => {
                let updated = User {
                    password_hash: hash,
                    updated_at: self.clock.now_ms(),
                    ..user.clone()
                };
                if let Err(e) = self.users.update_user(&updated).await {
                    tracing::warn!(error = %e, user = %user.username, "could not store an upgraded password hash");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not re-hash a password"),
        }
    }

    /// The staff caller a bearer token or session cookie value belongs
    /// to, or `None` when it belongs to nobody (unknown, expired, revoked).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, IdentityError> {
        if token.starts_with(SESSION_SCHEME) {
            return self.session_principal(token).await;
        }
        if token.starts_with(API_KEY_SCHEME) {
            return self.key_principal(token).await;
        }
        match &self.staff_key {
            Some(k) if constant_time_eq(k.as_bytes(), token.as_bytes()) => Ok(Some(Principal {
                actor: "staff-key".into(),
                role: Role::Admin,
                user_id: None,
                store: None,
                credential: Credential::StaffKey,
            })),
            _ => Ok(None),
        }
    }

    async fn session_principal(&self, token: &str) -> Result<Option<Principal>, IdentityError> {
        let now = self.clock.now_ms();
        let hash = token_hash(token);
        let Some(s) = self.sessions.session(&hash, now).await? else {
            return Ok(None);
        };
        // Slide the expiry at most once a minute per session (by the
        // session's own clock, so a manual clock drives it in tests).
        if now - s.last_seen_at >= TOUCH_EVERY_MS {
            let expires = (now + ms(self.settings.session_idle)).min(s.absolute_expiry);
            self.sessions.touch_session(&hash, now, expires).await?;
        }
        Ok(Some(Principal {
            actor: s.username.clone(),
            role: s.role,
            user_id: Some(s.user_id),
            store: None,
            credential: Credential::Session {
                token_hash: hash,
                csrf: s.csrf,
            },
        }))
    }

    async fn key_principal(&self, token: &str) -> Result<Option<Principal>, IdentityError> {
        let Some(prefix) = api_key_prefix(token) else {
            return Ok(None);
        };
        let key = match self.keys.get(prefix).await {
            Some(k) => k,
            None => match self.users.api_key_by_prefix(prefix).await? {
                Some(k) => {
                    let k = Arc::new(k);
                    self.keys.insert(prefix.to_owned(), k.clone()).await;
                    k
                }
                None => return Ok(None),
            },
        };
        if key.revoked_at.is_some() || !constant_time_eq(key.hash.as_bytes(), token_hash(token).as_bytes()) {
            return Ok(None);
        }
        if let Some(user) = key.user_id {
            let enabled = match self.enabled.get(&user).await {
                Some(e) => e,
                None => {
                    let e = self.users.user(user).await?.is_some_and(|u| !u.disabled);
                    self.enabled.insert(user, e).await;
                    e
                }
            };
            if !enabled {
                return Ok(None);
            }
        }
        let now = self.clock.now_ms();
        if !self.touched.contains_key(prefix) {
            self.users.touch_api_key(prefix, now).await?;
            self.touched.insert(prefix.to_owned(), ()).await;
        }
        Ok(Some(Principal {
            actor: format!("key:{prefix}"),
            role: key.role,
            user_id: key.user_id,
            store: key.store.clone(),
            credential: Credential::ApiKey {
                prefix: prefix.to_owned(),
            },
        }))
    }

    /// End the caller's session (a key or the staff key has none).
    pub async fn logout(&self, principal: &Principal, source: &str) -> Result<(), IdentityError> {
        if let Credential::Session { token_hash, .. } = &principal.credential {
            self.sessions.delete_session(token_hash).await?;
            self.record(&Actor::of(principal, source), "logout", &principal.actor, "{}")
                .await;
        }
        Ok(())
    }

    /// The session a caller authenticated with, for `GET /v1/sessions/current`.
    pub async fn session_of(&self, principal: &Principal) -> Result<Option<Session>, IdentityError> {
        match &principal.credential {
            Credential::Session { token_hash, .. } => {
                Ok(self.sessions.session(token_hash, self.clock.now_ms()).await?)
            }
            _ => Ok(None),
        }
    }

    // ------------------------------------------------------------- users

    pub async fn add_user(
        &self,
        actor: &Actor,
        username: &str,
        role: Role,
        password: &str,
    ) -> Result<User, IdentityError> {
        let name = valid_username(username)?;
        let hash = self.passwords.hash(password).await?;
        let now = self.clock.now_ms();
        let user = User {
            id: Uuid::now_v7(),
            username: name.clone(),
            role,
            disabled: false,
            password_hash: hash,
            created_at: now,
            updated_at: now,
        };
        match self.users.create_user(&user).await {
            Err(PortError::Conflict(_)) => return Err(IdentityError::UserExists(name)),
            other => other?,
        }
        let detail = serde_json::json!({ "role": role }).to_string();
        self.record(actor, "user_add", &name, &detail).await;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, IdentityError> {
        Ok(self.users.list_users().await?)
    }

    pub async fn user(&self, username: &str) -> Result<User, IdentityError> {
        let name = normalize_username(username);
        self.users
            .user_by_name(&name)
            .await?
            .ok_or(IdentityError::UnknownUser(name))
    }

    /// Set a new password; the user's sessions end.
    pub async fn set_password(&self, actor: &Actor, username: &str, password: &str) -> Result<(), IdentityError> {
        let user = self.user(username).await?;
        let hash = self.passwords.hash(password).await?;
        self.update(User {
            password_hash: hash,
            ..user
        })
        .await?;
        self.record(actor, "user_password", &normalize_username(username), "{}")
            .await;
        Ok(())
    }

    /// Change a role; the user's sessions end (they carry the old role).
    pub async fn set_role(&self, actor: &Actor, username: &str, role: Role) -> Result<(), IdentityError> {
        let user = self.user(username).await?;
        if user.role == Role::Admin && role != Role::Admin && !user.disabled {
            self.keep_an_admin(user.id).await?;
        }
        let from = user.role;
        self.update(User { role, ..user }).await?;
        let detail = serde_json::json!({ "from": from, "to": role }).to_string();
        self.record(actor, "user_role", &normalize_username(username), &detail)
            .await;
        Ok(())
    }

    /// Disable (sessions end, keys stop) or enable a user.
    pub async fn set_disabled(&self, actor: &Actor, username: &str, disabled: bool) -> Result<(), IdentityError> {
        let user = self.user(username).await?;
        if disabled && user.role == Role::Admin && !user.disabled {
            self.keep_an_admin(user.id).await?;
        }
        self.update(User { disabled, ..user }).await?;
        let action = if disabled { "user_disable" } else { "user_enable" };
        self.record(actor, action, &normalize_username(username), "{}").await;
        Ok(())
    }

    async fn keep_an_admin(&self, leaving: Uuid) -> Result<(), IdentityError> {
        let others = self
            .users
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.role == Role::Admin && !u.disabled && u.id != leaving)
            .count();
        if others == 0 {
            Err(IdentityError::LastAdmin)
        } else {
            Ok(())
        }
    }

    /// Store `user` and end its sessions: every change here (password,
    /// role, disabled) invalidates what a session carries.
    async fn update(&self, user: User) -> Result<(), IdentityError> {
        let user = User {
            updated_at: self.clock.now_ms(),
            ..user
        };
        match self.users.update_user(&user).await {
            Err(PortError::NotFound) => return Err(IdentityError::UnknownUser(user.username)),
            other => other?,
        }
        self.sessions.delete_user_sessions(user.id).await?;
        self.enabled.invalidate(&user.id).await;
        Ok(())
    }

    /// Whether an enabled admin exists.
    pub async fn has_admin(&self) -> Result<bool, IdentityError> {
        Ok(any_admin(&self.users.list_users().await?))
    }

    /// Make sure an enabled admin exists: when none does, create `admin`
    /// (or re-enable and promote an existing `admin`) with `password`, or
    /// a generated one. Returns the password when it was generated.
    pub async fn ensure_admin(&self, password: Option<&str>) -> Result<Option<String>, IdentityError> {
        let users = self.users.list_users().await?;
        if any_admin(&users) {
            return Ok(None);
        }
        let (password, generated) = match password.filter(|p| !p.is_empty()) {
            Some(p) => (p.to_owned(), false),
            None => (generated_password(), true),
        };
        let actor = Actor {
            name: "bootstrap".into(),
            role: Some(Role::Admin),
            source: String::new(),
        };
        match users.into_iter().find(|u| u.username == "admin") {
            Some(existing) => {
                let hash = self.passwords.hash(&password).await?;
                self.update(User {
                    role: Role::Admin,
                    disabled: false,
                    password_hash: hash,
                    ..existing
                })
                .await?;
                self.record(&actor, "user_password", "admin", "{}").await;
            }
            None => match self.add_user(&actor, "admin", Role::Admin, &password).await {
                // Another instance starting at the same moment made it.
                Err(IdentityError::UserExists(_)) => return Ok(None),
                other => {
                    other?;
                }
            },
        }
        Ok(generated.then_some(password))
    }

    // -------------------------------------------------------------- keys

    pub async fn issue_key(&self, actor: &Actor, req: KeyRequest) -> Result<IssuedKey, IdentityError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
            return Err(IdentityError::InvalidInput(format!(
                "a key needs a name of 1 to {MAX_KEY_NAME} characters"
            )));
        }
        if let Some(store) = &req.store
            && domain::StoreId::parse(store).is_none()
        {
            return Err(IdentityError::InvalidInput(
                "store must be a store id: 1 to 64 of a-z, 0-9 and '-'".into(),
            ));
        }
        let user = match &req.user {
            Some(u) => {
                let user = self.user(u).await?;
                if req.role > user.role {
                    return Err(IdentityError::InvalidInput(format!(
                        "a key for {} can have at most the role {}",
                        user.username, user.role
                    )));
                }
                Some(user.id)
            }
            None => None,
        };
        let (key, prefix) = new_api_key();
        let record = ApiKey {
            id: Uuid::now_v7(),
            prefix: prefix.clone(),
            hash: token_hash(&key),
            name: name.to_owned(),
            user_id: user,
            role: req.role,
            store: req.store.clone(),
            created_at: self.clock.now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        self.users.create_api_key(&record).await?;
        let detail = serde_json::json!({ "name": name, "role": req.role, "store": req.store }).to_string();
        self.record(actor, "key_issue", &prefix, &detail).await;
        Ok(IssuedKey { key, record })
    }

    pub async fn revoke_key(&self, actor: &Actor, prefix: &str) -> Result<(), IdentityError> {
        if !self.users.revoke_api_key(prefix, self.clock.now_ms()).await? {
            return Err(IdentityError::UnknownKey(prefix.to_owned()));
        }
        self.keys.invalidate(prefix).await;
        self.record(actor, "key_revoke", prefix, "{}").await;
        Ok(())
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, IdentityError> {
        Ok(self.users.list_api_keys().await?)
    }

    // ------------------------------------------------------------- audit

    /// Append to the audit log. An audit write that fails is logged, not
    /// returned: the action it describes already happened.
    pub async fn record(&self, actor: &Actor, action: &str, target: &str, detail: &str) {
        let entry = AuditEntry {
            id: 0,
            at: self.clock.now_ms(),
            actor: actor.name.clone(),
            role: actor.role,
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
            source: actor.source.clone(),
        };
        if let Err(e) = self.audit.append_audit(&entry).await {
            tracing::error!(error = %e, action, target, "could not write an audit entry");
        }
    }

    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, IdentityError> {
        Ok(self.audit.list_audit(query).await?)
    }

    /// Drop expired sessions (the nightly cleanup).
    pub async fn purge_sessions(&self) -> Result<u64, IdentityError> {
        Ok(self.sessions.purge_sessions(self.clock.now_ms()).await?)
    }

    /// Whether the session backend answers.
    pub async fn health(&self) -> Result<(), PortError> {
        self.sessions.health().await
    }
}

/// Whether `users` has an enabled admin.
fn any_admin(users: &[User]) -> bool {
    users.iter().any(|u| u.role == Role::Admin && !u.disabled)
}

/// Usernames are compared case-insensitively: stored and looked up
/// lower-cased.
pub fn normalize_username(s: &str) -> String {
    s.trim().to_lowercase()
}

/// The longest API key name, in characters (once trimmed).
pub const MAX_KEY_NAME: usize = 100;

/// A username of 1 to 64 characters from `a-z 0-9 . _ - @`.
pub fn valid_username(s: &str) -> Result<String, IdentityError> {
    let name = normalize_username(s);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(IdentityError::InvalidInput(
            "a username is 1 to 64 characters of a-z, 0-9, '.', '_', '-' and '@'".into(),
        ))
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What is left of a lock of `lock` that started at `since`.
fn remaining(since: i64, lock: Duration, now: i64) -> Duration {
    let until = since.saturating_add(ms(lock));
    Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
}

/// Compare in constant time (`subtle`), so the time taken says nothing
/// about how many leading bytes of a guess were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_threshold_up_to_the_cap() {
        let s = IdentitySettings::default();
        assert_eq!(s.backoff(4, 5), Duration::ZERO);
        assert_eq!(s.backoff(5, 5), Duration::from_secs(30));
        assert_eq!(s.backoff(6, 5), Duration::from_secs(60));
        assert_eq!(s.backoff(7, 5), Duration::from_secs(120));
        assert_eq!(s.backoff(50, 5), Duration::from_secs(900));
        assert_eq!(s.backoff(u32::MAX, 5), Duration::from_secs(900));
    }

    #[test]
    fn remaining_lock_time() {
        assert_eq!(
            remaining(1_000, Duration::from_secs(30), 11_000),
            Duration::from_secs(20)
        );
        assert_eq!(remaining(1_000, Duration::from_secs(30), 40_000), Duration::ZERO);
        assert_eq!(remaining(0, Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn usernames() {
        assert_eq!(valid_username("  Alice.B@shop ").unwrap(), "alice.b@shop");
        assert!(valid_username("").is_err());
        assert!(valid_username("a b").is_err());
        assert!(valid_username(&"a".repeat(65)).is_err());
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
