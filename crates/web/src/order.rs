//! `/orders/{id}?token=`: the customer's order page (screen 1, the link
//! the customer keeps). A shell: `order.js` reads the order with the
//! token from the URL and follows it live over the order's event stream
//! (status, each line's progress, pickup code, the ready-time estimate
//! counting down, plain words for cancelled / rejected / expired, and a
//! cancel button while the order can be cancelled).
//!
//! The QR code of the page's own URL is drawn here as SVG (qrcode crate),
//! so a till or kiosk showing this page can hand it to a phone; the page
//! itself reveals nothing without the token, which only the API checks.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use domain::OrderId;
use maud::{PreEscaped, html};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Deserialize;

use crate::layout::{self, Page};
use crate::{Viewer, Web, html};

#[derive(Debug, Deserialize)]
pub(crate) struct Token {
    token: Option<String>,
}

pub(crate) async fn page(
    State(_web): State<Web>,
    Path(id): Path<String>,
    Query(q): Query<Token>,
    headers: HeaderMap,
    viewer: Option<Extension<Viewer>>,
) -> Response {
    let viewer = viewer.map(|Extension(v)| v);
    let Some(id) = OrderId::parse(&id) else {
        return layout::not_found(viewer.as_ref(), "order");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let mut url = format!("{scheme}://{host}/orders/{id}");
    if let Some(t) = q
        .token
        .as_deref()
        .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        url.push_str("?token=");
        url.push_str(t);
    }
    let body = html! {
        div.order-page #order-page data-order-id=(id) {
            h1 { "Your order" }
            p.status-line {
                span #order-status .status role="status" aria-live="polite" data-testid="order-status" { "Loading…" }
            }
            div.code-box {
                p { "Pickup code" }
                p.code #pickup-code data-testid="pickup-code" { "—" }
            }
            p #estimate data-testid="estimate" aria-live="polite" {}
            p #order-notice .notice role="alert" data-testid="order-notice" hidden {}
            h2 { "Items" }
            ol.order-lines #order-lines data-testid="order-lines" {}
            p.total { "Total " output #order-total data-testid="order-total" {} }
            button.danger #cancel type="button" data-testid="cancel" hidden { "Cancel my order" }
            p #cancel-error .error role="alert" data-testid="cancel-error" {}
            figure.qr data-testid="qr" {
                (qr_svg(&url))
                figcaption { "Keep this page: scan the code to open it on your phone." }
            }
        }
    };
    html(
        StatusCode::OK,
        layout::page(
            Page {
                title: "Your order".into(),
                store: None,
                viewer: viewer.as_ref(),
                script: Some("order.js"),
                class: "customer",
            },
            body,
        ),
    )
}

/// The QR code of `url` as inline SVG (no XML declaration: it sits in
/// HTML), labelled for screen readers.
fn qr_svg(url: &str) -> PreEscaped<String> {
    let Ok(code) = QrCode::new(url.as_bytes()) else {
        return PreEscaped(String::new());
    };
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(180, 180)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let svg = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => &svg,
    };
    let labelled = svg.replacen("<svg", "<svg role=\"img\" aria-label=\"QR code of this page\"", 1);
    PreEscaped(labelled)
}
