//! Every page renders: status, content type, the security headers, the
//! layout (lang, viewport, skip link, hashed assets, no inline script or
//! style), and each page's key elements from the store's data.

use axum::http::{StatusCode, header};
use domain::StoreId;
use domain::identity::Role;

use crate::harness::{Answer, STORE, pages};

/// The headers and the layout every page shares.
fn assert_page(a: &Answer, status: StatusCode) -> String {
    assert_eq!(a.status, status, "{}", a.text());
    assert_eq!(a.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(a.headers[header::CONTENT_SECURITY_POLICY], web::CSP);
    assert!(web::CSP.contains("script-src 'self';") && web::CSP.contains("frame-ancestors 'none'"));
    assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    let html = a.text();
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{html}");
    assert!(html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
    assert!(html.contains(r##"<a class="skip" href="#main">"##));
    assert!(html.contains(&web::assets::url("app.css")));
    // Nothing inline: every script has a src, no element has a style.
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
    }
    assert!(!html.contains(" style=") && !html.contains("<style"), "inline style");
    assert!(!html.contains(" on") || !html.contains(" onclick="), "inline handler");
    html
}

#[tokio::test]
async fn the_store_picker_lists_the_stores() {
    let p = pages().await;
    let html = assert_page(&p.get("/").await, StatusCode::OK);
    assert!(html.contains(&format!(r#"data-testid="store-{STORE}""#)));
    assert!(html.contains(&format!(r#"href="/stores/{STORE}""#)));
    assert!(html.contains(&format!(r#"href="/stores/{STORE}/pickup""#)));
    assert!(html.contains(r#"data-testid="staff-login""#));
    assert!(!html.contains("/board?station"), "staff links only for staff");
}

#[tokio::test]
async fn the_menu_shows_categories_prices_in_the_store_currency_and_86d_items() {
    let p = pages().await;
    p.app
        .set_availability(&StoreId(STORE.into()), "croissant", false)
        .await
        .unwrap();
    let html = assert_page(&p.get(&format!("/stores/{STORE}")).await, StatusCode::OK);
    assert!(html.contains(&web::assets::url("menu.js")));
    assert!(html.contains(r#"data-testid="category-coffee""#));
    assert!(html.contains(r#"data-testid="item-latte""#));
    assert!(html.contains("Caffè Latte"));
    assert!(html.contains("$4.20"), "the latte's small price in dollars");
    assert!(html.contains(r#"value="oat-milk""#), "modifiers are offered");
    assert!(html.contains(r#"data-currency="USD""#));
    // The 86'd croissant is shown, marked and cannot be added.
    let at = html
        .find(r#"data-testid="item-croissant""#)
        .expect("86'd items stay on the menu");
    let card = &html[at..at + html[at..].find("</li>").unwrap()];
    assert!(card.contains(r#"data-available="false""#), "{card}");
    assert!(card.contains("Unavailable today"));
    assert!(card.contains(r#"data-testid="add-croissant" disabled"#), "{card}");
    let latte = &html[html.find(r#"data-testid="item-latte""#).unwrap()..];
    assert!(latte[..latte.find("</li>").unwrap()].contains(r#"data-available="true""#));
    for id in ["cart", "cart-total", "place-order", "popular", "order-error"] {
        assert!(html.contains(&format!(r#"data-testid="{id}""#)), "{id}");
    }
}

#[tokio::test]
async fn an_unknown_store_or_order_is_a_404_page() {
    let p = pages().await;
    let a = p.get("/stores/no-such-store").await;
    assert!(assert_page(&a, StatusCode::NOT_FOUND).contains(r#"data-testid="not-found""#));
    assert_page(&p.get("/stores/NOT%20A%20STORE/board").await, StatusCode::NOT_FOUND);
    assert_page(&p.get("/orders/not-an-order").await, StatusCode::NOT_FOUND);
    assert_page(
        &p.get(&format!("/stores/{STORE}/board?station=bar")).await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn the_order_page_carries_a_qr_code_of_its_own_url() {
    let p = pages().await;
    let id = domain::OrderId::new();
    let a = p
        .get_with(&format!("/orders/{id}?token=abc123"), &[("host", "shop.local:8080")])
        .await;
    let html = assert_page(&a, StatusCode::OK);
    assert!(html.contains(&format!(r#"data-order-id="{id}""#)));
    assert!(html.contains(&web::assets::url("order.js")));
    let qr = &html[html.find(r#"data-testid="qr""#).unwrap()..];
    assert!(
        qr.contains("<svg role=\"img\" aria-label=\"QR code of this page\""),
        "{qr}"
    );
    assert!(!html.contains("<?xml"));
    for id in [
        "order-status",
        "pickup-code",
        "estimate",
        "order-lines",
        "cancel",
        "order-notice",
    ] {
        assert!(html.contains(&format!(r#"data-testid="{id}""#)), "{id}");
    }
}

#[tokio::test]
async fn the_login_page_only_goes_back_to_this_site() {
    let p = pages().await;
    let html = assert_page(
        &p.get("/login?next=%2Fstores%2Fdemo-downtown%2Fboard%3Fstation%3Dkitchen")
            .await,
        StatusCode::OK,
    );
    assert!(
        html.contains(r#"data-next="/stores/demo-downtown/board?station=kitchen""#),
        "{html}"
    );
    assert!(html.contains(r#"autocomplete="current-password""#));
    let html = assert_page(&p.get("/login?next=%2F%2Fevil.example%2F").await, StatusCode::OK);
    assert!(html.contains(r#"data-next="/""#));
}

#[tokio::test]
async fn the_board_gets_its_station_and_ageing_thresholds() {
    let p = pages().await;
    let html = assert_page(
        &p.get(&format!("/stores/{STORE}/board?station=kitchen")).await,
        StatusCode::OK,
    );
    assert!(html.contains(r#"data-station="kitchen""#));
    assert!(html.contains(r#"data-warn-secs="300""#) && html.contains(r#"data-late-secs="480""#));
    assert!(html.contains(r#"data-heartbeat-secs="15""#));
    for id in [
        "tickets",
        "live-badge",
        "undo",
        "recall",
        "recall-panel",
        "sound",
        "all-day",
    ] {
        assert!(html.contains(&format!(r#"data-testid="{id}""#)), "{id}");
    }
    let html = assert_page(&p.get(&format!("/stores/{STORE}/board")).await, StatusCode::OK);
    assert!(html.contains(r#"data-station="barista""#) && html.contains(r#"data-warn-secs="180""#));
}

#[tokio::test]
async fn the_pickup_manager_and_ops_pages_render_their_frames() {
    let p = pages().await;
    let html = assert_page(&p.get(&format!("/stores/{STORE}/pickup")).await, StatusCode::OK);
    assert!(html.contains(r#"data-testid="preparing""#) && html.contains(r#"data-testid="ready""#));
    assert!(html.contains(r#"<body class="tv">"#));

    let html = assert_page(&p.get(&format!("/stores/{STORE}/manage")).await, StatusCode::OK);
    assert!(html.contains(r#"data-testid="avail-latte""#));
    assert!(html.contains(r#"role="switch" aria-checked="true""#));
    for id in ["order-filter", "orders-table", "cancel-form", "fig-chart"] {
        assert!(html.contains(&format!(r#"data-testid="{id}""#)), "{id}");
    }
    // "Today" is the store's local day: its bounds come with the page.
    let attr = |name: &str| -> i64 {
        let at = html.find(&format!(r#"{name}=""#)).unwrap_or_else(|| panic!("{name}")) + name.len() + 2;
        html[at..].split('"').next().unwrap().parse().unwrap()
    };
    let (start, end) = (attr("data-day-start"), attr("data-day-end"));
    let now = domain::ports::system_now_ms();
    assert!(
        start <= now && now < end && end - start >= 23 * 3_600_000,
        "{start}..{end}"
    );

    let html = assert_page(&p.get("/ops").await, StatusCode::OK);
    for id in [
        "chart-intake",
        "chart-latency",
        "jobs-retry",
        "jobs-discard",
        "schedules-table",
        "dlq-table",
        "cache-table",
        "users-table",
        "keys-table",
        "audit-table",
    ] {
        assert!(html.contains(&format!(r#"data-testid="{id}""#)), "{id}");
    }
}

#[tokio::test]
async fn refused_pages_answer_for_a_person() {
    let login = web::to_login("/stores/demo-downtown/board?station=kitchen");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        login.headers()[header::LOCATION],
        "/login?next=/stores/demo-downtown/board%3Fstation%3Dkitchen"
    );
    let viewer = web::Viewer {
        name: "bea".into(),
        role: Role::Barista,
    };
    let resp = web::forbidden(Some(&viewer), Role::Admin);
    let (parts, body) = resp.into_parts();
    let a = Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
    };
    let html = assert_page(&a, StatusCode::FORBIDDEN);
    assert!(html.contains(r#"data-testid="forbidden""#));
    assert!(html.contains("<strong>admin</strong>") && html.contains("bea (barista)"));
}

/// Each screen's weight on the wire: its HTML (demo store) and every
/// asset it loads, brotli-compressed as served. Printed for the ADR
/// (`cargo test -p web page_weights -- --nocapture`) and held under a
/// budget so a screen cannot quietly grow a framework.
#[tokio::test]
async fn page_weights_stay_small() {
    use std::io::Write;
    let p = pages().await;
    let id = domain::OrderId::new();
    let screens = [
        ("store picker", "/".to_owned()),
        ("menu + cart", format!("/stores/{STORE}")),
        (
            "order page",
            format!("/orders/{id}?token=0123456789abcdef0123456789abcdef"),
        ),
        ("login", "/login".to_owned()),
        ("board", format!("/stores/{STORE}/board")),
        ("pickup board", format!("/stores/{STORE}/pickup")),
        ("manager", format!("/stores/{STORE}/manage")),
        ("operator", "/ops".to_owned()),
    ];
    let by_url: std::collections::HashMap<String, &web::assets::Asset> = web::assets::ASSETS
        .iter()
        .map(|a| (format!("/assets/{}", a.name), a))
        .collect();
    println!("| screen | HTML (br) | assets (br) | total (br) | total (raw) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, url) in screens {
        let a = p.get(&url).await;
        assert_eq!(a.status, StatusCode::OK, "{url}");
        let html = a.text();
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 11, 22);
            w.write_all(html.as_bytes()).unwrap();
        }
        // The assets the page names, and the modules those import.
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<String> = by_url.keys().filter(|u| html.contains(u.as_str())).cloned().collect();
        while let Some(u) = todo.pop() {
            if !seen.insert(u.clone()) {
                continue;
            }
            let text = String::from_utf8_lossy(by_url[&u].raw).into_owned();
            for (other, asset) in &by_url {
                if text.contains(&format!("\"./{}\"", asset.name)) {
                    todo.push(other.clone());
                }
            }
        }
        let assets_br: usize = seen.iter().map(|u| by_url[u].br.len()).sum();
        let assets_raw: usize = seen.iter().map(|u| by_url[u].raw.len()).sum();
        let total = br.len() + assets_br;
        println!(
            "| {name} | {} | {} | {} | {} |",
            br.len(),
            assets_br,
            total,
            html.len() + assets_raw
        );
        assert!(total < 60_000, "{name} weighs {total} bytes compressed");
    }
}
