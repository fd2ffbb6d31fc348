//! `ApiError`: every way a request can fail, each mapped to one HTTP status
//! and one stable snake_case `code`, rendered as RFC 9457
//! `application/problem+json`.
//!
//! Clients branch on `code`, never on `title` or `detail` (those are for
//! humans and may change). 5xx bodies say nothing about the cause; the cause
//! goes to the log instead, so a database message or a hostname never leaks
//! to a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::order::FieldError;
use domain::{AppError, PortError, TransitionError};
use serde::Serialize;
use std::borrow::Cow;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

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
    Unauthorized,
    /// A webhook whose `Rushhour-Signature` is missing, malformed or wrong
    /// (or a webhook received while no secret is configured).
    InvalidSignature,
    /// A correctly signed webhook whose timestamp is outside the tolerance:
    /// a replay, or a sender with a badly wrong clock.
    StaleSignature,
    /// A resource, named by kind: `order`, `store`, `item`.
    NotFound(&'static str),
    LineNotFound(u32),
    RouteNotFound,
    MethodNotAllowed,
    InvalidTransition(String),
    Validation(Vec<FieldError>),
    IdempotencyKeyReused,
    /// Load shedding refused the request before doing any work.
    Overloaded,
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
    #[schema(value_type = String, example = "order_not_found")]
    pub code: Cow<'static, str>,
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
            Unauthorized | InvalidSignature | StaleSignature => StatusCode::UNAUTHORIZED,
            NotFound(_) | LineNotFound(_) | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            InvalidTransition(_) => StatusCode::CONFLICT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidBody(_) | Validation(_) | IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Overloaded | NotReady | Unavailable | Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> Cow<'static, str> {
        use ApiError::*;
        Cow::Borrowed(match self {
            MalformedJson(_) => "malformed_json",
            InvalidBody(_) => "invalid_body",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge => "payload_too_large",
            BadRequest(_) => "bad_request",
            InvalidPath(_) => "invalid_path",
            InvalidQuery(_) => "invalid_query",
            InvalidIdempotencyKey => "invalid_idempotency_key",
            InvalidLastEventId => "invalid_last_event_id",
            Unauthorized => "unauthorized",
            InvalidSignature => "invalid_signature",
            StaleSignature => "stale_signature",
            NotFound(what) => return Cow::Owned(format!("{what}_not_found")),
            LineNotFound(_) => "line_not_found",
            RouteNotFound => "route_not_found",
            MethodNotAllowed => "method_not_allowed",
            InvalidTransition(_) => "invalid_transition",
            Validation(_) => "validation_failed",
            IdempotencyKeyReused => "idempotency_key_reused",
            Overloaded => "overloaded",
            NotReady => "not_ready",
            Unavailable => "unavailable",
            Timeout => "timeout",
            Internal(_) => "internal",
        })
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
            Unauthorized => "Unauthorized",
            InvalidSignature => "Invalid signature",
            StaleSignature => "Stale signature",
            NotFound(_) | LineNotFound(_) => "Not found",
            RouteNotFound => "No such route",
            MethodNotAllowed => "Method not allowed",
            InvalidTransition(_) => "Invalid transition",
            Validation(_) => "Validation failed",
            IdempotencyKeyReused => "Idempotency-Key reused",
            Overloaded => "Overloaded",
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
            UnsupportedMediaType => "the body must be sent with Content-Type: application/json".into(),
            PayloadTooLarge => "the request body is larger than this API accepts".into(),
            InvalidIdempotencyKey => "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            InvalidLastEventId => "Last-Event-ID must be a non-negative integer".into(),
            Unauthorized => "this route needs a valid staff key: Authorization: Bearer <key>".into(),
            InvalidSignature => {
                "Rushhour-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\"> under the shared secret"
                    .into()
            }
            StaleSignature => "the signature's timestamp is outside the accepted tolerance".into(),
            NotFound(what) => format!("no such {what}"),
            LineNotFound(n) => format!("the order has no line {n}"),
            RouteNotFound => "no route matches this path".into(),
            MethodNotAllowed => "this route does not accept this method; see the Allow header".into(),
            Validation(_) => "the request is invalid; see errors".into(),
            IdempotencyKeyReused => "this Idempotency-Key was already used with a different request".into(),
            Overloaded => "too many requests in flight; retry shortly".into(),
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
            kind: format!("urn:rushhour:problem:{code}"),
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
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
            AppError::NotFound(what) => ApiError::NotFound(what),
            AppError::Validation(errors) => ApiError::Validation(errors),
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
            TransitionError::OrderNotFound(_) => ApiError::NotFound("order"),
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
        (api.status().as_u16(), api.code().into_owned())
    }

    #[test]
    fn app_errors_map_to_stable_codes() {
        let cases = [
            (AppError::NotFound("order"), 404, "order_not_found"),
            (AppError::NotFound("store"), 404, "store_not_found"),
            (AppError::NotFound("item"), 404, "item_not_found"),
            (AppError::Validation(vec![]), 422, "validation_failed"),
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
            ApiError::NotReady,
            ApiError::Unavailable,
            ApiError::Timeout,
        ] {
            let resp = e.into_response();
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        }
        let resp = ApiError::Unauthorized.into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        for (e, code) in [
            (ApiError::InvalidSignature, "invalid_signature"),
            (ApiError::StaleSignature, "stale_signature"),
        ] {
            assert_eq!((e.status().as_u16(), e.code().into_owned()), (401, code.to_owned()));
            let resp = e.into_response();
            assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Rushhour-Signature");
            assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        }
        assert!(
            ApiError::NotFound("order")
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
}
