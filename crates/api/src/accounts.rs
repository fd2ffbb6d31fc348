//! Staff identity routes: logging in and out (`/v1/sessions`), and the
//! admin's users, API keys and audit log (`/v1/admin/users`, `/keys`,
//! `/audit`). Who may call each is in `permissions::RULES`; the rules
//! (hashing, lockout, who can be demoted) are in `identity`.
//!
//! A login answers with the session token in the body (for scripts: send
//! it as `Authorization: Bearer`) and as an `HttpOnly`, `SameSite=Strict`
//! cookie (for the web UI), plus the CSRF token the UI must echo on unsafe
//! requests. The cookie is `Secure` when configured so, or when a trusted
//! proxy says the client used HTTPS.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::identity::{ApiKey, AuditEntry, Role, User};
use domain::ports::AuditQuery;
use identity::KeyRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Caller, SESSION_COOKIE};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::orders::rfc3339;

// ------------------------------------------------------------------ DTOs

/// A staff role.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleDto {
    Barista,
    Manager,
    Admin,
}

impl From<Role> for RoleDto {
    fn from(r: Role) -> Self {
        match r {
            Role::Barista => RoleDto::Barista,
            Role::Manager => RoleDto::Manager,
            Role::Admin => RoleDto::Admin,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(r: RoleDto) -> Self {
        match r {
            RoleDto::Barista => Role::Barista,
            RoleDto::Manager => Role::Manager,
            RoleDto::Admin => Role::Admin,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "alice")]
    pub username: String,
    pub password: String,
}

// By hand: the password must never reach a log line.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Who is signed in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionDto {
    pub username: String,
    pub role: RoleDto,
    /// Echo in `X-CSRF-Token` on unsafe requests sent with the cookie.
    pub csrf_token: Option<String>,
    /// The session token (only in the login answer): `Authorization:
    /// Bearer <token>` for scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// RFC 3339; sliding.
    pub expires_at: Option<String>,
    /// Set for an API key limited to one store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `session`, `api_key` or `staff_key`.
    pub via: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDto {
    pub id: uuid::Uuid,
    pub username: String,
    pub role: RoleDto,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        UserDto {
            id: u.id,
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    #[schema(schema_with = crate::schemas::username)]
    pub username: String,
    pub role: RoleDto,
    /// 12 to 1024 characters.
    #[schema(schema_with = crate::schemas::password)]
    pub password: String,
}

impl std::fmt::Debug for NewUserRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserRequest")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Any of the fields; each given one is applied (and audited).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    pub role: Option<RoleDto>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    #[schema(schema_with = crate::schemas::new_password)]
    pub password: Option<String>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyDto {
    /// The visible start of the key; how it is named and revoked.
    #[schema(example = "rhk_3f9a1c2b")]
    pub prefix: String,
    pub name: String,
    pub role: RoleDto,
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub user: Option<uuid::Uuid>,
    pub created_at: String,
    #[serde(default)]
    pub last_used_at: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for KeyDto {
    fn from(k: ApiKey) -> Self {
        KeyDto {
            prefix: k.prefix,
            name: k.name,
            role: k.role.into(),
            store: k.store,
            user: k.user_id,
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// 1 to 100 characters once trimmed.
    #[schema(schema_with = crate::schemas::key_name)]
    pub name: String,
    pub role: RoleDto,
    /// Limit the key to this store's routes.
    #[serde(default)]
    #[schema(value_type = Option<crate::schemas::StoreSlug>)]
    pub store: Option<String>,
    /// Tie the key to a user: it stops working when they are disabled, and
    /// its role may not exceed theirs.
    #[serde(default)]
    pub user: Option<String>,
}

/// A new key; `key` is shown this once and cannot be recovered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedKeyDto {
    pub key: String,
    #[serde(flatten)]
    pub info: KeyDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntryDto {
    pub id: i64,
    pub at: String,
    pub actor: String,
    #[serde(default)]
    pub role: Option<RoleDto>,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub source: String,
}

impl From<AuditEntry> for AuditEntryDto {
    fn from(e: AuditEntry) -> Self {
        AuditEntryDto {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            role: e.role.map(Into::into),
            action: e.action,
            target: e.target,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
            source: e.source,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryDto>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(default)]
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Entries with a smaller id (older) than this.
    pub before: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

// -------------------------------------------------------------- sessions

/// Log in with a username and password.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 201, description = "Logged in; the session is also set as the `rh_session` cookie", body = SessionDto),
        (status = 401, description = "invalid_credentials", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "login_locked, rate_limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let done = state
        .identity
        .login(&req.username, &req.password, &caller.source.to_string())
        .await?;
    let secure = state.secure_cookies || caller.https;
    let max_age = (done.session.absolute_expiry - done.session.created_at) / 1000;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        done.token,
        if secure { "; Secure" } else { "" }
    );
    let body = SessionDto {
        username: done.session.username.clone(),
        role: done.session.role.into(),
        csrf_token: Some(done.session.csrf.clone()),
        token: Some(done.token),
        expires_at: Some(rfc3339(done.session.expires_at)),
        store: None,
        via: "session".into(),
    };
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Who am I: the caller's user or key and role.
#[utoipa::path(
    get,
    path = "/v1/sessions/current",
    tag = "sessions",
    responses(
        (status = 200, description = "The caller", body = SessionDto),
    )
)]
pub async fn current(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let p = caller.principal.ok_or(ApiError::Unauthorized)?;
    let session = state.identity.session_of(&p).await?;
    let body = SessionDto {
        username: p.actor.clone(),
        role: p.role.into(),
        csrf_token: session.as_ref().map(|s| s.csrf.clone()),
        token: None,
        expires_at: session.as_ref().map(|s| rfc3339(s.expires_at)),
        store: p.store.clone(),
        via: match p.credential {
            identity::Credential::Session { .. } => "session",
            identity::Credential::ApiKey { .. } => "api_key",
            identity::Credential::StaffKey => "staff_key",
        }
        .into(),
    };
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Log out: end this session and clear the cookie.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    tag = "sessions",
    responses(
        (status = 204, description = "Logged out"),
    )
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let p = caller.principal.as_ref().ok_or(ApiError::Unauthorized)?;
    state.identity.logout(p, &caller.source.to_string()).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rh_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

// ----------------------------------------------------------------- users

/// Every staff account.
#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "admin",
    responses((status = 200, description = "Users by name", body = Vec<UserDto>))
)]
pub async fn list_users(State(state): State<AppState>) -> Result<axum::Json<Vec<UserDto>>, ApiError> {
    let users = state.identity.list_users().await?;
    Ok(axum::Json(users.into_iter().map(Into::into).collect()))
}

/// Create a staff account.
#[utoipa::path(
    post,
    path = "/v1/admin/users",
    tag = "admin",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created", body = UserDto),
        (status = 409, description = "user_exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "weak_password, invalid_body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<NewUserRequest>,
) -> Result<(StatusCode, axum::Json<UserDto>), ApiError> {
    let user = state
        .identity
        .add_user(&caller.actor(), &req.username, req.role.into(), &req.password)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user.into())))
}

/// Change a user's role, disable or enable them, or set a new password.
/// Any change ends their sessions.
#[utoipa::path(
    patch,
    path = "/v1/admin/users/{username}",
    tag = "admin",
    params(("username" = String, Path)),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user after the change", body = UserDto),
        (status = 404, description = "user_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "last_admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "weak_password", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    Json(patch): Json<UserPatch>,
) -> Result<axum::Json<UserDto>, ApiError> {
    let actor = caller.actor();
    let id = &state.identity;
    if let Some(password) = &patch.password {
        id.set_password(&actor, &username, password).await?;
    }
    if let Some(role) = patch.role {
        id.set_role(&actor, &username, role.into()).await?;
    }
    if let Some(disabled) = patch.disabled {
        id.set_disabled(&actor, &username, disabled).await?;
    }
    Ok(axum::Json(id.user(&username).await?.into()))
}

// ------------------------------------------------------------------ keys

/// Every API key (revoked ones too), newest first. Secrets are never shown.
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "admin",
    responses((status = 200, description = "Keys", body = Vec<KeyDto>))
)]
pub async fn list_keys(State(state): State<AppState>) -> Result<axum::Json<Vec<KeyDto>>, ApiError> {
    let keys = state.identity.list_keys().await?;
    Ok(axum::Json(keys.into_iter().map(Into::into).collect()))
}

/// Issue a personal API key. The key is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    tag = "admin",
    request_body = NewKeyRequest,
    responses(
        (status = 201, description = "Issued", body = IssuedKeyDto),
        (status = 404, description = "user_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_key(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<NewKeyRequest>,
) -> Result<Response, ApiError> {
    let issued = state
        .identity
        .issue_key(
            &caller.actor(),
            KeyRequest {
                name: req.name,
                role: req.role.into(),
                store: req.store,
                user: req.user,
            },
        )
        .await?;
    let body = IssuedKeyDto {
        key: issued.key,
        info: issued.record.into(),
    };
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Revoke a key; it stops working within two seconds on every instance.
#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{prefix}",
    tag = "admin",
    params(("prefix" = String, Path, description = "The key's visible prefix (`rhk_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "key_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(prefix): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identity.revoke_key(&caller.actor(), &prefix).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- audit

/// The audit log of staff actions, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidQuery("limit must be 1 to 500".into()));
    }
    let entries = state
        .identity
        .audit_log(&AuditQuery {
            before: q.before,
            actor: q.actor,
            action: q.action,
            limit,
        })
        .await?;
    let next_before = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(axum::Json(AuditPage {
        entries: entries.into_iter().map(Into::into).collect(),
        next_before,
    }))
}
