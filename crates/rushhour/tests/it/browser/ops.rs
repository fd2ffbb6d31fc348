//! The operator's dashboard for an admin: live (its badge), and a dead
//! job found with the filter and retried from the jobs table.

use super::board::latte_and_croissant;
use super::harness::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_dashboard_finds_and_retries_a_dead_job() {
    let test = "the_ops_dashboard_finds_and_retries_a_dead_job";
    let Some(driver) = driver(test).await else {
        return;
    };
    let server = Server::start().await;
    for _ in 0..5 {
        server.place(&latte_and_croissant()).await;
    }
    // A job no worker knows goes dead at its first run (one attempt).
    let queue = queue::SqliteQueue::open(&server.data_dir().join("jobs.db"), Default::default()).unwrap();
    let now = domain::ports::system_now_ms();
    let job = domain::jobs::NewJob::new("browser.no-such-kind", "default", json!({"why": "a test"}), now).attempts(1);
    let id = domain::jobs::JobQueue::enqueue(&queue, &[job], now).await.unwrap()[0].id();
    let job_path = format!("/v1/admin/jobs/{id}");
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let j = server.get(&job_path, &server.admin).await;
        if j["state"] == "dead" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job did not go dead: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let tablet = driver.page(Screen::Tablet).await;
    tablet.goto(&server.url("/ops")).await;
    tablet.sign_in("admin", &server.admin_password).await;
    tablet.wait_for("#ops").await;
    tablet.wait_text("[data-testid=ops-badge]", "t === 'LIVE'").await;
    tablet.shot("ops").await;

    // The dead job, found through the filter, retried from its row.
    tablet
        .eval("const s = document.getElementById('job-state'); s.value = 'dead'; s.dispatchEvent(new Event('change')); return true;")
        .await;
    tablet.fill("#job-kind", "browser.no-such-kind").await;
    tablet.press(&[fantoccini::key::Key::Enter.into()]).await;
    let row = format!("[data-testid=job-row][data-job-id='{id}'][data-state=dead]");
    tablet.wait_for(&row).await;
    tablet.wait_count("[data-testid=job-row]", 1).await;
    tablet
        .eval("document.getElementById('jobs').scrollIntoView(); return true;")
        .await;
    tablet.shot("ops-jobs").await;
    tablet.click(&format!("{row} [data-testid=job-retry]")).await;
    // Retried: queued again and run again (dead again, later, as a job of
    // no known kind must be).
    let deadline = Instant::now() + WAIT;
    loop {
        let j = server.get(&job_path, &server.admin).await;
        if j["finished_at"] != first["finished_at"] || j["state"] != "dead" {
            break;
        }
        assert!(Instant::now() < deadline, "the job was not retried: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
