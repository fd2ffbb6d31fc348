//! Who may open which screen, in the browser: an anonymous visitor of the
//! bar's board is sent to the login page and back to the board once signed
//! in; a barista who opens the operator's dashboard gets a 403 page.

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_sign_in_for_the_board_and_baristas_cannot_open_ops() {
    let test = "anonymous_visitors_sign_in_for_the_board_and_baristas_cannot_open_ops";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    server.add_user("bea", "barista").await;
    let tablet = driver.page(Screen::Tablet).await;

    let board = format!("/stores/{STORE}/board?station=barista");
    tablet.goto(&server.url(&board)).await;
    tablet.wait_for("[data-testid=login-form]").await;
    assert_eq!(tablet.path().await.split('?').next(), Some("/login"));
    assert_eq!(tablet.attrs("#login-page", "data-next").await, [Some(board.clone())]);
    assert_eq!(
        tablet.count("[data-testid=board]").await,
        0,
        "no board for anyone anonymous"
    );
    tablet.shot("login").await;

    // A wrong password says so and stays.
    tablet.fill("#username", "bea").await;
    tablet.fill("#password", "not the password at all").await;
    tablet.click("[data-testid=login-submit]").await;
    tablet.wait_text("[data-testid=login-error]", "t.length > 0").await;
    assert_eq!(tablet.path().await.split('?').next(), Some("/login"));

    tablet.sign_in("bea", STAFF_PASSWORD).await;
    tablet.wait_for("[data-testid=board]").await;
    assert_eq!(tablet.path().await, board, "back to the page asked for");
    let viewer = tablet.wait_text("[data-testid=viewer]", "t.length > 0").await;
    assert!(viewer.contains("bea"), "{viewer}");

    // The operator's pages are not a barista's.
    tablet.goto(&server.url("/ops")).await;
    tablet.wait_for("[data-testid=forbidden]").await;
    assert_eq!(tablet.count("#ops").await, 0, "no dashboard behind the 403");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects.get(server.url("/ops")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303, "anonymous: sent to sign in");
    let to = res.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/login?next=") && to.ends_with("ops"), "{to}");
    tablet.shot("forbidden").await;
}
