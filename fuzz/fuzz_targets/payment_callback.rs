//! Fuzz target `payment_callback`: `POST /v1/webhooks/payments`, the one
//! route any payment provider (or anyone pretending to be one) can send
//! raw bytes to, in the order the handler takes them: the
//! `Rushhour-Signature` header checked against the raw body (`verify`,
//! which parses the header), then the body decoded into the callback and
//! its fields checked (`decode_payment`), then the log record it becomes.
//!
//! Besides "no panic, no unbounded allocation", it checks: a refusal is a
//! 401 (signature) or a 400/422 (body); a body signed with the right secret
//! now always verifies, and signed 301 s ago is stale; an accepted callback
//! lands in its order's partition and its record decodes back to itself.
//!
//! Input: the header value on the first line, the body after the first
//! `\n` (a header value cannot hold a newline, so nothing is lost).

#![no_main]

use api::fuzzing::{decode_payment, verify};
use api::{ApiError, webhook_signature};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use domain::events::LogEvent;
use domain::ids::partition_for;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

rushhour_fuzz::bounded_allocations!();

const SECRET: &str = "whsec_fuzz";
/// The shipped tolerance.
const TOLERANCE: Duration = Duration::from_secs(300);
/// "Now" for every run, in Unix seconds (2026-01-02T08:15:00Z): the seed
/// corpus's signatures use it.
const NOW: i64 = 1_767_341_700;
const PARTITIONS: u32 = 8;

fn status(e: ApiError) -> StatusCode {
    e.into_response().status()
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = rushhour_fuzz::lines_then_body(data, 1);
    let header = head.first().and_then(|h| HeaderValue::from_bytes(h).ok());

    // The sender's header, as sent. A forged MAC is out of the fuzzer's
    // reach; what it can reach is every way of parsing the header.
    if let Err(e) = verify(header.as_ref(), body, SECRET.as_bytes(), TOLERANCE, NOW) {
        assert_eq!(status(e), StatusCode::UNAUTHORIZED);
    }

    // The same body as a genuine provider signs it: so the body's decoding
    // is reached whatever the header line holds.
    let genuine = HeaderValue::from_str(&webhook_signature(SECRET, NOW, body)).expect("a signature is a header value");
    assert!(verify(Some(&genuine), body, SECRET.as_bytes(), TOLERANCE, NOW).is_ok());
    let old =
        HeaderValue::from_str(&webhook_signature(SECRET, NOW - 301, body)).expect("a signature is a header value");
    assert!(matches!(
        verify(Some(&old), body, SECRET.as_bytes(), TOLERANCE, NOW),
        Err(ApiError::StaleSignature)
    ));

    let event = match decode_payment(body) {
        Ok(event) => event,
        Err(e) => {
            let s = status(e);
            assert!(
                s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
                "{s}"
            );
            return;
        }
    };
    // The key and record the handler appends (crates/api/src/webhooks.rs).
    let key = format!("{}/payment/{}", event.order_id, event.id);
    assert_eq!(
        partition_for(key.as_bytes(), PARTITIONS),
        partition_for(event.order_id.to_string().as_bytes(), PARTITIONS),
        "a payment lands in its order's partition"
    );
    let record = LogEvent::PaymentV1(event.into_record(NOW * 1000));
    let decoded = LogEvent::decode(&record.encode()).expect("an accepted callback's record decodes");
    assert_eq!(decoded, record);
});
