//! The operator's dashboard for an admin: the live charts have points and
//! a drawn line soon after the page loads, a dead job is found with the
//! filter and retried from the jobs table, and a schedule is run now.

use super::board::latte_and_croissant;
use super::harness::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_dashboard_charts_retries_a_dead_job_and_runs_a_schedule() {
    let test = "the_ops_dashboard_charts_retries_a_dead_job_and_runs_a_schedule";
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
    // Live charts: points and a drawn series soon after load.
    for chart in ["intake", "latency", "lag", "cache"] {
        tablet
            .wait_js(
                &format!("the {chart} chart to draw"),
                &format!(
                    "const b = document.getElementById('chart-{chart}'); \
                     return !!b && Number(b.dataset.points) > 1 \
                       && !!b.querySelector('svg.chart path[data-series]');"
                ),
            )
            .await;
    }
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

    // Run a schedule now (one that will not fire by itself during the
    // test): its job is queued.
    let name = "cleanup";
    let schedules = server.get("/v1/admin/schedules", &server.admin).await;
    let kind = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} schedule: {schedules}"))["job_kind"]
        .as_str()
        .unwrap()
        .to_owned();
    let jobs_of_kind = format!("/v1/admin/jobs?kind={kind}&limit=10");
    let count = |v: &serde_json::Value| v["items"].as_array().or(v["jobs"].as_array()).map_or(0, Vec::len);
    assert_eq!(count(&server.get(&jobs_of_kind, &server.admin).await), 0);
    let run = format!("[data-testid=schedule-row][data-name='{name}'] [data-testid=schedule-run]");
    tablet.click(&run).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = server.get(&jobs_of_kind, &server.admin).await;
        if count(&v) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no {kind} job after run now: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tablet
        .eval("document.getElementById('schedules').scrollIntoView(); return true;")
        .await;
    tablet.shot("ops-schedules").await;
}
