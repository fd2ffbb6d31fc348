//! The board's figures, measured in the browser (issue 11): how long an
//! order takes from its 202 to its ticket on an open board, and the
//! board's frame time with many open tickets while they keep coming.
//!
//! A measurement, not a timed test: what it asserts is that every order
//! appears exactly once and the board keeps its count; the times are
//! printed (`board figures: …`). CI runs it small; `scripts/bench-board.sh`
//! runs it at full size (`RUSHHOUR_BOARD_ORDERS`, `RUSHHOUR_BOARD_OPEN`)
//! and records the figures in `docs/benchmarks.md`. The browser's
//! `Date.now()` and this process's clock are the same machine's clock, so
//! the two ends of the 202 → ticket time are comparable.

use super::harness::*;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// A size from the environment (a run switch, like `env_flag`).
#[allow(clippy::disallowed_methods)]
fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn drink() -> Value {
    json!({"store": STORE, "lines": [{"sku": "latte", "size": "small", "qty": 1}]})
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Records, in the page, when each ticket first appears on the board.
const OBSERVE: &str = "window.__seen = {}; \
    const seen = (n) => { if (n.nodeType === 1 && n.dataset && n.dataset.orderId && !(n.dataset.orderId in window.__seen)) \
      window.__seen[n.dataset.orderId] = Date.now(); }; \
    document.querySelectorAll('[data-testid=ticket]').forEach(seen); \
    new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => { seen(n); \
      if (n.querySelectorAll) n.querySelectorAll('[data-testid=ticket]').forEach(seen); }))) \
      .observe(document.querySelector('[data-testid=tickets]'), { childList: true, subtree: true }); \
    return true;";

/// Frame intervals (requestAnimationFrame) and long tasks for `ms`.
const FRAMES: &str = "const done = arguments[arguments.length - 1]; const ms = arguments[0]; \
    const frames = []; let long = 0; let last = performance.now(); const end = last + ms; \
    let obs = null; try { obs = new PerformanceObserver((l) => { long += l.getEntries().length; }); \
      obs.observe({ entryTypes: ['longtask'] }); } catch (e) {} \
    const step = (t) => { frames.push(t - last); last = t; \
      if (t < end) requestAnimationFrame(step); else { if (obs) obs.disconnect(); done({ frames, long }); } }; \
    requestAnimationFrame(step);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_figures_202_to_ticket_and_frame_time_with_many_open_tickets() {
    let test = "board_figures_202_to_ticket_and_frame_time_with_many_open_tickets";
    let Some(driver) = driver(test).await else {
        return;
    };
    let orders = size("RUSHHOUR_BOARD_ORDERS", 20);
    let open = size("RUSHHOUR_BOARD_OPEN", 100);
    let server = Server::start().await;
    server.add_user("bea", "barista").await;
    let tablet = driver.page(Screen::Tablet).await;
    tablet
        .goto(&server.url(&format!("/stores/{STORE}/board?station=barista")))
        .await;
    tablet.sign_in("bea", STAFF_PASSWORD).await;
    tablet.wait_for("[data-testid=board][data-state=ready]").await;
    tablet.wait_text("[data-testid=live-badge]", "t === 'LIVE'").await;
    tablet.eval(OBSERVE).await;

    // 202 → ticket: one order at a time, so each is timed on a quiet board.
    let mut placed = Vec::with_capacity(orders);
    for _ in 0..orders {
        let receipt = server.place(&drink()).await;
        let at = now_ms();
        let id = receipt["id"].as_str().unwrap().to_owned();
        let check = format!("return window.__seen[{}] || null;", json!(id));
        let seen = tablet.wait_js(&format!("ticket {id}"), &check).await;
        placed.push((id, seen.as_f64().unwrap() - at));
    }
    let mut latency: Vec<f64> = placed.iter().map(|(_, ms)| ms.max(0.0)).collect();
    latency.sort_by(f64::total_cmp);

    // Many open tickets: fill the board, then measure frames while the
    // timers tick and more orders arrive.
    for _ in orders..open {
        server.place(&drink()).await;
    }
    let total = open.max(orders);
    tablet
        .wait_text("[data-testid=open-count]", &format!("t === '{total}'"))
        .await;
    let extra = 20;
    let more = async {
        for _ in 0..extra {
            server.place(&drink()).await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let frames = async {
        tablet
            .client
            .execute_async(FRAMES, vec![json!(3000)])
            .await
            .expect("frame measurement")
    };
    let ((), measured) = tokio::join!(more, frames);
    let mut frame: Vec<f64> = measured["frames"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|v| v.as_f64().unwrap())
        .collect();
    frame.sort_by(f64::total_cmp);
    let long_tasks = measured["long"].as_u64().unwrap_or(0);

    // What is asserted: every ticket once, the count right.
    tablet
        .wait_text("[data-testid=open-count]", &format!("t === '{}'", total + extra))
        .await;
    let ids = tablet.attrs("[data-testid=ticket]", "data-order-id").await;
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), total + extra, "one ticket per open order");
    assert_eq!(unique.len(), ids.len(), "no ticket twice");
    assert!(placed.iter().all(|(id, _)| unique.contains(&Some(id.clone()))));
    assert!(!frame.is_empty(), "frames were measured");
    tablet.shot("board-busy").await;

    eprintln!(
        "board figures: 202→ticket over {} orders: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         frame time with {} open tickets (+{extra} arriving) over {} frames: p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms, long tasks {long_tasks}",
        latency.len(),
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        latency.last().unwrap(),
        total,
        frame.len(),
        percentile(&frame, 0.5),
        percentile(&frame, 0.99),
        frame.last().unwrap(),
    );
}
