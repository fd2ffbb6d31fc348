//! Request extractors whose rejections are problems, not axum's plain-text
//! defaults: `Json`, `Path` and `Query` wrap axum's own and translate each
//! rejection to an `ApiError`; `IdempotencyKey`, `LastEventId` and
//! `IfNoneMatch` read the headers this API gives meaning to. (The client
//! address is `auth::Caller`'s, which knows the trusted proxies.)
//!
//! Wrapping (rather than re-implementing) axum's extractors keeps their
//! content-type rules and serde error messages, which name the offending
//! field; only the response shape changes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use std::convert::Infallible;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body. Refuses a declared `Content-Length` above the limit before
/// reading a byte, and a streamed body as soon as it crosses the limit.
pub struct Json<T>(pub T);

impl<T> FromRequest<AppState> for Json<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // `DefaultBodyLimit` only counts bytes as they arrive; checking the
        // declared length first spares reading 64 KiB only to refuse it.
        if declared_length(req.headers()).is_some_and(|n| n > state.max_body_bytes as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn json_rejection(r: JsonRejection) -> ApiError {
    // Matched on the status as well as the variant: the enum is
    // non-exhaustive, and the length-limit error hides inside
    // `BytesRejection`.
    match r {
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        other => match other.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::InvalidBody(other.body_text()),
            _ => ApiError::BadRequest(other.body_text()),
        },
    }
}

/// Path parameters; anything that does not parse (a malformed UUID, a line
/// number that is not a number) is a 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r: PathRejection| ApiError::InvalidPath(r.body_text()))
    }
}

/// Query parameters; a value of the wrong type is a 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r: QueryRejection| ApiError::InvalidQuery(r.body_text()))
    }
}

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The optional `Idempotency-Key` of an intake request.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(&IDEMPOTENCY_KEY).iter();
        let first = values.next();
        // Two keys on one request cannot both be honoured.
        if values.next().is_some() {
            return Err(ApiError::InvalidIdempotencyKey);
        }
        first.map(parse_idempotency_key).transpose().map(IdempotencyKey)
    }
}

/// 1 to 255 visible ASCII characters (no spaces): enough for a UUID or a
/// client's own scheme, small enough to index. The `payment:` prefix is
/// reserved: payment webhooks claim `payment:{event id}` in the same key
/// space, and an order must not be able to block one.
pub fn parse_idempotency_key(v: &HeaderValue) -> Result<String, ApiError> {
    let b = v.as_bytes();
    if (1..=255).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic()) && !b.starts_with(b"payment:") {
        // All bytes are ASCII, so this cannot fail.
        v.to_str()
            .map(str::to_owned)
            .map_err(|_| ApiError::InvalidIdempotencyKey)
    } else {
        Err(ApiError::InvalidIdempotencyKey)
    }
}

/// Where an SSE client resumes: the id of the last event it saw (0 for an
/// empty header), `None` when it sent no header at all, which a store's
/// board reads as "from now".
pub struct LastEventId(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(&LAST_EVENT_ID) {
            None => Ok(LastEventId(None)),
            Some(v) => parse_last_event_id(v).map(|id| LastEventId(Some(id))),
        }
    }
}

pub fn parse_last_event_id(v: &HeaderValue) -> Result<i64, ApiError> {
    let s = v.to_str().map_err(|_| ApiError::InvalidLastEventId)?.trim();
    if s.is_empty() {
        // The SSE spec lets a client send an empty id to mean "from the start".
        return Ok(0);
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        _ => Err(ApiError::InvalidLastEventId),
    }
}

/// The `If-None-Match` header values, kept unparsed until the ETag they are
/// compared with is known. Usually empty, so usually no allocation.
pub struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get_all(header::IF_NONE_MATCH).iter().cloned().collect(),
        ))
    }
}

impl IfNoneMatch {
    /// Whether the request sent no `If-None-Match` at all (the usual case).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Does any value match `etag`? Weak comparison, as RFC 9110 asks for
    /// `If-None-Match`: `W/"x"` matches `"x"`, and `*` matches anything.
    pub fn matches(&self, etag: &str) -> bool {
        self.0
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| if_none_match(v, etag))
    }
}

/// Whether one `If-None-Match` header value (a list) matches `etag`.
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let ours = opaque_tag(etag.trim());
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || (!tag.is_empty() && opaque_tag(tag) == ours))
}

fn opaque_tag(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        let ok = |s: &str| parse_idempotency_key(&HeaderValue::from_str(s).unwrap()).is_ok();
        assert!(ok("a"));
        assert!(ok("0190f0d2-5b1c-7cc3-a1b2-000000000001"));
        assert!(ok(&"k".repeat(255)));
        assert!(!ok(""));
        assert!(!ok(&"k".repeat(256)));
        assert!(!ok("has space"));
        assert!(!ok("tab\there"));
        assert!(!ok("payment:evt_1"), "reserved for payment webhooks");
        assert!(ok("payments-are-fine"));
        let non_ascii = HeaderValue::from_bytes("clé".as_bytes()).unwrap();
        assert!(parse_idempotency_key(&non_ascii).is_err());
    }

    #[test]
    fn last_event_ids_are_non_negative_integers() {
        let p = |s: &str| parse_last_event_id(&HeaderValue::from_str(s).unwrap()).ok();
        assert_eq!(p("42"), Some(42));
        assert_eq!(p(" 7 "), Some(7));
        assert_eq!(p(""), Some(0));
        assert_eq!(p("-1"), None);
        assert_eq!(p("abc"), None);
    }

    #[test]
    fn if_none_match_handles_lists_weak_tags_and_star() {
        let etag = "\"abc\"";
        assert!(if_none_match("\"abc\"", etag));
        assert!(if_none_match("W/\"abc\"", etag));
        assert!(if_none_match("\"x\", \"abc\"", etag));
        assert!(if_none_match("\"x\",W/\"abc\"", etag));
        assert!(if_none_match("*", etag));
        assert!(!if_none_match("\"abd\"", etag));
        assert!(!if_none_match("abc", etag), "an unquoted tag is not the same tag");
        assert!(!if_none_match("", etag));
        assert!(!if_none_match(" , ", etag));
    }

    #[test]
    fn declared_lengths_are_read_leniently() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h), None);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("65537"));
        assert_eq!(declared_length(&h), Some(65537));
    }
}
