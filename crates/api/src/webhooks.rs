//! `POST /v1/webhooks/payments`: the payment provider's callbacks, made
//! durable in the event log and applied later by the order processors.
//!
//! Why it looks like intake and not like a CRUD route: providers send these
//! in floods (thousands a second after an outage on their side) and retry
//! anything that is not a 2xx, so the handler does the least work that
//! makes a callback safe to acknowledge:
//!
//! 1. the body is read whole under a deadline (408 `body_timeout` beyond),
//!    then the request is bounded in flight by its own semaphore (503 +
//!    `Retry-After` beyond), apart from intake's, so a flood cannot crowd
//!    out orders and a slow sender holds no slot;
//! 2. the signature is checked on the raw bytes before any parsing
//!    (Stripe's scheme: `Rushhour-Signature: t=<unix s>,v1=<hex>` with
//!    `HMAC-SHA256(secret, "{t}.{body}")`; several `v1` are accepted so the
//!    provider can roll its secret; the timestamp must be within the
//!    tolerance of our clock, which stops replays of old captures);
//! 3. one log append (group-committed with every other append), keyed
//!    `{order_id}/payment/{event_id}` so it lands in its order's partition
//!    after the order, carrying an idempotency claim `payment:{event_id}`
//!    fingerprinted by the body's SHA-256: a provider's retry is answered
//!    with the original 202 and never appended twice, and an event id reused
//!    with another body is refused.
//!
//! No store is read here: whether the order exists, and applying each event
//! once, is the processors' business (`Store::apply_batch`).

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::OrderId;
use domain::events::{LogEvent, PaymentStatus, PaymentV1};
use domain::order::FieldError;
use domain::ports::{AppendOutcome, AppendRequest, IdempotencyClaim};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, Problem};
use identity::constant_time_eq;

/// The header carrying the signature.
pub static SIGNATURE: HeaderName = HeaderName::from_static("rushhour-signature");

const PATH: &str = "/v1/webhooks/payments";

/// Longest provider event id accepted.
pub const MAX_EVENT_ID: usize = 128;

// ------------------------------------------------------------------ DTOs

/// A payment provider's callback. Fields this API does not know are
/// ignored rather than refused: providers add fields without notice, and a
/// refusal would only make them retry the same body forever.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentWebhook {
    /// The provider's event id, 1 to 128 visible ASCII characters; the
    /// idempotency key of the callback.
    #[schema(example = "evt_1PqR2s", pattern = r"^[\x21-\x7e]{1,128}$")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: PaymentEventType,
    pub order_id: Uuid,
    /// Minor units (cents), not negative.
    #[schema(example = 1140, minimum = 0)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub amount: i64,
    /// ISO 4217 code, three upper-case letters.
    #[schema(example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// When the provider created the event (Unix seconds, 1 or more).
    #[schema(example = 1767341700, minimum = 1)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum PaymentEventType {
    #[serde(rename = "payment.succeeded")]
    Succeeded,
    #[serde(rename = "payment.failed")]
    Failed,
    #[serde(rename = "payment.refunded")]
    Refunded,
}

impl From<PaymentEventType> for PaymentStatus {
    fn from(t: PaymentEventType) -> Self {
        match t {
            PaymentEventType::Succeeded => PaymentStatus::Paid,
            PaymentEventType::Failed => PaymentStatus::Failed,
            PaymentEventType::Refunded => PaymentStatus::Refunded,
        }
    }
}

/// The 202 body: the event is durable and will be applied. Stored with the
/// idempotency claim and replayed byte for byte to a retry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookAck {
    #[schema(example = "evt_1PqR2s")]
    pub event_id: String,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: String,
}

impl PaymentWebhook {
    /// The checks serde cannot express, every failing field at once.
    fn validate(&self) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, code: &'static str, message: &str| {
            errors.push(FieldError {
                field: field.into(),
                code,
                message: message.into(),
            })
        };
        if !(1..=MAX_EVENT_ID).contains(&self.id.len()) || !self.id.bytes().all(|b| b.is_ascii_graphic()) {
            bad("id", "invalid_event_id", "must be 1 to 128 visible ASCII characters");
        }
        if self.amount < 0 {
            bad("amount", "out_of_range", "must not be negative");
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            bad("currency", "invalid_currency", "must be an ISO 4217 code such as USD");
        }
        if self.created <= 0 {
            bad("created", "out_of_range", "must be a Unix time in seconds");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// The log record of an accepted callback.
    pub fn into_record(self, received_at: i64) -> PaymentV1 {
        PaymentV1 {
            event_id: self.id,
            order_id: OrderId(self.order_id),
            status: self.kind.into(),
            amount: self.amount,
            currency: self.currency,
            provider_ts: self.created,
            received_at,
        }
    }
}

// --------------------------------------------------------------- handler

/// Receive a payment provider's callback. Answers 202 only once the event
/// is durable; it is applied to its order asynchronously, once per event id.
#[utoipa::path(
    post,
    path = "/v1/webhooks/payments",
    tag = "webhooks",
    request_body(content = PaymentWebhook, content_type = "application/json"),
    params(("Rushhour-Signature" = String, Header,
        description = "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"{t}.{raw body}\")>`; several `v1` may be sent \
            while a secret is rolled; `t` must be within the tolerance (300 s shipped) of the server's clock")),
    responses(
        (status = 202, description = "Durable; applied to the order in the background", body = WebhookAck),
        (status = "2XX", description = "Replay of the answer to an earlier delivery of the same event (same id and body)",
            body = WebhookAck, headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "malformed_json, bad_request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid_signature (missing, malformed or wrong; or no secret configured), \
            stale_signature", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "body_timeout: the body did not arrive within the deadline; the connection closes",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_media_type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, validation_failed, idempotency_key_reused (event id seen with another body)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded, unavailable, timeout (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_payment(State(state): State<AppState>, headers: HeaderMap, RawBody(body): RawBody) -> Response {
    match receive(&state, &headers, &body).await {
        Ok((outcome, resp)) => {
            metrics::counter!(names::WEBHOOKS_RECEIVED, "outcome" => outcome).increment(1);
            resp
        }
        Err(e) => {
            metrics::counter!(names::WEBHOOKS_RECEIVED, "outcome" => e.code().as_str()).increment(1);
            e.into_response()
        }
    }
}

async fn receive(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(&'static str, Response), ApiError> {
    let now_ms = state.app.clock.now_ms();
    verify(
        headers.get(&SIGNATURE),
        body,
        state.webhook_secret.as_bytes(),
        state.webhook_tolerance,
        now_ms.div_euclid(1000),
    )?;
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let event = decode(body)?;
    let fingerprint = hex::encode(Sha256::digest(body));
    let ack = serde_json::to_vec(&WebhookAck {
        event_id: event.id.clone(),
        status: "accepted".into(),
    })
    .map_err(|e| ApiError::Internal(format!("webhook ack does not serialize: {e}")))?;
    let req = AppendRequest {
        key: format!("{}/payment/{}", event.order_id, event.id),
        idempotency: Some(IdempotencyClaim {
            key: format!("{}{}", crate::extract::RESERVED_KEY_PREFIX, event.id),
            fingerprint: fingerprint.clone(),
            status: StatusCode::ACCEPTED.as_u16(),
            response: ack.clone(),
        }),
        payload: LogEvent::PaymentV1(event.into_record(now_ms)).encode(),
        trace: None,
    };
    match state.app.log.append(req).await? {
        AppendOutcome::Appended(_) => Ok(("accepted", json_response(StatusCode::ACCEPTED, ack))),
        AppendOutcome::Duplicate(rec) if rec.fingerprint == fingerprint => {
            let status = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::ACCEPTED);
            let mut resp = json_response(status, rec.response);
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(("replayed", resp))
        }
        AppendOutcome::Duplicate(_) => Err(ApiError::IdempotencyKeyReused),
    }
}

/// The body of a callback whose signature checked out: JSON of the shape
/// of [`PaymentWebhook`] (syntax 400, shape 422), then the rules serde
/// cannot express. Public for the payment-callback fuzz target (`fuzz/`).
pub fn decode(body: &[u8]) -> Result<PaymentWebhook, ApiError> {
    let event = match axum::Json::<PaymentWebhook>::from_bytes(body) {
        Ok(axum::Json(e)) => e,
        Err(r) => return Err(json_rejection(r)),
    };
    event.validate()?;
    Ok(event)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `application/json` or any `application/*+json`, parameters ignored —
/// what the `Json` extractor of the other routes accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The same mapping as the `Json` extractor's: syntax is 400, shape 422,
/// both naming the field serde stopped at.
fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
        other => ApiError::InvalidBody(other.body_text()),
    }
}

// ------------------------------------------------------------- signature

/// Check `Rushhour-Signature` against the raw body: first the MAC (so
/// `stale_signature` is only ever said about a genuine message), then the
/// timestamp's distance from `now` (Unix seconds). An empty secret accepts
/// nothing: a MAC under an empty key is one anybody can compute.
pub fn verify(
    header: Option<&HeaderValue>,
    body: &[u8],
    secret: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<(), ApiError> {
    if secret.is_empty() {
        return Err(ApiError::InvalidSignature);
    }
    let header = header.and_then(|v| v.to_str().ok()).ok_or(ApiError::InvalidSignature)?;
    let sig = parse_signature(header).ok_or(ApiError::InvalidSignature)?;
    let expected = mac(secret, sig.t_raw, body);
    // Every candidate is compared, in constant time each.
    let matched = sig.v1.iter().fold(false, |ok, candidate| {
        let hit = hex::decode(candidate).is_ok_and(|c| constant_time_eq(&c, &expected));
        ok | hit
    });
    if !matched {
        return Err(ApiError::InvalidSignature);
    }
    if now.abs_diff(sig.t) > tolerance.as_secs() {
        return Err(ApiError::StaleSignature);
    }
    Ok(())
}

struct Signature<'a> {
    /// `t` as sent: the MAC covers these exact characters.
    t_raw: &'a str,
    t: i64,
    v1: Vec<&'a str>,
}

/// `t=<int>` exactly once and at least one `v1=`; other schemes (`v0=`, a
/// future `v2=`) are ignored, as Stripe's clients do.
fn parse_signature(header: &str) -> Option<Signature<'_>> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "t" => {
                if t.is_some() {
                    return None;
                }
                let raw = v.trim();
                t = Some((raw, raw.parse::<i64>().ok()?));
            }
            "v1" => v1.push(v.trim()),
            _ => {}
        }
    }
    let (t_raw, t) = t?;
    (!v1.is_empty()).then_some(Signature { t_raw, t, v1 })
}

fn mac(secret: &[u8], t: &str, body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(t.as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// The `Rushhour-Signature` value a provider sends for `body` at Unix time
/// `t` (for load generators, tests and anyone writing a sender).
pub fn webhook_signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret.as_bytes(), &t.to_string(), body)))
}

// ------------------------------------------------------------- plumbing

/// The raw body, within the body limit; a declared `Content-Length` above
/// it is refused before a byte is read.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        Bytes::from_request(req, state).await.map(RawBody).map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(r.body_text())
            }
        })
    }
}

/// Hold one webhook permit while the request runs, or refuse it at once
/// (503 + `Retry-After`; providers retry). After the body was read under
/// its deadline (`protect::read_body`), so a slow sender never holds a
/// permit, and before the signature check.
pub async fn shed(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match permits.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            metrics::counter!(names::HTTP_SHED, "path" => PATH).increment(1);
            ApiError::Overloaded.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const TOL: Duration = Duration::from_secs(300);

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn signed(t: i64, body: &[u8]) -> HeaderValue {
        hv(&webhook_signature("whsec_test", t, body))
    }

    fn code(r: Result<(), ApiError>) -> String {
        r.map_or_else(|e| e.code().as_str().to_owned(), |()| "ok".into())
    }

    #[test]
    fn the_signature_is_stripes_scheme() {
        // Pinned against an independent computation:
        // python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test', b'1700000000.{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            webhook_signature("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn good_signatures_pass_and_everything_else_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        assert_eq!(code(verify(Some(&signed(now, body)), body, SECRET, TOL, now)), "ok");
        // Within the tolerance either way.
        assert_eq!(
            code(verify(Some(&signed(now - 300, body)), body, SECRET, TOL, now)),
            "ok"
        );
        assert_eq!(
            code(verify(Some(&signed(now + 300, body)), body, SECRET, TOL, now)),
            "ok"
        );
        assert_eq!(
            code(verify(Some(&signed(now - 301, body)), body, SECRET, TOL, now)),
            "stale_signature"
        );
        assert_eq!(
            code(verify(Some(&signed(now + 301, body)), body, SECRET, TOL, now)),
            "stale_signature"
        );
        // Tampered body, wrong secret, missing header, empty secret.
        assert_eq!(
            code(verify(
                Some(&signed(now, body)),
                b"{\"id\":\"evt_2\"}",
                SECRET,
                TOL,
                now
            )),
            "invalid_signature"
        );
        assert_eq!(
            code(verify(Some(&signed(now, body)), body, b"other", TOL, now)),
            "invalid_signature"
        );
        assert_eq!(code(verify(None, body, SECRET, TOL, now)), "invalid_signature");
        assert_eq!(
            code(verify(Some(&signed(now, body)), body, b"", TOL, now)),
            "invalid_signature"
        );
        // A timestamp changed after signing breaks the MAC (not "stale").
        let good = webhook_signature("whsec_test", now, body);
        let moved = good.replace(&format!("t={now}"), &format!("t={}", now - 1000));
        assert_eq!(
            code(verify(Some(&hv(&moved)), body, SECRET, TOL, now)),
            "invalid_signature"
        );
    }

    #[test]
    fn several_v1_signatures_allow_a_secret_roll() {
        let body = b"{}";
        let now = 1_700_000_000;
        let old = hex::encode(mac(b"whsec_old", &now.to_string(), body));
        let new = hex::encode(mac(SECRET, &now.to_string(), body));
        for h in [
            format!("t={now},v1={old},v1={new}"),
            format!("t={now},v1={new},v1={old}"),
            format!("v0=abc, t={now}, v1={}, v1={new}", "zz"),
        ] {
            assert_eq!(code(verify(Some(&hv(&h)), body, SECRET, TOL, now)), "ok", "{h}");
        }
        let h = format!("t={now},v1={old}");
        assert_eq!(code(verify(Some(&hv(&h)), body, SECRET, TOL, now)), "invalid_signature");
    }

    #[test]
    fn malformed_headers_are_invalid() {
        let body = b"{}";
        let now = 1_700_000_000;
        let v1 = hex::encode(mac(SECRET, &now.to_string(), body));
        for h in [
            String::new(),
            format!("v1={v1}"),
            format!("t={now}"),
            format!("t=soon,v1={v1}"),
            format!("t={now},t={now},v1={v1}"),
            format!("t={now};v1={v1}"),
            format!("t={now},v1={}", &v1[..63]),
            format!("t={now},v1={}", v1.to_uppercase().replace('A', "G")),
        ] {
            assert_eq!(
                code(verify(Some(&hv(&h)), body, SECRET, TOL, now)),
                "invalid_signature",
                "{h}"
            );
        }
        let non_utf8 = HeaderValue::from_bytes(b"t=1,v1=\xff").unwrap();
        assert_eq!(
            code(verify(Some(&non_utf8), body, SECRET, TOL, now)),
            "invalid_signature"
        );
    }

    #[test]
    fn bodies_are_validated_field_by_field() {
        let ok: PaymentWebhook = serde_json::from_str(
            r#"{"id":"evt_1","type":"payment.succeeded","order_id":"0190f0d2-5b1c-7cc3-a1b2-000000000001",
                "amount":1140,"currency":"USD","created":1700000000,"livemode":false}"#,
        )
        .expect("unknown fields are ignored");
        assert!(ok.validate().is_ok());
        let rec = ok.into_record(42);
        assert_eq!(rec.status, PaymentStatus::Paid);
        assert_eq!((rec.provider_ts, rec.received_at), (1_700_000_000, 42));

        let bad: PaymentWebhook = serde_json::from_str(
            r#"{"id":"evt 1","type":"payment.refunded","order_id":"0190f0d2-5b1c-7cc3-a1b2-000000000001",
                "amount":-1,"currency":"usd","created":0}"#,
        )
        .unwrap();
        let Err(ApiError::Validation(errors)) = bad.validate() else {
            panic!("validation errors")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "amount", "currency", "created"]);
        let long = PaymentWebhook {
            id: "e".repeat(MAX_EVENT_ID + 1),
            ..bad
        };
        let Err(ApiError::Validation(errors)) = long.validate() else {
            panic!("validation errors")
        };
        assert_eq!(errors[0].field, "id");
        assert!(serde_json::from_str::<PaymentWebhook>(r#"{"type":"payment.pending"}"#).is_err());
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, hv(ct));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(with("application/vnd.provider+json"));
        assert!(!with("text/plain"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
