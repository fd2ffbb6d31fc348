//! Fuzz target `order_request`: the JSON body of `POST /v1/orders`, the one
//! input every app, kiosk and till sends, followed where the server takes
//! it before the log append: the `Json` extractor's decoding into
//! `PlaceOrderRequest`, the draft, the store slug, validation and pricing
//! (`order::price`) against the demo menu and a hostile one, the 422 that a
//! refusal renders as, and the log record an accepted order becomes.
//!
//! Besides "no panic, no unbounded allocation", it checks what intake
//! promises: an accepted order's lines add up to its total within
//! `money::MAX_TOTAL`, its record decodes back to itself, and a processor
//! deciding it against the same menu confirms it.
//!
//! Input: the request body, as is.

#![no_main]

use api::ApiError;
use api::fuzzing::PlaceOrderRequest;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::events::{LogEvent, OrderPlacedV1, PlacedLineV1};
use domain::menu::MenuSnapshot;
use domain::order::{self, OrderDraft, PricingError};
use domain::ports::Decision;
use domain::{AppError, OrderId, StoreId};
use libfuzzer_sys::fuzz_target;

rushhour_fuzz::bounded_allocations!();

fuzz_target!(|data: &[u8]| {
    // What the `Json` extractor does once the content type and declared
    // length passed (crates/api/src/extract.rs).
    let req = match axum::Json::<PlaceOrderRequest>::from_bytes(data) {
        Ok(axum::Json(req)) => req,
        Err(rejection) => {
            let e = ApiError::MalformedJson(rejection.body_text());
            assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
            return;
        }
    };
    let draft = OrderDraft::from(req);
    // The idempotency fingerprint is taken of every draft, valid or not.
    let _ = domain::app::fingerprint(&draft);
    let _ = StoreId::parse(&draft.store);
    for menu in [rushhour_fuzz::demo(), rushhour_fuzz::hostile()] {
        check_pricing(&draft, menu);
    }
});

fn check_pricing(draft: &OrderDraft, menu: &MenuSnapshot) {
    let (lines, total) = match order::price(draft, menu) {
        Ok(priced) => priced,
        Err(e) => {
            let app = match e {
                PricingError::Fields(errors) => {
                    assert!(!errors.is_empty(), "a refusal names at least one field");
                    AppError::Validation(errors)
                }
                PricingError::Total(why) => AppError::InvalidTotal(why),
            };
            let status = ApiError::from(app).into_response().status();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            return;
        }
    };
    assert_eq!(lines.len(), draft.lines.len(), "one priced line per line asked for");
    assert!((0..=domain::money::MAX_TOTAL).contains(&total), "total {total}");
    let mut sum: i128 = 0;
    for l in &lines {
        assert!((1..=order::MAX_QTY as u32).contains(&l.qty));
        assert_eq!(i128::from(l.line_total), i128::from(l.unit_price) * i128::from(l.qty));
        sum += i128::from(l.line_total);
    }
    assert_eq!(sum, i128::from(total), "the lines add up to the total");

    // The record intake appends (domain::app::Rushhour::prepare), read back
    // as a processor reads it, and decided against the same menu.
    let placed = OrderPlacedV1 {
        order_id: OrderId::new(),
        store: menu.store().id.clone(),
        customer: draft.customer.clone(),
        currency: menu.store().currency.clone(),
        total,
        lines: lines.iter().map(PlacedLineV1::from).collect(),
        placed_at: 1_767_341_700_000,
        name: draft.name.as_deref().map(|n| n.trim().to_owned()),
    };
    let record = LogEvent::OrderPlacedV1(placed);
    let decoded = LogEvent::decode(&record.encode()).expect("an accepted order's record decodes");
    assert_eq!(decoded, record);
    let LogEvent::OrderPlacedV1(placed) = decoded else {
        unreachable!("decoded back to itself")
    };
    assert_eq!(
        order::decide(&placed, Some(menu)),
        Decision::Confirm,
        "an order priced against a menu is confirmed against the same menu"
    );
}
