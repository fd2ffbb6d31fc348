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
        match axum::Json::<Object<T>>::from_request(req, state).await {
            Ok(axum::Json(Object(v))) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// An integer field as JSON Schema reads `integer`: `2.0` is the integer
/// 2 (schema validators, and clients in languages with one number type,
/// send it so), while `2.5` is refused like any other non-integer.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Visit;
    impl serde::de::Visitor<'_> for Visit {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // Within ±2^53 every whole f64 is exact, and beyond every
            // quantity here is out of range anyway.
            if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(Visit)
}

/// Every request body of this API is a JSON object; serde's derive would
/// also take a struct from an array of its fields in order (`[null,
/// null]`), which the document does not allow, so anything but an object
/// is refused here as 422 `invalid_body`.
pub(crate) struct Object<T>(pub(crate) T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData)).map(Object)
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

/// The prefix of the keys payment callbacks claim in the idempotency key
/// space; no order's `Idempotency-Key` may start with it.
pub const RESERVED_KEY_PREFIX: &str = "payment:";

/// 1 to 255 visible ASCII characters (no spaces): enough for a UUID or a
/// client's own scheme, small enough to index. The `payment:` prefix is
/// reserved: payment webhooks claim `payment:{event id}` in the same key
/// space, and an order must not be able to block one.
pub fn parse_idempotency_key(v: &HeaderValue) -> Result<String, ApiError> {
    let b = v.as_bytes();
    if (1..=255).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_graphic())
        && !b.starts_with(RESERVED_KEY_PREFIX.as_bytes())
    {
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

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        a: Option<i64>,
        #[serde(default, deserialize_with = "whole_number")]
        n: i64,
    }

    #[test]
    fn bodies_are_objects_and_integers_may_be_written_as_whole_floats() {
        let obj = |s: &str| serde_json::from_str::<Object<Sample>>(s).map(|Object(v)| v);
        assert_eq!(obj(r#"{"a": 1}"#).unwrap().a, Some(1));
        assert!(obj("[null, null]").is_err(), "a struct from an array");
        assert!(obj("null").is_err());
        assert!(obj(r#"{"b": 1}"#).is_err(), "deny_unknown_fields still holds");
        assert_eq!(obj(r#"{"n": 2.0}"#).unwrap().n, 2);
        assert_eq!(obj(r#"{"n": -3}"#).unwrap().n, -3);
        assert!(obj(r#"{"n": 2.5}"#).is_err());
        assert!(obj(r#"{"n": 1e300}"#).is_err());
        assert!(obj(r#"{"n": "2"}"#).is_err());
        assert!(obj(r#"{"n": 18446744073709551615}"#).is_err());
    }

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
