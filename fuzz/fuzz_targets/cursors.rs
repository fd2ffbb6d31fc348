//! Fuzz target `cursors`: where a client says "from here on", on every
//! route that pages or resumes. These are parsed on public and staff
//! routes alike before anything else is looked at, and a reconnecting
//! `EventSource` sends back whatever it was given, so they meet every kind
//! of stale, truncated or hand-edited value.
//!
//! The same input is read as each of them:
//! - the `Last-Event-ID` header of the three SSE streams
//!   (`parse_last_event_id`, from the raw header bytes);
//! - the query string of `GET /v1/orders` (`cursor`: an order id, with
//!   `store`, `status`, `code`, `since`, `limit`: `ListQuery::filter`),
//!   of `GET /v1/admin/jobs` (`before`: a job id, `JobListQuery::filter`),
//!   of `GET /v1/admin/webhooks/{id}/deliveries` (`before`: an event id,
//!   `webhooks::parse_event_id`), of `GET /v1/admin/audit` (`before`), and
//!   of the board and pickup streams (`after`), each through axum's
//!   `Query` as the extractor runs it;
//! - the bare values those parse (`OrderId::parse`, `parse_event_id`,
//!   `PickupCode::parse`), with the property that whatever parses prints
//!   back to something that parses to the same value, so a `next_cursor`
//!   the server hands out is always one it accepts.
//!
//! Input: the header value or query string, as is.

#![no_main]

use api::ApiError;
use api::fuzzing::{AfterQuery, AuditParams, DeliveryQuery, JobListQuery, ListQuery, parse_last_event_id};
use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use domain::OrderId;
use domain::pickup::PickupCode;
use domain::webhooks::{event_id, parse_event_id};
use libfuzzer_sys::fuzz_target;

rushhour_fuzz::bounded_allocations!();

fn is_400(e: ApiError) -> bool {
    e.into_response().status() == StatusCode::BAD_REQUEST
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = HeaderValue::from_bytes(data) {
        match parse_last_event_id(&v) {
            Ok(id) => {
                assert!(id >= 0, "Last-Event-ID {id}");
                assert_eq!(parse_last_event_id(&HeaderValue::from(id)).ok(), Some(id));
            }
            Err(e) => assert!(is_400(e)),
        }
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    bare_values(s);
    // What hyper hands the router: only a query string that makes a valid
    // URI reaches a handler.
    if let Ok(uri) = format!("/v1/orders?{s}").parse::<Uri>() {
        queries(&uri);
    }
});

fn bare_values(s: &str) {
    if let Some(id) = OrderId::parse(s) {
        assert_eq!(OrderId::parse(&id.to_string()), Some(id), "an order cursor prints back");
    }
    if let Some(n) = parse_event_id(s) {
        assert!(n > 0);
        assert_eq!(parse_event_id(&event_id(n)), Some(n), "an event id prints back");
    }
    if let Some(code) = PickupCode::parse(s) {
        let printed = code.to_string();
        assert_eq!(PickupCode::parse(&printed), Some(code), "a pickup code prints back");
    }
}

fn queries(uri: &Uri) {
    if let Ok(Query(q)) = Query::<ListQuery>::try_from_uri(uri) {
        match q.filter() {
            Ok((f, limit)) => {
                assert!((1..=100).contains(&limit));
                assert_eq!(f.limit, limit + 1, "one more than the page, to know of a next one");
                if let Some(before) = f.before {
                    assert_eq!(OrderId::parse(&before.to_string()), Some(before));
                }
            }
            Err(e) => assert!(is_400(e)),
        }
    }
    if let Ok(Query(q)) = Query::<JobListQuery>::try_from_uri(uri) {
        match q.filter() {
            Ok((f, limit)) => {
                assert_eq!(f.limit, limit + 1);
                assert!(f.before.is_none_or(|b| b > 0), "job cursors are positive");
            }
            Err(e) => assert!(is_400(e)),
        }
    }
    if let Ok(Query(q)) = Query::<DeliveryQuery>::try_from_uri(uri) {
        // The deliveries handler's own reading of `before`.
        if let Some(before) = q.before.as_deref().filter(|b| !b.is_empty()) {
            let _ = parse_event_id(before);
        }
    }
    let _ = Query::<AuditParams>::try_from_uri(uri);
    let _ = Query::<AfterQuery>::try_from_uri(uri);
}
