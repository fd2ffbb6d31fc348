//! `ApiError`: every way a request can fail, each mapped to one HTTP status
//! and one stable snake_case `code`, rendered as RFC 9457
//! `application/problem+json`.
//!
//! Clients branch on `code`, never on `title` or `detail` (those are for
//! humans and may change). The codes are one closed enum, [`ErrorCode`]
//! (meilisearch's `Code` is the model): every problem document's `code`
//! comes from it, the OpenAPI document lists it as an enum schema, and a
//! test pins every value. Building a code from a string at run time (as
//! `format!("{what}_not_found")` once did) would make the set unlistable. 5xx bodies say nothing about the cause; the cause
//! goes to the log instead, so a database message or a hostname never leaks
//! to a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::order::FieldError;
use domain::{AppError, PortError, TransitionError};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `Retry-After` (seconds) of a 429 `too_many_streams`.
const STREAMS_RETRY_AFTER: &str = "5";

/// Declares [`ErrorCode`] and its wire strings in one list, so a variant
/// cannot exist without its string or be left out of [`ErrorCode::ALL`].
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal,)*) => {
        /// Every public error code: the `code` of a problem document. Adding
        /// one is an API change; renaming or removing one breaks clients
        /// (the `every_error_code_is_pinned` test says so).
        ///
        /// The wire form is the variant's name in snake_case (serde and
        /// utoipa agree on `rename_all`; utoipa ignores per-variant
        /// renames), and the tests check it equals [`ErrorCode::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The snake_case string clients see.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson = "malformed_json",
    InvalidBody = "invalid_body",
    UnsupportedMediaType = "unsupported_media_type",
    PayloadTooLarge = "payload_too_large",
    BadRequest = "bad_request",
    InvalidPath = "invalid_path",
    InvalidQuery = "invalid_query",
    InvalidIdempotencyKey = "invalid_idempotency_key",
    InvalidLastEventId = "invalid_last_event_id",
    /// The request body did not arrive within `http.body_read_timeout_ms`.
    BodyTimeout = "body_timeout",
    Unauthorized = "unauthorized",
    /// Authenticated, but the role, the key's store scope or the order
    /// access token does not allow this.
    Forbidden = "forbidden",
    /// A cookie-authenticated unsafe request without the session's
    /// `X-CSRF-Token`, or from another origin.
    CsrfFailed = "csrf_failed",
    /// `POST /v1/sessions` with an unknown user, a wrong password or a
    /// disabled account (one answer for all three).
    InvalidCredentials = "invalid_credentials",
    /// Too many failed logins for this username or from this address.
    LoginLocked = "login_locked",
    RateLimited = "rate_limited",
    UserNotFound = "user_not_found",
    KeyNotFound = "key_not_found",
    UserExists = "user_exists",
    /// The change would leave no enabled admin.
    LastAdmin = "last_admin",
    /// A password shorter than the policy allows.
    WeakPassword = "weak_password",
    InvalidSignature = "invalid_signature",
    StaleSignature = "stale_signature",
    OrderNotFound = "order_not_found",
    StoreNotFound = "store_not_found",
    ItemNotFound = "item_not_found",
    JobNotFound = "job_not_found",
    /// `POST /v1/admin/sync/{what}` with an unknown `what`.
    SyncNotFound = "sync_not_found",
    /// `/v1/admin/schedules/{name}/run` with a name no schedule has.
    ScheduleNotFound = "schedule_not_found",
    /// No dead letter at that group, partition and offset.
    DeadLetterNotFound = "dead_letter_not_found",
    /// No outbound webhook subscriber with that id.
    WebhookNotFound = "webhook_not_found",
    /// The subscriber has no delivery of that event.
    DeliveryNotFound = "delivery_not_found",
    /// Only a dead delivery can be retried.
    DeliveryNotDead = "delivery_not_dead",
    /// No loyalty account with that id.
    AccountNotFound = "account_not_found",
    LineNotFound = "line_not_found",
    RouteNotFound = "route_not_found",
    MethodNotAllowed = "method_not_allowed",
    InvalidTransition = "invalid_transition",
    ValidationFailed = "validation_failed",
    /// An order whose lines are valid but whose total is negative or too
    /// large to charge (a menu price gone wrong upstream).
    InvalidTotal = "invalid_total",
    IdempotencyKeyReused = "idempotency_key_reused",
    /// The admin job routes on a process without a job queue.
    JobsUnavailable = "jobs_unavailable",
    JobNotDead = "job_not_dead",
    JobRunning = "job_running",
    /// `GET /v1/admin/profile/{cpu,heap}` while another profile of that
    /// kind of this process runs.
    ProfileRunning = "profile_running",
    /// `GET /v1/admin/profile/heap` on a process that does not allocate
    /// through jemalloc's profiler (a build without it, a test binary).
    ProfilingUnavailable = "profiling_unavailable",
    Overloaded = "overloaded",
    /// This client already has `http.max_streams_per_client` streams open.
    TooManyStreams = "too_many_streams",
    /// The process already holds `http.max_streams` streams.
    StreamsAtCapacity = "streams_at_capacity",
    NotReady = "not_ready",
    Unavailable = "unavailable",
    Timeout = "timeout",
    Internal = "internal",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a request named and the API did not find; each has its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Order,
    Store,
    Item,
    Job,
    /// A sync target (`menu`, `accounts`, `all`).
    Sync,
    User,
    Key,
    Schedule,
    DeadLetter,
    /// An outbound webhook subscriber.
    Webhook,
    /// One event's delivery to one subscriber.
    Delivery,
    /// A loyalty account.
    Account,
}

impl Resource {
    fn noun(self) -> &'static str {
        match self {
            Resource::Order => "order",
            Resource::Store => "store",
            Resource::Item => "item",
            Resource::Job => "job",
            Resource::Sync => "sync",
            Resource::User => "user",
            Resource::Key => "API key",
            Resource::Schedule => "schedule",
            Resource::DeadLetter => "dead letter",
            Resource::Webhook => "webhook subscriber",
            Resource::Delivery => "webhook delivery",
            Resource::Account => "loyalty account",
        }
    }

    fn code(self) -> ErrorCode {
        match self {
            Resource::Order => ErrorCode::OrderNotFound,
            Resource::Store => ErrorCode::StoreNotFound,
            Resource::Item => ErrorCode::ItemNotFound,
            Resource::Job => ErrorCode::JobNotFound,
            Resource::Sync => ErrorCode::SyncNotFound,
            Resource::User => ErrorCode::UserNotFound,
            Resource::Key => ErrorCode::KeyNotFound,
            Resource::Schedule => ErrorCode::ScheduleNotFound,
            Resource::DeadLetter => ErrorCode::DeadLetterNotFound,
            Resource::Webhook => ErrorCode::WebhookNotFound,
            Resource::Delivery => ErrorCode::DeliveryNotFound,
            Resource::Account => ErrorCode::AccountNotFound,
        }
    }
}

impl From<domain::Resource> for Resource {
    fn from(r: domain::Resource) -> Self {
        match r {
            domain::Resource::Order => Resource::Order,
            domain::Resource::Store => Resource::Store,
            domain::Resource::Item => Resource::Item,
        }
    }
}

#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all.
    MalformedJson(String),
    /// The body is JSON of the wrong shape (unknown field, wrong type).
    InvalidBody(String),
    UnsupportedMediaType,
    PayloadTooLarge,
    /// The body could not be read (the client went away mid-upload).
    BadRequest(String),
    InvalidPath(String),
    InvalidQuery(String),
    InvalidIdempotencyKey,
    InvalidLastEventId,
    /// The body did not arrive within its deadline; the connection closes.
    BodyTimeout,
    Unauthorized,
    Forbidden,
    CsrfFailed,
    InvalidCredentials,
    /// Locked out; retry after this long.
    LoginLocked(std::time::Duration),
    /// Over a rate limit; retry after this long.
    RateLimited(std::time::Duration),
    UserExists(String),
    LastAdmin,
    WeakPassword(String),
    /// A webhook whose `Rushhour-Signature` is missing, malformed or wrong
    /// (or a webhook received while no secret is configured).
    InvalidSignature,
    /// A correctly signed webhook whose timestamp is outside the tolerance:
    /// a replay, or a sender with a badly wrong clock.
    StaleSignature,
    /// A resource, named by kind.
    NotFound(Resource),
    LineNotFound(u32),
    RouteNotFound,
    MethodNotAllowed,
    InvalidTransition(String),
    /// A webhook delivery retried that is not dead (its event id).
    DeliveryNotDead(i64),
    Validation(Vec<FieldError>),
    /// The order's total cannot be charged; the string says why.
    InvalidTotal(String),
    IdempotencyKeyReused,
    /// Load shedding refused the request before doing any work.
    Overloaded,
    /// This client holds its share of live streams.
    TooManyStreams,
    /// The process holds all the live streams it allows.
    StreamsAtCapacity,
    /// The order is durable but not yet applied by a processor.
    NotReady,
    /// A backend is down or slow; retrying may help.
    Unavailable,
    Timeout,
    /// Anything else; the string is the cause, for the log only.
    Internal(String),
}

/// The problem document. `errors` is present only for `validation_failed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the problem kind; `code` is the same thing in short.
    #[serde(rename = "type")]
    #[schema(example = "urn:rushhour:problem:order_not_found")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub code: ErrorCode,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
}

/// One invalid field of a request body.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldProblem {
    /// Path of the field, e.g. `lines[0].sku`.
    #[schema(example = "lines[0].sku")]
    pub field: String,
    #[schema(example = "unknown_sku")]
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_)
            | BadRequest(_)
            | InvalidPath(_)
            | InvalidQuery(_)
            | InvalidIdempotencyKey
            | InvalidLastEventId => StatusCode::BAD_REQUEST,
            Unauthorized | InvalidCredentials | InvalidSignature | StaleSignature => StatusCode::UNAUTHORIZED,
            Forbidden | CsrfFailed => StatusCode::FORBIDDEN,
            LoginLocked(_) | RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            UserExists(_) | LastAdmin => StatusCode::CONFLICT,
            WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound(_) | LineNotFound(_) | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            InvalidTransition(_) | DeliveryNotDead(_) => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidBody(_) | Validation(_) | InvalidTotal(_) | IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Overloaded | StreamsAtCapacity | NotReady | Unavailable | Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        use ApiError::*;
        match self {
            MalformedJson(_) => ErrorCode::MalformedJson,
            InvalidBody(_) => ErrorCode::InvalidBody,
            UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            PayloadTooLarge => ErrorCode::PayloadTooLarge,
            BadRequest(_) => ErrorCode::BadRequest,
            InvalidPath(_) => ErrorCode::InvalidPath,
            InvalidQuery(_) => ErrorCode::InvalidQuery,
            InvalidIdempotencyKey => ErrorCode::InvalidIdempotencyKey,
            InvalidLastEventId => ErrorCode::InvalidLastEventId,
            BodyTimeout => ErrorCode::BodyTimeout,
            Unauthorized => ErrorCode::Unauthorized,
            Forbidden => ErrorCode::Forbidden,
            CsrfFailed => ErrorCode::CsrfFailed,
            InvalidCredentials => ErrorCode::InvalidCredentials,
            LoginLocked(_) => ErrorCode::LoginLocked,
            RateLimited(_) => ErrorCode::RateLimited,
            UserExists(_) => ErrorCode::UserExists,
            LastAdmin => ErrorCode::LastAdmin,
            WeakPassword(_) => ErrorCode::WeakPassword,
            InvalidSignature => ErrorCode::InvalidSignature,
            StaleSignature => ErrorCode::StaleSignature,
            NotFound(what) => what.code(),
            LineNotFound(_) => ErrorCode::LineNotFound,
            RouteNotFound => ErrorCode::RouteNotFound,
            MethodNotAllowed => ErrorCode::MethodNotAllowed,
            InvalidTransition(_) => ErrorCode::InvalidTransition,
            DeliveryNotDead(_) => ErrorCode::DeliveryNotDead,
            Validation(_) => ErrorCode::ValidationFailed,
            InvalidTotal(_) => ErrorCode::InvalidTotal,
            IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Overloaded => ErrorCode::Overloaded,
            TooManyStreams => ErrorCode::TooManyStreams,
            StreamsAtCapacity => ErrorCode::StreamsAtCapacity,
            NotReady => ErrorCode::NotReady,
            Unavailable => ErrorCode::Unavailable,
            Timeout => ErrorCode::Timeout,
            Internal(_) => ErrorCode::Internal,
        }
    }

    fn title(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) => "Malformed JSON",
            InvalidBody(_) => "Invalid request body",
            UnsupportedMediaType => "Unsupported media type",
            PayloadTooLarge => "Payload too large",
            BadRequest(_) => "Bad request",
            InvalidPath(_) => "Invalid path parameter",
            InvalidQuery(_) => "Invalid query parameter",
            InvalidIdempotencyKey => "Invalid Idempotency-Key",
            InvalidLastEventId => "Invalid Last-Event-ID",
            BodyTimeout => "Request body timeout",
            Unauthorized => "Unauthorized",
            Forbidden => "Forbidden",
            CsrfFailed => "CSRF check failed",
            InvalidCredentials => "Invalid credentials",
            LoginLocked(_) => "Too many failed logins",
            RateLimited(_) => "Too many requests",
            UserExists(_) => "User exists",
            LastAdmin => "Last admin",
            WeakPassword(_) => "Weak password",
            InvalidSignature => "Invalid signature",
            StaleSignature => "Stale signature",
            NotFound(_) | LineNotFound(_) => "Not found",
            RouteNotFound => "No such route",
            MethodNotAllowed => "Method not allowed",
            InvalidTransition(_) => "Invalid transition",
            DeliveryNotDead(_) => "Delivery not dead",
            Validation(_) => "Validation failed",
            InvalidTotal(_) => "Invalid total",
            IdempotencyKeyReused => "Idempotency-Key reused",
            Overloaded => "Overloaded",
            TooManyStreams => "Too many streams",
            StreamsAtCapacity => "Streams at capacity",
            NotReady => "Not ready",
            Unavailable => "Service unavailable",
            Timeout => "Request timed out",
            Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            MalformedJson(d) | InvalidBody(d) | BadRequest(d) | InvalidPath(d) | InvalidQuery(d) => d.clone(),
            InvalidTransition(d) => d.clone(),
            InvalidTotal(why) => format!("the order cannot be charged: {why}"),
            DeliveryNotDead(event) => format!(
                "delivery evt_{event} is not dead; only dead deliveries can be retried (a pending one is retried \
                 by the worker)"
            ),
            UnsupportedMediaType => "the body must be sent with Content-Type: application/json".into(),
            PayloadTooLarge => "the request body is larger than this API accepts".into(),
            InvalidIdempotencyKey => "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            InvalidLastEventId => "Last-Event-ID must be a non-negative integer".into(),
            Unauthorized => "this route needs a staff credential (Authorization: Bearer <session token or API key>, \
                             or the session cookie) or, for an order, its access token (X-Order-Token)"
                .into(),
            Forbidden => "this credential does not allow this route".into(),
            CsrfFailed => "a request authenticated by the session cookie must send the session's X-CSRF-Token \
                           and come from this origin"
                .into(),
            InvalidCredentials => "invalid username or password".into(),
            LoginLocked(d) => format!("too many failed logins; try again in {} s", retry_secs(*d)),
            RateLimited(d) => format!("rate limit exceeded; retry in {} s", retry_secs(*d)),
            UserExists(u) => format!("user {u:?} already exists"),
            LastAdmin => "the last enabled admin cannot be disabled or demoted".into(),
            WeakPassword(d) => d.clone(),
            BodyTimeout => "the request body did not arrive in time; send it whole and promptly".into(),
            InvalidSignature => {
                "Rushhour-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\"> under the shared secret"
                    .into()
            }
            StaleSignature => "the signature's timestamp is outside the accepted tolerance".into(),
            NotFound(what) => format!("no such {}", what.noun()),
            LineNotFound(n) => format!("the order has no line {n}"),
            RouteNotFound => "no route matches this path".into(),
            MethodNotAllowed => "this route does not accept this method; see the Allow header".into(),
            Validation(_) => "the request is invalid; see errors".into(),
            IdempotencyKeyReused => "this Idempotency-Key was already used with a different request".into(),
            Overloaded => "too many requests in flight; retry shortly".into(),
            TooManyStreams => "this client has too many event streams open; close one before opening another".into(),
            StreamsAtCapacity => "this server has as many event streams open as it allows; retry shortly".into(),
            NotReady => "the order is still being processed; retry shortly".into(),
            Unavailable => "a backend is unavailable; retry shortly".into(),
            Timeout => "the request took too long; retry shortly".into(),
            // Deliberately generic: the cause is logged, never sent.
            Internal(_) => "an internal error occurred".into(),
        }
    }

    /// The problem document this error renders as.
    pub fn problem(&self) -> Problem {
        let code = self.code();
        Problem {
            kind: problem_type(code),
            title: self.title(),
            status: self.status().as_u16(),
            code,
            detail: self.detail(),
            errors: match self {
                ApiError::Validation(errs) => Some(
                    errs.iter()
                        .map(|e| FieldProblem {
                            field: e.field.clone(),
                            code: e.code,
                            message: e.message.clone(),
                        })
                        .collect(),
                ),
                _ => None,
            },
        }
    }
}

/// The problem `type` URN of `code`.
pub fn problem_type(code: ErrorCode) -> String {
    format!("urn:rushhour:problem:{code}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "request failed with an internal error");
        }
        let problem = self.problem();
        // Serializing a struct of strings cannot fail; the fallback keeps
        // this path panic-free anyway.
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::TooManyStreams = self {
            // Longer than a 503's second: the client's own streams must
            // close first, and a browser's EventSource retries by itself.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(STREAMS_RETRY_AFTER));
        }
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::LoginLocked(d) | ApiError::RateLimited(d) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(d)));
            }
            // RFC 9110 wants a challenge on every 401; this one names the
            // header the webhook must carry.
            ApiError::InvalidSignature | ApiError::StaleSignature => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Rushhour-Signature"));
            }
            _ => {}
        }
        resp
    }
}

/// Whole seconds to wait, at least one (`Retry-After` has no fractions).
pub fn retry_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl From<identity::IdentityError> for ApiError {
    fn from(e: identity::IdentityError) -> Self {
        use identity::IdentityError as E;
        match e {
            E::InvalidCredentials => ApiError::InvalidCredentials,
            E::Locked { retry_after } => ApiError::LoginLocked(retry_after),
            E::WeakPassword(d) => ApiError::WeakPassword(d),
            E::InvalidInput(d) => ApiError::InvalidBody(d),
            E::UserExists(u) => ApiError::UserExists(u),
            E::UnknownUser(_) => ApiError::NotFound(Resource::User),
            E::UnknownKey(_) => ApiError::NotFound(Resource::Key),
            E::LastAdmin => ApiError::LastAdmin,
            E::Port(p) => p.into(),
            E::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        if e.is_retryable() {
            tracing::warn!(error = %e, "backend unavailable");
            ApiError::Unavailable
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(what) => ApiError::NotFound(what.into()),
            AppError::Validation(errors) => ApiError::Validation(errors),
            AppError::InvalidTotal(why) => ApiError::InvalidTotal(why),
            AppError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            AppError::Transition(t) => t.into(),
            AppError::NotReady => ApiError::NotReady,
            AppError::Backend(p) => p.into(),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::OrderNotFound(_) => ApiError::NotFound(Resource::Order),
            TransitionError::LineNotFound(n) => ApiError::LineNotFound(n),
            t @ TransitionError::InvalidTransition { .. } => ApiError::InvalidTransition(t.to_string()),
            TransitionError::Backend(p) => p.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn mapped(e: AppError) -> (u16, String) {
        let api = ApiError::from(e);
        (api.status().as_u16(), api.code().as_str().to_owned())
    }

    #[test]
    fn app_errors_map_to_stable_codes() {
        let cases = [
            (AppError::NotFound(domain::Resource::Order), 404, "order_not_found"),
            (AppError::NotFound(domain::Resource::Store), 404, "store_not_found"),
            (AppError::NotFound(domain::Resource::Item), 404, "item_not_found"),
            (AppError::Validation(vec![]), 422, "validation_failed"),
            (AppError::InvalidTotal("too large".into()), 422, "invalid_total"),
            (AppError::IdempotencyKeyReused, 422, "idempotency_key_reused"),
            (
                AppError::Transition(TransitionError::InvalidTransition {
                    action: "pickup",
                    from: "placed".into(),
                }),
                409,
                "invalid_transition",
            ),
            (
                AppError::Transition(TransitionError::LineNotFound(7)),
                404,
                "line_not_found",
            ),
            (AppError::NotReady, 503, "not_ready"),
            (
                AppError::Backend(PortError::Unavailable("db down".into())),
                503,
                "unavailable",
            ),
            (AppError::Backend(PortError::Conflict("dup".into())), 500, "internal"),
            (AppError::Backend(PortError::Invalid("corrupt".into())), 500, "internal"),
            (AppError::Backend(PortError::NotFound), 500, "internal"),
        ];
        for (err, status, code) in cases {
            assert_eq!(mapped(err), (status, code.to_owned()));
        }
    }

    #[tokio::test]
    async fn validation_problems_list_every_field() {
        let err = ApiError::Validation(vec![FieldError {
            field: "lines[0].sku".into(),
            code: "unknown_sku",
            message: "no item 'x'".into(),
        }]);
        let resp = err.into_response();
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let v = body_json(resp).await;
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["status"], 422);
        assert_eq!(v["type"], "urn:rushhour:problem:validation_failed");
        assert_eq!(v["errors"][0]["field"], "lines[0].sku");
        assert_eq!(v["errors"][0]["code"], "unknown_sku");
        assert!(v["title"].is_string() && v["detail"].is_string());
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_internal() {
        let resp = ApiError::from(AppError::Backend(PortError::Invalid("secret table xyz".into()))).into_response();
        assert_eq!(resp.status(), 500);
        let text = body_json(resp).await.to_string();
        assert!(!text.contains("xyz"), "{text}");
        assert!(text.contains("\"code\":\"internal\""));
    }

    #[tokio::test]
    async fn retryable_errors_carry_retry_after_and_401_a_challenge() {
        for e in [
            ApiError::Overloaded,
            ApiError::StreamsAtCapacity,
            ApiError::NotReady,
            ApiError::Unavailable,
            ApiError::Timeout,
        ] {
            let resp = e.into_response();
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        }
        let resp = ApiError::TooManyStreams.into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(ApiError::BodyTimeout.status(), 408);
        let resp = ApiError::Unauthorized.into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        for (e, code) in [
            (ApiError::InvalidSignature, "invalid_signature"),
            (ApiError::StaleSignature, "stale_signature"),
        ] {
            assert_eq!((e.status().as_u16(), e.code().as_str()), (401, code));
            let resp = e.into_response();
            assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Rushhour-Signature");
            assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        }
        assert!(
            ApiError::NotFound(Resource::Order)
                .into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
        assert!(
            body_json(ApiError::RouteNotFound.into_response())
                .await
                .get("errors")
                .is_none()
        );
    }

    /// The public codes, pinned: renaming, removing or adding a code is an
    /// API change, and this list is where it shows.
    #[test]
    fn every_error_code_is_pinned() {
        let pinned = [
            "malformed_json",
            "invalid_body",
            "unsupported_media_type",
            "payload_too_large",
            "bad_request",
            "invalid_path",
            "invalid_query",
            "invalid_idempotency_key",
            "invalid_last_event_id",
            "body_timeout",
            "unauthorized",
            "forbidden",
            "csrf_failed",
            "invalid_credentials",
            "login_locked",
            "rate_limited",
            "user_not_found",
            "key_not_found",
            "user_exists",
            "last_admin",
            "weak_password",
            "invalid_signature",
            "stale_signature",
            "order_not_found",
            "store_not_found",
            "item_not_found",
            "job_not_found",
            "sync_not_found",
            "schedule_not_found",
            "dead_letter_not_found",
            "webhook_not_found",
            "delivery_not_found",
            "delivery_not_dead",
            "account_not_found",
            "line_not_found",
            "route_not_found",
            "method_not_allowed",
            "invalid_transition",
            "validation_failed",
            "invalid_total",
            "idempotency_key_reused",
            "jobs_unavailable",
            "job_not_dead",
            "job_running",
            "profile_running",
            "profiling_unavailable",
            "overloaded",
            "too_many_streams",
            "streams_at_capacity",
            "not_ready",
            "unavailable",
            "timeout",
            "internal",
        ];
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, pinned);
        for c in ErrorCode::ALL {
            // The wire form is the pinned string, and every code is snake_case.
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
        }
        // Every resource has its own not-found code.
        for (r, code) in [
            (Resource::Order, "order_not_found"),
            (Resource::Store, "store_not_found"),
            (Resource::Item, "item_not_found"),
            (Resource::Job, "job_not_found"),
            (Resource::Sync, "sync_not_found"),
            (Resource::Schedule, "schedule_not_found"),
            (Resource::DeadLetter, "dead_letter_not_found"),
            (Resource::Webhook, "webhook_not_found"),
            (Resource::Delivery, "delivery_not_found"),
            (Resource::Account, "account_not_found"),
        ] {
            assert_eq!(ApiError::NotFound(r).code(), code);
        }
    }

    #[test]
    fn the_openapi_document_lists_every_code() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let listed: Vec<&str> = schemas["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode is an enum schema")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        assert_eq!(
            schemas["Problem"]["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode",
            "{}",
            schemas["Problem"]
        );
    }
}
