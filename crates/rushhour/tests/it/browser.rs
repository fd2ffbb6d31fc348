//! End-to-end tests of the web pages in a real headless Chromium, driven
//! over WebDriver against the real `rushhour` binary: what a customer, a
//! barista, a manager and an operator see and do, including a server
//! restart under an open board. Each test saves screenshots of the
//! screens it visits (see `harness::Page::shot`).

mod access;
mod board;
mod customer;
mod figures;
mod harness;
mod manager;
mod ops;
mod pickup;
mod restart;

use harness::*;

/// The harness itself: a page of the real binary opens in a Chromium
/// sized for the screen, and dropping the page quits that browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_harness_opens_the_binary_and_quits_its_browser() {
    let Some(driver) = driver("browser_harness_opens_the_binary_and_quits_its_browser").await else {
        return;
    };
    let server = Server::start().await;
    let page = driver.page(Screen::Phone).await;
    page.goto(&server.url("/health/live")).await;
    let body = page.wait_text("body", "t.length > 0").await;
    assert!(!body.is_empty());
    // `screen.width`: a page without a viewport meta tag lays out wider.
    let width = page.eval("return screen.width;").await;
    assert_eq!(width.as_u64(), Some(390), "a phone-sized window");
    drop(page);
    let tv = driver.page(Screen::Tv).await;
    tv.goto(&server.url("/health/live")).await;
    let size = tv.eval("return [window.innerWidth, window.innerHeight];").await;
    assert_eq!(size, serde_json::json!([1920, 1080]), "a TV-sized viewport");
    let page = tv;
    let profile = page.profile_dir();
    drop(page);
    let left = harness::processes_using(&profile);
    assert!(left.is_empty(), "Chromium processes left behind: {left:?}");
}
